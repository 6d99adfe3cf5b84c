//! Gaussian statistics of feature rows: mean and covariance, the
//! symmetric square root, and the Frechet distance between Gaussians fitted
//! to two sets of features (Heusel et al.),
//! `|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)`. Here, below
//! training and evaluation alike, since both measure with it.

use nalgebra::{DMatrix, SymmetricEigen};

use crate::error::{Error, Result};

/// Mean and covariance (divided by n - 1) of rows `[n][d]`.
pub fn mean_cov(x: &[Vec<f64>]) -> (Vec<f64>, DMatrix<f64>) {
    let n = x.len();
    let d = x.first().map_or(0, |r| r.len());
    let m = DMatrix::from_fn(n, d, |i, j| x[i][j]);
    let mu: Vec<f64> = m.row_mean().iter().copied().collect();
    let centred = DMatrix::from_fn(n, d, |i, j| m[(i, j)] - mu[j]);
    let cov = centred.tr_mul(&centred) / (n as f64 - 1.0).max(1.0);
    (mu, cov)
}

/// Mean and scatter of feature rows added block by block (Chan et al.'s
/// pairwise update), so a Gaussian is fitted to any number of rows in
/// bounded memory.
#[derive(Debug, Clone, Default)]
pub struct Moments {
    pub rows: usize,
    mean: Vec<f64>,
    /// Sum over rows of `(x - mean)(x - mean)^T`.
    scatter: Option<DMatrix<f64>>,
}

impl Moments {
    /// Adds rows `[n][d]`.
    pub fn add(&mut self, x: &[Vec<f64>]) {
        if x.is_empty() {
            return;
        }
        let (nb, (mb, cb)) = (x.len(), mean_cov(x));
        let sb = cb * (nb as f64 - 1.0).max(0.0);
        let Some(sa) = self.scatter.take() else {
            (self.rows, self.mean, self.scatter) = (nb, mb, Some(sb));
            return;
        };
        let (na, n) = (self.rows as f64, (self.rows + nb) as f64);
        let delta: Vec<f64> = mb.iter().zip(&self.mean).map(|(b, a)| b - a).collect();
        let d = nalgebra::DVector::from_vec(delta.clone());
        let cross = &d * d.transpose() * (na * nb as f64 / n);
        self.scatter = Some(sa + sb + cross);
        for (m, dl) in self.mean.iter_mut().zip(&delta) {
            *m += dl * nb as f64 / n;
        }
        self.rows += nb;
    }

    /// The Gaussian of the rows added (at least 2).
    pub fn gaussian(&self) -> Result<FeatureGaussian> {
        match &self.scatter {
            Some(s) if self.rows >= 2 => Ok(FeatureGaussian {
                sqrt_cov: std::sync::OnceLock::new(),
                mean: self.mean.clone(),
                cov: s / (self.rows as f64 - 1.0),
                rows: self.rows,
            }),
            _ => Err(Error::shape(
                "Frechet distance",
                "at least 2 feature rows",
                self.rows,
            )),
        }
    }
}

/// Eigenvalues and eigenvectors (columns) of a symmetric matrix.
pub fn symmetric_eigen(a: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = a.len();
    let e = SymmetricEigen::new(DMatrix::from_fn(n, n, |i, j| a[i][j]));
    let v = (0..n)
        .map(|i| (0..n).map(|j| e.eigenvectors[(i, j)]).collect())
        .collect();
    (e.eigenvalues.iter().copied().collect(), v)
}

/// The symmetric square root `V diag(sqrt(w)) V^T` of a positive
/// semi-definite matrix (negative eigenvalues from rounding taken as zero).
fn sqrtm(a: &DMatrix<f64>) -> DMatrix<f64> {
    let e = SymmetricEigen::new(a.clone());
    let s = e.eigenvalues.map(|w| w.max(0.0).sqrt());
    &e.eigenvectors * DMatrix::from_diagonal(&s) * e.eigenvectors.transpose()
}

