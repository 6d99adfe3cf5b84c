//! `ppgn eval RUN_DIR`: score a run's samples with the evaluator, beside the
//! same scores of the real test images (the baseline row).

use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use clap::Args;

use ppgn::data::fashion_mnist::{self, Split, CLASS_NAMES};
use ppgn::data::npy;
use ppgn::eval::report::{classes_more_diverse, reference, score};
use ppgn::models::fashion::{self as stack, Discriminator, Evaluator};

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
    let device = Device::Cpu;
    let (shape, px) = npy::read_f32(&a.run_dir.join("samples.npy"))?;
    if shape.len() != 4 || shape[1] != 1 || shape[2] != 28 || shape[3] != 28 {
        bail!(
            "{}: samples have shape {shape:?}, expected N x 1 x 28 x 28",
            a.run_dir.join("samples.npy").display()
        );
    }
    let (lshape, labels) = npy::read_i64(&a.run_dir.join("labels.npy"))?;
    if lshape != [shape[0]] || labels.iter().any(|&l| !(0..10).contains(&l)) {
        bail!(
            "{}: expected {} class labels in 0..10 (runs conditioned on a neuron have no classes to score)",
            a.run_dir.join("labels.npy").display(),
            shape[0]
        );
    }
    let labels: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
    let images = Tensor::from_vec(px, (shape[0], 28, 28, 1), &device)?;
    let dir = stack::resolve_dir(a.models.as_deref());
    let (e, _) = stack::load(&dir, "evaluator", DType::F32, &device, Evaluator::new)?;
    let data_dir = fashion_mnist::resolve_dir(a.data_dir.as_deref());
    let train = fashion_mnist::load(&data_dir, Split::Train)?;
    let test = fashion_mnist::load(&data_dir, Split::Test)?;
    let judge = if stack::paths(&dir, "realness").0.exists() {
        Some(stack::load(&dir, "realness", DType::F32, &device, Discriminator::new)?.0)
    } else {
        eprintln!(
            "no realness judge in {}: train it with `ppgn train realness`",
            dir.display()
        );
        None
    };
    let refs = reference(&e, &train, &device)?;
    let samples = score(&e, judge.as_ref(), &images, &labels, &refs)?;
    // baseline: the real test images of the same classes
    let idx: Vec<usize> = (0..test.len())
        .filter(|&i| labels.contains(&(test.labels[i] as usize)))
        .collect();
    let real_labels: Vec<usize> = idx.iter().map(|&i| test.labels[i] as usize).collect();
    let real = score(
        &e,
        judge.as_ref(),
        &test.images_tensor(&idx, &device)?,
        &real_labels,
        &refs,
    )?;
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
    let more_diverse = classes_more_diverse(&samples, &real);
    println!(
        "{:<28} {:>10} {:>10}",
        "classes more diverse (S3)",
        more_diverse,
        real.ms_ssim_per_class.len()
    );
    for (c, ms) in &samples.ms_ssim_per_class {
        println!(
            "{:<28} {ms:>10.4} {:>10.4}",
            format!("  MS-SSIM {}", CLASS_NAMES[*c]),
            real.ms_ssim_per_class.get(c).copied().unwrap_or(f64::NAN)
        );
    }
    for (c, fd) in &samples.frechet_distance_per_class {
        println!(
            "{:<28} {fd:>10.4} {:>10.4}",
            format!("  FD {}", CLASS_NAMES[*c]),
            real.frechet_distance_per_class
                .get(c)
                .copied()
                .unwrap_or(f64::NAN)
        );
    }
    let out = a.run_dir.join("eval.json");
    let json = serde_json::json!({
        "command": super::command_line(),
        "reference": "evaluator features of the 60k training images",
        "ms_ssim": "3 scales (28, 14, 7), Gaussian window sigma 0.8 (7x7), see src/eval/ms_ssim.rs",
        "classes_more_diverse_than_least_diverse_real_class": more_diverse,
        "samples": samples,
        "real_test_images": real,
    });
    ppgn::fsutil::write_atomic(
        &out,
        format!("{}\n", serde_json::to_string_pretty(&json)?).as_bytes(),
    )
    .with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}
