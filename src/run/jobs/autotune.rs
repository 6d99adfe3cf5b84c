//! `--autotune`: settings chosen from the pair's own behaviour rather than
//! swept by hand. For a sampler with a Metropolis-Hastings test (MH, MALA,
//! HMC) it switches on the step adaptation (`--adapt`) toward that
//! sampler's usual acceptance. For MALA-approx and MAP a pilot tries step
//! sizes around the preset's (the step is normalised by the mean
//! |gradient|, so these are scales of the pair's own gradients), then
//! weights of the prior relative to the condition, and keeps the settings
//! whose chains end with the highest mean p(y | x), the share of chains
//! the guide expects to recognise (or the mean unit activation). Not the
//! mean log p: a setting raises that by lifting hopeless chains from 1e-10
//! to 1e-5 without one more recognised image, and on the DCGAN faces pair
//! the setting it chose reached the class less often than the preset
//! (docs/onnx.md). The preset's own setting is scored first and a candidate
//! replaces the one kept only when its chains beat them by more than one
//! standard error of the paired per-chain difference (the chains share
//! starts and noise): without evidence the preset stays.
//!
//! The pilot is the run itself on a share of its chains: as many steps as
//! the run, from the run's own starts, on every [`PILOT_EVERY`]-th chain of
//! the run (fewer apart when that would leave under [`PILOT_AT_LEAST`]; all
//! of a small run), in batches no larger than the run's. It measures what the run will
//! end with, not how fast chains climb: a pilot of 10 steps chose, on the
//! DCGAN faces generator, the step that gains most in 10 steps and ends
//! lowest in 200 (docs/onnx.md). The price is the pilot's 7 candidates on
//! a quarter of the chains, about 1.75 times the run's own work on a large
//! run and up to 7 times on a run of a few chains. The pilot is
//! deterministic (the run's seed), so a rerun chooses the same.

use std::ops::Range;

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::run::config::preset::{Choice, SamplerConfig, SamplerKind};
use crate::run::config::spec::{Request, SampleSpec};
use crate::run::drive::chains::Pipeline;
use crate::run::drive::progress::{drive_to_end, Silent};
use crate::sampler::schedule::Schedule;

/// The pilot runs every this-many-th chain of the run...
pub const PILOT_EVERY: usize = 4;
/// ...unless that leaves fewer chains than this (then they lie closer,
/// down to every chain).
pub const PILOT_AT_LEAST: usize = 8;
/// Multiples of the preset's step the pilot tries.
/// The preset's own (1.0) comes first: it is what the others must beat.
const STEP_FACTORS: [f64; 5] = [1.0, 0.25, 0.5, 2.0, 4.0];
/// Multiples of the preset's eps1 (the prior's weight) the pilot tries.
const EPS1_FACTORS: [f64; 3] = [0.1, 1.0, 10.0];

/// The acceptance a sampler's step adaptation aims at: the optimal
/// scalings of random-walk MH (0.234) and MALA (0.574), HMC's usual 0.65,
/// NUTS's 0.8 (Stan's default).
fn target_acceptance(s: SamplerKind) -> Option<f64> {
    match s {
        SamplerKind::Mh => Some(0.234),
        SamplerKind::Mala => Some(0.574),
        SamplerKind::Hmc => Some(0.65),
        SamplerKind::Nuts => Some(0.8),
        SamplerKind::MalaApprox
        | SamplerKind::Map
        | SamplerKind::ReverseDiffusion
        | SamplerKind::ProbabilityFlow => None,
    }
}

/// What a pipeline of a setting is made from for the pilot: the setting
/// and the chains (indices in the run) it conditions.
pub type Build<'a> = dyn Fn(&SamplerConfig, &[usize]) -> Result<Pipeline> + 'a;

/// The starts of chains (indices in the run), `[n, ...]`.
pub type StartsOf<'a> = dyn Fn(&[usize]) -> Result<Tensor> + 'a;

/// The chains of a run of `chains` that the pilot runs: evenly spaced,
/// every [`PILOT_EVERY`]-th or closer so that at least [`PILOT_AT_LEAST`]
/// (or all) run.
pub fn pilot_chains(chains: Range<usize>) -> Vec<usize> {
    let every = (chains.len() / PILOT_AT_LEAST).clamp(1, PILOT_EVERY);
    chains.step_by(every).collect()
}

