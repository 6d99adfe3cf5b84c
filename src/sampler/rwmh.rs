//! Random-walk Metropolis-Hastings: `x' = x + s * xi`, accepted with
//! probability `min(1, p(x') / p(x))` (symmetric proposal). It reads the
//! target's value alone (a forward pass, [`Term::value`]): no gradient is
//! computed. Each step counts as one evaluation of the target in the
//! budget, as a start candidate's forward pass does.

use super::schedule::Schedule;
use super::{guarded_ratio, merge, mh_accept, no_values, ChainRngs, Info, Kernel, State};
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
        let position = (&s.position + (xi * self.scale.at(t))?)?;
        let lp = s.log_density.as_ref().ok_or_else(no_values)?;
        let lq = target.value(&position)?.ok_or_else(no_values)?;
        let log_ratio: Vec<f64> = (0..lq.len())
            .map(|i| guarded_ratio(true, lq[i], || lq[i] - lp[i]))
            .collect();
        // the gradient is never read: the kept state carries the current one
        let prop = State {
            grad: s.grad.clone(),
            log_density: Some(lq),
            position,
        };
        let (accept_prob, accepted, divergent) = mh_accept(&log_ratio, rngs);
        let next = merge(&accepted, &prop, s)?;
        Ok((
            next,
            Info {
                accept_prob,
                accepted,
                divergent,
                grad_evals: 1,
                tree_depth: Vec::new(),
                leaves: Vec::new(),
            },
        ))
    }
}
