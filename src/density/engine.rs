//! The class condition (and the joint prior that shares its forward pass)
//! on the sampling engine (`crate::nn::fast`): one compiled network from
//! the position to the logits, forward once, backward once to the position.
//!
//! The candle terms ([`super::condition::ClassCondition`] plus
//! [`super::prior::JointPrior`]) run `G` twice per PPGN step, once for each
//! term, and `E` twice; here `E(G(h))` is read off the tape of the class
//! term's forward pass (in the Fashion-MNIST stack `E` is the classifier up
//! to `h`, so `C = fc8 . E`): the prior costs nothing extra.

use std::sync::{Arc, Mutex};

use candle_core::Tensor;

use super::condition::ClassGradient;
use super::{Eval, Term};
use crate::error::{Error, Result};
use crate::nn::fast::{Net, Workspace};

/// `weight * log p(y | net(position))`, plus `joint_weight * (E(G(h)) - h)`
/// when `joint` names the tape activation holding `E(G(h))`.
pub struct EngineClass {
    net: Arc<Net<f32>>,
    ws: Mutex<Workspace<f32>>,
    classes: Vec<usize>,
    gradient: ClassGradient,
    weight: f64,
    joint: Option<(usize, f64)>,
}

impl EngineClass {
    /// `net` maps positions to logits; `joint` is `(tape index of
    /// E(G(h)), eps1)` for the joint prior.
    pub fn new(
        net: Arc<Net<f32>>,
        classes: Vec<usize>,
        gradient: ClassGradient,
        weight: f64,
        joint: Option<(usize, f64)>,
    ) -> Result<Self> {
        let k = net.output().2;
        if let Some(&c) = classes.iter().find(|&&c| c >= k) {
            return Err(Error::Invalid(format!(
                "class {c} is out of range: the classifier has {k} classes"
            )));
        }
        if let Some((tap, _)) = joint {
            if tap > net.len() || net.shape(tap) != net.input() {
                return Err(Error::Invalid(format!(
                    "joint prior: activation {tap} is not shaped like the code {:?}",
                    net.input()
                )));
            }
        }
        Ok(Self {
            net,
            ws: Mutex::new(Workspace::default()),
            classes,
            gradient,
            weight,
            joint,
        })
    }
}

/// `(log p_y, d objective / d logits)` of one row of logits (in f64).
fn objective(logits: &[f32], y: usize, g: ClassGradient, dlogits: &mut [f32]) -> f64 {
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

impl Term for EngineClass {
    fn name(&self) -> String {
        let c = format!("class-{:?}", self.gradient).to_lowercase();
        match self.joint {
            Some(_) => format!("joint-prior + {c}"),
            None => c,
        }
    }
    fn has_value(&self) -> bool {
        self.joint.is_none() && self.gradient == ClassGradient::LogSoftmax
    }
    fn value_hint(&self) -> String {
        match self.joint {
            Some(_) => "the joint prior E(G(h)) - h gives only a gradient; use the Gaussian prior for MH, MALA or HMC".into(),
            None => "use the log-softmax class gradient, the only one that is a log-density".into(),
        }
    }
    fn value_and_grad(&self, position: &Tensor) -> Result<Eval> {
        let n = position.dim(0)?;
        if self.classes.len() != n {
            return Err(Error::Invalid(format!(
                "class condition has {} classes for {n} chains",
                self.classes.len()
            )));
        }
        let per = position.elem_count() / n.max(1);
        let (ih, iw, ic) = self.net.input();
        if per != ih * iw * ic {
            return Err(Error::Invalid(format!(
                "positions of {per} values per chain, the network reads {ih}x{iw}x{ic}"
            )));
        }
        let h: Vec<f32> = position.flatten_all()?.to_vec1()?;
        let mut ws = self.ws.lock().unwrap_or_else(|e| e.into_inner());
        let k = self.net.output().2;
        let logits = self.net.forward(&h, n, &mut ws);
        let mut dlogits = vec![0f32; n * k];
        let log_p: Vec<f64> = (0..n)
            .map(|i| {
                objective(
                    &logits[i * k..(i + 1) * k],
                    self.classes[i],
                    self.gradient,
                    &mut dlogits[i * k..(i + 1) * k],
                )
            })
            .collect();
        let w = self.weight as f32;
        dlogits.iter_mut().for_each(|d| *d *= w);
        let mut grad = Vec::new();
        self.net.backward(&dlogits, &mut ws, &mut grad);
        if let Some((tap, eps1)) = self.joint {
            // eps1 * (E(G(h)) - h), no gradient through E(G(h)) (S9.4)
            let r = ws.activation(tap);
            let e = eps1 as f32;
            for ((g, &r), &h) in grad.iter_mut().zip(r).zip(&h) {
                *g += e * (r - h);
            }
        }
        let grad = Tensor::from_vec(grad, position.shape(), position.device())?;
        Ok(Eval {
            log_density: self
                .has_value()
                .then(|| log_p.iter().map(|v| v * self.weight).collect()),
            grad,
        })
    }
}