/// The run the pilot is a share of: its chains, their starts, and the
/// largest batch it runs.
pub struct Run<'a> {
    pub chains: Range<usize>,
    pub starts: &'a StartsOf<'a>,
    pub batch: usize,
}

/// The settings `--autotune` chooses starting from `cfg`, with what it
/// tried (for the manifest). `build` makes the pipeline of a setting on
/// some of the chains of `run`; `classes`: the measure is a class
/// probability, else a unit's activation (both scored by their mean).
pub fn tune(
    cfg: &SamplerConfig,
    build: &Build,
    run: &Run,
    seed: u64,
    classes: bool,
) -> Result<(SamplerConfig, serde_json::Value)> {
    if cfg.adapt.is_some() {
        return Err(Error::unsupported(
            "--autotune with --adapt",
            "give one of them: --autotune switches the adaptation on itself where the sampler has an acceptance test",
        ));
    }
    if cfg.sampler.walks_ladder() {
        return Err(Error::unsupported(
            format!("--autotune with {}", cfg.sampler.name()),
            "its ladder of noise levels is its schedule: set the condition's weight with --eps2",
        ));
    }
    if let Some(target) = target_acceptance(cfg.sampler) {
        let tuned = SamplerConfig {
            adapt: Some(target),
            ..cfg.clone()
        };
        return Ok((tuned, serde_json::json!({"adapt": target})));
    }
    let Schedule::Constant { value: step } = cfg.step else {
        return Err(Error::unsupported(
            "--autotune with a step schedule",
            "use a constant step (--step) or leave the preset's",
        ));
    };
    let chains = pilot_chains(run.chains.clone());
    let batches: Vec<(&[usize], Tensor)> = chains
        .chunks(run.batch.max(1))
        .map(|b| Ok((b, (run.starts)(b)?)))
        .collect::<Result<_>>()?;
    let pilot = Pilot {
        build,
        batches: &batches,
        seed,
    };
    let (best, tried) = pilot.search(cfg, step)?;
    let report = serde_json::json!({
        "pilot_steps": cfg.steps,
        "pilot_chains": chains,
        "score": if classes { "mean p(y | x) after the pilot" } else { "mean activation after the pilot" },
        "tried": tried,
        "chose": {"step": best.step, "eps1": best.eps1},
    });
    Ok((best, report))
}

/// The mean of per-chain scores, minus infinity for a diverged pilot.
fn mean(s: Option<&[f64]>) -> f64 {
    match s {
        Some(s) if !s.is_empty() => s.iter().sum::<f64>() / s.len() as f64,
        _ => f64::NEG_INFINITY,
    }
}

/// Whether per-chain scores `new` beat `kept` by more than one standard
/// error of their paired differences (any finite scores beat a diverged
/// or missing pilot; a diverged one never beats).
pub fn beats(new: Option<&[f64]>, kept: Option<&[f64]>) -> bool {
    let (Some(new), Some(kept)) = (new, kept) else {
        return new.is_some();
    };
    let d: Vec<f64> = new.iter().zip(kept).map(|(a, b)| a - b).collect();
    let n = d.len() as f64;
    let m = d.iter().sum::<f64>() / n;
    let var = d.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0).max(1.0);
    m > (var / n).sqrt()
}

/// The pilot's chains in batches with their starts, and how they are
/// scored.
struct Pilot<'a> {
    build: &'a Build<'a>,
    batches: &'a [(&'a [usize], Tensor)],
    seed: u64,
}

