//! MALA-approx, PPGN's sampler ("Plug & Play Generative Networks" (supplementary), eq. 13):
//! `h' = h + eps1 * dlog p(h) + eps2 * dlog p(y|h) + N(0, eps3^2)`, with the
//! weights eps1, eps2 carried by the target (a [`crate::density::Sum`]).
//! No accept/reject: it is not an exact sampler. As in the original code,
//! the update can be normalised by the chain's mean absolute gradient, and
//! `h` clipped to bounds after each step.
//!
//! On a prior known at every noise level (a score model) it anneals: with
//! a ladder of levels `s_0 > ... > s_min`, step `t` reads the target at
//! `s_t` and scales the gradient update by `(s_t / s_min)^2` and the noise
//! by `s_t / s_min`, so that the last level runs the settings as given and
//! every level keeps their Langevin ratio (annealed Langevin dynamics,
//! Song & Ermon 2019, one step per level, as eq. 13 generalised).

use super::clip::Clip;
use super::schedule::Schedule;
use super::{init_at, move_unless_divergent, per_chain_tensor, ChainRngs, Info, Kernel, State};
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
    /// The noise levels to anneal through, decreasing, one per step
    /// (`None`: a target without levels).
    pub levels: Option<Vec<f64>>,
}

impl MalaApprox {
    /// `(s_t / s_min)^2` at step `t`, 1 without levels.
    fn annealing(&self, t: usize) -> f64 {
        match (&self.levels, self.level(t)) {
            (Some(l), Some(s)) => (s / l.last().copied().unwrap_or(s)).powi(2),
            _ => 1.0,
        }
    }
}

impl Kernel for MalaApprox {
    fn name(&self) -> &'static str {
        "mala-approx"
    }
    fn check(&self, _target: &dyn Term) -> Result<()> {
        self.step.validate("MALA-approx step")?;
        if let Some(l) = &self.levels {
            super::schedule::check_ladder(l)?;
        }
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
    fn level(&self, t: usize) -> Option<f64> {
        let l = self.levels.as_ref()?;
        l.get(t.min(l.len().checked_sub(1)?)).copied()
    }
    fn step(
        &self,
        rngs: &mut ChainRngs,
        s: &State,
        target: &dyn Term,
        t: usize,
    ) -> Result<(State, Info)> {
        let n = s.position.dim(0)?;
        let anneal = self.annealing(t);
        let mut update = (&s.grad * (self.step.at(t) * anneal))?;
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
            x = (x + (rngs.normal_like(&s.position)? * (self.eps3 * anneal.sqrt()))?)?;
        }
        if let Some(c) = &self.clip {
            x = c.apply(&x)?;
        }
        // a non-finite gradient would poison the chain: it keeps its old state
        move_unless_divergent(&init_at(&x, target, self.level(t + 1))?, s)
    }
}
