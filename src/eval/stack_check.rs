//! The shipped stack checked against its cards (`ppgn models check`):
//! every file's SHA-256, the networks re-measured on the test set, a PNG
//! of test images beside their reconstructions `G(E(x))`, and the stack's
//! Markdown report (`docs/model-stack.md`).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};

use crate::data::fashion_mnist::{self, Dataset, Split, CLASS_NAMES};
use crate::data::image::save_grid;
use crate::error::{Error, Result};
use crate::models::card::{sha256_file, Card};
use crate::models::fashion::{self as stack, Classifier, Evaluator, Generator, Stack};
use crate::models::generator_error::ErrorByValue;
use crate::train::reconstruction::{self, ReconstructionReport};

/// The stack and what it measured.
pub struct StackCheck {
    pub dir: PathBuf,
    pub stack: Stack,
    /// Per network: its weights file and whether its SHA-256 is the card's.
    pub files: Vec<(String, PathBuf, bool)>,
    pub test: Dataset,
    pub measured: ReconstructionReport,
    /// Frechet distances in the evaluator's features to the training
    /// images: of the reconstructions `G(E(x))` of the test images, and of
    /// the test images themselves (the floor at the same number).
    pub frechet_reconstructions: f64,
    pub frechet_test: f64,
    /// The RMSE of `G(E(x))` on the validation split (the last 5,000
    /// training images): the generator's own error per pixel.
    pub validation_rmse: f64,
    /// The same at each pixel position (flat HWC).
    pub validation_rmse_per_pixel: Vec<f64>,
    /// The error `x - G(E(x))` there by the value drawn.
    pub validation_error_by_value: ErrorByValue,
}

/// Loads the stack in `models`, checks its files and measures it on the
/// test set in `data_dir`.
pub fn check(models: Option<&Path>, data_dir: Option<&Path>) -> Result<StackCheck> {
    let device = Device::Cpu;
    let dir = stack::resolve_dir(models);
    let s = Stack::load(&dir, DType::F32, &device)?;
    let mut files = Vec::new();
    for card in &s.cards {
        let (w, _) = stack::paths(&dir, &card.network);
        let same = sha256_file(&w)? == card.weights_sha256;
        files.push((card.network.clone(), w, same));
    }
    let test = fashion_mnist::load(&fashion_mnist::resolve_dir(data_dir), Split::Test)?;
    let measured =
        reconstruction::evaluate(&s.classifier, &s.generator, s.evaluator()?, &test, &device)?;
    let train = fashion_mnist::load(&fashion_mnist::resolve_dir(data_dir), Split::Train)?;
    let refs = super::report::reference(s.evaluator()?, &train, &device)?;
    let (frechet_test, frechet_reconstructions) =
        reconstruction_frechet(&s.classifier, &s.generator, s.evaluator()?, &test, &refs)?;
    let validation: Vec<usize> =
        (crate::train::validation_start(train.len())..train.len()).collect();
    let validation = reconstruction::frechet_in_features(
        &s.classifier,
        &s.generator,
        &train,
        &validation,
        &device,
    )?;
    Ok(StackCheck {
        dir,
        stack: s,
        files,
        test,
        measured,
        frechet_reconstructions,
        frechet_test,
        validation_rmse: validation.rmse,
        validation_rmse_per_pixel: validation.rmse_per_pixel,
        validation_error_by_value: validation.error_by_value,
    })
}

/// Frechet distances to `refs` of the test images and of their
/// reconstructions `G(E(x))`, in the evaluator's features.
pub fn reconstruction_frechet(
    e: &Classifier,
    g: &Generator,
    evaluator: &Evaluator,
    test: &Dataset,
    refs: &super::report::Reference,
) -> Result<(f64, f64)> {
    use super::scores::FeatureGaussian;
    let device = Device::Cpu;
    let (mut real, mut rec) = (Vec::new(), Vec::new());
    let idx: Vec<usize> = (0..test.len()).collect();
    for chunk in idx.chunks(crate::train::EVAL_BATCH) {
        let x = test.images_tensor(chunk, &device)?;
        let r = g.forward(&e.forward_all(&x)?.h)?;
        real.extend(super::report::features_and_probs(evaluator, &x)?.0);
        rec.extend(super::report::features_and_probs(evaluator, &r)?.0);
    }
    let fd = |f: &[Vec<f64>]| refs.overall.frechet_distance(&FeatureGaussian::fit(f)?);
    Ok((fd(&real)?, fd(&rec)?))
}

