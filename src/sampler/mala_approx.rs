//! MALA-approx, PPGN's sampler ("Plug & Play Generative Networks" (supplementary), eq. 13):
//! `h' = h + eps1 * dlog p(h) + eps2 * dlog p(y|h) + N(0, eps3^2)`, with the
//! weights eps1, eps2 carried by the target (a [`crate::density::Sum`]).
//! No accept/reject: it is not an exact sampler. As in the original code,
//! the update can be normalised by the chain's mean absolute gradient, and
//! `h` clipped to bounds after each step.

use super::clip::Clip;
use super::schedule::Schedule;
use super::{init, move_unless_divergent, per_chain_tensor, ChainRngs, Info, Kernel, State};
use crate::density::per_chain_sum;
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
            return Err(crate::Error::setting(
                "eps3",
                self.eps3,
                "a finite non-negative number",
            ));
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
            let scale = per_chain_tensor(mean_abs, &s.position)?;
            update = update.broadcast_mul(&scale)?;
        }
        let mut x = (&s.position + update)?;
        if self.eps3 > 0.0 {
            x = (x + (rngs.normal_like(&s.position)? * self.eps3)?)?;
        }
        if let Some(c) = &self.clip {
            x = c.apply(&x)?;
        }
        // a non-finite gradient would poison the chain: it keeps its old state
        move_unless_divergent(&init(&x, target)?, s)
    }
}
