//! Hamiltonian Monte Carlo with unit mass ("Generating Class-conditional Images with
//! Gradient-based Inference", S3): momentum
//! `p ~ N(0, I)`, `L` leapfrog steps of size `eps_t`, accept with
//! `exp(H(x, p) - H(x', p'))`, `H = -log p(x) + |p|^2 / 2`. A divergence
//! is an energy error above 1000 or a non-finite one (Stan's rule).

use super::clip::Clip;
use super::schedule::Schedule;
use super::{
    finite_rows, guarded_ratio, init, merge, mh_accept, no_values, per_chain_tensor, ChainRngs,
    Info, Kernel, State,
};
use crate::density::per_chain_sum;
use crate::density::{require_value, Term};
use crate::error::Result;

pub const DIVERGENCE_ENERGY: f64 = 1000.0;

pub struct Hmc {
    pub step: Schedule,
    pub leapfrog_steps: usize,
    /// Each chain's step is drawn uniformly from `eps * [1 - jitter, 1 + jitter]`
    /// every iteration, which breaks the periodic trajectories that make a
    /// fixed (step, L) pair mix badly on near-Gaussian targets.
    pub jitter: f64,
    /// Clip the end point of the trajectory (breaks exactness).
    pub clip: Option<Clip>,
}

impl Kernel for Hmc {
    fn name(&self) -> &'static str {
        "hmc"
    }
    fn check(&self, target: &dyn Term) -> Result<()> {
        self.step.validate("HMC step")?;
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(crate::Error::setting(
                "HMC step jitter",
                self.jitter,
                "a number in [0, 1)",
            ));
        }
        if self.leapfrog_steps == 0 {
            return Err(crate::Error::setting(
                "leapfrog_steps",
                0,
                "at least 1 leapfrog step for HMC",
            ));
        }
        require_value(target, "HMC")
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
        let base = self.step.at(t);
        let u = rngs.uniform();
        let per_chain: Vec<f64> = u
            .iter()
            .map(|u| base * (1.0 + self.jitter * (2.0 * u - 1.0)))
            .collect();
        // [chains, 1, ...], broadcast over each chain's coordinates
        let eps = per_chain_tensor(per_chain, &s.position)?;
        let half = (&eps * 0.5)?;
        let p0 = rngs.normal_like(&s.position)?;
        let mut p = (&p0 + s.grad.broadcast_mul(&half)?)?;
        let mut cur = s.clone();
        for l in 0..self.leapfrog_steps {
            let mut x = (&cur.position + p.broadcast_mul(&eps)?)?;
            if l + 1 == self.leapfrog_steps {
                if let Some(c) = &self.clip {
                    x = c.apply(&x)?;
                }
            }
            cur = init(&x, target)?;
            let w = if l + 1 == self.leapfrog_steps {
                &half
            } else {
                &eps
            };
            p = (p + cur.grad.broadcast_mul(w)?)?;
        }
        let k0 = per_chain_sum(&p0.sqr()?)?;
        let k1 = per_chain_sum(&p.sqr()?)?;
        let lp = s.log_density.as_ref().ok_or_else(no_values)?;
        let lq = cur.log_density.as_ref().ok_or_else(no_values)?;
        let finite = finite_rows(&cur.grad)?;
        let mut energy_blowup = vec![false; lp.len()];
        let log_ratio: Vec<f64> = (0..lp.len())
            .map(|i| {
                // H(x, p) - H(x', p')
                let d = guarded_ratio(finite[i], lq[i], || {
                    (lq[i] - 0.5 * k1[i]) - (lp[i] - 0.5 * k0[i])
                });
                energy_blowup[i] = -d > DIVERGENCE_ENERGY && lp[i].is_finite() && lq[i].is_finite();
                d
            })
            .collect();
        let (accept_prob, accepted, mut divergent) = mh_accept(&log_ratio, rngs);
        for (d, b) in divergent.iter_mut().zip(energy_blowup) {
            *d |= b;
        }
        Ok((
            merge(&accepted, &cur, s)?,
            Info {
                accept_prob,
                accepted,
                divergent,
                grad_evals: self.leapfrog_steps,
                tree_depth: Vec::new(),
                leaves: Vec::new(),
            },
        ))
    }
}
