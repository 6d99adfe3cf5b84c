//! MALA-approx, PPGN's sampler (papers/ppgn-supplementary.txt eq. 13):
//! `h' = h + eps1 * dlog p(h) + eps2 * dlog p(y|h) + N(0, eps3^2)`, with the
//! weights eps1, eps2 carried by the target (a [`crate::density::Sum`]).
//! No accept/reject: it is not an exact sampler. As in the original code,
//! the update can be normalised by the chain's mean absolute gradient, and
//! `h` clipped to bounds after each step.

use super::clip::Clip;
use super::schedule::Schedule;
use super::{finite_rows, init, per_chain_sum, ChainRngs, Info, Kernel, State};
use crate::density::Term;
use crate::error::Result;

pub struct MalaApprox {
    /// Multiplier of the whole gradient update (the original code's learning rate, 1 by default).
    pub step: Schedule,
    /// Noise std `eps3`.
    pub eps3: f64,
    /// Divide each chain's update by its mean absolute gradient.
    pub normalise: bool,
    pub clip: Option<Clip>,
}

impl Kernel for MalaApprox {
    fn name(&self) -> &'static str {
        "mala-approx"
    }
    fn check(&self, _target: &dyn Term) -> Result<()> {
        self.step.validate("MALA-approx step")?;
        if !(self.eps3.is_finite() && self.eps3 >= 0.0) {
            return Err(crate::Error::Invalid(format!(
                "eps3 = {} must be finite and non-negative",
                self.eps3
            )));
        }
        Ok(())
    }
    fn set_step_size(&mut self, eps: f64) {
        self.step = Schedule::Constant { value: eps };
    }
    fn step(
        &self,
        rngs: &mut ChainRngs,
        s: &State,
        target: &dyn Term,
        t: usize,
    ) -> Result<(State, Info)> {
        let n = s.position.dim(0)?;
        let mut update = (&s.grad * self.step.at(t))?;
        if self.normalise {
            let per = (s.position.elem_count() / n) as f64;
            let mean_abs: Vec<f64> = per_chain_sum(&s.grad.abs()?)?
                .into_iter()
                .map(|v| if v > 0.0 { per / v } else { 0.0 })
                .collect();
            let shape: Vec<usize> = std::iter::once(n)
                .chain(std::iter::repeat_n(1, s.position.rank() - 1))
                .collect();
            let scale = candle_core::Tensor::from_vec(mean_abs, shape, s.position.device())?
                .to_dtype(s.position.dtype())?;
            update = update.broadcast_mul(&scale)?;
        }
        let mut x = (&s.position + update)?;
        if self.eps3 > 0.0 {
            x = (x + (rngs.normal_like(&s.position)? * self.eps3)?)?;
        }
        if let Some(c) = &self.clip {
            x = c.apply(&x)?;
        }
        let prop = init(&x, target)?;
        // a non-finite gradient would poison the chain: keep the old state
        let ok = finite_rows(&prop.grad)?;
        let next = super::merge(&ok, &prop, s)?;
        Ok((
            next,
            Info {
                accept_prob: vec![1.0; n],
                accepted: ok.clone(),
                divergent: ok.iter().map(|v| !v).collect(),
                grad_evals: 1,
            },
        ))
    }
}
