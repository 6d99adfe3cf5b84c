//! `ppgn eval RUN_DIR`: score a run's samples with the evaluator, beside the
//! same scores of as many real test images per class (the baseline row).

use std::path::PathBuf;

use clap::Args;

use ppgn::eval::report::evaluate_run;

#[derive(Args, Debug)]
#[command(
    after_help = "Reads RUN_DIR/samples.npy and labels.npy; writes RUN_DIR/eval.json. \
Frechet distances are in the evaluator's 128-unit feature space, to the 60k training images."
)]
pub struct EvalArgs {
    /// A folder written by `ppgn sample` (or any folder with samples.npy and labels.npy).
    pub run_dir: PathBuf,
    #[arg(long)]
    pub models: Option<PathBuf>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let r = evaluate_run(
        &a.run_dir,
        a.models.as_deref(),
        a.data_dir.as_deref(),
        &super::command_line(),
    )?;
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
