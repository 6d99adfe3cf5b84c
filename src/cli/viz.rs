//! `ppgn viz tsne RUN_DIR`: a t-SNE grid of a run's samples (Fig. S11).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use ppgn::eval::tsne_run::{tsne_of_run, TsneSpec};

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
    let spec = TsneSpec {
        run_dir: a.run_dir,
        file: a.file,
        class: a.class,
        max: a.max,
        perplexity: a.perplexity,
        seed: a.seed,
        out: a.out,
        models: a.models,
    };
    let (n, out) = tsne_of_run(&spec)?;
    println!("{n} samples laid out by t-SNE in {}", out.display());
    Ok(())
}
