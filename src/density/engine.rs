//! Conditions on the sampling engine (`crate::nn::fast`): one compiled
//! network from what the condition reads to a class's logits or a hidden
//! layer, forward once, backward once; the joint prior reads its `E(G(h))`
//! off the same forward pass.
//!
//! The candle terms ([`super::condition::ClassCondition`] plus
//! [`super::prior::JointPrior`]) run `G` twice per PPGN step, once for each
//! term, and `E` twice; here `E(G(h))` is read off the tape of the class
//! term's forward pass (in the Fashion-MNIST stack `E` is the classifier up
//! to `h`, so `C = fc8 . E`): the prior costs nothing extra.
//!
//! A position may also go through a candle `decode` first (a cosine-basis
//! image parameterisation, a random jitter): the engine's gradient at the
//! decoded images is pulled back through it by candle's autograd.

use std::sync::{Arc, Mutex};

use candle_core::{Tensor, Var};

use super::condition::{ClassGradient, Objective, JOINT_HINT};
use super::{Eval, Term};
use crate::error::{Error, Result};
use crate::nn::fast::{Net, Workspace};
use crate::nn::Func;

/// `weight * objective(net(decode(position)))`, plus `joint_weight *
/// (E(G(h)) - h)` when `joint` names the tape activation holding `E(G(h))`.
pub struct EngineCondition {
    net: Arc<Net<f32>>,
    ws: Mutex<Workspace<f32>>,
    decode: Option<Func>,
    objective: Objective,
    weight: f64,
    joint: Option<(usize, f64)>,
}

impl EngineCondition {
    /// `net` maps (decoded) positions to its output; `joint` is `(tape
    /// index of E(G(h)), eps1)` for the joint prior (positions not decoded).
    pub fn new(
        net: Arc<Net<f32>>,
        objective: Objective,
        weight: f64,
        joint: Option<(usize, f64)>,
    ) -> Result<Self> {
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
                        neuron: format!("{n:?}"),
                        layer: "the network's output".into(),
                        shape: format!("{h}x{w}x{c}"),
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
            net,
            ws: Mutex::new(Workspace::default()),
            decode: None,
            objective,
            weight,
            joint,
        })
    }

    /// A class condition: `weight * log p(y | net(position))` (or the
    /// logit or probability, as `gradient` says).
    pub fn class(
        net: Arc<Net<f32>>,
        classes: Vec<usize>,
        gradient: ClassGradient,
        weight: f64,
        joint: Option<(usize, f64)>,
    ) -> Result<Self> {
        Self::new(net, Objective::Class { classes, gradient }, weight, joint)
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
        let (h, w, c) = self.net.output();
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

impl Term for EngineCondition {
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
        let per = x.elem_count() / n.max(1);
        let (ih, iw, ic) = self.net.input();
        if per != ih * iw * ic {
            return Err(Error::shape(
                "positions per chain",
                format!("{ih}x{iw}x{ic} values, what the network reads"),
                format!("{per} values"),
            ));
        }
        let xv: Vec<f32> = x.detach().flatten_all()?.to_vec1()?;
        let mut ws = self.ws.lock().unwrap_or_else(|e| e.into_inner());
        let out = self.net.forward(&xv, n, &mut ws)?;
        let mut d_out = vec![0f32; out.len()];
        let values = self.objective(out, n, &mut d_out)?;
        let w = self.weight as f32;
        d_out.iter_mut().for_each(|d| *d *= w);
        let mut grad = Vec::new();
        self.net.backward(&d_out, &mut ws, &mut grad)?;
        if let Some((tap, eps1)) = self.joint {
            // eps1 * (E(G(h)) - h), no gradient through E(G(h)) (S9.4)
            let e = eps1 as f32;
            for ((g, &r), &h) in grad.iter_mut().zip(ws.activation(tap)).zip(&xv) {
                *g += e * (r - h);
            }
        }
        drop(ws);
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
                .then(|| values.iter().map(|v| v * self.weight).collect()),
            grad,
        })
    }
}
