//! How the presets tuned on Fashion-MNIST get their values: for each, the
//! values tried and the rule that picks one, written down before the runs
//! that apply them (`ppgn presets choose`, `crate::eval::choose`). The
//! runs read the guiding classifier on the validation split (the last
//! 5,000 training images, which no network that sampling uses was trained
//! on) and never the evaluator.
//!
//! The rule, one for every tuned preset ([`pick`]): among the candidates
//! whose samples the guide puts in their class at least as often as it
//! puts real validation images in theirs, the one whose samples are
//! closest to the validation images in the guide's code `h` (Frechet
//! distance); when none is, the most recognised. Ties go to the earlier
//! candidate in the grid's order.
//!
//! The presets that reproduce a paper's published setting (`dgn-am`, the
//! `xu-*` family) are not tuned; nor is `faces`, whose pair has no
//! validation split of its own.

use serde::Serialize;

use super::preset::{preset, SamplerConfig};
use crate::error::{Error, Result};
use crate::sampler::schedule::Schedule;

/// A setting a tuning tries values of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Knob {
    /// A constant step (the `ppgn` preset's multiplier of the normalised
    /// gradient, MALA-approx's step).
    Step,
    /// A Langevin step: the step and, with it, `eps3 = sqrt(2 step)`.
    LangevinStep,
    /// The condition's weight.
    Eps2,
    /// Prior draws each chain's start is picked from.
    StartCandidates,
}

impl Knob {
    /// The knob's name as in a `--config` file (`eps3` follows a Langevin step).
    pub fn name(self) -> &'static str {
        match self {
            Knob::Step | Knob::LangevinStep => "step",
            Knob::Eps2 => "eps2",
            Knob::StartCandidates => "start_candidates",
        }
    }

    /// The knob's value in `cfg` (`None` for a step that is not constant).
    pub fn get(self, cfg: &SamplerConfig) -> Option<f64> {
        match self {
            Knob::Step | Knob::LangevinStep => match cfg.step {
                Schedule::Constant { value } => Some(value),
                _ => None,
            },
            Knob::Eps2 => Some(cfg.eps2),
            Knob::StartCandidates => Some(cfg.start_candidates as f64),
        }
    }

    /// `cfg` with the knob set to `v`.
    pub fn set(self, cfg: &SamplerConfig, v: f64) -> SamplerConfig {
        let mut c = cfg.clone();
        match self {
            Knob::Step => c.step = Schedule::Constant { value: v },
            Knob::LangevinStep => {
                c.step = Schedule::Constant { value: v };
                c.eps3 = (2.0 * v).sqrt();
            }
            Knob::Eps2 => c.eps2 = v,
            Knob::StartCandidates => c.start_candidates = v as usize,
        }
        c
    }
}

/// One tuned preset: the values tried (every combination of the grid's
/// rows, the first row varying slowest) at a gradient budget per chain.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Tuning {
    pub preset: &'static str,
    /// Presets that take the same values (they share the tuned one's
    /// target and starts).
    pub shared_with: &'static [&'static str],
    pub grid: &'static [(Knob, &'static [f64])],
    /// Gradient evaluations per chain of every candidate's run.
    pub budget: usize,
}

/// Every tuned preset, with the values tried. The grids bracket each
/// preset's value from below and above; the budget is the report's first.
pub const TUNINGS: [Tuning; 5] = [
    Tuning {
        preset: "ppgn",
        shared_with: &["dgn-am-chain"],
        grid: &[(Knob::Step, &[0.1, 0.2, 0.3, 0.5])],
        budget: 200,
    },
    Tuning {
        preset: "exact-mala",
        shared_with: &["exact-hmc", "ppgn-flow"],
        // one draw, an eighth and half of the budget
        grid: &[
            (Knob::StartCandidates, &[1.0, 25.0, 100.0]),
            (Knob::Eps2, &[1.0, 2.0, 3.0, 5.0, 10.0]),
        ],
        budget: 200,
    },
    Tuning {
        preset: "ppgn-score",
        shared_with: &[],
        grid: &[(Knob::Eps2, &[1.0, 2.0, 3.0, 5.0])],
        budget: 200,
    },
    Tuning {
        preset: "ppgn-score-langevin",
        shared_with: &[],
        grid: &[
            (Knob::LangevinStep, &[1e-5, 2e-5, 5e-5]),
            (Knob::Eps2, &[1.0, 2.0, 3.0, 5.0]),
        ],
        budget: 200,
    },
    Tuning {
        preset: "ppgn-x",
        shared_with: &[],
        grid: &[(Knob::Eps2, &[0.003, 0.03, 0.3, 1.0])],
        budget: 200,
    },
];