impl Pilot<'_> {
    /// The steps around the preset's `step` (`cfg`'s, a constant), then
    /// the prior's weights at the step kept: the setting kept and what
    /// was tried.
    fn search(
        &self,
        cfg: &SamplerConfig,
        step: f64,
    ) -> Result<(SamplerConfig, Vec<serde_json::Value>)> {
        let mut tried = Vec::new();
        let mut best: (Option<Vec<f64>>, SamplerConfig) = (None, cfg.clone());
        let mut consider = |c: SamplerConfig, best: &mut (Option<Vec<f64>>, SamplerConfig)| {
            let s = self.score(&c)?;
            let m = mean(s.as_deref());
            tried.push(serde_json::json!({"step": c.step, "eps1": c.eps1, "score": m}));
            if beats(s.as_deref(), best.0.as_deref()) {
                *best = (s, c);
            }
            Result::Ok(())
        };
        for f in STEP_FACTORS {
            let step = Schedule::Constant { value: step * f };
            let c = SamplerConfig {
                step,
                ..cfg.clone()
            };
            consider(c, &mut best)?;
        }
        let at_best_step = best.1.clone();
        if cfg.eps1 > 0.0 {
            for f in EPS1_FACTORS.into_iter().filter(|&f| f != 1.0) {
                let c = SamplerConfig {
                    eps1: at_best_step.eps1 * f,
                    ..at_best_step.clone()
                };
                consider(c, &mut best)?;
            }
        }
        Ok((best.1, tried))
    }

    /// Each pilot chain's measure (p(y | x) or a unit's activation) after
    /// the run's steps with settings `c`; `None` when the pilot diverges or
    /// a score is not finite.
    fn score(&self, c: &SamplerConfig) -> Result<Option<Vec<f64>>> {
        let mut last = Vec::new();
        for (chains, start) in self.batches {
            let pipeline = (self.build)(c, chains)?;
            let o = drive_to_end(
                "autotune",
                &pipeline,
                c,
                start,
                self.seed,
                c.steps,
                &mut Silent,
            );
            match o {
                Ok(o) => last.extend(o.condition_value.last().cloned().unwrap_or_default()),
                Err(Error::Diverged(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok((!last.is_empty() && last.iter().all(|x| x.is_finite())).then_some(last))
    }
}

/// `spec` with the settings `--autotune` chooses when it asks for it
/// (the pilot on a share of `run`'s chains), and the report for the
/// manifest.
pub fn apply<'a>(
    spec: &'a SampleSpec,
    build: &Build,
    run: &Run,
) -> Result<(std::borrow::Cow<'a, SampleSpec>, Option<serde_json::Value>)> {
    if !spec.autotune {
        return Ok((std::borrow::Cow::Borrowed(spec), None));
    }
    let classes = matches!(spec.request, Request::Classes(_));
    let (settings, report) = tune(&spec.settings, build, run, spec.seed, classes)?;
    let tuned = SampleSpec {
        settings,
        ..spec.clone()
    };
    Ok((std::borrow::Cow::Owned(tuned), Some(report)))
}

/// A run's summary line with what `--autotune` chose, if it ran.
pub fn annotate(verdict: String, report: Option<&serde_json::Value>) -> String {
    let Some(report) = report else {
        return verdict;
    };
    match (report.get("adapt"), report.get("chose")) {
        (Some(a), _) => format!("{verdict}; --autotune: --adapt {a}"),
        (_, Some(c)) => format!(
            "{verdict}; --autotune chose step {} and eps1 {:.3e}",
            c["step"]["value"],
            c["eps1"].as_f64().unwrap_or(f64::NAN)
        ),
        _ => verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::{beats, pilot_chains};

    #[test]
    fn the_pilot_runs_a_quarter_of_a_large_batch_and_all_of_a_small_one() {
        // 20 classes of 4 chains: one chain of each class
        let big = pilot_chains(0..80);
        assert_eq!(big.len(), 20);
        assert!(big.iter().enumerate().all(|(k, &i)| i == 4 * k));
        // closer when every fourth would leave fewer than eight
        assert_eq!(pilot_chains(0..40).len(), 10);
        assert_eq!(pilot_chains(0..16), (0..16).step_by(2).collect::<Vec<_>>());
        assert_eq!(pilot_chains(0..4), vec![0, 1, 2, 3]);
        // indices are the run's, from the batch's first chain
        assert_eq!(pilot_chains(100..104), vec![100, 101, 102, 103]);
    }

    #[test]
    fn a_candidate_must_beat_the_kept_setting_by_one_paired_standard_error() {
        let kept = [-1.0, -2.0, -3.0, -4.0];
        // Better on average by 0.05, but the differences spread by about 1.
        let noisy = [0.05, -3.0, -2.0, -4.8];
        assert!(!beats(Some(&noisy), Some(&kept)));
        // Better by 0.5 on every chain.
        let clear = [-0.5, -1.5, -2.5, -3.5];
        assert!(beats(Some(&clear), Some(&kept)));
        // Equal is not better; a diverged candidate never wins; anything
        // finite beats a diverged pilot.
        assert!(!beats(Some(&kept), Some(&kept)));
        assert!(!beats(None, Some(&kept)));
        assert!(beats(Some(&kept), None));
    }
}
