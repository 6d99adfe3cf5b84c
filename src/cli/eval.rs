//! `ppgn eval RUN_DIR`: score a run's samples with the evaluator, beside the
//! same scores of as many real test images per class (the baseline row).

use std::path::PathBuf;

use clap::Args;

use ppgn::data::fashion_mnist::CLASS_NAMES;
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
    let (samples, real) = (&r.samples, &r.real);
    println!("{:<28} {:>10} {:>10}", "", "samples", "real test");
    println!(
        "{:<28} {:>10} {:>10}",
        "images", samples.images, real.images
    );
    for (name, s, r) in [
        (
            "evaluator accuracy",
            samples.evaluator_accuracy,
            real.evaluator_accuracy,
        ),
        (
            "evaluator score",
            samples.evaluator_score,
            real.evaluator_score,
        ),
        (
            "Frechet distance",
            samples.frechet_distance,
            real.frechet_distance,
        ),
    ] {
        println!("{name:<28} {s:>10.4} {r:>10.4}");
    }
    if let (Some(s), Some(r)) = (samples.mean_log_real, real.mean_log_real) {
        println!("{:<28} {s:>10.4} {r:>10.4}", "mean log p(real) (Table 2)");
    }
    println!(
        "{:<28} {:>10} {:>10}",
        "classes more diverse (S3)",
        r.more_diverse,
        real.ms_ssim_per_class.len()
    );
    let rows = [
        (
            "MS-SSIM",
            &samples.ms_ssim_per_class,
            &real.ms_ssim_per_class,
        ),
        (
            "FD",
            &samples.frechet_distance_per_class,
            &real.frechet_distance_per_class,
        ),
    ];
    for (what, ours, theirs) in rows {
        for (c, v) in ours {
            let t = theirs.get(c).copied().unwrap_or(f64::NAN);
            let name = format!("  {what} {}", CLASS_NAMES[*c]);
            println!("{name:<28} {v:>10.4} {t:>10.4}");
        }
    }
    println!(
        "wrote {} (the samples scored in {:.1} s)",
        a.run_dir.join("eval.json").display(),
        r.seconds
    );
    Ok(())
}