/// The tuning of preset `name`, or the tuned presets' names.
pub fn tuning(name: &str) -> Result<&'static Tuning> {
    TUNINGS.iter().find(|t| t.preset == name).ok_or_else(|| {
        let names: Vec<&str> = TUNINGS.iter().map(|t| t.preset).collect();
        Error::unknown("tuned preset", name, &names)
    })
}

impl Tuning {
    /// Every combination of the grid's values, in order.
    pub fn points(&self) -> Vec<Vec<(Knob, f64)>> {
        self.grid
            .iter()
            .fold(vec![Vec::new()], |acc, &(knob, values)| {
                acc.iter()
                    .flat_map(|p| {
                        values.iter().map(move |&v| {
                            let mut q = p.clone();
                            q.push((knob, v));
                            q
                        })
                    })
                    .collect()
            })
    }

    /// The preset's settings at `point`.
    pub fn config(&self, point: &[(Knob, f64)]) -> Result<SamplerConfig> {
        let base = preset(self.preset)?;
        Ok(point.iter().fold(base, |c, &(k, v)| k.set(&c, v)))
    }

    /// The preset's values of the grid's knobs today.
    pub fn current(&self) -> Result<Vec<(Knob, Option<f64>)>> {
        let cfg = preset(self.preset)?;
        Ok(self.grid.iter().map(|&(k, _)| (k, k.get(&cfg))).collect())
    }
}

/// The rule (see the module's description): the index of the candidate
/// picked from the guide's recognition rates `accuracy` and Frechet
/// distances `frechet` of its samples, given the guide's rate on real
/// validation images. `None` for no candidates.
pub fn pick(accuracy: &[f64], frechet: &[f64], real_accuracy: f64) -> Option<usize> {
    let n = accuracy.len().min(frechet.len());
    let recognised = (0..n).filter(|&i| accuracy[i] >= real_accuracy);
    recognised
        .fold(None, |b: Option<usize>, i| match b {
            Some(b) if frechet[i] >= frechet[b] => Some(b),
            _ => Some(i),
        })
        .or_else(|| {
            (0..n).fold(None, |b: Option<usize>, i| match b {
                Some(b) if accuracy[i] <= accuracy[b] => Some(b),
                _ => Some(i),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Among the recognised candidates the closest wins, the earlier on a
    /// tie; with none recognised, the most recognised, the earlier on a tie.
    #[test]
    fn the_rule_picks_the_closest_recognised_candidate() {
        assert_eq!(pick(&[0.9, 0.95, 0.99], &[3.0, 2.0, 2.5], 0.92), Some(1));
        assert_eq!(pick(&[0.95, 0.95], &[2.0, 2.0], 0.92), Some(0));
        assert_eq!(pick(&[0.5, 0.8, 0.8], &[1.0, 9.0, 3.0], 0.92), Some(1));
        assert_eq!(pick(&[], &[], 0.9), None);
    }

    /// Every tuning names a preset, its grid holds the preset's own value
    /// (each preset is one of its candidates), and every point is valid.
    #[test]
    fn every_grid_holds_its_presets_value() {
        for t in &TUNINGS {
            assert!(!t.points().is_empty());
            for (k, v) in t.current().unwrap() {
                let values = t.grid.iter().find(|g| g.0 == k).unwrap().1;
                let v = v.unwrap_or_else(|| panic!("{}: {k:?} not constant", t.preset));
                assert!(values.contains(&v), "{}: {k:?} = {v} not tried", t.preset);
            }
            for p in t.points() {
                let cfg = t.config(&p).unwrap();
                cfg.with_grad_budget(t.budget).unwrap();
            }
            for s in t.shared_with {
                preset(s).unwrap();
            }
        }
        let n: usize = TUNINGS[1].points().len();
        assert_eq!(n, 15);
        assert_eq!(
            TUNINGS[1].points()[1],
            vec![(Knob::StartCandidates, 1.0), (Knob::Eps2, 2.0)]
        );
    }
}
