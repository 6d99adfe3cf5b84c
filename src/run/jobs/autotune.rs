//! `--autotune`: settings chosen from the pair's own behaviour rather than
//! swept by hand. For a sampler with a Metropolis-Hastings test (MH, MALA,
//! HMC) it switches on the step adaptation (`--adapt`) toward that
//! sampler's usual acceptance. For MALA-approx and MAP a short pilot from
//! the run's own starting codes tries step sizes around the preset's
//! (the step is normalised by the mean |gradient|, so these are scales of
//! the pair's own gradients), then weights of the prior relative to the
//! condition, and keeps the settings whose chains end with the highest mean
//! log p(y | x) (or unit activation). The preset's own setting is scored
//! first and a candidate replaces the one kept only when its chains beat
//! them by more than one standard error of the paired per-chain difference
//! (the chains share starts and noise): a pilot of a few steps is noisy,
//! and without evidence the preset stays. The pilot is deterministic (the
//! run's seed), so a rerun chooses the same.

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::run::config::preset::{SamplerConfig, SamplerKind};
use crate::run::config::spec::{Request, SampleSpec};
use crate::run::drive::chains::Pipeline;
use crate::run::drive::progress::{drive_to_end, Silent};
use crate::sampler::schedule::Schedule;

/// Steps of each pilot run.
pub const PILOT_STEPS: usize = 10;
/// Multiples of the preset's step the pilot tries.
/// The preset's own (1.0) comes first: it is what the others must beat.
const STEP_FACTORS: [f64; 5] = [1.0, 0.25, 0.5, 2.0, 4.0];
/// Multiples of the preset's eps1 (the prior's weight) the pilot tries.
const EPS1_FACTORS: [f64; 3] = [0.1, 1.0, 10.0];

/// The acceptance a sampler's step adaptation aims at: the optimal
/// scalings of random-walk MH (0.234) and MALA (0.574), HMC's usual 0.65.
fn target_acceptance(s: SamplerKind) -> Option<f64> {
    match s {
        SamplerKind::Mh => Some(0.234),
        SamplerKind::Mala => Some(0.574),
        SamplerKind::Hmc => Some(0.65),
        SamplerKind::MalaApprox | SamplerKind::Map | SamplerKind::ReverseDiffusion => None,
    }
}

/// The settings `--autotune` chooses starting from `cfg`, with what it
/// tried (for the manifest). `build` makes the pipeline of a setting;
/// `log_score`: score by the mean log of the measure (class
/// probabilities), else by its mean (a unit's activation).
pub fn tune(
    cfg: &SamplerConfig,
    build: &dyn Fn(&SamplerConfig) -> Result<Pipeline>,
    start: &Tensor,
    seed: u64,
    log_score: bool,
) -> Result<(SamplerConfig, serde_json::Value)> {
    if cfg.adapt.is_some() {
        return Err(Error::unsupported(
            "--autotune with --adapt",
            "give one of them: --autotune switches the adaptation on itself where the sampler has an acceptance test",
        ));
    }
    if cfg.sampler == SamplerKind::ReverseDiffusion {
        return Err(Error::unsupported(
            "--autotune with reverse diffusion",
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
    let score = |c: &SamplerConfig| pilot_score(c, build, start, seed, log_score);
    let mut tried = Vec::new();
    let mut best: (Option<Vec<f64>>, SamplerConfig) = (None, cfg.clone());
    let mut consider = |c: SamplerConfig, best: &mut (Option<Vec<f64>>, SamplerConfig)| {
        let s = score(&c)?;
        let m = mean(s.as_deref());
        tried.push(serde_json::json!({"step": c.step, "eps1": c.eps1, "score": m}));
        if beats(s.as_deref(), best.0.as_deref()) {
            *best = (s, c);
        }
        Result::Ok(())
    };
    for f in STEP_FACTORS {
        let step = Schedule::Constant { value: step * f };
        consider(
            SamplerConfig {
                step,
                ..cfg.clone()
            },
            &mut best,
        )?;
    }
    let at_best_step = best.1.clone();
    if cfg.eps1 > 0.0 {
        for f in EPS1_FACTORS.into_iter().filter(|&f| f != 1.0) {
            let eps1 = at_best_step.eps1 * f;
            consider(
                SamplerConfig {
                    eps1,
                    ..at_best_step.clone()
                },
                &mut best,
            )?;
        }
    }
    let report = serde_json::json!({
        "pilot_steps": PILOT_STEPS,
        "score": if log_score { "mean log p(y | x) after the pilot" } else { "mean activation after the pilot" },
        "tried": tried,
        "chose": {"step": best.1.step, "eps1": best.1.eps1},
    });
    Ok((best.1, report))
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

/// Each chain's log measure (or measure) after a pilot of [`PILOT_STEPS`]
/// with settings `c`; `None` when the pilot diverges or a score is not
/// finite.
fn pilot_score(
    c: &SamplerConfig,
    build: &dyn Fn(&SamplerConfig) -> Result<Pipeline>,
    start: &Tensor,
    seed: u64,
    log_score: bool,
) -> Result<Option<Vec<f64>>> {
    let pilot = SamplerConfig {
        steps: PILOT_STEPS,
        ..c.clone()
    };
    let o = drive_to_end(
        "autotune",
        &build(c)?,
        &pilot,
        start,
        seed,
        PILOT_STEPS,
        &mut Silent,
    );
    let last = match o {
        Ok(o) => o.condition_value.last().cloned().unwrap_or_default(),
        Err(Error::Diverged(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let f = |p: f64| if log_score { p.max(1e-30).ln() } else { p };
    let s: Vec<f64> = last.iter().map(|&p| f(p)).collect();
    Ok((!s.is_empty() && s.iter().all(|x| x.is_finite())).then_some(s))
}

/// `spec` with the settings `--autotune` chooses when it asks for it
/// (pilot from `start`), and the report for the manifest.
pub fn apply<'a>(
    spec: &'a SampleSpec,
    build: &dyn Fn(&SamplerConfig) -> Result<Pipeline>,
    start: &Tensor,
) -> Result<(std::borrow::Cow<'a, SampleSpec>, Option<serde_json::Value>)> {
    if !spec.autotune {
        return Ok((std::borrow::Cow::Borrowed(spec), None));
    }
    let classes = matches!(spec.request, Request::Classes(_));
    let (settings, report) = tune(&spec.settings, build, start, spec.seed, classes)?;
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
    use super::beats;

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
