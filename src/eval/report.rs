//! Scoring a set of images with the evaluator (never used for sampling):
//! accuracy against the requested classes, the Inception-score analogue,
//! and Frechet distances in the evaluator's feature space to a reference
//! set of real images, overall and per class.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

pub use super::judge::{features_and_probs, Judge};
use super::ms_ssim::ms_ssim_sized;
pub use super::scores::Reference;
use super::scores::{accuracy, inception_score, FeatureGaussian, Rows};
use crate::error::Result;
use crate::models::fashion::Discriminator;
use crate::nn::frechet::Moments;
use crate::train::EVAL_BATCH;

#[derive(Debug, Clone, Serialize, Deserialize)]
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
    e: &dyn Judge,
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

/// The images of each class, and the pairs of them MS-SSIM compares
/// (image indices).
#[allow(clippy::type_complexity)]
fn class_pairs(
    labels: &[usize],
) -> (
    BTreeMap<usize, Vec<usize>>,
    BTreeMap<usize, Vec<(usize, usize)>>,
) {
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &c) in labels.iter().enumerate() {
        members.entry(c).or_default().push(i);
    }
    let pairs = members
        .iter()
        .filter_map(|(&c, m)| {
            let p = super::ms_ssim::pair_indices(m.len(), MS_SSIM_PAIRS, c as u64)?;
            Some((c, p.into_iter().map(|(i, j)| (m[i], m[j])).collect()))
        })
        .collect();
    (members, pairs)
}

/// [`score`] of images read a block at a time (`read(range)` gives images
/// `range`, `[k, 28, 28, 1]`): features enter running moments, and of the
/// pixels only the images the MS-SSIM pairs compare are kept, so any
/// number of images is scored in bounded memory. With at most [`BLOCK`]
/// images the numbers are those of one pass over all of them.
pub fn score_blocks(
    e: &dyn Judge,
    judge: Option<&Discriminator>,
    labels: &[usize],
    reference: &Reference,
    read: &mut dyn FnMut(Range<usize>) -> Result<Tensor>,
) -> Result<Scores> {
    let n = labels.len();
    let (members, pairs) = class_pairs(labels);
    let needed: BTreeSet<usize> = pairs
        .values()
        .flatten()
        .flat_map(|&(i, j)| [i, j])
        .collect();
    let mut kept: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let (mut overall, mut per) = (Moments::default(), BTreeMap::<usize, Moments>::new());
    let (mut probs, mut log_real) = (Vec::with_capacity(n), 0.0);
    let mut hw = (28, 28);
    for start in (0..n).step_by(BLOCK) {
        let r = start..(start + BLOCK).min(n);
        let x = read(r.clone())?;
        let (f, p) = e.features_and_probs(&x)?;
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
            let px;
            (hw, px) = grey_rows(&x)?;
            kept.extend(want.into_iter().map(|i| (i, px[i - start].clone())));
        }
    }
    let ms = pairs
        .iter()
        .map(|(&c, p)| {
            let sum: f64 = p
                .iter()
                .map(|(i, j)| ms_ssim_sized(&kept[i], &kept[j], hw.0, hw.1))
                .sum();
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

/// Images `[n, h, w, c]` as grey rows for MS-SSIM (RGB by its luma),
/// with their `(h, w)`.
fn grey_rows(x: &Tensor) -> Result<((usize, usize), Rows)> {
    let (_, h, w, c) = x.dims4()?;
    let grey = match c {
        3 => x
            .broadcast_mul(&Tensor::new(&[0.299f32, 0.587, 0.114], x.device())?)?
            .sum(3)?,
        _ => x.clone(),
    };
    Ok((
        (h, w),
        grey.flatten_from(1)?
            .to_dtype(DType::F64)?
            .to_vec2::<f64>()?,
    ))
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

/// The validation split: the last `crate::train::VALIDATION` training
/// images, which no network was trained on.
pub fn validation_split(
    train: &crate::data::fashion_mnist::Dataset,
) -> Result<crate::data::fashion_mnist::Dataset> {
    let n = train.len();
    let from = crate::train::validation_start(n);
    let idx: Vec<usize> = (from..n).collect();
    Ok(crate::data::fashion_mnist::Dataset {
        images: train.images[from * 784..].to_vec(),
        labels: idx.iter().map(|&i| train.labels[i]).collect(),
    })
}

/// The reference Gaussians of a dataset split.
pub fn reference(
    e: &dyn Judge,
    data: &crate::data::fashion_mnist::Dataset,
    device: &Device,
) -> Result<Reference> {
    let idx: Vec<usize> = (0..data.len()).collect();
    let mut feats = Vec::with_capacity(data.len());
    for chunk in idx.chunks(EVAL_BATCH) {
        let x = data.images_tensor(chunk, device)?;
        feats.extend(e.features_and_probs(&x)?.0);
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
