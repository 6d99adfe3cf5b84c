//! Conditions `log p(y | x)` with `x = decode(position)`: a class of a
//! classifier ("Plug & Play Generative Networks" (supplementary), Table S2: the gradient of the
//! logit, of the softmax probability, or of the log-softmax, the default
//! and the only one that is a log-density) or a hidden neuron (a unit of a
//! fully connected layer, or a channel of a convolutional one at a spatial
//! position). With `decode = G` the position is the code `h` (PPGN-h); with
//! the identity it is the image itself (PPGN-x).

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::{autodiff, Eval, Term};
use crate::error::{Error, Result};
use crate::nn::Func;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ClassGradient {
    /// `d a_y / dx`, the pre-softmax unit (DGN-AM).
    Logit,
    /// `d p_y / dx`.
    Softmax,
    /// `d log p_y / dx` (default; a true log-density).
    #[default]
    LogSoftmax,
}

/// What a condition asks of a network's output, whichever backend (the
/// engine or candle's autograd) computes it: the names, whether it is a
/// log-density, and what to use instead when a sampler needs one.
#[derive(Debug, Clone)]
pub enum Objective {
    /// One class per chain of the logits `(1, 1, classes)`.
    Class {
        classes: Vec<usize>,
        gradient: ClassGradient,
    },
    /// One unit of the output layer `(h, w, c)`: channel `unit` at `at`
    /// (the centre when `None`, [`Neuron::position`]); gradient only.
    Unit(Neuron),
}

/// Why the joint prior cannot serve a Metropolis-Hastings test.
pub const JOINT_HINT: &str =
    "the joint prior E(G(h)) - h gives only a gradient; use the Gaussian prior for MH, MALA or HMC";

impl Objective {
    pub fn name(&self) -> String {
        match self {
            Objective::Class { gradient, .. } => format!("class-{gradient:?}").to_lowercase(),
            Objective::Unit(n) => format!("neuron-{}", n.unit),
        }
    }
    /// Only the log-softmax of a class is a log-density.
    pub fn has_value(&self) -> bool {
        matches!(
            self,
            Objective::Class {
                gradient: ClassGradient::LogSoftmax,
                ..
            }
        )
    }
    pub fn value_hint(&self) -> String {
        match self {
            Objective::Class { .. } => {
                "use the log-softmax class gradient, the only one that is a log-density".into()
            }
            Objective::Unit(_) => {
                "a neuron's activation is not a log-density; sample it with map or mala-approx"
                    .into()
            }
        }
    }
}

/// One class per chain.
pub struct ClassCondition {
    pub decode: Func,
    pub logits: Func,
    pub classes: Vec<usize>,
    pub num_classes: usize,
    pub gradient: ClassGradient,
}

impl ClassCondition {
    /// `[n, K]` one-hot rows of the chains' classes, in `dtype`.
    fn one_hot(&self, n: usize, dtype: DType, dev: &candle_core::Device) -> Result<Tensor> {
        if self.classes.len() != n {
            return Err(Error::shape(
                "class condition",
                format!("one class per chain ({n})"),
                format!("{} classes", self.classes.len()),
            ));
        }
        let mut v = vec![0f32; n * self.num_classes];
        for (i, &c) in self.classes.iter().enumerate() {
            v[i * self.num_classes + c] = 1.0;
        }
        Ok(Tensor::from_vec(v, (n, self.num_classes), dev)?.to_dtype(dtype)?)
    }

    /// The objective this condition computes through candle.
    pub fn objective(&self) -> Objective {
        Objective::Class {
            classes: self.classes.clone(),
            gradient: self.gradient,
        }
    }

    /// `p(y | decode(position))` per chain, without gradients.
    pub fn probability(&self, position: &Tensor) -> Result<Vec<f64>> {
        let logits = (self.logits)(&(self.decode)(&position.detach())?)?;
        let oh = self.one_hot(position.dim(0)?, logits.dtype(), logits.device())?;
        let lp = (candle_nn::ops::log_softmax(&logits, 1)? * oh)?.sum(1)?;
        Ok(lp.exp()?.to_dtype(DType::F64)?.to_vec1()?)
    }
}

