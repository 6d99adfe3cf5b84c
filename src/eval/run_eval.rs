//! `ppgn eval`: any run folder's samples scored by an evaluator, beside
//! real images. By default the Fashion-MNIST stack's independent
//! evaluator, the 60k training images as the Frechet reference and as many
//! test images per class as the run has samples; with `--evaluator`, any
//! classifier (a sidecar or a built-in name) with its features at a node
//! (`--features`), and with `--real`, any real images (their classes are
//! then the evaluator's own top-1 verdicts).

use std::ops::Range;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::judge::{unlabelled_reference, Judge, NetJudge};
use super::report::{
    classes_more_diverse, reference, same_counts, score, score_blocks, validation_split, Reference,
    Scores,
};
use crate::data::fashion_mnist::{self, Split, CLASS_NAMES};
use crate::data::npy_stream::F32RowsReader;
use crate::error::{Error, Result};
use crate::models::fashion::{self as stack, Discriminator, Evaluator};
use crate::models::plug::ClassifierSide;

/// What `ppgn eval` is asked.
#[derive(Debug, Clone, Copy)]
pub struct EvalSpec<'a> {
    pub run_dir: &'a Path,
    /// The shipped stack's folder (the default evaluator and realness judge).
    pub models: Option<&'a Path>,
    /// The Fashion-MNIST folder (the default real images).
    pub data_dir: Option<&'a Path>,
    /// A classifier sidecar (`FILE.toml`) or a built-in classifier name.
    pub evaluator: Option<&'a str>,
    /// The evaluator's node its features are read at.
    pub features: Option<&'a str>,
    /// Real images: `.npy`, IDX or a folder of PNGs.
    pub real: Option<&'a Path>,
    /// Fashion-MNIST runs: compare with the validation split (the last
    /// 5,000 training images, labelled, no network trained on them) in
    /// place of the test images and the training images' reference: what
    /// a choice of settings may read.
    pub validation: bool,
    pub command: &'a str,
}

/// A run's samples scored beside real images (`ppgn eval`).
pub struct RunScores {
    pub samples: Scores,
    pub real: Scores,
    /// [`classes_more_diverse`] of the samples against the real images.
    pub more_diverse: usize,
    /// Set when the default evaluator's folder has no realness judge.
    pub no_judge: Option<std::path::PathBuf>,
    /// Seconds scoring the samples took (read block by block).
    pub seconds: f64,
    /// The evaluator's class names.
    pub class_names: Vec<String>,
    /// Whether the real images' classes are their labels (else the
    /// evaluator's top-1, so their accuracy is 1 by construction).
    pub real_labelled: bool,
}

/// The evaluator of a run of images `hwc`, and its class names.
fn judge_for(spec: &EvalSpec, hwc: (usize, usize, usize)) -> Result<(Box<dyn Judge>, Vec<String>)> {
    let dir = stack::resolve_dir(spec.models);
    match spec.evaluator {
        None if hwc == (28, 28, 1) => {
            let (e, _) = stack::load(&dir, "evaluator", DType::F32, &Device::Cpu, Evaluator::new)?;
            Ok((Box::new(e), CLASS_NAMES.iter().map(|s| s.to_string()).collect()))
        }
        None => Err(Error::shape(
            format!("samples in {}", spec.run_dir.join("samples.npy").display()),
            "[n, 1, 28, 28] for the default evaluator (the Fashion-MNIST stack's); for other images give --evaluator FILE.toml and --real IMAGES",
            format!("[n, {}, {}, {}]", hwc.2, hwc.0, hwc.1),
        )),
        Some(name) => {
            let side = ClassifierSide::named(name, &crate::models::pretrained::home(), &dir)?;
            let j = NetJudge::new(side, hwc, spec.features)?;
            let names = j.class_names.clone();
            Ok((Box::new(j), names))
        }
    }
}

