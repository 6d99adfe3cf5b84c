//! Scoring a set of images with the evaluator (never used for sampling):
//! accuracy against the requested classes, the Inception-score analogue,
//! and Frechet distances in the evaluator's feature space to a reference
//! set of real images, overall and per class.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use super::ms_ssim::ms_ssim;
use super::scores::{accuracy, inception_score, FeatureGaussian, Rows};
use crate::error::{Error, Result};
use crate::models::fashion::{Discriminator, Evaluator};
use crate::nn::frechet::Moments;
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
    let mut read = |r: Range<usize>| -> Result<Tensor> { Ok(images.narrow(0, r.start, r.len())?) };
    score_blocks(e, judge, labels, reference, &mut read)
}

/// Images scored a block at a time.
const BLOCK: usize = 1000;

/// [`score`] of images read a block at a time (`read(range)` gives images
/// `range`, `[k, 28, 28, 1]`): features enter running moments, and of the
/// pixels only the images the MS-SSIM pairs compare are kept, so any
/// number of images is scored in bounded memory. With at most [`BLOCK`]
/// images the numbers are those of one pass over all of them.
pub fn score_blocks(
    e: &Evaluator,
    judge: Option<&Discriminator>,
    labels: &[usize],
    reference: &Reference,
    read: &mut dyn FnMut(Range<usize>) -> Result<Tensor>,
) -> Result<Scores> {
    let n = labels.len();
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &c) in labels.iter().enumerate() {
        members.entry(c).or_default().push(i);
    }
    // the MS-SSIM pairs of each class, as image indices
    let pairs: BTreeMap<usize, Vec<(usize, usize)>> = members
        .iter()
        .filter_map(|(&c, m)| {
            let p = super::ms_ssim::pair_indices(m.len(), MS_SSIM_PAIRS, c as u64)?;
            Some((c, p.into_iter().map(|(i, j)| (m[i], m[j])).collect()))
        })
        .collect();
    let needed: BTreeSet<usize> = pairs
        .values()
        .flatten()
        .flat_map(|&(i, j)| [i, j])
        .collect();
    let mut kept: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let (mut overall, mut per) = (Moments::default(), BTreeMap::<usize, Moments>::new());
    let (mut probs, mut log_real) = (Vec::with_capacity(n), 0.0);
    for start in (0..n).step_by(BLOCK) {
        let r = start..(start + BLOCK).min(n);
        let x = read(r.clone())?;
        let (f, p) = features_and_probs(e, &x)?;
        overall.add(&f);
        for (&c, m) in &members {
            let rows: Vec<Vec<f64>> = m
                .iter()
                .filter(|i| r.contains(i))
                .map(|&i| f[i - start].clone())
                .collect();
            per.entry(c).or_default().add(&rows);
        }
        probs.extend(p);
        if let Some(d) = judge {
            log_real += crate::train::realness::mean_log_real(d, &x)? * r.len() as f64;
        }
        let want: Vec<usize> = needed.range(r.clone()).copied().collect();
        if !want.is_empty() {
            let px = x.flatten_from(1)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
            kept.extend(want.into_iter().map(|i| (i, px[i - start].clone())));
        }
    }
    let ms = pairs
        .iter()
        .map(|(&c, p)| {
            let sum: f64 = p.iter().map(|(i, j)| ms_ssim(&kept[i], &kept[j])).sum();
            (c, sum / p.len() as f64)
        })
        .collect();
    let mut frechet_per_class = BTreeMap::new();
    for (c, m) in &per {
        if let (true, Some(r)) = (m.rows >= 2, reference.per_class.get(c)) {
            frechet_per_class.insert(*c, r.frechet_distance(&m.gaussian()?)?);
        }
    }
    Ok(Scores {
        images: n,
        evaluator_accuracy: accuracy(&probs, labels),
        evaluator_score: inception_score(&probs),
        frechet_distance: reference.overall.frechet_distance(&overall.gaussian()?)?,
        frechet_distance_per_class: frechet_per_class,
        ms_ssim_per_class: ms,
        mean_log_real: judge.map(|_| log_real / n.max(1) as f64),
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
    /// Seconds scoring the samples took (read block by block).
    pub seconds: f64,
}

/// The table `ppgn eval` prints: the samples beside the real test images.
impl std::fmt::Display for RunScores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::data::fashion_mnist::CLASS_NAMES;
        let (samples, real) = (&self.samples, &self.real);
        writeln!(f, "{:<28} {:>10} {:>10}", "", "samples", "real test")?;
        writeln!(
            f,
            "{:<28} {:>10} {:>10}",
            "images", samples.images, real.images
        )?;
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
                let name = format!("  {what} {}", CLASS_NAMES[*c]);
                writeln!(f, "{name:<28} {v:>10.4} {t:>10.4}")?;
            }
        }
        Ok(())
    }
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
    use crate::data::npy_stream::F32RowsReader;
    use crate::models::fashion as stack;
    let device = Device::Cpu;
    let mut samples_file = F32RowsReader::open(&run_dir.join("samples.npy"))?;
    let shape = samples_file.shape.clone();
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
    let mut read = |r: Range<usize>| -> Result<Tensor> {
        let k = r.len();
        Ok(Tensor::from_vec(
            samples_file.read(r)?,
            (k, 28, 28, 1),
            &device,
        )?)
    };
    let t0 = std::time::Instant::now();
    let samples = score_blocks(&e, judge.as_ref(), &labels, &refs, &mut read)?;
    let seconds = t0.elapsed().as_secs_f64();
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
        no_judge,
        seconds,
    })
}
