//! The probability-flow ODE of a variance-exploding diffusion, integrated
//! by Heun's method down a ladder of noise levels (Karras et al. 2022,
//! "Elucidating the Design Space of Diffusion-Based Generative Models",
//! Algorithm 1; the ODE is Song et al. 2021's): with `x(s)` the state at
//! level `s`, `dx/ds = -s g(x; s)`, where `g` is the target's gradient at
//! level `s` (a score prior's `(D(x; s) - x) / s^2` plus the weighted
//! condition). From level `s_t` to `s_{t+1}`:
//!
//! ```text
//! d  = -s_t g(x; s_t)                   (at the state: its gradient)
//! x1 = x + (s_{t+1} - s_t) d            (Euler)
//! d1 = -s_{t+1} g(x1; s_{t+1})
//! x' = x + (s_{t+1} - s_t) (d + d1) / 2 (the trapezoid)
//! ```
//!
//! and after the last level one Euler step to level 0, which lands on the
//! denoiser's estimate (Tweedie) plus the condition's pull, as
//! [`super::diffusion::ReverseDiffusion`]'s last step does. A step costs
//! two evaluations of the target (at `x1`, and at `x'` for the next
//! step's `d`), the last one. The path is deterministic: the draws' only
//! randomness is the start, `N(0, s_0^2 I)` as for reverse diffusion.
//! Karras et al. find that at a fixed budget of evaluations the ODE's
//! second-order steps leave less discretisation error than the reverse
//! SDE's first-order ones; `scripts/score-samplers` measures both.

use super::schedule::{check_ladder, level_after, level_at};
use super::{finite_rows, init_at, merge, move_unless_divergent, ChainRngs, Info, Kernel, State};
use crate::density::Term;
use crate::error::Result;

pub struct ProbabilityFlow {
    /// The noise levels, decreasing, one per step.
    pub levels: Vec<f64>,
}

impl Kernel for ProbabilityFlow {
    fn name(&self) -> &'static str {
        "probability-flow"
    }
    fn check(&self, _target: &dyn Term) -> Result<()> {
        check_ladder(&self.levels)
    }
    /// The ladder is the schedule: there is no step size to adapt.
    fn set_step_size(&mut self, _eps: f64) {}
    fn level(&self, t: usize) -> Option<f64> {
        level_at(&self.levels, t)
    }
    fn step(
        &self,
        _rngs: &mut ChainRngs,
        s: &State,
        target: &dyn Term,
        t: usize,
    ) -> Result<(State, Info)> {
        let now = self.level(t).unwrap_or(0.0);
        let next = level_after(&self.levels, t);
        // x + (next - now) d with d = -now g: the gradient scaled by
        // now (now - next)
        let euler = (&s.position + (&s.grad * (now * (now - next)))?)?;
        let first = init_at(&euler, target, self.level(t + 1))?;
        if next == 0.0 {
            return move_unless_divergent(&first, s);
        }
        // the trapezoid: (now - next) (now g + next g1) / 2
        let slope = ((&s.grad * now)? + (&first.grad * next)?)?;
        let x = (&s.position + (slope * (0.5 * (now - next)))?)?;
        let (state, mut info) = move_unless_divergent(&init_at(&x, target, Some(next))?, s)?;
        // a chain whose Euler point diverged stays where it was too
        let euler_ok = finite_rows(&first.grad)?;
        if euler_ok.contains(&false) {
            for (i, ok) in euler_ok.iter().enumerate() {
                info.divergent[i] |= !ok;
                info.accepted[i] &= ok;
            }
            return Ok((
                merge(&info.accepted, &state, s)?,
                Info {
                    grad_evals: 2,
                    ..info
                },
            ));
        }
        info.grad_evals = 2;
        Ok((state, info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::diffusion::tests::NoisedGaussian;
    use crate::sampler::schedule::ladder;
    use candle_core::{Device, Tensor};

    /// Runs the kernel down `levels` from the start `x0` and returns the
    /// end points and the evaluations spent.
    fn flow(levels: Vec<f64>, x0: &[f64]) -> (Vec<f64>, usize) {
        let k = ProbabilityFlow { levels };
        let n = k.levels.len();
        let mut rngs = ChainRngs::new(0, x0.len());
        let start = Tensor::from_slice(x0, (x0.len(), 1), &Device::Cpu).unwrap();
        let mut s = init_at(&start, &NoisedGaussian, k.level(0)).unwrap();
        let mut evals = 1;
        for t in 0..n {
            let (next, info) = k.step(&mut rngs, &s, &NoisedGaussian, t).unwrap();
            assert!(info.divergent.iter().all(|d| !d));
            evals += info.grad_evals;
            s = next;
        }
        (s.position.flatten_all().unwrap().to_vec1().unwrap(), evals)
    }

    /// On a noised standard normal the ODE's flow is known in closed form:
    /// `x(s) = x(s0) sqrt((1 + s^2) / (1 + s0^2))`, so from level 10 to the
    /// last level of 0.01 a point shrinks by `sqrt(1.0001 / 101)`, and the
    /// Euler step to 0 then multiplies it by `1 - 0.01^2 / 1.0001`. Heun
    /// over 100 levels lands within 1e-3 of it relative; the reverse
    /// SDE's drift alone (no noise) would halve the variance instead of
    /// keeping the flow's map, and Euler at 100 levels misses by more.
    /// The count of evaluations is the budget `2 (levels - 1) + 1 + 1`.
    #[test]
    fn heun_follows_the_exact_flow_of_a_noised_gaussian() {
        let x0 = [-20.0, -3.0, 0.5, 7.0, 15.0];
        let (end, evals) = flow(ladder(10.0, 0.01, 100), &x0);
        let shrink = (1.0001f64 / 101.0).sqrt() * (1.0 - 1e-4 / 1.0001);
        for (x, e) in x0.iter().zip(&end) {
            let want = x * shrink;
            assert!(
                (e - want).abs() <= 1e-3 * want.abs(),
                "{x} went to {e}, the flow takes it to {want}"
            );
        }
        assert_eq!(evals, 1 + 2 * 99 + 1);
    }

    /// Starting from `N(0, s_0^2)` the deterministic flow ends at a
    /// standard normal: mean 0 and variance 1 within the sampling error of
    /// 4,000 starts (the start's variance is `s_0^2 = 100` rather than
    /// the noised target's `1 + s_0^2 = 101`, a 0.5% shortfall in the
    /// variance, below the tolerance).
    #[test]
    fn heun_draws_a_standard_normal_from_the_top_of_the_ladder() {
        let n = 4000;
        let mut rngs = ChainRngs::new(3, n);
        let z = Tensor::zeros((n, 1), candle_core::DType::F64, &Device::Cpu).unwrap();
        let start: Vec<f64> = (rngs.normal_like(&z).unwrap() * 10.0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let (v, _) = flow(ladder(10.0, 0.01, 100), &start);
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!(mean.abs() < 0.07, "mean {mean}");
        assert!((var - 1.0).abs() < 0.1, "variance {var}");
    }
}
