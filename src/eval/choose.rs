//! `ppgn presets choose`: applies a tuned preset's written rule
//! (`crate::run::config::tuning`) on the validation split with the guiding
//! classifier, and says whether the preset holds the value the rule picks.
//! The stack is loaded without its evaluator ([`Stack::load_for_choosing`]),
//! so no number of the evaluator can reach a choice.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use super::experiments::{real_per_class, run_to_end};
use super::report::validation_split;
use super::scores::{accuracy, FeatureGaussian, Rows};
use crate::data::fashion_mnist::{self, Dataset, Split};
use crate::error::{Error, Result};
use crate::models::fashion::{resolve_dir, Stack};
use crate::run::config::tuning::{pick, tuning, Knob, Tuning};
use crate::run::drive::chains::fashion_starts;
use crate::run::pairs::fashion::Condition;
use crate::run::Progress;
use crate::train::EVAL_BATCH;

/// The guiding classifier's codes `h` and class probabilities of `images`.
fn guide(stack: &Stack, images: &Tensor) -> Result<(Rows, Rows)> {
    let n = images.dim(0)?;
    let (mut h, mut p) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in (0..n).step_by(EVAL_BATCH) {
        let x = images.narrow(0, i, EVAL_BATCH.min(n - i))?;
        let code = stack.classifier.encode(&x)?;
        let probs = candle_nn::ops::softmax_last_dim(&stack.classifier.classify_h(&code)?)?;
        h.extend(code.to_dtype(DType::F64)?.to_vec2::<f64>()?);
        p.extend(probs.to_dtype(DType::F64)?.to_vec2::<f64>()?);
    }
    Ok((h, p))
}

/// The guiding classifier's accuracy on `images` of classes `labels`, and
/// their Frechet distance to `reference` in its code `h`.
fn judged(
    stack: &Stack,
    reference: &FeatureGaussian,
    images: &Tensor,
    labels: &[usize],
) -> Result<(f64, f64)> {
    let (h, p) = guide(stack, images)?;
    Ok((
        accuracy(&p, labels),
        reference.frechet_distance(&FeatureGaussian::fit(&h)?)?,
    ))
}

/// What the guide makes of the validation split: the Gaussian of its codes
/// of all validation images, and its accuracy and Frechet distance on
/// `per_class` of them of every class (the yardstick of as many samples).
struct Validation {
    reference: FeatureGaussian,
    accuracy: f64,
    frechet: f64,
}

impl Validation {
    fn measure(stack: &Stack, validation: &Dataset, per_class: usize, seed: u64) -> Result<Self> {
        let all: Vec<usize> = (0..validation.len()).collect();
        let (h, _) = guide(stack, &validation.images_tensor(&all, &Device::Cpu)?)?;
        let reference = FeatureGaussian::fit(&h)?;
        let classes: Vec<usize> = (0..10).collect();
        let (x, labels, _) = real_per_class(validation, &classes, per_class, seed)?;
        let (accuracy, frechet) = judged(stack, &reference, &x, &labels)?;
        Ok(Self {
            reference,
            accuracy,
            frechet,
        })
    }
}

/// What to choose: the tuned presets, chains of every class per
/// candidate, and where the networks and data are.
#[derive(Debug, Clone)]
pub struct ChooseSpec {
    pub presets: Vec<String>,
    pub per_class: usize,
    pub seed: u64,
    /// The gradient budget per chain (default: each tuning's own).
    pub budget: Option<usize>,
    pub models: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
}

/// One candidate's values and what the guide made of its samples.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub values: Vec<(Knob, f64)>,
    pub guide_accuracy: f64,
    pub guide_frechet: f64,
    pub mean_accept: f64,
    pub grad_evals_per_chain: usize,
}

/// One tuned preset's choice.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    pub preset: String,
    pub shared_with: Vec<String>,
    pub budget: usize,
    pub candidates: Vec<Candidate>,
    /// Index of the picked candidate.
    pub chosen: usize,
    /// The preset's values today, and whether they are the picked ones.
    pub current: Vec<(Knob, Option<f64>)>,
    pub holds: bool,
}

/// Every choice made, with the validation yardsticks.
#[derive(Debug, Clone, Serialize)]
pub struct Choices {
    pub chains_per_class: usize,
    pub seed: u64,
    pub validation_guide_accuracy: f64,
    pub validation_guide_frechet: f64,
    /// The model folder.
    pub models: String,
    pub choices: Vec<Choice>,
    pub command: String,
}

/// Checks the request before any network is loaded.
fn check(spec: &ChooseSpec) -> Result<Vec<&'static Tuning>> {
    if spec.per_class == 0 {
        return Err(Error::setting("chains per class", 0, "at least 1"));
    }
    if spec.budget == Some(0) {
        return Err(Error::setting("gradient budget", 0, "at least 1"));
    }
    let names: Vec<&str> = match spec.presets.as_slice() {
        [] => crate::run::config::tuning::TUNINGS
            .iter()
            .map(|t| t.preset)
            .collect(),
        given => given.iter().map(String::as_str).collect(),
    };
    names.into_iter().map(tuning).collect()
}

