//! Random-walk Metropolis-Hastings: `x' = x + s * xi`, accepted with
//! probability `min(1, p(x') / p(x))` (symmetric proposal).

use super::schedule::Schedule;
use super::{init, log_ratios, merge, mh_accept, no_values, ChainRngs, Info, Kernel, State};
use crate::density::{require_value, Term};
use crate::error::Result;

pub struct RandomWalk {
    pub scale: Schedule,
}

impl Kernel for RandomWalk {
    fn name(&self) -> &'static str {
        "mh"
    }
    fn check(&self, target: &dyn Term) -> Result<()> {
        self.scale.validate("random-walk scale")?;
        require_value(target, "random-walk Metropolis-Hastings")
    }
    fn set_step_size(&mut self, eps: f64) {
        self.scale = Schedule::Constant { value: eps };
    }
    fn step(
        &self,
        rngs: &mut ChainRngs,
        s: &State,
        target: &dyn Term,
        t: usize,
    ) -> Result<(State, Info)> {
        let xi = rngs.normal_like(&s.position)?;
        let prop = init(&(&s.position + (xi * self.scale.at(t))?)?, target)?;
        let lp = s.log_density.as_ref().ok_or_else(no_values)?;
        let lq = prop.log_density.as_ref().ok_or_else(no_values)?;
        let log_ratio = log_ratios(&prop, |i| lq[i] - lp[i])?;
        let (accept_prob, accepted, divergent) = mh_accept(&log_ratio, rngs);
        let next = merge(&accepted, &prop, s)?;
        Ok((
            next,
            Info {
                accept_prob,
                accepted,
                divergent,
                grad_evals: 1,
            },
        ))
    }
}
