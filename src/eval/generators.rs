//! Choosing a generator among trained candidates ("Plug & Play Generative
//! Networks" (supplementary), S8 and Fig. S8: generators trained with
//! different loss combinations compared by the images they draw).
//!
//! Every candidate is measured the same way against the stack's classifier
//! and evaluator: the Frechet distance of the reconstructions `G(E(x))` to
//! the images `x` in the guiding classifier's code `h`, on the validation
//! split (the last `crate::train::VALIDATION` training images), chooses;
//! the evaluator's numbers on the test set (Frechet distance of `G(E(x))` to
//! the training images in its features, accuracy on the reconstructions)
//! are computed after the choice and never used for it.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use serde::Serialize;

use crate::data::fashion_mnist::{self, Split};
use crate::error::{Error, Result};
use crate::models::card::{sha256_file, Card};
use crate::models::fashion::{self as stack, Classifier, Evaluator, Generator};
use crate::train::reconstruction::{self, frechet_in_code};
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
    /// on the validation split: the choosing number.
    pub validation_frechet_h: f64,
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
            Ok(Candidate {
                dir: dir.clone(),
                label: label(dir),
                card,
                validation_frechet_h: frechet_in_code(&e, &g, &train, &validation, &device)?,
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

/// The candidate closest to the validation images in the code `h`.
pub fn choose(candidates: &[Candidate]) -> Option<usize> {
    (0..candidates.len()).min_by(|&a, &b| {
        candidates[a]
            .validation_frechet_h
            .total_cmp(&candidates[b].validation_frechet_h)
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

/// The comparison as a Markdown table, the chosen candidate marked.
pub fn markdown(candidates: &[Candidate], chosen: Option<usize>) -> String {
    let mut w = String::new();
    let _ = writeln!(
        w,
        "| generator | losses, width, length | validation Frechet distance in h (chooses) | training time (s) | evaluator: Frechet distance of G(E(x)) | evaluator: accuracy on G(E(x)) |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    let opt = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
    for (i, c) in candidates.iter().enumerate() {
        let mark = if Some(i) == chosen { " (chosen)" } else { "" };
        let _ = writeln!(
            w,
            "| {}{mark} | {} | {:.2} | {:.0} | {} | {} |",
            c.label,
            training(&c.card),
            c.validation_frechet_h,
            c.card.wall_time_s,
            opt(c.evaluator_frechet, 3),
            opt(c.evaluator_accuracy, 4)
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
    let mut c = measure(dirs, models, data_dir)?;
    let chosen = choose(&c);
    if best {
        return Ok(chosen.map_or(String::new(), |i| format!("{}\n", c[i].dir.display())));
    }
    score_with_evaluator(&mut c, models, data_dir)?;
    Ok(markdown(&c, chosen))
}