/// Applies the rule of each preset in `spec` (all tuned presets when
/// none is named).
pub fn choose(spec: &ChooseSpec, command: &str, progress: &mut dyn Progress) -> Result<Choices> {
    let tunings = check(spec)?;
    let dir = resolve_dir(spec.models.as_deref());
    let stack = Stack::load_for_choosing(&dir, DType::F32, &Device::Cpu)?;
    let train = fashion_mnist::load(
        &fashion_mnist::resolve_dir(spec.data_dir.as_deref()),
        Split::Train,
    )?;
    let validation = Validation::measure(
        &stack,
        &validation_split(&train)?,
        spec.per_class,
        spec.seed,
    )?;
    let mut choices = Vec::new();
    for t in tunings {
        choices.push(choose_one(&stack, &validation, t, spec, progress)?);
    }
    Ok(Choices {
        chains_per_class: spec.per_class,
        seed: spec.seed,
        validation_guide_accuracy: validation.accuracy,
        validation_guide_frechet: validation.frechet,
        models: dir.display().to_string(),
        choices,
        command: command.to_string(),
    })
}

fn choose_one(
    stack: &Stack,
    v: &Validation,
    t: &Tuning,
    spec: &ChooseSpec,
    progress: &mut dyn Progress,
) -> Result<Choice> {
    let budget = spec.budget.unwrap_or(t.budget);
    let labels: Vec<usize> = (0..10)
        .flat_map(|c| std::iter::repeat_n(c, spec.per_class))
        .collect();
    let condition = Condition::Classes(labels.clone());
    let mut candidates = Vec::new();
    for point in t.points() {
        let cfg = t.config(&point)?.with_grad_budget(budget)?;
        let label = format!("{} at {}", t.preset, describe(&point));
        progress.begin(&label, cfg.steps);
        let h0 = fashion_starts(stack, &cfg, spec.seed.into(), labels.len())?;
        let out = run_to_end(
            stack,
            &cfg,
            &condition,
            &h0,
            spec.seed,
            cfg.steps,
            &mut |s| progress.tick(s),
        );
        progress.end();
        let out = out?;
        let (guide_accuracy, guide_frechet) = judged(stack, &v.reference, &out.images, &labels)?;
        progress.note(&format!(
            "{label}: the guide recognises {guide_accuracy:.3} (validation images {:.3}), Frechet distance in h {guide_frechet:.2} (validation images {:.2})",
            v.accuracy, v.frechet
        ));
        candidates.push(Candidate {
            values: point,
            guide_accuracy,
            guide_frechet,
            mean_accept: out.accept_sum / cfg.steps.max(1) as f64,
            grad_evals_per_chain: out.grad_evals,
        });
    }
    let acc: Vec<f64> = candidates.iter().map(|c| c.guide_accuracy).collect();
    let fd: Vec<f64> = candidates.iter().map(|c| c.guide_frechet).collect();
    let chosen = pick(&acc, &fd, v.accuracy).unwrap_or(0);
    let current = t.current()?;
    let holds = candidates[chosen]
        .values
        .iter()
        .zip(&current)
        .all(|(&(_, v), &(_, now))| now == Some(v));
    Ok(Choice {
        preset: t.preset.into(),
        shared_with: t.shared_with.iter().map(|s| s.to_string()).collect(),
        budget,
        candidates,
        chosen,
        current,
        holds,
    })
}

/// `step = 0.2, eps2 = 1`.
fn describe(point: &[(Knob, f64)]) -> String {
    let names: Vec<String> = point
        .iter()
        .map(|(k, v)| format!("{} = {v}", k.name()))
        .collect();
    names.join(", ")
}

/// The choices as markdown: one table per preset, the picked row marked.
pub fn markdown(c: &Choices) -> String {
    let mut m = String::new();
    let w = &mut m;
    let _ = writeln!(
        w,
        "Each candidate ran {} chains of every class (seed {}) on the stack in `{}`; the guiding classifier judged the samples \
         against the validation split (the last 5,000 training images): real validation images, {} per class, are recognised \
         {:.3} with a Frechet distance in `h` of {:.2}. The evaluator was not loaded. Command: `{}`.\n",
        c.chains_per_class, c.seed, c.models, c.chains_per_class, c.validation_guide_accuracy, c.validation_guide_frechet, c.command
    );
    for ch in &c.choices {
        let _ = writeln!(
            w,
            "### `{}` ({} gradient evaluations per chain)\n",
            ch.preset, ch.budget
        );
        let _ = writeln!(
            w,
            "| candidate | guide recognised | guide Frechet (h) | acceptance |"
        );
        let _ = writeln!(w, "|---|---:|---:|---:|");
        for (i, cand) in ch.candidates.iter().enumerate() {
            let mark = if i == ch.chosen { " (chosen)" } else { "" };
            let _ = writeln!(
                w,
                "| {}{mark} | {:.3} | {:.2} | {:.2} |",
                describe(&cand.values),
                cand.guide_accuracy,
                cand.guide_frechet,
                cand.mean_accept
            );
        }
        let shared = match ch.shared_with.as_slice() {
            [] => String::new(),
            s => format!(" (and {})", s.join(", ")),
        };
        let verdict = if ch.holds {
            format!("when this ran, the preset{shared} held it")
        } else {
            let now: Vec<String> = ch
                .current
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{} = {}",
                        k.name(),
                        v.map_or("not constant".into(), |v| v.to_string())
                    )
                })
                .collect();
            format!("when this ran, the preset{shared} had {}", now.join(", "))
        };
        let _ = writeln!(
            w,
            "\nChosen: {}; {verdict}.\n",
            describe(&ch.candidates[ch.chosen].values)
        );
    }
    m
}

/// Writes `choices.json` and `choices.md` into `dir` (atomically).
pub fn write(c: &Choices, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let json =
        serde_json::to_string_pretty(c).map_err(|e| Error::data("choices", e.to_string()))?;
    crate::fsutil::write_atomic(&dir.join("choices.json"), json.as_bytes())?;
    crate::fsutil::write_atomic(&dir.join("choices.md"), markdown(c).as_bytes())
}
