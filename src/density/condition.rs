//! Conditions `log p(y | x)`: a class of a classifier ("Plug & Play
//! Generative Networks" (supplementary), Table S2: the gradient of the
//! logit, of the softmax probability, or of the log-softmax, the default
//! and the only one that is a log-density) or a hidden neuron (a unit of a
//! fully connected layer, or a channel of a convolutional one at a spatial
//! position). One type, [`NetCondition`], computes every condition: one
//! compiled network from the position to the logits or the layer (`C . G`
//! for PPGN-h, `C` for PPGN-x), run by a [`Backend`], forward once and
//! backward once.
//!
//! With the joint prior the same pass also gives `E(G(h))`: in the
//! Fashion-MNIST stack and the Caffe pair `E` is the classifier up to `h`,
//! so `C = fc8 . E` and the prior's `E(G(h)) - h` is read off the
//! condition's own forward pass at the tap `h` instead of running `G` and
//! `E` again ("Plug & Play Generative Networks" (supplementary), S9.4).
//!
//! A position may also go through a candle `decode` first (a cosine-basis
//! image parameterisation, a random jitter): the gradient at the decoded
//! images is pulled back through it by candle's autograd.

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::backend::Backend;
use super::{Eval, Term};
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

/// Which hidden unit: `unit` of a `[n, units]` layer, or channel `unit` at
/// `(y, x)` of an NHWC `[n, h, w, c]` layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
        let (layer, rest) = spec.rsplit_once(':').ok_or_else(bad)?;
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

/// `weight * objective(net(decode(position)))`, plus `eps1 * (E(G(h)) -
/// h)` when `joint` is `(the tap holding E(G(h)), eps1)`.
pub struct NetCondition {
    backend: Backend,
    decode: Option<Func>,
    objective: Objective,
    weight: f64,
    joint: Option<(usize, f64)>,
}

impl NetCondition {
    /// The backend's network maps (decoded) positions to its output (the
    /// logits `1 x 1 x classes` for a class, the layer for a unit).
    pub fn new(
        backend: Backend,
        objective: Objective,
        weight: f64,
        joint: Option<(usize, f64)>,
    ) -> Result<Self> {
        let net = backend.net();
        let (h, w, c) = net.output();
        match &objective {
            Objective::Class { classes, .. } => {
                if (h, w) != (1, 1) {
                    return Err(Error::shape(
                        "a class condition's network output",
                        "logits (1x1xclasses)",
                        format!("{h}x{w}x{c}"),
                    ));
                }
                if let Some(&k) = classes.iter().find(|&&k| k >= c) {
                    return Err(Error::UnknownClass {
                        what: "class",
                        given: format!("{k} (out of range)"),
                        count: c,
                        names: format!("the classifier's {c} classes"),
                    });
                }
            }
            Objective::Unit(n) => {
                let (y, x) = n.position(h, w);
                if n.unit >= c || y >= h || x >= w {
                    return Err(Error::NoSuchUnit {
                        neuron: match n.at {
                            Some((y, x)) => format!("channel {} at column {x}, row {y}", n.unit),
                            None => format!("channel {}", n.unit),
                        },
                        layer: "the network's output".into(),
                        shape: format!("{h}x{w}x{c} (rows x columns x channels)"),
                    });
                }
            }
        }
        if let Some((tap, _)) = joint {
            if tap > net.len() || net.shape(tap) != net.input() {
                return Err(Error::shape(
                    format!("joint prior: activation {tap}"),
                    format!("the code's shape {:?}", net.input()),
                    if tap > net.len() {
                        "no such activation".to_string()
                    } else {
                        format!("{:?}", net.shape(tap))
                    },
                ));
            }
        }
        Ok(Self {
            backend,
            decode: None,
            objective,
            weight,
            joint,
        })
    }

