//! Reconstruction of real images through the code space, `x -> h = E(x) ->
//! G(h)`: the E + G autoencoder of "Plug & Play Generative Networks" (supplementary), Fig. S9b.
//! If `G` draws recognisable items from codes, the independent evaluator
//! classifies reconstructions almost as well as the originals.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Module, Tensor};

use super::EVAL_BATCH;
use crate::data::fashion_mnist::Dataset;
use crate::error::Result;
use crate::models::fashion::{Classifier, Evaluator, Generator};
use crate::models::generator_error::ErrorByValue;
use crate::nn::frechet::frechet_distance;
use crate::nn::{accuracy, mse};

/// Measurements over a whole split; every value is a mean over images.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconstructionReport {
    pub classifier_accuracy_originals: f64,
    pub classifier_accuracy_reconstructions: f64,
    pub evaluator_accuracy_originals: f64,
    pub evaluator_accuracy_reconstructions: f64,
    /// Mean squared pixel error of `G(E(x))` against `x`, pixels in [0, 1].
    pub reconstruction_mse: f64,
    /// Mean squared error of `E1(G(E(x)))` against `E1(x)` (the `L_h1` space).
    pub h1_mse: f64,
}

impl ReconstructionReport {
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            (
                "classifier_accuracy_originals".into(),
                self.classifier_accuracy_originals,
            ),
            (
                "classifier_accuracy_reconstructions".into(),
                self.classifier_accuracy_reconstructions,
            ),
            (
                "evaluator_accuracy_originals".into(),
                self.evaluator_accuracy_originals,
            ),
            (
                "evaluator_accuracy_reconstructions".into(),
                self.evaluator_accuracy_reconstructions,
            ),
            ("test_reconstruction_mse".into(), self.reconstruction_mse),
            ("test_h1_mse".into(), self.h1_mse),
        ])
    }
}

pub fn evaluate(
    e: &Classifier,
    g: &Generator,
    evaluator: &Evaluator,
    data: &Dataset,
    device: &Device,
) -> Result<ReconstructionReport> {
    let mut sums = [0.0f64; 6];
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(EVAL_BATCH) {
        let w = chunk.len() as f64;
        let x = data.images_tensor(chunk, device)?;
        let y = data.labels_tensor(chunk, device)?;
        let out = e.forward_all(&x)?;
        let rec = g.forward(&out.h)?;
        let rec_out = e.forward_all(&rec)?;
        let vals = [
            accuracy(&out.logits, &y)?,
            accuracy(&rec_out.logits, &y)?,
            accuracy(&evaluator.forward(&x)?, &y)?,
            accuracy(&evaluator.forward(&rec)?, &y)?,
            mse(&rec, &x)?.to_scalar::<f32>()? as f64,
            mse(&rec_out.h1, &out.h1)?.to_scalar::<f32>()? as f64,
        ];
        for (s, v) in sums.iter_mut().zip(vals) {
            *s += v * w;
        }
    }
    let n = data.len().max(1) as f64;
    let m = sums.map(|s| s / n);
    Ok(ReconstructionReport {
        classifier_accuracy_originals: m[0],
        classifier_accuracy_reconstructions: m[1],
        evaluator_accuracy_originals: m[2],
        evaluator_accuracy_reconstructions: m[3],
        reconstruction_mse: m[4],
        h1_mse: m[5],
    })
}

/// Frechet distances of the reconstructions `G(E(x))` of the images `idx`
/// of `data` to the images, in two of the guiding classifier's layers, and
/// the reconstructions' pixel RMSE, in one pass: how
/// far the generator's drawings of real codes are from the real images in
/// the features the sampler is guided by. The code loss L_h minimises the
/// first by construction, so the second chooses among generators
/// (`crate::eval::generators`).
#[derive(Debug, Clone)]
pub struct FeatureFrechet {
    /// In the code `h` (fc6 analogue).
    pub h: f64,
    /// In the spatial features `h1` (pool5 analogue) averaged over the 7x7
    /// positions: the low-level statistics that "Plug & Play Generative
    /// Networks" (supplementary), S8, finds a code-layer loss gives up.
    pub h1_pooled: f64,
    /// The root mean squared pixel error of the reconstructions: the
    /// generator's own error per pixel (`crate::models::card::GENERATOR_ERROR`).
    pub rmse: f64,
    /// The same at each pixel position, over the images (flat HWC).
    pub rmse_per_pixel: Vec<f64>,
    /// The error `x - G(E(x))` by the value drawn: tenths of [0, 1], 101
    /// quantiles each.
    pub error_by_value: ErrorByValue,
}

/// Both distances of [`FeatureFrechet`] in one pass.
pub fn frechet_in_features(
    e: &Classifier,
    g: &Generator,
    data: &Dataset,
    idx: &[usize],
    device: &Device,
) -> Result<FeatureFrechet> {
    let rows =
        |t: &Tensor| -> Result<Vec<Vec<f64>>> { Ok(t.to_dtype(DType::F64)?.to_vec2::<f64>()?) };
    let (mut real, mut rec, mut real1, mut rec1) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut squares = 0.0;
    let mut per_pixel: Vec<f64> = Vec::new();
    let mut drawn: Vec<(f32, f32)> = Vec::new();
    for chunk in idx.chunks(EVAL_BATCH) {
        let x = data.images_tensor(chunk, device)?;
        let o = e.forward_all(&x)?;
        let x_rec = g.forward(&o.h)?;
        squares += mse(&x_rec, &x)?.to_scalar::<f32>()? as f64 * chunk.len() as f64;
        let d = (x_rec.to_dtype(DType::F64)? - x.to_dtype(DType::F64)?)?;
        let sums = d.sqr()?.sum(0)?.flatten_all()?.to_vec1::<f64>()?;
        per_pixel.resize(sums.len(), 0.0);
        per_pixel.iter_mut().zip(sums).for_each(|(a, b)| *a += b);
        let flat = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
        drawn.extend(flat(&x_rec)?.into_iter().zip(flat(&x)?));
        let o_rec = e.forward_all(&x_rec)?;
        real.extend(rows(&o.h)?);
        rec.extend(rows(&o_rec.h)?);
        // h1 is [n, 7, 7, c]: the mean over positions
        real1.extend(rows(&o.h1.mean((1, 2))?)?);
        rec1.extend(rows(&o_rec.h1.mean((1, 2))?)?);
    }
    Ok(FeatureFrechet {
        h: frechet_distance(&rec, &real)?,
        h1_pooled: frechet_distance(&rec1, &real1)?,
        rmse: (squares / idx.len().max(1) as f64).sqrt(),
        rmse_per_pixel: per_pixel
            .iter()
            .map(|s| (s / idx.len().max(1) as f64).sqrt())
            .collect(),
        error_by_value: ErrorByValue::fit(
            drawn.into_iter().map(|(g, x)| (g as f64, x as f64)),
            [0.0, 1.0],
            10,
            101,
        )?,
    })
}
