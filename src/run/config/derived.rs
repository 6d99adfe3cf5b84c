//! What settings imply when they run: their kernel, the settings in force
//! at a step of a run that changes them (`super::steer`), and what a step
//! costs in gradient evaluations.

use super::choice::Choice;
use super::preset::{SamplerConfig, SamplerKind};
use super::steer::Change;
use crate::error::{Error, Result};
use crate::sampler::clip::Clip;
use crate::sampler::diffusion::ReverseDiffusion;
use crate::sampler::hmc::Hmc;
use crate::sampler::mala::Mala;
use crate::sampler::mala_approx::MalaApprox;
use crate::sampler::map::Map;
use crate::sampler::nuts::{Nuts, MAX_DEPTH};
use crate::sampler::probability_flow::ProbabilityFlow;
use crate::sampler::rwmh::RandomWalk;
use crate::sampler::schedule::{ladder, Schedule};
use crate::sampler::Kernel;

impl SamplerConfig {
    /// The kernel these settings describe.
    pub fn kernel(&self) -> Result<Box<dyn Kernel>> {
        let cfg = self;
        let clip = cfg.clip.map(|(lo, hi)| Clip::new_box(lo, hi)).transpose()?;
        Ok(match cfg.sampler {
            SamplerKind::Map => Box::new(Map {
                lr: cfg.step,
                decay: cfg.decay,
                clip,
            }),
            SamplerKind::MalaApprox => Box::new(MalaApprox {
                step: cfg.step,
                eps3: cfg.eps3,
                normalise: cfg.normalise,
                clip,
                levels: cfg
                    .noise_levels
                    .map(|(max, min)| ladder(max, min, cfg.steps)),
            }),
            SamplerKind::Mh => Box::new(RandomWalk { scale: cfg.step }),
            SamplerKind::Mala => Box::new(Mala {
                step: cfg.step,
                noise: cfg.noise,
                clip,
            }),
            SamplerKind::Hmc => Box::new(Hmc {
                step: cfg.step,
                leapfrog_steps: cfg.leapfrog_steps,
                jitter: cfg.jitter,
                clip,
            }),
            SamplerKind::Nuts => Box::new(Nuts::new(cfg.step, MAX_DEPTH)),
            SamplerKind::ReverseDiffusion | SamplerKind::ProbabilityFlow => {
                let Some((max, min)) = cfg.noise_levels else {
                    return Err(Error::unsupported(
                        format!("the {} sampler without noise levels", cfg.sampler.name()),
                        "set noise_levels = [MAX, MIN] in a --config file, or use --preset ppgn-score",
                    ));
                };
                let levels = ladder(max, min, cfg.steps);
                match cfg.sampler {
                    SamplerKind::ProbabilityFlow => Box::new(ProbabilityFlow { levels }),
                    _ => Box::new(ReverseDiffusion { levels }),
                }
            }
        })
    }

    /// The settings in force at step `t`: the changes with `at <= t`
    /// applied in order (the schedule itself is kept).
    pub fn at_step(&self, t: usize) -> SamplerConfig {
        let mut cfg = self.clone();
        for c in self.changes.iter().filter(|c| c.at <= t) {
            cfg.eps1 = c.eps1.unwrap_or(cfg.eps1);
            cfg.eps2 = c.eps2.unwrap_or(cfg.eps2);
            cfg.eps3 = c.eps3.unwrap_or(cfg.eps3);
            if let Some(value) = c.step {
                cfg.step = Schedule::Constant { value };
            }
        }
        cfg
    }

    /// These settings with `more` changes, each after the changes of
    /// the same step or before.
    pub fn with_changes(&self, more: &[Change]) -> SamplerConfig {
        let mut cfg = self.clone();
        for c in more {
            let i = cfg.changes.partition_point(|d| d.at <= c.at);
            cfg.changes.insert(i, c.clone());
        }
        cfg
    }

    /// The changes that take effect at step `t`.
    pub fn changes_at(&self, t: usize) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(move |c| c.at == t)
    }

    /// Where the chains end: `steps`, or the first stop.
    pub fn last_step(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| c.stop)
            .map(|c| c.at)
            .fold(self.steps, usize::min)
    }

    /// Checks the schedule of changes: valid values, steps in order within
    /// the run.
    pub fn validate_changes(&self) -> Result<()> {
        let mut last = 0;
        for c in &self.changes {
            c.validate()?;
            if c.at < last || c.at > self.steps {
                return Err(Error::setting(
                    "changes",
                    format!("a change at step {} after one at {last}", c.at),
                    format!("changes in order of step, from 0 to {}", self.steps),
                ));
            }
            last = c.at;
        }
        Ok(())
    }

    /// Gradient evaluations one step costs per chain: the leapfrog steps of
    /// HMC, at most a full tree of NUTS's deepest (its trees stop earlier
    /// as they turn), one for every other kernel (MALA reuses the gradient
    /// it computed at the accepted proposal). Heun's method on the
    /// probability-flow ODE counts two (its last level one: the budget's
    /// steps are rounded down).
    pub fn grads_per_step(&self) -> usize {
        match self.sampler {
            SamplerKind::Hmc => self.leapfrog_steps.max(1),
            SamplerKind::ProbabilityFlow => 2,
            SamplerKind::Nuts => (1 << MAX_DEPTH) - 1,
            _ => 1,
        }
    }

    /// Evaluations of the target each chain spends choosing its start
    /// (`start_candidates`, none for a plain prior draw).
    pub fn start_evals(&self) -> usize {
        match self.start_candidates {
            0 | 1 => 0,
            k => k,
        }
    }

    /// The same setting at `budget` gradient evaluations per chain (the
    /// report compares samplers at equal cost): the number of steps is
    /// `(budget - start_evals) / grads_per_step`, and a linear schedule is
    /// stretched to it.
    pub fn with_grad_budget(&self, budget: usize) -> Result<Self> {
        let steps = budget.saturating_sub(self.start_evals()) / self.grads_per_step();
        if steps == 0 {
            return Err(Error::setting(
                "gradient budget",
                budget,
                format!(
                    "at least one step of {} ({} evaluations each, after {} choosing the start)",
                    self.preset,
                    self.grads_per_step(),
                    self.start_evals()
                ),
            ));
        }
        let stretch = |s: Schedule| match s {
            Schedule::Linear { start, end, .. } => Schedule::Linear { start, end, steps },
            other => other,
        };
        Ok(SamplerConfig {
            steps,
            step: stretch(self.step),
            noise: self.noise.map(stretch),
            ..self.clone()
        })
    }
}
