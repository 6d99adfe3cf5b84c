//! Sample-quality scores computed from an evaluator network's outputs
//! ("Plug & Play Generative Networks" (supplementary), Table S3 analogues): accuracy, the Inception-score analogue
//! `exp(E_x KL(p(y|x) || p(y)))`, and the Frechet distance between two sets
//! of features `|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)`.

use std::collections::BTreeMap;

pub use crate::nn::frechet::{
    frechet_distance, mean_cov, sqrtm_psd, symmetric_eigen, FeatureGaussian,
};

/// Rows of a matrix, `[n][d]`.
pub type Rows = Vec<Vec<f64>>;

/// Fraction of rows of `probs` (`[n][k]`) whose argmax is the label.
pub fn accuracy(probs: &[Vec<f64>], labels: &[usize]) -> f64 {
    let ok = probs
        .iter()
        .zip(labels)
        .filter(|(p, &l)| {
            p.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i == l)
                .unwrap_or(false)
        })
        .count();
    ok as f64 / probs.len().max(1) as f64
}

/// `exp(mean_x KL(p(y|x) || p(y)))` with `p(y)` the mean of the rows.
pub fn inception_score(probs: &[Vec<f64>]) -> f64 {
    let n = probs.len().max(1) as f64;
    let k = probs.first().map_or(0, |p| p.len());
    let marginal: Vec<f64> = (0..k)
        .map(|j| probs.iter().map(|p| p[j]).sum::<f64>() / n)
        .collect();
    let kl: f64 = probs
        .iter()
        .map(|p| {
            p.iter()
                .zip(&marginal)
                .filter(|(pj, _)| **pj > 0.0)
                .map(|(pj, mj)| pj * (pj / mj).ln())
                .sum::<f64>()
        })
        .sum::<f64>()
        / n;
    kl.exp()
}

/// The real images the Frechet distances are measured to: Gaussians of
/// their evaluator features, overall and per class (fitted once).
pub struct Reference {
    pub overall: FeatureGaussian,
    pub per_class: BTreeMap<usize, FeatureGaussian>,
}