    /// The condition as a term of `eps1 * prior + eps2 * condition`
    /// ([`super::Sum`]), with the joint prior read off its pass when
    /// `joint` is `(its tap, eps1)`: the term and its weight in the sum.
    /// eps2 weighs the condition in the sum, except when the term also
    /// carries the joint prior, which weighs its two parts itself.
    pub fn weighed(
        backend: Backend,
        objective: Objective,
        eps2: f64,
        joint: Option<(usize, f64)>,
    ) -> Result<(f64, Self)> {
        let (outer, inner) = match joint {
            Some(_) => (1.0, eps2),
            None => (eps2, 1.0),
        };
        Ok((outer, Self::new(backend, objective, inner, joint)?))
    }

    /// A class condition: `weight * log p(y | net(position))` (or the
    /// logit or probability, as `gradient` says).
    pub fn class(
        backend: Backend,
        classes: Vec<usize>,
        gradient: ClassGradient,
        weight: f64,
        joint: Option<(usize, f64)>,
    ) -> Result<Self> {
        Self::new(
            backend,
            Objective::Class { classes, gradient },
            weight,
            joint,
        )
    }

    /// Positions go through `decode` (candle, differentiable) before the
    /// network. Not with the joint prior, which compares the code itself.
    pub fn with_decode(mut self, decode: Func) -> Result<Self> {
        if self.joint.is_some() {
            return Err(Error::unsupported(
                "a decode before the network with the joint prior",
                "the joint prior reads the code itself; decode without it",
            ));
        }
        self.decode = Some(decode);
        Ok(self)
    }

    /// The objective per chain of outputs `out [n, ...]` and its gradient.
    fn objective(&self, out: &[f32], n: usize, d_out: &mut [f32]) -> Result<Vec<f64>> {
        let (h, w, c) = self.backend.net().output();
        let per = h * w * c;
        match &self.objective {
            Objective::Class { classes, gradient } => {
                if classes.len() != n {
                    return Err(Error::shape(
                        "class condition",
                        format!("one class per chain ({n})"),
                        format!("{} classes", classes.len()),
                    ));
                }
                Ok((0..n)
                    .map(|i| {
                        let r = i * per..(i + 1) * per;
                        log_softmax(&out[r.clone()], classes[i], *gradient, &mut d_out[r])
                    })
                    .collect())
            }
            Objective::Unit(neuron) => {
                let (y, x) = neuron.position(h, w);
                let at = (y * w + x) * c + neuron.unit;
                d_out.fill(0.0);
                Ok((0..n)
                    .map(|i| {
                        d_out[i * per + at] = 1.0;
                        out[i * per + at] as f64
                    })
                    .collect())
            }
        }
    }
}

/// `(log p_y, d objective / d logits)` of one row of logits (in f64).
fn log_softmax(logits: &[f32], y: usize, g: ClassGradient, dlogits: &mut [f32]) -> f64 {
    let a: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
    let max = a.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = a.iter().map(|v| (v - max).exp()).sum();
    let lse = max + sum.ln();
    let log_p = a[y] - lse;
    for (k, d) in dlogits.iter_mut().enumerate() {
        let onehot = if k == y { 1.0 } else { 0.0 };
        let p = (a[k] - lse).exp();
        *d = match g {
            ClassGradient::Logit => onehot,
            ClassGradient::LogSoftmax => onehot - p,
            ClassGradient::Softmax => log_p.exp() * (onehot - p),
        } as f32;
    }
    log_p
}