impl StackCheck {
    /// What `ppgn models check` prints of the measurements, each beside
    /// the card's value.
    pub fn summary(&self) -> String {
        let r = &self.measured;
        let rows = [
            (
                "classifier accuracy",
                "classifier",
                "test_accuracy",
                r.classifier_accuracy_originals,
            ),
            (
                "evaluator accuracy",
                "evaluator",
                "test_accuracy",
                r.evaluator_accuracy_originals,
            ),
            (
                "evaluator on G(E(x))",
                "generator",
                "evaluator_accuracy_reconstructions",
                r.evaluator_accuracy_reconstructions,
            ),
            (
                "classifier on G(E(x))",
                "generator",
                "classifier_accuracy_reconstructions",
                r.classifier_accuracy_reconstructions,
            ),
            (
                "pixel MSE of G(E(x))",
                "generator",
                "test_reconstruction_mse",
                r.reconstruction_mse,
            ),
        ];
        let names: Vec<String> = crate::data::fashion_mnist::CLASS_NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{i} {n}"))
            .collect();
        let mut out = format!("classes: {}\n", names.join(", "));
        for (network, w, same) in &self.files {
            let status = if *same {
                "sha256 ok"
            } else {
                "SHA-256 DIFFERS FROM CARD"
            };
            out += &format!("loaded {network:<12} {} ({status})\n", w.display());
        }
        out += &format!("on the {} test images:\n", self.test.len());
        for (what, network, key, v) in rows {
            out += &format!("  {what:<28} {v:.4} {}\n", self.versus(network, key, v));
        }
        out += &format!(
            "  gap of the evaluator on G(E(x)): {:+.2} points\n",
            100.0 * (r.evaluator_accuracy_reconstructions - r.evaluator_accuracy_originals)
        );
        out += &format!(
            "  Frechet distance to the training images (evaluator features): G(E(x)) {:.2}, the test images themselves {:.2}\n",
            self.frechet_reconstructions, self.frechet_test
        );
        let key = crate::models::card::GENERATOR_ERROR;
        out += &format!(
            "on the validation split: pixel RMSE of G(E(x)) {:.4} {} (the generator's error tau of `ppgn restore`)\n",
            self.validation_rmse,
            self.versus("generator", key, self.validation_rmse)
        );
        out
    }

    /// Writes the validation RMSE into the generator's card
    /// (`validation_reconstruction_rmse`, measured by `command`), where a
    /// card from before the metric lacks it, and the error by the value
    /// drawn (`error_by_value`, `--draw-error by-value` of `ppgn restore`).
    pub fn record_generator_error(&self, command: &str) -> Result<()> {
        let key = crate::models::card::GENERATOR_ERROR;
        let mut card = self.card("generator")?.clone();
        card.metrics.insert(key.into(), self.validation_rmse);
        card.error_by_value = Some(self.validation_error_by_value.clone());
        card.measured_by.insert(key.into(), command.into());
        card.save(&stack::paths(&self.dir, "generator").1)
    }

    /// Writes the validation RMSE at each pixel position to `path`, a
    /// `[h, w, c]` float64 `.npy` that `ppgn restore --tau` reads.
    pub fn write_tau_map(&self, path: &Path) -> Result<()> {
        let side = fashion_mnist::SIDE;
        crate::data::npy::write_f64(path, &[side, side, 1], &self.validation_rmse_per_pixel)
    }

    /// The card of `network`.
    pub fn card(&self, network: &str) -> Result<&Card> {
        self.stack
            .cards
            .iter()
            .find(|c| c.network == network)
            .ok_or_else(|| Error::data(&self.dir, format!("no card for {network}")))
    }

    /// "(= card)" when a re-measured value equals the card's, else the card's value.
    pub fn versus(&self, network: &str, key: &str, value: f64) -> String {
        match self.card(network).ok().and_then(|c| c.metrics.get(key)) {
            Some(v) if (v - value).abs() < 1e-9 => "(= card)".into(),
            Some(v) => format!("(card says {v:.4})"),
            None => "(not in card)".into(),
        }
    }

