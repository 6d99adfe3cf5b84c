//! A run's sampler settings from their three sources, in order: a preset
//! ([`super::preset::preset`]), a TOML file of any of its fields, then
//! single values (what a front end's flags give), each checked.

use std::path::Path;

use super::preset::{preset, Choice, Engine, PriorKind, SamplerConfig, SamplerKind};
use crate::density::condition::ClassGradient;
use crate::error::{Error, Result};
use crate::sampler::schedule::Schedule;

/// Single settings that replace the preset's and the file's; `None` keeps
/// theirs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub sampler: Option<SamplerKind>,
    pub prior: Option<PriorKind>,
    pub eps1: Option<f64>,
    pub eps2: Option<f64>,
    pub eps3: Option<f64>,
    pub steps: Option<usize>,
    /// A constant step size in place of the preset's schedule.
    pub step: Option<f64>,
    pub adapt: Option<f64>,
    pub engine: Option<Engine>,
    pub leapfrog_steps: Option<usize>,
    pub prior_sigma: Option<f64>,
    pub decay: Option<f64>,
    pub gradient: Option<ClassGradient>,
    /// `Some(None)` turns clipping off.
    pub clip: Option<Option<(f64, f64)>>,
}

/// The settings of `preset_name`, overlaid with the TOML file `config`
/// (if any), then with `o`; the result is checked ([`validate`]).
pub fn resolve(preset_name: &str, config: Option<&Path>, o: &Overrides) -> Result<SamplerConfig> {
    let mut cfg = preset(preset_name)?;
    if let Some(path) = config {
        cfg = overlay_file(cfg, path)?;
    }
    let replace = |slot: &mut f64, v: Option<f64>| {
        if let Some(v) = v {
            *slot = v;
        }
    };
    replace(&mut cfg.eps1, o.eps1);
    replace(&mut cfg.eps2, o.eps2);
    replace(&mut cfg.eps3, o.eps3);
    replace(&mut cfg.prior_sigma, o.prior_sigma);
    replace(&mut cfg.decay, o.decay);
    cfg.sampler = o.sampler.unwrap_or(cfg.sampler);
    cfg.prior = o.prior.unwrap_or(cfg.prior);
    cfg.steps = o.steps.unwrap_or(cfg.steps);
    cfg.engine = o.engine.unwrap_or(cfg.engine);
    cfg.leapfrog_steps = o.leapfrog_steps.unwrap_or(cfg.leapfrog_steps);
    cfg.gradient = o.gradient.unwrap_or(cfg.gradient);
    if o.adapt.is_some() {
        cfg.adapt = o.adapt;
    }
    if let Some(clip) = o.clip {
        cfg.clip = clip;
    }
    if let Some(s) = o.step {
        if !(s.is_finite() && s > 0.0) {
            return Err(Error::setting("step", s, "a positive number"));
        }
        cfg.step = Schedule::Constant { value: s };
    }
    validate(&cfg)?;
    Ok(cfg)
}

/// Checks every value of `cfg` that a user can set.
pub fn validate(cfg: &SamplerConfig) -> Result<()> {
    cfg.validate_changes()?;
    if cfg.steps == 0 {
        return Err(Error::setting(
            "steps",
            0,
            "at least 1 (a run of no steps would write its random starts as samples)",
        ));
    }
    for (name, v) in [
        ("eps1", cfg.eps1),
        ("eps2", cfg.eps2),
        ("eps3", cfg.eps3),
        ("decay", cfg.decay),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(Error::setting(name, v, "a finite non-negative number"));
        }
    }
    if !(0.0..1.0).contains(&cfg.jitter) {
        return Err(Error::setting(
            "jitter",
            cfg.jitter,
            "a fraction in [0, 1) (HMC's step is drawn from step * [1 - jitter, 1 + jitter])",
        ));
    }
    if !(cfg.prior_sigma > 0.0 && cfg.prior_sigma.is_finite()) {
        return Err(Error::setting(
            "prior_sigma",
            cfg.prior_sigma,
            "a positive number (the Gaussian prior's sigma)",
        ));
    }
    validate_combinations(cfg)?;
    if let Some((lo, hi)) = cfg.clip {
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(Error::setting(
                "clip",
                format!("[{lo}, {hi}]"),
                "finite bounds LO <= HI",
            ));
        }
    }
    Ok(())
}