/// [`sqrtm`] on rows.
pub fn sqrtm_psd(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = a.len();
    let r = sqrtm(&DMatrix::from_fn(n, n, |i, j| a[i][j]));
    (0..n)
        .map(|i| (0..n).map(|j| r[(i, j)]).collect())
        .collect()
}

/// A Gaussian fitted to feature rows, with the square root of its
/// covariance kept so that distances to it cost one eigen-decomposition
/// each.
#[derive(Debug, Clone)]
pub struct FeatureGaussian {
    pub mean: Vec<f64>,
    pub cov: DMatrix<f64>,
    /// Computed on first use: only the reference side of a distance needs it.
    sqrt_cov: std::sync::OnceLock<DMatrix<f64>>,
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

    /// `|m1 - m2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)` (Heusel et
    /// al.); the trace of the square root is the sum of the square roots of
    /// the eigenvalues.
    pub fn frechet_distance(&self, other: &FeatureGaussian) -> Result<f64> {
        let d = self.mean.len();
        if other.mean.len() != d {
            return Err(Error::shape(
                "Frechet distance",
                format!("{d}-dimensional features on both sides"),
                other.mean.len(),
            ));
        }
        let r1 = self.sqrt_cov.get_or_init(|| sqrtm(&self.cov));
        let inner = r1 * &other.cov * r1;
        // symmetrise against rounding before the eigen-decomposition
        let inner = (&inner + inner.transpose()) * 0.5;
        let cross: f64 = SymmetricEigen::new(inner)
            .eigenvalues
            .iter()
            .map(|w| w.max(0.0).sqrt())
            .sum();
        let mean_term: f64 = self
            .mean
            .iter()
            .zip(&other.mean)
            .map(|(x, y)| (x - y) * (x - y))
            .sum();
        let trace = self.cov.trace() + other.cov.trace() - 2.0 * cross;
        Ok((mean_term + trace).max(0.0))
    }
}

/// Frechet distance between Gaussians fitted to two feature sets `[n][d]`.
pub fn frechet_distance(a: &[Vec<f64>], b: &[Vec<f64>]) -> Result<f64> {
    FeatureGaussian::fit(a)?.frechet_distance(&FeatureGaussian::fit(b)?)
}

/// Where two sets of rows differ, in the terms of the Frechet distance:
/// the squared distance of the means, the ratio of total variances
/// `tr(S_a) / tr(S_b)`, and the variance of `a` along `b`'s principal axes
/// over `b`'s, averaged within each tenth of the axes (largest first).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Spread {
    pub mean_term: f64,
    pub total_variance_ratio: f64,
    pub variance_ratio_by_axis_decile: Vec<f64>,
}

/// [`Spread`] of rows `a` against rows `b`, both `[n][d]`.
pub fn spread(a: &[Vec<f64>], b: &[Vec<f64>]) -> Spread {
    let (ma, sa) = mean_cov(a);
    let (mb, sb) = mean_cov(b);
    let mean_term = ma.iter().zip(&mb).map(|(x, y)| (x - y).powi(2)).sum();
    let e = SymmetricEigen::new(sb.clone());
    let mut axes: Vec<(f64, f64)> = (0..sb.nrows())
        .map(|k| {
            let u = e.eigenvectors.column(k);
            let along = (u.transpose() * &sa * u)[(0, 0)];
            (e.eigenvalues[k], along / e.eigenvalues[k].max(1e-12))
        })
        .collect();
    axes.sort_by(|x, y| y.0.total_cmp(&x.0));
    let d = axes.len();
    let deciles = (0..10.min(d))
        .map(|t| {
            let part = &axes[t * d / 10.min(d)..(t + 1) * d / 10.min(d)];
            part.iter().map(|x| x.1).sum::<f64>() / part.len().max(1) as f64
        })
        .collect();
    Spread {
        mean_term,
        total_variance_ratio: sa.trace() / sb.trace().max(1e-12),
        variance_ratio_by_axis_decile: deciles,
    }
}