    /// A PNG of, per class, the first 8 test images then their reconstructions.
    pub fn reconstructions_png(&self, path: &Path) -> Result<()> {
        let test = &self.test;
        let mut idx = Vec::new();
        for c in 0..CLASS_NAMES.len() {
            idx.extend(
                (0..test.len())
                    .filter(|&i| test.labels[i] as usize == c)
                    .take(8),
            );
        }
        let x = test.images_tensor(&idx, &Device::Cpu)?; // [80, 28, 28, 1]
        let s = &self.stack;
        let rec = s.generator.forward(&s.classifier.encode(&x)?)?;
        let mut rows = Vec::new();
        for c in 0..CLASS_NAMES.len() {
            rows.push(x.narrow(0, 8 * c, 8)?);
            rows.push(rec.narrow(0, 8 * c, 8)?);
        }
        let v: Vec<f32> = Tensor::cat(&rows, 0)?.flatten_all()?.to_vec1()?;
        save_grid(path, &v, 160, (28, 28, 1), 16)
    }
}

/// What each shipped network is for (sections of "Plug & Play Generative Networks", supplementary).
fn role(name: &str) -> &'static str {
    match name {
        "classifier" => "E/C: codes h1 (pool5 analogue) and h (fc6 analogue), class logits (S9.4)",
        "evaluator" => "independent classifier, only for scoring samples",
        "generator" => "G: h -> x, trained with L_img + L_h1 + L_GAN (eqs. 18-22)",
        "discriminator" => "D: trains G (eq. 22)",
        "h-dae" => "DAE prior on h (PPGN-h, S9.3)",
        "x-dae" => "DAE prior on images (PPGN-x, S9.2)",
        "code-prior" => "RealNVP flow density on the pre-ReLU code u (exact samplers' prior)",
        "code-score" => "noise-conditional denoiser on the standardised code u: a score-based prior at every noise level",
        "realness" => {
            "realness judge: DCGAN-style D of its own GAN (Xu et al. Table 2), only for scoring"
        }
        "realness-generator" => "the realness judge's own unconditional generator z -> x",
        _ => "",
    }
}

/// What `ppgn models check` writes beside its summary.
#[derive(Debug, Clone, Default)]
pub struct CheckOutputs {
    /// Record tau on the generator's card, measured by this command.
    pub record_tau: Option<String>,
    /// The per-pixel tau `.npy`.
    pub tau_map: Option<PathBuf>,
    /// The Markdown report.
    pub report: Option<PathBuf>,
    /// The reconstructions' PNG.
    pub png: Option<PathBuf>,
}

impl StackCheck {
    /// Writes `outputs`, returning a line for each thing written.
    pub fn write(&self, outputs: &CheckOutputs) -> Result<Vec<String>> {
        let mut said = Vec::new();
        if let Some(command) = &outputs.record_tau {
            self.record_generator_error(command)?;
            said.push("recorded tau in the generator's card".to_string());
        }
        if let Some(path) = &outputs.tau_map {
            self.write_tau_map(path)?;
            said.push(format!("wrote {}", path.display()));
        }
        if let Some(path) = &outputs.report {
            let text = markdown_report(self, outputs.png.as_deref(), path)?;
            crate::fsutil::write_atomic(path, text.as_bytes())?;
            said.push(format!("wrote {}", path.display()));
        }
        if let Some(path) = &outputs.png {
            self.reconstructions_png(path)?;
            said.push(format!(
                "wrote {} (each row: 8 test images of one class, then their reconstructions)",
                path.display()
            ));
        }
        Ok(said)
    }
}

