//! `ppgn viz tsne RUN_DIR`: a t-SNE grid of a run's samples (Fig. S11).

use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use clap::{Args, Subcommand};

use ppgn::data::fashion_mnist::parse_class;
use ppgn::data::npy;
use ppgn::eval::report::features_and_probs;
use ppgn::models::fashion::{self as stack, Evaluator};
use ppgn::viz::{tsne::Tsne, tsne_grid_png};

#[derive(Subcommand, Debug)]
pub enum VizCommand {
    /// Lay out up to --max samples on a grid by t-SNE of their evaluator features
    /// (similar samples in nearby cells); writes RUN_DIR/tsne.png.
    Tsne(TsneArgs),
}

#[derive(Args, Debug)]
pub struct TsneArgs {
    /// A folder written by `ppgn sample` (samples.npy, labels.npy).
    pub run_dir: PathBuf,
    /// Which file of the folder: samples.npy, or kept.npy of a --keep-above run.
    #[arg(long, default_value = "samples.npy")]
    pub file: String,
    /// Only samples of this class (needs labels.npy; not for kept.npy).
    #[arg(long)]
    pub class: Option<String>,
    /// At most this many samples (a random subset beyond it).
    #[arg(long, default_value_t = 400)]
    pub max: usize,
    #[arg(long, default_value_t = 30.0)]
    pub perplexity: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output PNG (default RUN_DIR/tsne.png).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub models: Option<PathBuf>,
}

pub fn run(c: VizCommand) -> anyhow::Result<()> {
    match c {
        VizCommand::Tsne(a) => tsne(a),
    }
}

fn tsne(a: TsneArgs) -> anyhow::Result<()> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let path = a.run_dir.join(&a.file);
    let (shape, px) = npy::read_f32(&path)?;
    if shape.len() != 4 || shape[1] != 1 || shape[2] != 28 || shape[3] != 28 {
        bail!(
            "{}: shape {shape:?}, expected N x 1 x 28 x 28",
            path.display()
        );
    }
    if !(a.perplexity > 0.0 && a.perplexity.is_finite()) || a.max < 4 {
        bail!("--perplexity must be positive and --max at least 4");
    }
    let mut idx: Vec<usize> = (0..shape[0]).collect();
    if let Some(c) = &a.class {
        let c = parse_class(c)?;
        let lp = a.run_dir.join("labels.npy");
        let (ls, labels) = npy::read_i64(&lp)?;
        if ls != [shape[0]] {
            bail!("{}: {ls:?} labels for {} samples", lp.display(), shape[0]);
        }
        idx.retain(|&i| labels[i] == c as i64);
    }
    if idx.len() < 4 {
        bail!("{} samples to lay out; t-SNE needs at least 4", idx.len());
    }
    idx.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(a.seed));
    idx.truncate(a.max);
    idx.sort();
    let images: Vec<Vec<f32>> = idx
        .iter()
        .map(|&i| px[i * 784..(i + 1) * 784].to_vec())
        .collect();
    let device = Device::Cpu;
    let (e, _) = stack::load(
        &stack::resolve_dir(a.models.as_deref()),
        "evaluator",
        DType::F32,
        &device,
        Evaluator::new,
    )?;
    let t = Tensor::from_vec(images.concat(), (images.len(), 28, 28, 1), &device)?;
    let (f, _) = features_and_probs(&e, &t)?;
    let png = tsne_grid_png(
        &images,
        &f,
        &Tsne {
            perplexity: a.perplexity,
            seed: a.seed,
            ..Tsne::default()
        },
    )?;
    let out = a.out.unwrap_or_else(|| a.run_dir.join("tsne.png"));
    ppgn::fsutil::write_atomic(&out, &png).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{} samples laid out by t-SNE in {}",
        images.len(),
        out.display()
    );
    Ok(())
}
