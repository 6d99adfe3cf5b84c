//! MALA: the Langevin proposal `x' = x + tau * g(x) + sigma * xi` with the
//! Metropolis-Hastings correction ("Generating Class-conditional Images with Gradient-based
//! Inference", S3).
//! `sigma^2 = 2 tau` is the exact Langevin proposal; an annealed noise
//! schedule (Xu et al.'s annealing) sets `sigma^2` separately, and the
//! proposal density below uses whatever `sigma` was drawn, so the
//! correction stays right:
//! `log q(x' | x) = -|x' - x - tau g(x)|^2 / (2 sigma^2)`.
//! With `clip` (Xu et al.'s "MALA with clipping", S3: "clipping is added
//! after the Metropolis-Hastings acceptance criterion"), the decision is
//! made on the proposal actually drawn, with its own density, and the
//! chain's new state is clipped afterwards (re-evaluated there when the
//! clip moved it). The clip breaks exactness; the decision does not lie
//! about the proposal it judged.

use candle_core::Tensor;

use super::clip::Clip;
use super::schedule::Schedule;
use super::{init, log_ratios, merge, mh_accept, no_values, ChainRngs, Info, Kernel, State};
use crate::density::per_chain_sum;
use crate::density::{require_value, Term};
use crate::error::Result;

pub struct Mala {
    /// Step `tau_t` on the gradient.
    pub step: Schedule,
    /// Proposal noise variance `sigma_t^2`; `None` means `2 tau_t`.
    pub noise: Option<Schedule>,
    pub clip: Option<Clip>,
}

impl Mala {
    pub fn new(step: Schedule) -> Self {
        Self {
            step,
            noise: None,
            clip: None,
        }
    }
}

/// `log q(to | from)` per chain, up to the constant that cancels in the ratio.
fn log_q(to: &Tensor, from: &State, tau: f64, var: f64) -> Result<Vec<f64>> {
    let mean = (&from.position + (&from.grad * tau)?)?;
    let r = per_chain_sum(&(to - mean)?.sqr()?)?;
    Ok(r.into_iter().map(|v| -v / (2.0 * var)).collect())
}

impl Kernel for Mala {
    fn name(&self) -> &'static str {
        "mala"
    }
    fn check(&self, target: &dyn Term) -> Result<()> {
        self.step.validate("MALA step")?;
        if let Some(n) = &self.noise {
            n.validate("MALA noise")?;
        }
        require_value(target, "MALA")
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
        let tau = self.step.at(t);
        let var = self.noise.map_or(2.0 * tau, |n| n.at(t));
        let xi = rngs.normal_like(&s.position)?;
        let x = ((&s.position + (&s.grad * tau)?)? + (xi * var.sqrt())?)?;
        let prop = init(&x, target)?;
        let fwd = log_q(&prop.position, s, tau, var)?;
        let bwd = log_q(&s.position, &prop, tau, var)?;
        let lp = s.log_density.as_ref().ok_or_else(no_values)?;
        let lq = prop.log_density.as_ref().ok_or_else(no_values)?;
        let log_ratio = log_ratios(&prop, |i| lq[i] - lp[i] + bwd[i] - fwd[i])?;
        let (accept_prob, accepted, divergent) = mh_accept(&log_ratio, rngs);
        let (next, clip_evals) =
            clip_after(self.clip.as_ref(), merge(&accepted, &prop, s)?, target)?;
        Ok((
            next,
            Info {
                accept_prob,
                accepted,
                divergent,
                grad_evals: 1 + clip_evals,
                tree_depth: Vec::new(),
                leaves: Vec::new(),
            },
        ))
    }
}

/// `state` clipped by `clip`, and the gradient evaluations that took: the
/// target is evaluated again at the clipped position only when the clip
/// moved some chain.
fn clip_after(clip: Option<&Clip>, state: State, target: &dyn Term) -> Result<(State, usize)> {
    let Some(c) = clip else {
        return Ok((state, 0));
    };
    let clipped = c.apply(&state.position)?;
    let moved = (&clipped - &state.position)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?;
    if moved > 0.0 {
        Ok((init(&clipped, target)?, 1))
    } else {
        Ok((state, 0))
    }
}