/// The stack's Markdown report: every number comes from the cards or from
/// the measurement just made; nothing time-dependent, so a rerun is identical.
pub fn markdown_report(
    c: &StackCheck,
    png: Option<&std::path::Path>,
    out: &std::path::Path,
) -> Result<String> {
    use std::fmt::Write;
    let mut md = String::new();
    writeln!(md, "# The shipped Fashion-MNIST model stack\n")?;
    writeln!(
        md,
        "Generated by `cargo run --release -- models check --png docs/reconstructions.png \
         --report docs/model-stack.md`; the per-network rows come from the JSON cards in \
         `models/fashion-mnist/`, written by the training runs themselves.\n"
    )?;
    writeln!(
        md,
        "| network | role | parameters | trained with | steps | wall time |"
    )?;
    writeln!(md, "|---|---|---:|---|---:|---:|")?;
    let mut cards = Vec::new();
    for name in stack::NETWORKS {
        let (w, card_file) = stack::paths(&c.dir, name);
        if !w.exists() {
            continue;
        }
        let card = Card::load(&card_file)?;
        let tensors = crate::models::weights::load_tensors(&w, &Device::Cpu)?;
        let params: usize = tensors.values().map(|t| t.elem_count()).sum();
        writeln!(
            md,
            "| {name} | {} | {params} | `{}` | {} | {:.0} s |",
            role(name),
            card.command,
            card.steps,
            card.wall_time_s
        )?;
        cards.push(card);
    }
    measured_markdown(&mut md, c)?;
    if let Some(png) = png {
        let rel = pathdiff(png, out);
        writeln!(
            md,
            "Each row: eight test images of one class, then their reconstructions `G(E(x))`.\n\n![originals and reconstructions]({rel})\n"
        )?;
    }
    cards_markdown(&mut md, &cards)?;
    Ok(md)
}

/// The measurements section.
fn measured_markdown(md: &mut String, c: &StackCheck) -> Result<()> {
    use std::fmt::Write;
    let r = &c.measured;
    writeln!(md, "\n## Measured on the 10,000 test images\n")?;
    writeln!(md, "| measurement | value |\n|---|---:|")?;
    for (k, v) in [
        ("classifier accuracy", r.classifier_accuracy_originals),
        ("evaluator accuracy", r.evaluator_accuracy_originals),
        (
            "evaluator accuracy on reconstructions G(E(x))",
            r.evaluator_accuracy_reconstructions,
        ),
        (
            "classifier accuracy on reconstructions G(E(x))",
            r.classifier_accuracy_reconstructions,
        ),
        (
            "pixel MSE of G(E(x)) (pixels in [0, 1])",
            r.reconstruction_mse,
        ),
        ("h1 MSE of E1(G(E(x))) against E1(x)", r.h1_mse),
        (
            "Frechet distance of G(E(x)) to the training images (evaluator features)",
            c.frechet_reconstructions,
        ),
        (
            "Frechet distance of the test images themselves (the floor)",
            c.frechet_test,
        ),
    ] {
        writeln!(md, "| {k} | {v:.4} |")?;
    }
    writeln!(
        md,
        "\nThe evaluator classifies reconstructions {:.2} points {} than the originals \
         (the target: within 3 points).\n",
        100.0 * (r.evaluator_accuracy_originals - r.evaluator_accuracy_reconstructions).abs(),
        if r.evaluator_accuracy_reconstructions <= r.evaluator_accuracy_originals {
            "worse"
        } else {
            "better"
        }
    )?;
    Ok(())
}

/// The cards section: each network's command, metrics and config.
fn cards_markdown(md: &mut String, cards: &[Card]) -> Result<()> {
    use std::fmt::Write;
    writeln!(md, "## Cards\n")?;
    for card in cards {
        writeln!(md, "### {}\n", card.network)?;
        writeln!(
            md,
            "- command: `{}` (seed {}, batch {}, lr {})",
            card.command, card.seed, card.batch_size, card.learning_rate
        )?;
        for (k, v) in &card.metrics {
            writeln!(md, "- {k}: {v:.4}")?;
        }
        writeln!(
            md,
            "- config:\n\n```json\n{}\n```\n",
            serde_json::to_string_pretty(&card.config).unwrap_or_default()
        )?;
    }
    Ok(())
}

/// `target` relative to the folder of `from` when both are in the same folder tree.
fn pathdiff(target: &std::path::Path, from: &std::path::Path) -> String {
    let from_dir = from.parent().unwrap_or(std::path::Path::new(""));
    target
        .strip_prefix(from_dir)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| target.display().to_string())
}
