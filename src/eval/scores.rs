//! Sample-quality scores computed from an evaluator network's outputs
//! ("Plug & Play Generative Networks" (supplementary), Table S3 analogues): accuracy, the Inception-score analogue
//! `exp(E_x KL(p(y|x) || p(y)))`, and the Frechet distance between two sets
//! of features `|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)`.

// Small dense linear algebra reads clearest with explicit indices.
#![allow(clippy::needless_range_loop)]

use crate::error::{Error, Result};

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

/// Mean and covariance (divided by n - 1) of rows `[n][d]`.
pub fn mean_cov(x: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = x.len();
    let d = x.first().map_or(0, |r| r.len());
    let mu: Vec<f64> = (0..d)
        .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n as f64)
        .collect();
    let mut cov = vec![vec![0.0; d]; d];
    for r in x {
        for i in 0..d {
            let di = r[i] - mu[i];
            for j in i..d {
                cov[i][j] += di * (r[j] - mu[j]);
            }
        }
    }
    let denom = (n as f64 - 1.0).max(1.0);
    for i in 0..d {
        for j in i..d {
            cov[i][j] /= denom;
            cov[j][i] = cov[i][j];
        }
    }
    (mu, cov)
}

/// Eigenvalues and eigenvectors (columns) of a symmetric matrix by cyclic Jacobi rotations.
pub fn symmetric_eigen(a: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = a.len();
    let mut m: Vec<Vec<f64>> = a.to_vec();
    let mut v: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i][j] * m[i][j])
            .sum();
        let scale: f64 = (0..n).map(|i| m[i][i] * m[i][i]).sum::<f64>().max(1e-300);
        if off <= 1e-24 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if m[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (m[q][q] - m[p][p]) / (2.0 * m[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[k][p], m[k][q]);
                    m[k][p] = c * mkp - s * mkq;
                    m[k][q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p][k], m[q][k]);
                    m[p][k] = c * mpk - s * mqk;
                    m[q][k] = s * mpk + c * mqk;
                }
                for row in v.iter_mut() {
                    let (vkp, vkq) = (row[p], row[q]);
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| m[i][i]).collect(), v)
}

/// The symmetric square root of a positive semi-definite matrix
/// (negative eigenvalues from rounding are taken as zero).
pub fn sqrtm_psd(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let (w, v) = symmetric_eigen(a);
    let n = a.len();
    let mut out = vec![vec![0.0; n]; n];
    for k in 0..n {
        let s = w[k].max(0.0).sqrt();
        for i in 0..n {
            for j in 0..n {
                out[i][j] += v[i][k] * s * v[j][k];
            }
        }
    }
    out
}

fn matmul(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = a.len();
    let m = b[0].len();
    (0..n)
        .map(|i| {
            (0..m)
                .map(|j| (0..b.len()).map(|k| a[i][k] * b[k][j]).sum())
                .collect()
        })
        .collect()
}

/// A Gaussian fitted to feature rows, with the square root of its
/// covariance kept so that distances to it cost one square root each.
#[derive(Debug, Clone)]
pub struct FeatureGaussian {
    pub mean: Vec<f64>,
    pub cov: Vec<Vec<f64>>,
    /// Computed on first use: only the reference side of a distance needs it.
    sqrt_cov: std::sync::OnceLock<Vec<Vec<f64>>>,
    pub rows: usize,
}

impl FeatureGaussian {
    pub fn fit(x: &[Vec<f64>]) -> Result<Self> {
        if x.len() < 2 {
            return Err(Error::shape(
                "Frechet distance",
                "at least 2 feature rows",
                x.len(),
            ));
        }
        let (mean, cov) = mean_cov(x);
        Ok(Self {
            sqrt_cov: std::sync::OnceLock::new(),
            mean,
            cov,
            rows: x.len(),
        })
    }

    /// `|m1 - m2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)` (Heusel et al.).
    pub fn frechet_distance(&self, other: &FeatureGaussian) -> Result<f64> {
        let d = self.mean.len();
        if other.mean.len() != d {
            return Err(Error::shape(
                "Frechet distance",
                format!("{d}-dimensional features on both sides"),
                other.mean.len(),
            ));
        }
        let r1 = self.sqrt_cov.get_or_init(|| sqrtm_psd(&self.cov));
        let inner = matmul(&matmul(r1, &other.cov), r1);
        // symmetrise against rounding before the square root
        let inner: Vec<Vec<f64>> = (0..d)
            .map(|i| (0..d).map(|j| 0.5 * (inner[i][j] + inner[j][i])).collect())
            .collect();
        let cross = sqrtm_psd(&inner);
        let mean_term: f64 = self
            .mean
            .iter()
            .zip(&other.mean)
            .map(|(x, y)| (x - y) * (x - y))
            .sum();
        let trace: f64 = (0..d)
            .map(|i| self.cov[i][i] + other.cov[i][i] - 2.0 * cross[i][i])
            .sum();
        Ok((mean_term + trace).max(0.0))
    }
}

/// Frechet distance between Gaussians fitted to two feature sets `[n][d]`.
pub fn frechet_distance(a: &[Vec<f64>], b: &[Vec<f64>]) -> Result<f64> {
    FeatureGaussian::fit(a)?.frechet_distance(&FeatureGaussian::fit(b)?)
}
