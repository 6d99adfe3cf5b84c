//! Choosing a generator among trained candidates ("Plug & Play Generative
//! Networks" (supplementary), S8 and Fig. S8: generators trained with
//! different loss combinations compared by the images they draw).
//!
//! Every candidate is measured the same way against the stack's classifier
//! and evaluator: the Frechet distance of the reconstructions `G(E(x))` to
//! the images `x` in the guiding classifier's spatial features `h1`
//! averaged over positions, on the validation split (the last
//! `crate::train::VALIDATION` training images), chooses; the evaluator's
//! numbers on the test set (Frechet distance of `G(E(x))` to the training
//! images in its features, accuracy on the reconstructions) are computed
//! after the choice and never used for it.
//!
//! The distance in the code `h` is reported beside it but does not choose:
//! the code loss L_h minimises `||E(G(h)) - h||`, so that distance rewards
//! it by construction. Measured (`ppgn report --generator-study`): the
//! generators trained with L_h came first in `h` while their reconstructions
//! carry a speckle the evaluator scores several times farther from real
//! images, S8's finding that a code-layer loss matches "high-level abstract
//! statistics ... instead of low-level statistics". (The rule was changed
//! to `h1` after those numbers were seen; the report's section says so.)

use std::fmt::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use serde::Serialize;

use crate::data::fashion_mnist::{self, Split};
use crate::error::{Error, Result};
use crate::models::card::{sha256_file, Card};
use crate::models::fashion::{self as stack, Classifier, Evaluator, Generator};
use crate::train::reconstruction::{self, frechet_in_features};
use crate::train::validation_start;

/// One candidate generator and what it measured.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub dir: PathBuf,
    /// The folder's name.
    pub label: String,
    /// The card's command, losses, width and training length.
    #[serde(skip)]
    pub card: Card,
    /// Frechet distance of `G(E(x))` to `x` in the classifier's code `h`
    /// on the validation split (reported; L_h optimises it).
    pub validation_frechet_h: f64,
    /// The same in the classifier's `h1` averaged over positions: the
    /// choosing number.
    pub validation_frechet_h1: f64,
    /// After the choice: the evaluator's Frechet distance of the test
    /// images' reconstructions to the training images.
    pub evaluator_frechet: Option<f64>,
    /// After the choice: the evaluator's accuracy on those reconstructions.
    pub evaluator_accuracy: Option<f64>,
}

/// Measures the generators in `dirs` on the validation split; loads
/// nothing else when a folder lacks a generator or was trained against
/// another classifier than the one in `models`.
pub fn measure(
    dirs: &[PathBuf],
    models: Option<&Path>,
    data_dir: Option<&Path>,
) -> Result<Vec<Candidate>> {
    let models = stack::resolve_dir(models);
    let classifier_sha = sha256_file(&stack::paths(&models, "classifier").0)?;
    let mut cards = Vec::new();
    for dir in dirs {
        let (w, c) = stack::paths(dir, "generator");
        if !w.exists() || !c.exists() {
            return Err(Error::data(
                dir,
                "no generator.safetensors and generator.json here (a finished `ppgn train generator --out` folder)",
            ));
        }
        let card = Card::load(&c)?;
        if card.depends_on.get("classifier") != Some(&classifier_sha) {
            return Err(Error::data(
                &c,
                format!(
                    "this generator was trained against another classifier than {}",
                    models.display()
                ),
            ));
        }
        cards.push(card);
    }
    let device = Device::Cpu;
    let e = stack::load(&models, "classifier", DType::F32, &device, Classifier::new)?.0;
    let train = fashion_mnist::load(&fashion_mnist::resolve_dir(data_dir), Split::Train)?;
    let n = train.len();
    let validation: Vec<usize> = (validation_start(n)..n).collect();
    dirs.iter()
        .zip(cards)
        .map(|(dir, card)| {
            let g = load_generator(dir, &device)?;
            let d = frechet_in_features(&e, &g, &train, &validation, &device)?;
            Ok(Candidate {
                dir: dir.clone(),
                label: label(dir),
                card,
                validation_frechet_h: d.h,
                validation_frechet_h1: d.h1_pooled,
                evaluator_frechet: None,
                evaluator_accuracy: None,
            })
        })
        .collect()
}

fn load_generator(dir: &Path, device: &Device) -> Result<Generator> {
    Ok(stack::load(dir, "generator", DType::F32, device, Generator::new)?.0)
}