impl Term for ClassCondition {
    fn name(&self) -> String {
        self.objective().name()
    }
    fn has_value(&self) -> bool {
        self.objective().has_value()
    }
    fn value_hint(&self) -> String {
        self.objective().value_hint()
    }
    fn value_and_grad(&self, position: &Tensor) -> Result<Eval> {
        let n = position.dim(0)?;
        let oh = self.one_hot(n, position.dtype(), position.device())?;
        let (decode, logits, g) = (&self.decode, &self.logits, self.gradient);
        let mut e = autodiff(position, |h| {
            let a = logits(&decode(h)?)?;
            let oh = oh.to_dtype(a.dtype())?;
            let s = match g {
                ClassGradient::Logit => a,
                // log-softmax has an exact backward in candle; softmax_last_dim does not
                ClassGradient::Softmax => candle_nn::ops::log_softmax(&a, 1)?.exp()?,
                ClassGradient::LogSoftmax => candle_nn::ops::log_softmax(&a, 1)?,
            };
            (s * oh)?.sum(1)
        })?;
        if !self.has_value() {
            e.log_density = None;
        }
        Ok(e)
    }
}

/// Which hidden unit: `unit` of a `[n, units]` layer, or channel `unit` at
/// `(y, x)` of an NHWC `[n, h, w, c]` layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neuron {
    pub unit: usize,
    pub at: Option<(usize, usize)>,
}

impl Neuron {
    /// The `(row, column)` the unit is read at in an `h x w` map: the
    /// given position, or the centre of the map.
    pub fn position(&self, h: usize, w: usize) -> (usize, usize) {
        self.at.unwrap_or((h / 2, w / 2))
    }

    /// `LAYER:UNIT` or `LAYER:UNIT@X,Y` (`X` the column, `Y` the row) as
    /// the layer's name and the unit; `layers` names the valid layers for
    /// the message.
    pub fn parse(spec: &str, layers: &str) -> Result<(String, Neuron)> {
        let bad = || {
            Error::setting(
                "neuron",
                format!("{spec:?}"),
                format!("LAYER:UNIT or LAYER:UNIT@X,Y (X the column, Y the row; layers {layers}), e.g. h1:5@3,1"),
            )
        };
        let (layer, rest) = spec.split_once(':').ok_or_else(bad)?;
        let (unit, at) = match rest.split_once('@') {
            Some((u, xy)) => {
                let (x, y) = xy.split_once(',').ok_or_else(bad)?;
                let x: usize = x.trim().parse().map_err(|_| bad())?;
                let y: usize = y.trim().parse().map_err(|_| bad())?;
                (u, Some((y, x)))
            }
            None => (rest, None),
        };
        let unit = unit.trim().parse().map_err(|_| bad())?;
        Ok((layer.trim().to_string(), Neuron { unit, at }))
    }
}

/// Maximises one hidden unit's activation (not a log-density).
pub struct NeuronCondition {
    pub decode: Func,
    pub layer: Func,
    pub layer_name: String,
    pub neuron: Neuron,
}

impl NeuronCondition {
    /// The chosen unit's activation per chain, `[n]`.
    pub fn activation(&self, act: &Tensor) -> candle_core::Result<Tensor> {
        let Neuron { unit, at } = self.neuron;
        match (act.rank(), at) {
            (2, None) => act.narrow(1, unit, 1)?.squeeze(1),
            (4, _) => {
                let (_, h, w, _) = act.dims4()?;
                let (y, x) = self.neuron.position(h, w);
                act.narrow(1, y, 1)?
                    .narrow(2, x, 1)?
                    .narrow(3, unit, 1)?
                    .flatten_from(1)?
                    .squeeze(1)
            }
            (r, _) => candle_core::bail!(
                "layer {} has rank {r}: a neuron needs a [n, units] or [n, h, w, c] layer",
                self.layer_name
            ),
        }
    }

    /// Checks the neuron exists in the layer's output for `position`.
    pub fn validate(&self, position: &Tensor) -> Result<()> {
        let act = (self.layer)(&(self.decode)(&position.narrow(0, 0, 1)?)?)?;
        let dims = act.dims().to_vec();
        let ok = match (dims.len(), self.neuron.at) {
            (2, None) => self.neuron.unit < dims[1],
            (4, Some((y, x))) => y < dims[1] && x < dims[2] && self.neuron.unit < dims[3],
            (4, None) => self.neuron.unit < dims[3],
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::NoSuchUnit {
                neuron: format!("{:?}", self.neuron),
                layer: self.layer_name.clone(),
                shape: format!("{:?} per image", &dims[1..]),
            })
        }
    }
}

impl Term for NeuronCondition {
    fn name(&self) -> String {
        format!(
            "{} of {}",
            Objective::Unit(self.neuron).name(),
            self.layer_name
        )
    }
    fn has_value(&self) -> bool {
        false
    }
    fn value_hint(&self) -> String {
        Objective::Unit(self.neuron).value_hint()
    }
    fn value_and_grad(&self, position: &Tensor) -> Result<Eval> {
        let mut e = autodiff(position, |h| {
            self.activation(&(self.layer)(&(self.decode)(h)?)?)
        })?;
        e.log_density = None;
        Ok(e)
    }
}
