//! Terms of a score-based prior (`crate::models::fashion::code_score`):
//! the prior's score at a noise level, and a condition read on the
//! denoiser's estimate of the clean code. Both depend on the level the
//! sampler anneals ([`super::Term::value_and_grad_at`]); called without a
//! level they use the smallest one the model was made for.
//!
//! The denoiser is `D(v; s) = c_skip v + c_out F(c_in v, e(s))` (EDM
//! preconditioning, per chain around the network `F` on its backend), and
//! the score of the noised density is `(D(v; s) - v) / s^2` (Tweedie's
//! formula; "Plug & Play Generative Networks" (supplementary), S9.3, reads
//! a DAE's residual the same way at one level).

use std::sync::{Arc, Mutex};

use candle_core::Tensor;

use super::backend::Backend;
use super::{Eval, Term};
use crate::error::Result;
use crate::models::fashion::CodeScoreConfig;

/// The denoiser `D` of a score model: its network `F` and the
/// preconditioning around it. It keeps its last estimate: the score prior
/// and the condition read through the denoiser both need `D(v; s)` at the
/// same positions and level each step, and the second reads the first's
/// instead of running `F` again.
pub struct Denoiser {
    pub net: Backend,
    pub cfg: CodeScoreConfig,
    /// The last `(level, positions, D)`, flat.
    last: Mutex<Option<Estimate>>,
}

type Estimate = (f64, Vec<f32>, Vec<f32>);

impl Denoiser {
    pub fn new(net: Backend, cfg: CodeScoreConfig) -> Self {
        Self {
            net,
            cfg,
            last: Mutex::new(None),
        }
    }

    /// `D(v; sigma)` if it is the last estimate made.
    fn recall(&self, v: &[f32], sigma: f64) -> Option<Vec<f32>> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match last.as_ref() {
            Some((s, x, d)) if *s == sigma && x.as_slice() == v => Some(d.clone()),
            _ => None,
        }
    }

    fn remember(&self, v: Vec<f32>, sigma: f64, d: &[f32]) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((sigma, v, d.to_vec()));
    }

    /// `F`'s input rows for positions `v [n, dim]` at level `sigma`.
    fn input(&self, v: &Tensor, sigma: f64) -> Result<(usize, Tensor)> {
        let n = v.dim(0)?;
        let rows: Vec<f64> = v
            .to_dtype(candle_core::DType::F64)?
            .flatten_all()?
            .to_vec1()?;
        let x = self.cfg.net_input(&rows, &vec![sigma; n]);
        let x = Tensor::from_vec(x, (n, self.cfg.input_width()), v.device())?
            .to_dtype(candle_core::DType::F32)?;
        Ok((n, x))
    }

    /// `D(v; sigma)`, flat row-major, forward only (or the last estimate,
    /// when it was made at these positions and level).
    pub fn denoise(&self, v: &Tensor, sigma: f64) -> Result<Vec<f32>> {
        let flat = flat(v)?;
        if let Some(d) = self.recall(&flat, sigma) {
            return Ok(d);
        }
        let (_, x) = self.input(v, sigma)?;
        let f = self.net.values(&x, &[self.net.net().len()])?.remove(0);
        let d = self.combine(v, &f, sigma)?;
        self.remember(flat, sigma, &d);
        Ok(d)
    }

    /// `c_skip v + c_out f` for the network's output `f`.
    fn combine(&self, v: &Tensor, f: &[f32], sigma: f64) -> Result<Vec<f32>> {
        let p = self.cfg.precondition(sigma);
        let v: Vec<f32> = v
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        Ok(v.iter()
            .zip(f)
            .map(|(&x, &o)| (p.c_skip * x as f64 + p.c_out * o as f64) as f32)
            .collect())
    }

    /// `D(v; sigma)` and the vector-Jacobian product back to `v` of the
    /// gradient `seed(D)` returns (with what else it returns): `c_skip g +
    /// c_in [J_F^T (c_out g)]` over the code's part of `F`'s input.
    pub fn vjp<R>(
        &self,
        v: &Tensor,
        sigma: f64,
        seed: impl FnOnce(&Tensor) -> Result<(Tensor, R)>,
    ) -> Result<(Tensor, R)> {
        let p = self.cfg.precondition(sigma);
        let (n, x) = self.input(v, sigma)?;
        let (d, w) = (self.cfg.dim, self.cfg.input_width());
        let pass = self.net.vjp(&x, &[], |out, d_out| {
            let est = self.combine(v, out, sigma)?;
            self.remember(flat(v)?, sigma, &est);
            let est = Tensor::from_vec(est, v.shape(), v.device())?;
            let (g, r) = seed(&est)?;
            let gv: Vec<f32> = g
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1()?;
            for (o, gi) in d_out.iter_mut().zip(&gv) {
                *o = (p.c_out * *gi as f64) as f32;
            }
            Ok((gv, r))
        })?;
        let (gv, r) = pass.seeded;
        let mut grad = Vec::with_capacity(n * d);
        for i in 0..n {
            let through = &pass.grad[i * w..i * w + d];
            grad.extend(
                through
                    .iter()
                    .zip(&gv[i * d..(i + 1) * d])
                    .map(|(&t, &g)| (p.c_in * t as f64 + p.c_skip * g as f64) as f32),
            );
        }
        let grad = Tensor::from_vec(grad, v.shape(), v.device())?.to_dtype(v.dtype())?;
        Ok((grad, r))
    }
}

