//! Scoring a set of images with the evaluator (never used for sampling):
//! accuracy against the requested classes, the Inception-score analogue,
//! and Frechet distances in the evaluator's feature space to a reference
//! set of real images, overall and per class.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use super::scores::{accuracy, inception_score, FeatureGaussian, Rows};
use crate::error::{Error, Result};
use crate::models::fashion::{Discriminator, Evaluator};
use crate::train::EVAL_BATCH;

/// Evaluator features `[n][d]` and class probabilities `[n][k]` of images `[n, 28, 28, 1]`.
pub fn features_and_probs(e: &Evaluator, images: &Tensor) -> Result<(Rows, Rows)> {
    let n = images.dim(0)?;
    let (mut f, mut p) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut i = 0;
    while i < n {
        let b = EVAL_BATCH.min(n - i);
        let x = images.narrow(0, i, b)?;
        let feat = e.features(&x)?;
        let probs = candle_nn::ops::log_softmax(&e.head(&feat)?, 1)?.exp()?;
        f.extend(feat.to_dtype(DType::F64)?.to_vec2::<f64>()?);
        p.extend(probs.to_dtype(DType::F64)?.to_vec2::<f64>()?);
        i += b;
    }
    Ok((f, p))
}

#[derive(Debug, Clone, Serialize)]
pub struct Scores {
    pub images: usize,
    pub evaluator_accuracy: f64,
    pub evaluator_score: f64,
    pub frechet_distance: f64,
    /// Per requested class (by index): Frechet distance to that class's reference images.
    pub frechet_distance_per_class: BTreeMap<usize, f64>,
    /// Per class: mean MS-SSIM of random pairs of its images (lower is more diverse).
    pub ms_ssim_per_class: BTreeMap<usize, f64>,
    /// Mean `log D(x)` of the realness judge (Xu et al. Table 2), when given one.
    pub mean_log_real: Option<f64>,
}

/// Random pairs per class for the within-class MS-SSIM.
pub const MS_SSIM_PAIRS: usize = 200;

/// Scores images with labels against reference features/labels of real images.
pub fn score(
    e: &Evaluator,
    judge: Option<&Discriminator>,
    images: &Tensor,
    labels: &[usize],
    reference: &Reference,
) -> Result<Scores> {
    let (f, p) = features_and_probs(e, images)?;
    let mut per_class = BTreeMap::new();
    let mut classes: Vec<usize> = labels.to_vec();
    classes.sort();
    classes.dedup();
    let pixels: Vec<Vec<f64>> = images
        .flatten_from(1)?
        .to_dtype(DType::F64)?
        .to_vec2::<f64>()?;
    let mut ms = BTreeMap::new();
    for c in classes {
        let own: Vec<Vec<f64>> = (0..pixels.len())
            .filter(|&i| labels[i] == c)
            .map(|i| pixels[i].clone())
            .collect();
        if let Some(v) = super::ms_ssim::mean_pairwise(&own, MS_SSIM_PAIRS, c as u64) {
            ms.insert(c, v);
        }
        let a: Vec<Vec<f64>> = (0..f.len())
            .filter(|&i| labels[i] == c)
            .map(|i| f[i].clone())
            .collect();
        if let (true, Some(r)) = (a.len() >= 2, reference.per_class.get(&c)) {
            per_class.insert(c, r.frechet_distance(&FeatureGaussian::fit(&a)?)?);
        }
    }
    Ok(Scores {
        images: f.len(),
        evaluator_accuracy: accuracy(&p, labels),
        evaluator_score: inception_score(&p),
        frechet_distance: reference
            .overall
            .frechet_distance(&FeatureGaussian::fit(&f)?)?,
        frechet_distance_per_class: per_class,
        ms_ssim_per_class: ms,
        mean_log_real: judge
            .map(|d| crate::train::realness::mean_log_real(d, images))
            .transpose()?,
    })
}

/// Table S3's last column: how many classes of `samples` are more diverse
/// (lower MS-SSIM) than the least diverse class of `real`.
pub fn classes_more_diverse(samples: &Scores, real: &Scores) -> usize {
    let worst_real = real
        .ms_ssim_per_class
        .values()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    samples
        .ms_ssim_per_class
        .values()
        .filter(|&&v| v < worst_real)
        .count()
}

/// The real images the Frechet distances are measured to: Gaussians of
/// their evaluator features, overall and per class (fitted once).
pub struct Reference {
    pub overall: FeatureGaussian,
    pub per_class: BTreeMap<usize, FeatureGaussian>,
}