/// Scores the `samples.npy` and `labels.npy` of `spec.run_dir` and writes
/// `run_dir/eval.json` (the command recorded in it).
pub fn evaluate(spec: &EvalSpec) -> Result<RunScores> {
    let run_dir = spec.run_dir;
    let mut samples_file = F32RowsReader::open(&run_dir.join("samples.npy"))?;
    let hwc = match samples_file.shape[..] {
        [_, c, h, w] if c == 1 || c == 3 => (h, w, c),
        ref other => {
            return Err(Error::shape(
                format!("samples in {}", run_dir.join("samples.npy").display()),
                "[n, 1 or 3, h, w] images",
                format!("{other:?}"),
            ))
        }
    };
    let n = samples_file.shape[0];
    if spec.real.is_none() && hwc != (28, 28, 1) && spec.evaluator.is_some() {
        return Err(no_real());
    }
    if spec.validation && (spec.real.is_some() || hwc != (28, 28, 1)) {
        return Err(Error::unsupported(
            "--validation with real images given or samples other than 28x28 grey",
            "--validation compares Fashion-MNIST runs with the validation split; give it or --real",
        ));
    }
    let (judge, class_names) = judge_for(spec, hwc)?;
    let labels = run_labels(run_dir, n, class_names.len())?;
    let (refs, real, real_labelled, realness) = real_side(spec, &*judge, hwc, &labels)?;
    let mut read = |r: Range<usize>| -> Result<Tensor> {
        let k = r.len();
        let chw = samples_file.read(r)?;
        let v = crate::data::image::chw_to_hwc(&chw, k, hwc);
        Ok(Tensor::from_vec(v, (k, hwc.0, hwc.1, hwc.2), &Device::Cpu)?)
    };
    let t0 = std::time::Instant::now();
    let samples = score_blocks(&*judge, realness.0.as_ref(), &labels, &refs, &mut read)?;
    let seconds = t0.elapsed().as_secs_f64();
    let more_diverse = classes_more_diverse(&samples, &real);
    let json = serde_json::json!({
        "command": spec.command,
        "evaluator": spec.evaluator.unwrap_or("the Fashion-MNIST stack's evaluator"),
        "features": spec.features,
        "reference": match (spec.real, spec.validation) {
            (Some(p), _) => format!("evaluator features of the real images in {}", p.display()),
            (None, true) => "evaluator features of the validation split (the last 5,000 training images)".into(),
            (None, false) => "evaluator features of the 60k training images".into(),
        },
        "real_images_chosen": match (spec.real, spec.validation) {
            (Some(_), _) => "all of them, each class the evaluator's top-1 verdict",
            (None, true) => "the first validation images of each class, as many as the samples of that class (all of the class's when there are more samples)",
            (None, false) => "the first test images of each class, as many as the samples of that class (all of the class's when there are more samples)",
        },
        "ms_ssim": "grey (RGB by its luma), up to 3 scales of side at least 7, Gaussian window sigma 0.8 (7x7), see src/eval/ms_ssim.rs",
        "classes_more_diverse_than_least_diverse_real_class": more_diverse,
        "samples": samples,
        "samples_seconds": seconds,
        "real_test_images": real,
    });
    let out = run_dir.join("eval.json");
    let text = serde_json::to_string_pretty(&json).map_err(|e| Error::data(&out, e.to_string()))?;
    crate::fsutil::write_atomic(&out, format!("{text}\n").as_bytes())?;
    Ok(RunScores {
        samples,
        real,
        more_diverse,
        no_judge: realness.1,
        seconds,
        class_names,
        real_labelled,
    })
}

/// The `n` class labels of the run in `run_dir`, each one of the
/// evaluator's `k` classes.
fn run_labels(run_dir: &Path, n: usize, k: usize) -> Result<Vec<usize>> {
    let (lshape, labels) = crate::data::npy::read_i64(&run_dir.join("labels.npy"))?;
    if lshape != [n] || labels.iter().any(|&l| !(0..k as i64).contains(&l)) {
        return Err(Error::shape(
            format!("labels in {}", run_dir.join("labels.npy").display()),
            format!("{n} class labels in 0..{k}, the evaluator's classes (runs conditioned on a neuron have no classes to score)"),
            format!("{lshape:?}"),
        ));
    }
    Ok(labels.iter().map(|&l| l as usize).collect())
}

/// The error of a run whose images are not Fashion-MNIST's with no real
/// images given.
fn no_real() -> Error {
    Error::setting(
        "real",
        "none",
        "--real IMAGES (.npy, IDX or a folder of PNGs): the default real images are Fashion-MNIST's, 28x28 grey",
    )
}

/// The realness judge of the default evaluator, or where it is missing.
type Realness = (Option<Discriminator>, Option<std::path::PathBuf>);