/// Positions as flat f32 values.
fn flat(v: &Tensor) -> Result<Vec<f32>> {
    Ok(v.to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1()?)
}

/// The prior's score at a level: `(D(v; s) - v) / s^2`. Gradient only.
pub struct ScorePrior {
    pub denoiser: Arc<Denoiser>,
}

impl Term for ScorePrior {
    fn name(&self) -> String {
        "code-score".into()
    }
    fn has_value(&self) -> bool {
        false
    }
    fn value_hint(&self) -> String {
        "the score prior gives only a gradient; use the flow prior (--prior flow) for MH, MALA or HMC".into()
    }
    fn value_and_grad(&self, v: &Tensor) -> Result<Eval> {
        self.value_and_grad_at(v, None)
    }
    fn value_and_grad_at(&self, v: &Tensor, level: Option<f64>) -> Result<Eval> {
        let s = level.unwrap_or(self.denoiser.cfg.sigma_min);
        let d = self.denoiser.denoise(v, s)?;
        let d = Tensor::from_vec(d, v.shape(), v.device())?.to_dtype(v.dtype())?;
        Ok(Eval {
            log_density: None,
            grad: ((d - v)? / (s * s))?,
        })
    }
}

/// A condition read on the denoiser's estimate of the clean code,
/// `log p(y | G(D(v; s)))` (the guidance of Chung et al. 2023, "DPS"):
/// its gradient goes back through `D` when `through` (the exact gradient
/// of that function of `v`), else it is the condition's gradient at `D(v;
/// s)` as is. Its value is the condition's at the estimate.
pub struct DenoisedCondition {
    pub denoiser: Arc<Denoiser>,
    pub condition: Box<dyn Term>,
    pub through: bool,
}

impl Term for DenoisedCondition {
    fn name(&self) -> String {
        format!("{} at the denoised code", self.condition.name())
    }
    fn has_value(&self) -> bool {
        self.condition.has_value()
    }
    fn value_and_grad(&self, v: &Tensor) -> Result<Eval> {
        self.value_and_grad_at(v, None)
    }
    fn value_and_grad_at(&self, v: &Tensor, level: Option<f64>) -> Result<Eval> {
        let s = level.unwrap_or(self.denoiser.cfg.sigma_min);
        if !self.through {
            let d = self.denoiser.denoise(v, s)?;
            let d = Tensor::from_vec(d, v.shape(), v.device())?.to_dtype(v.dtype())?;
            return self.condition.value_and_grad(&d);
        }
        let (grad, log_density) = self.denoiser.vjp(v, s, |est| {
            let e = self.condition.value_and_grad(est)?;
            Ok((e.grad, e.log_density))
        })?;
        Ok(Eval { log_density, grad })
    }
}