impl Term for NetCondition {
    fn name(&self) -> String {
        match self.joint {
            Some(_) => format!("joint-prior + {}", self.objective.name()),
            None => self.objective.name(),
        }
    }
    fn has_value(&self) -> bool {
        self.joint.is_none() && self.objective.has_value()
    }
    fn value_hint(&self) -> String {
        match self.joint {
            Some(_) => JOINT_HINT.into(),
            None => self.objective.value_hint(),
        }
    }
    fn value_and_grad(&self, position: &Tensor) -> Result<Eval> {
        let n = position.dim(0)?;
        // the network's input: the position, or its decoding (kept on
        // candle's tape to pull the gradient back)
        let var = match &self.decode {
            Some(_) => Some(Var::from_tensor(&position.detach())?),
            None => None,
        };
        let x = match (&self.decode, &var) {
            (Some(d), Some(v)) => d(v.as_tensor())?,
            _ => position.clone(),
        };
        let taps: Vec<usize> = self.joint.iter().map(|&(tap, _)| tap).collect();
        let w = self.weight as f32;
        let pass = self.backend.vjp(&x, &taps, |out, d_out| {
            let values = self.objective(out, n, d_out)?;
            d_out.iter_mut().for_each(|d| *d *= w);
            Ok(values)
        })?;
        let mut grad = pass.grad;
        if let (Some((_, eps1)), Some(r)) = (self.joint, pass.slots.first()) {
            // eps1 * (E(G(h)) - h), no gradient through E(G(h)) (S9.4)
            let e = eps1 as f32;
            for ((g, &r), &h) in grad.iter_mut().zip(r).zip(&pass.input) {
                *g += e * (r - h);
            }
        }
        let grad = Tensor::from_vec(grad, x.shape(), x.device())?;
        let grad = match var {
            // d/dposition of sum(x * grad): the chain rule through decode
            Some(v) => {
                let grads = (x * grad)?.sum_all()?.backward()?;
                match grads.get(v.as_tensor()) {
                    Some(g) => g.clone(),
                    None => v.as_tensor().zeros_like()?,
                }
            }
            None => grad,
        };
        Ok(Eval {
            log_density: self
                .has_value()
                .then(|| pass.seeded.iter().map(|v| v * self.weight).collect()),
            grad,
        })
    }
    /// The network's forward pass alone, on the same engine and in the
    /// same order as [`Term::value_and_grad`]'s, so the same numbers.
    fn value(&self, position: &Tensor) -> Result<Option<Vec<f64>>> {
        if !self.has_value() {
            return Ok(None);
        }
        let x = match &self.decode {
            Some(d) => d(&position.detach())?,
            None => position.clone(),
        };
        let out = self.backend.values(&x, &[self.backend.net().len()])?;
        let out = out.first().map(Vec::as_slice).unwrap_or_default();
        let mut unused = vec![0f32; out.len()];
        let values = self.objective(out, position.dim(0)?, &mut unused)?;
        Ok(Some(values.iter().map(|v| v * self.weight).collect()))
    }
}

/// `p(y | x)` per chain of logits `[n, classes]`, one class per chain.
pub fn class_probability(logits: &Tensor, classes: &[usize]) -> Result<Vec<f64>> {
    let (n, k) = logits.dims2()?;
    if classes.len() != n {
        return Err(Error::shape(
            "class probability",
            format!("one class per chain ({n})"),
            format!("{} classes", classes.len()),
        ));
    }
    let lp: Vec<f64> = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F64)?, 1)?
        .flatten_all()?
        .to_vec1()?;
    Ok(classes
        .iter()
        .enumerate()
        .map(|(i, &c)| lp[i * k + c].exp())
        .collect())
}

/// The unit's activation per chain of a layer `[n, units]` or `[n, h, w, c]`.
pub fn unit_activation(act: &Tensor, neuron: Neuron) -> Result<Vec<f64>> {
    let act = act.to_dtype(DType::F64)?;
    let v = match act.rank() {
        2 => act.narrow(1, neuron.unit, 1)?.squeeze(1)?,
        4 => {
            let (_, h, w, _) = act.dims4()?;
            let (y, x) = neuron.position(h, w);
            act.narrow(1, y, 1)?
                .narrow(2, x, 1)?
                .narrow(3, neuron.unit, 1)?
                .flatten_all()?
        }
        r => {
            return Err(Error::shape(
                "a neuron's layer",
                "[n, units] or [n, h, w, c]",
                format!("rank {r}"),
            ))
        }
    };
    Ok(v.to_vec1()?)
}