/// The Frechet reference, the real images' scores, whether they carry
/// labels, and the realness judge (default evaluator only).
fn real_side(
    spec: &EvalSpec,
    judge: &dyn Judge,
    hwc: (usize, usize, usize),
    labels: &[usize],
) -> Result<(Reference, Scores, bool, Realness)> {
    let device = Device::Cpu;
    if let Some(path) = spec.real {
        let imgs = crate::data::images::read(path)?;
        let x = Tensor::from_vec(
            imgs.values,
            (imgs.n, imgs.hwc.0, imgs.hwc.1, imgs.hwc.2),
            &device,
        )?;
        let other;
        let judge: &dyn Judge = match (imgs.hwc == hwc, spec.evaluator) {
            (true, _) => judge,
            (false, Some(_)) => {
                other = judge_for(spec, imgs.hwc)?.0;
                &*other
            }
            (false, None) => {
                return Err(Error::shape(
                    format!("real images in {}", path.display()),
                    format!(
                        "{}x{}x{}, as the samples (or give --evaluator, which reads any size)",
                        hwc.0, hwc.1, hwc.2
                    ),
                    format!("{}x{}x{}", imgs.hwc.0, imgs.hwc.1, imgs.hwc.2),
                ))
            }
        };
        let (refs, top1) = unlabelled_reference(judge, &x)?;
        let real = score(judge, None, &x, &top1, &refs)?;
        return Ok((refs, real, false, (None, None)));
    }
    if hwc != (28, 28, 1) {
        return Err(no_real());
    }
    let data_dir = fashion_mnist::resolve_dir(spec.data_dir);
    let train = fashion_mnist::load(&data_dir, Split::Train)?;
    let test = fashion_mnist::load(&data_dir, Split::Test)?;
    let realness: Realness = match spec.evaluator {
        Some(_) => (None, None),
        None => {
            let dir = stack::resolve_dir(spec.models);
            let (judge_file, _) = stack::paths(&dir, "realness");
            match judge_file.exists() {
                true => (
                    Some(stack::load(&dir, "realness", DType::F32, &device, Discriminator::new)?.0),
                    None,
                ),
                false => (None, Some(judge_file)),
            }
        }
    };
    // the reference and the real images: the training images and the
    // test images, or the validation split for both
    let (refs, real_set) = match spec.validation {
        false => (reference(judge, &train, &device)?, test),
        true => {
            let val = validation_split(&train)?;
            (reference(judge, &val, &device)?, val)
        }
    };
    // as many real images of each class as there are samples of it
    // (Frechet distances and scores depend on the number)
    let idx = same_counts(labels, &real_set.labels);
    let real_labels: Vec<usize> = idx.iter().map(|&i| real_set.labels[i] as usize).collect();
    let real_x = real_set.images_tensor(&idx, &device)?;
    let real = score(judge, realness.0.as_ref(), &real_x, &real_labels, &refs)?;
    Ok((refs, real, true, realness))
}

/// The table `ppgn eval` prints: the samples beside the real images.
impl std::fmt::Display for RunScores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (samples, real) = (&self.samples, &self.real);
        let head = if self.real_labelled {
            "real test"
        } else {
            "real"
        };
        writeln!(f, "{:<28} {:>10} {:>10}", "", "samples", head)?;
        writeln!(
            f,
            "{:<28} {:>10} {:>10}",
            "images", samples.images, real.images
        )?;
        let real_acc = match self.real_labelled {
            true => format!("{:>10.4}", real.evaluator_accuracy),
            false => format!("{:>10}", "-"),
        };
        writeln!(
            f,
            "{:<28} {:>10.4} {real_acc}",
            "evaluator accuracy", samples.evaluator_accuracy
        )?;
        for (name, s, r) in [
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
            writeln!(f, "{name:<28} {s:>10.4} {r:>10.4}")?;
        }
        if let (Some(s), Some(r)) = (samples.mean_log_real, real.mean_log_real) {
            writeln!(
                f,
                "{:<28} {s:>10.4} {r:>10.4}",
                "mean log p(real) (Table 2)"
            )?;
        }
        writeln!(
            f,
            "{:<28} {:>10} {:>10}",
            "classes more diverse (S3)",
            self.more_diverse,
            real.ms_ssim_per_class.len()
        )?;
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
                let class = self.class_names.get(*c).map_or("?", String::as_str);
                let name = format!("  {what} {class}");
                writeln!(f, "{name:<28} {v:>10.4} {t:>10.4}")?;
            }
        }
        Ok(())
    }
}