/// Checks the settings that only some samplers or priors take: the step
/// adaptation (kernels with an acceptance test), noise levels and the
/// score prior (a sampler that anneals: reverse diffusion, or MALA-approx
/// with noise levels), and start candidates (the flow prior).
fn validate_combinations(cfg: &SamplerConfig) -> Result<()> {
    if let Some(t) = cfg.adapt {
        if !(t > 0.0 && t < 1.0) {
            return Err(Error::setting("adapt", t, "a target acceptance in (0, 1)"));
        }
        if matches!(cfg.sampler, SamplerKind::Map | SamplerKind::MalaApprox)
            || cfg.sampler.walks_ladder()
        {
            return Err(Error::unsupported(
                "adapt tunes the step toward an acceptance rate",
                "use it with mh, mala or hmc",
            ));
        }
    }
    if let Some((max, min)) = cfg.noise_levels {
        if !(min > 0.0 && max > min && max.is_finite()) {
            return Err(Error::setting(
                "noise_levels",
                format!("[{max}, {min}]"),
                "the largest and the smallest level, MAX > MIN > 0",
            ));
        }
    }
    let ladder = cfg.sampler.walks_ladder();
    let annealed = ladder || (cfg.sampler == SamplerKind::MalaApprox && cfg.noise_levels.is_some());
    if ladder && cfg.prior != PriorKind::Score {
        return Err(Error::unsupported(
            format!(
                "the {} sampler with the {} prior: it anneals the score prior's noise level",
                cfg.sampler.name(),
                cfg.prior.name()
            ),
            "use --preset ppgn-score (reverse-diffusion with --prior score) or another sampler",
        ));
    }
    if cfg.prior == PriorKind::Score && !annealed {
        return Err(Error::unsupported(
            format!(
                "the score prior with the {} sampler: the score prior needs a sampler that anneals its noise level",
                cfg.sampler.name()
            ),
            "use --preset ppgn-score (reverse diffusion; sampler = \"probability-flow\" in a --config file for the ODE) or ppgn-score-langevin (MALA-approx with noise_levels)",
        ));
    }
    if cfg.start_candidates == 0 {
        return Err(Error::setting(
            "start_candidates",
            0,
            "at least 1 (1: each chain starts from one draw of the prior)",
        ));
    }
    if cfg.start_candidates > 1 && cfg.prior != PriorKind::Flow {
        return Err(Error::unsupported(
            format!(
                "start_candidates = {} resamples draws of the prior by target / prior, which needs the prior's density at the chains' starts; the {} prior's random starts are not its draws",
                cfg.start_candidates,
                cfg.prior.name()
            ),
            "use it with the flow prior (--prior flow), or start_candidates = 1",
        ));
    }
    Ok(())
}

/// `LO,HI` or `none`, as a clipping range.
pub fn parse_clip(s: &str) -> Result<Option<(f64, f64)>> {
    if s.trim() == "none" {
        return Ok(None);
    }
    let bad = || Error::setting("clip", format!("{s:?}"), "LO,HI with LO <= HI, or none");
    let (lo, hi) = s.split_once(',').ok_or_else(bad)?;
    match (lo.trim().parse::<f64>(), hi.trim().parse::<f64>()) {
        (Ok(lo), Ok(hi)) if lo <= hi => Ok(Some((lo, hi))),
        _ => Err(bad()),
    }
}

/// The first NaN or infinity anywhere in `v`.
fn non_finite(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Float(x) if !x.is_finite() => Some(*x),
        toml::Value::Array(a) => a.iter().find_map(non_finite),
        toml::Value::Table(t) => t.values().find_map(non_finite),
        _ => None,
    }
}

/// `cfg` with the fields a TOML file sets replaced; an unknown field is an
/// error that lists the known ones.
pub fn overlay_file(cfg: SamplerConfig, path: &Path) -> Result<SamplerConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let file: toml::Value =
        toml::from_str(&text).map_err(|e| Error::data(path, format!("not valid TOML: {e}")))?;
    // JSON has no NaN or infinity: name them before the conversion hides them
    if let Some(t) = file.as_table() {
        for (k, v) in t {
            if let Some(x) = non_finite(v) {
                return Err(Error::setting(k.clone(), x, "a finite number"));
            }
        }
    }
    let mut merged = serde_json::to_value(&cfg).map_err(|e| Error::data(path, e.to_string()))?;
    let overlay = serde_json::to_value(file).map_err(|e| Error::data(path, e.to_string()))?;
    let (Some(m), Some(o)) = (merged.as_object_mut(), overlay.as_object()) else {
        return Err(Error::data(path, "expected a table of settings"));
    };
    // a setting left out of the JSON when empty
    m.entry("changes").or_insert(serde_json::json!([]));
    for (k, v) in o {
        if !m.contains_key(k) {
            let known: Vec<String> = m.keys().cloned().collect();
            return Err(Error::data(
                path,
                format!(
                    "unknown setting {k:?}; the settings are {}",
                    known.join(", ")
                ),
            ));
        }
        m.insert(k.clone(), v.clone());
    }
    serde_json::from_value(merged).map_err(|e| Error::data(path, e.to_string()))
}