fn label(dir: &Path) -> String {
    dir.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// The candidate closest to the validation images in the pooled `h1`.
pub fn choose(candidates: &[Candidate]) -> Option<usize> {
    (0..candidates.len()).min_by(|&a, &b| {
        candidates[a]
            .validation_frechet_h1
            .total_cmp(&candidates[b].validation_frechet_h1)
    })
}

/// After the choice: the evaluator's numbers on the test set for every
/// candidate.
pub fn score_with_evaluator(
    candidates: &mut [Candidate],
    models: Option<&Path>,
    data_dir: Option<&Path>,
) -> Result<()> {
    let models = stack::resolve_dir(models);
    let device = Device::Cpu;
    let dir = fashion_mnist::resolve_dir(data_dir);
    let test = fashion_mnist::load(&dir, Split::Test)?;
    let train = fashion_mnist::load(&dir, Split::Train)?;
    let e = stack::load(&models, "classifier", DType::F32, &device, Classifier::new)?.0;
    let evaluator = stack::load(&models, "evaluator", DType::F32, &device, Evaluator::new)?.0;
    let refs = super::report::reference(&evaluator, &train, &device)?;
    for c in candidates {
        let g = load_generator(&c.dir, &device)?;
        let (_, rec) =
            super::stack_check::reconstruction_frechet(&e, &g, &evaluator, &test, &refs)?;
        let measured = reconstruction::evaluate(&e, &g, &evaluator, &test, &device)?;
        c.evaluator_frechet = Some(rec);
        c.evaluator_accuracy = Some(measured.evaluator_accuracy_reconstructions);
    }
    Ok(())
}

/// How a candidate was trained, from its card: the loss weights, the
/// width and the training length.
fn training(card: &Card) -> String {
    let l = &card.config["training_losses"];
    let w = |k: &str| l[k].as_f64().unwrap_or(0.0);
    let mut losses = vec![format!("{} L_img", w("img"))];
    for (k, name) in [("h1", "L_h1"), ("h", "L_h"), ("gan", "L_GAN")] {
        if w(k) > 0.0 {
            losses.push(format!("{} {name}", w(k)));
        }
    }
    let channels = card.config["channels"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("-")
        })
        .unwrap_or_default();
    format!(
        "{}; channels {channels}; {} epochs, {} steps",
        losses.join(" + "),
        card.epochs,
        card.steps
    )
}

/// A finished comparison: every candidate measured on the validation
/// split, the chosen one, then the evaluator's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub candidates: Vec<Candidate>,
    /// Index of the candidate the validation distance chose.
    pub chosen: Option<usize>,
    /// Index of the candidate whose weights are the stack's generator.
    pub shipped: Option<usize>,
}

/// Measures, chooses, then scores with the evaluator (in that order, so
/// the evaluator cannot take part in the choice), and finds which
/// candidate the stack in `models` ships.
pub fn compare(
    dirs: &[PathBuf],
    models: Option<&Path>,
    data_dir: Option<&Path>,
) -> Result<Comparison> {
    let mut candidates = measure(dirs, models, data_dir)?;
    let chosen = choose(&candidates);
    score_with_evaluator(&mut candidates, models, data_dir)?;
    let shipped_card = Card::load(&stack::paths(&stack::resolve_dir(models), "generator").1)?;
    let shipped = candidates
        .iter()
        .position(|c| c.card.weights_sha256 == shipped_card.weights_sha256);
    Ok(Comparison {
        candidates,
        chosen,
        shipped,
    })
}

/// The finished generators in the folders directly under `dir` (as
/// `scripts/generator-study.sh` leaves them), shortest training first,
/// then by name; unfinished runs (a checkpoint still there) are left out.
pub fn candidates_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let (w, c) = stack::paths(&path, "generator");
        if w.exists() && c.exists() && !path.join("generator.ckpt.json").exists() {
            found.push((Card::load(&c)?.steps, path));
        }
    }
    if found.is_empty() {
        return Err(Error::data(
            dir,
            "no finished generators in the folders here (each a `ppgn train generator --out` folder, as scripts/generator-study.sh makes)",
        ));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// `dirs` and the shipped generator's folder (`models`), unless one of
/// `dirs` holds the same weights: what a study compares against.
pub fn with_shipped(mut dirs: Vec<PathBuf>, models: Option<&Path>) -> Result<Vec<PathBuf>> {
    let shipped = stack::resolve_dir(models);
    let sha = |d: &Path| -> Result<String> {
        Ok(Card::load(&stack::paths(d, "generator").1)?.weights_sha256)
    };
    let want = sha(&shipped)?;
    for d in &dirs {
        if sha(d)? == want {
            return Ok(dirs);
        }
    }
    dirs.push(shipped);
    Ok(dirs)
}

/// The comparison as a Markdown table, the chosen and the shipped
/// candidates marked.
pub fn markdown(c: &Comparison) -> String {
    let mut w = String::new();
    let _ = writeln!(
        w,
        "| generator | losses, width, length | validation Frechet distance in pooled h1 (chooses) | validation Frechet distance in h | training time (s) | evaluator: Frechet distance of G(E(x)) | evaluator: accuracy on G(E(x)) |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    let opt = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
    for (i, g) in c.candidates.iter().enumerate() {
        let mut mark = String::new();
        if Some(i) == c.chosen {
            mark.push_str(" (chosen)");
        }
        if Some(i) == c.shipped {
            mark.push_str(" (shipped)");
        }
        let _ = writeln!(
            w,
            "| {}{mark} | {} | {:.4} | {:.2} | {:.0} | {} | {} |",
            g.label,
            training(&g.card),
            g.validation_frechet_h1,
            g.validation_frechet_h,
            g.card.wall_time_s,
            opt(g.evaluator_frechet, 3),
            opt(g.evaluator_accuracy, 4)
        );
    }
    w
}

/// `ppgn models generators`: the folder of the chosen generator alone
/// (`best`, for scripts; the evaluator is not run), or the table with the
/// evaluator's numbers measured after the choice.
pub fn study(
    dirs: &[PathBuf],
    models: Option<&Path>,
    data_dir: Option<&Path>,
    best: bool,
) -> Result<String> {
    if best {
        let c = measure(dirs, models, data_dir)?;
        return Ok(choose(&c).map_or(String::new(), |i| format!("{}\n", c[i].dir.display())));
    }
    Ok(markdown(&compare(dirs, models, data_dir)?))
}
