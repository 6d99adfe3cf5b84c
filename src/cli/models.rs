//! `ppgn models ...`: what is installed, and the evaluation of the shipped stack.

use std::path::PathBuf;

use candle_core::{DType, Device, Module};
use clap::Subcommand;

use crate::data::fashion_mnist::{self, Split, CLASS_NAMES};
use crate::data::image::save_grid;
use crate::eval::reconstruction;
use crate::models::card::{sha256_file, Card};
use crate::models::fashion::{self as stack, Stack};

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// List the Fashion-MNIST networks, their cards and headline metrics.
    List {
        /// Model folder [default: $PPGN_MODELS or models/fashion-mnist].
        #[arg(long)]
        models: Option<PathBuf>,
    },
    /// Load the shipped stack, check its files against their cards, and
    /// measure it on the 10k test images: classifier and evaluator accuracy,
    /// and how well G(E(x)) reconstructs the images.
    Check {
        /// Model folder [default: $PPGN_MODELS or models/fashion-mnist].
        #[arg(long)]
        models: Option<PathBuf>,
        /// Fashion-MNIST folder [default: $PPGN_FASHION_MNIST or /usr/share/datasets/fashion-mnist].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Also write a PNG of test originals beside their reconstructions
        /// (per class, 8 originals then their 8 reconstructions).
        #[arg(long)]
        png: Option<PathBuf>,
    },
}

pub fn run(c: ModelsCommand) -> anyhow::Result<()> {
    match c {
        ModelsCommand::List { models } => list(models),
        ModelsCommand::Check {
            models,
            data_dir,
            png,
        } => check(models, data_dir, png),
    }
}

fn list(models: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = stack::resolve_dir(models.as_deref());
    println!("Fashion-MNIST stack in {}", dir.display());
    for name in stack::NETWORKS {
        let (w, c) = stack::paths(&dir, name);
        if !w.exists() {
            println!("  {name:<14} missing ({})", w.display());
            continue;
        }
        let card = Card::load(&c)?;
        let metrics: Vec<String> = card
            .metrics
            .iter()
            .filter(|(k, _)| !k.starts_with("final_epoch"))
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect();
        println!("  {name:<14} {} steps, {}", card.steps, metrics.join(", "));
    }
    Ok(())
}

/// "= card" when a re-measured value equals the card's, else the card's value.
fn versus(card: &Card, key: &str, value: f64) -> String {
    match card.metrics.get(key) {
        Some(v) if (v - value).abs() < 1e-9 => "(= card)".into(),
        Some(v) => format!("(card says {v:.4})"),
        None => "(not in card)".into(),
    }
}

fn check(
    models: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    png: Option<PathBuf>,
) -> anyhow::Result<()> {
    let device = Device::Cpu;
    let dir = stack::resolve_dir(models.as_deref());
    println!(
        "classes: {}",
        CLASS_NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{i} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let s = Stack::load(&dir, DType::F32, &device)?;
    for card in &s.cards {
        let (w, _) = stack::paths(&dir, &card.network);
        let hash = sha256_file(&w)?;
        let status = if hash == card.weights_sha256 {
            "sha256 ok"
        } else {
            "SHA-256 DIFFERS FROM CARD"
        };
        println!("loaded {:<12} {} ({status})", card.network, w.display());
    }
    let test = fashion_mnist::load(
        &fashion_mnist::resolve_dir(data_dir.as_deref()),
        Split::Test,
    )?;
    let r = reconstruction::evaluate(&s.classifier, &s.generator, &s.evaluator, &test, &device)?;
    let card = |name: &str| s.cards.iter().find(|c| c.network == name).unwrap();
    println!("on the {} test images:", test.len());
    println!(
        "  classifier accuracy          {:.4} {}",
        r.classifier_accuracy_originals,
        versus(
            card("classifier"),
            "test_accuracy",
            r.classifier_accuracy_originals
        )
    );
    println!(
        "  evaluator accuracy           {:.4} {}",
        r.evaluator_accuracy_originals,
        versus(
            card("evaluator"),
            "test_accuracy",
            r.evaluator_accuracy_originals
        )
    );
    let g = card("generator");
    println!(
        "  evaluator on G(E(x))         {:.4} {} (gap {:+.2} points)",
        r.evaluator_accuracy_reconstructions,
        versus(
            g,
            "evaluator_accuracy_reconstructions",
            r.evaluator_accuracy_reconstructions
        ),
        100.0 * (r.evaluator_accuracy_reconstructions - r.evaluator_accuracy_originals)
    );
    println!(
        "  classifier on G(E(x))        {:.4} {}",
        r.classifier_accuracy_reconstructions,
        versus(
            g,
            "classifier_accuracy_reconstructions",
            r.classifier_accuracy_reconstructions
        )
    );
    println!(
        "  pixel MSE of G(E(x))         {:.5} {}",
        r.reconstruction_mse,
        versus(g, "test_reconstruction_mse", r.reconstruction_mse)
    );
    if let Some(path) = png {
        // per class: the first 8 test images of the class, then their reconstructions
        let mut idx = Vec::new();
        for c in 0..CLASS_NAMES.len() {
            idx.extend(
                (0..test.len())
                    .filter(|&i| test.labels[i] as usize == c)
                    .take(8),
            );
        }
        let x = test.images_tensor(&idx, &device)?; // [80, 28, 28, 1]
        let rec = s.generator.forward(&s.classifier.encode(&x)?)?;
        let mut rows = Vec::new();
        for c in 0..CLASS_NAMES.len() {
            rows.push(x.narrow(0, 8 * c, 8)?);
            rows.push(rec.narrow(0, 8 * c, 8)?);
        }
        let all = candle_core::Tensor::cat(&rows, 0)?;
        let v: Vec<f32> = all.flatten_all()?.to_vec1()?;
        save_grid(&path, &v, 160, (28, 28, 1), 16)?;
        println!(
            "wrote {} (each row: 8 test images of one class, then their reconstructions)",
            path.display()
        );
    }
    Ok(())
}
