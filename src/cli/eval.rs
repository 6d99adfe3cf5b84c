//! `ppgn eval RUN_DIR`: score a run's samples with an evaluator, beside
//! real images (the baseline row).

use std::path::PathBuf;

use clap::Args;

use ppgn::eval::run_eval::{evaluate, EvalSpec};

#[derive(Args, Debug)]
#[command(
    after_help = "Reads RUN_DIR/samples.npy and labels.npy; writes RUN_DIR/eval.json. \
By default the Fashion-MNIST stack's evaluator scores 28x28 grey samples, its Frechet distances \
in the evaluator's 128-unit features to the 60k training images, beside as many test images per \
class. Any other run: --evaluator FILE.toml (a classifier sidecar, docs/onnx.md) and --real IMAGES.\n\
Example: ppgn eval runs/faces --evaluator efficientnet-lite0 --real faces.npy"
)]
pub struct EvalArgs {
    /// A folder written by `ppgn sample` (or any folder with samples.npy and labels.npy).
    pub run_dir: PathBuf,
    /// The evaluator: a classifier sidecar (FILE.toml) or a built-in classifier
    /// (efficientnet-lite0, fashion) [default: the Fashion-MNIST stack's evaluator].
    #[arg(long)]
    pub evaluator: Option<String>,
    /// The evaluator's node whose output are the features of the Frechet
    /// distance [default: the input of its last fully connected layer].
    #[arg(long, requires = "evaluator")]
    pub features: Option<String>,
    /// Real images to compare with: a .npy of float32 [n, c, h, w] in [0, 1], an IDX
    /// file, or a folder of PNGs [default: Fashion-MNIST's].
    #[arg(long)]
    pub real: Option<PathBuf>,
    /// Fashion-MNIST runs: compare with the validation split (the last 5,000 training images).
    #[arg(long)]
    pub validation: bool,
    #[command(flatten)]
    pub folders: super::Folders,
}

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let command = super::command_line();
    let r = evaluate(&EvalSpec {
        run_dir: &a.run_dir,
        models: a.folders.models.as_deref(),
        data_dir: a.folders.data(),
        evaluator: a.evaluator.as_deref(),
        features: a.features.as_deref(),
        real: a.real.as_deref(),
        validation: a.validation,
        command: &command,
    })?;
    if let Some(missing) = &r.no_judge {
        eprintln!(
            "no realness judge ({} is missing): train it with `ppgn train realness`",
            missing.display()
        );
    }
    print!("{r}");
    println!(
        "wrote {} (the samples scored in {:.1} s)",
        a.run_dir.join("eval.json").display(),
        r.seconds
    );
    Ok(())
}