/// The reference Gaussians of a dataset split.
pub fn reference(
    e: &Evaluator,
    data: &crate::data::fashion_mnist::Dataset,
    device: &Device,
) -> Result<Reference> {
    let idx: Vec<usize> = (0..data.len()).collect();
    let mut feats = Vec::with_capacity(data.len());
    for chunk in idx.chunks(EVAL_BATCH) {
        let x = data.images_tensor(chunk, device)?;
        feats.extend(e.features(&x)?.to_dtype(DType::F64)?.to_vec2::<f64>()?);
    }
    let mut per_class = BTreeMap::new();
    for c in 0..10usize {
        let own: Vec<Vec<f64>> = (0..feats.len())
            .filter(|&i| data.labels[i] as usize == c)
            .map(|i| feats[i].clone())
            .collect();
        if own.len() >= 2 {
            per_class.insert(c, FeatureGaussian::fit(&own)?);
        }
    }
    Ok(Reference {
        overall: FeatureGaussian::fit(&feats)?,
        per_class,
    })
}

/// Indices of test images with labels `test`: for each class of `labels`,
/// the first as many of that class as `labels` has (all of them when
/// there are fewer), in test-set order.
pub fn same_counts(labels: &[usize], test: &[u8]) -> Vec<usize> {
    let mut want: BTreeMap<usize, usize> = BTreeMap::new();
    for &l in labels {
        *want.entry(l).or_default() += 1;
    }
    (0..test.len())
        .filter(|&i| match want.get_mut(&(test[i] as usize)) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        })
        .collect()
}

/// A run's samples scored beside the real test images of the same classes
/// (`ppgn eval`).
pub struct RunScores {
    pub samples: Scores,
    pub real: Scores,
    /// [`classes_more_diverse`] of the samples against the real images.
    pub more_diverse: usize,
    /// Set when the model folder has no realness judge (no log p(real)).
    pub no_judge: Option<std::path::PathBuf>,
}

/// Scores the `samples.npy` and `labels.npy` of `run_dir` and writes
/// `run_dir/eval.json` (`command` recorded in it).
pub fn evaluate_run(
    run_dir: &std::path::Path,
    models: Option<&std::path::Path>,
    data_dir: Option<&std::path::Path>,
    command: &str,
) -> Result<RunScores> {
    use crate::data::fashion_mnist::{self, Split};
    use crate::data::npy;
    use crate::models::fashion as stack;
    let device = Device::Cpu;
    let (shape, px) = npy::read_f32(&run_dir.join("samples.npy"))?;
    if shape.len() != 4 || shape[1..] != [1, 28, 28] {
        return Err(Error::shape(
            format!("samples in {}", run_dir.join("samples.npy").display()),
            "N x 1 x 28 x 28",
            format!("{shape:?}"),
        ));
    }
    let (lshape, labels) = npy::read_i64(&run_dir.join("labels.npy"))?;
    if lshape != [shape[0]] || labels.iter().any(|&l| !(0..10).contains(&l)) {
        return Err(Error::shape(
            format!("labels in {}", run_dir.join("labels.npy").display()),
            format!(
                "{} class labels in 0..10 (runs conditioned on a neuron have no classes to score)",
                shape[0]
            ),
            format!("{lshape:?}"),
        ));
    }
    let labels: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
    let images = Tensor::from_vec(px, (shape[0], 28, 28, 1), &device)?;
    let dir = stack::resolve_dir(models);
    let (e, _) = stack::load(&dir, "evaluator", DType::F32, &device, Evaluator::new)?;
    let data_dir = fashion_mnist::resolve_dir(data_dir);
    let train = fashion_mnist::load(&data_dir, Split::Train)?;
    let test = fashion_mnist::load(&data_dir, Split::Test)?;
    let (judge_file, _) = stack::paths(&dir, "realness");
    let (judge, no_judge) = if judge_file.exists() {
        let d = stack::load(&dir, "realness", DType::F32, &device, Discriminator::new)?.0;
        (Some(d), None)
    } else {
        (None, Some(judge_file))
    };
    let refs = reference(&e, &train, &device)?;
    let samples = score(&e, judge.as_ref(), &images, &labels, &refs)?;
    // baseline: as many real test images of each class as there are
    // samples of it (Frechet distances and scores depend on the number)
    let idx = same_counts(&labels, &test.labels);
    let real_labels: Vec<usize> = idx.iter().map(|&i| test.labels[i] as usize).collect();
    let real_x = test.images_tensor(&idx, &device)?;
    let real = score(&e, judge.as_ref(), &real_x, &real_labels, &refs)?;
    let more_diverse = classes_more_diverse(&samples, &real);
    let json = serde_json::json!({
        "command": command,
        "reference": "evaluator features of the 60k training images",
        "real_test_images_chosen": "the first test images of each class, as many as the samples of that class (all of the class's when there are more samples)",
        "ms_ssim": "3 scales (28, 14, 7), Gaussian window sigma 0.8 (7x7), see src/eval/ms_ssim.rs",
        "classes_more_diverse_than_least_diverse_real_class": more_diverse,
        "samples": samples,
        "real_test_images": real,
    });
    let out = run_dir.join("eval.json");
    let text = serde_json::to_string_pretty(&json).map_err(|e| Error::data(&out, e.to_string()))?;
    crate::fsutil::write_atomic(&out, format!("{text}\n").as_bytes())?;
    Ok(RunScores {
        samples,
        real,
        more_diverse,
        no_judge,
    })
}
