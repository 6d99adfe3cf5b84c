//! Targets with known answers, for testing samplers: Gaussians with a
//! given covariance, a banana (a twisted Gaussian), a two-component mixture.
//! Positions are `[chains, d]`.

use candle_core::{DType, Device, Tensor};

use super::{autodiff, Eval, Term};
use crate::error::Result;

/// `N(mean, cov)` with log-density `-1/2 (x - m)' P (x - m)` up to a constant.
pub struct Gaussian {
    pub mean: Vec<f64>,
    pub cov: Vec<Vec<f64>>,
    precision: Tensor,
    mean_t: Tensor,
}

/// Inverse of a symmetric positive-definite matrix by Gauss-Jordan elimination.
pub fn invert(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = a.len();
    let mut m: Vec<Vec<f64>> = a
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut row = r.clone();
            row.extend((0..n).map(|j| if i == j { 1.0 } else { 0.0 }));
            row
        })
        .collect();
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| m[i][c].abs().total_cmp(&m[j][c].abs()))
            .unwrap();
        m.swap(c, p);
        let d = m[c][c];
        for v in m[c].iter_mut() {
            *v /= d;
        }
        let pivot = m[c].clone();
        for (r, row) in m.iter_mut().enumerate() {
            let f = row[c];
            if r != c && f != 0.0 {
                for (v, p) in row.iter_mut().zip(&pivot) {
                    *v -= f * p;
                }
            }
        }
    }
    m.into_iter().map(|r| r[n..].to_vec()).collect()
}

impl Gaussian {
    pub fn new(mean: Vec<f64>, cov: Vec<Vec<f64>>) -> Result<Self> {
        let d = mean.len();
        let p = invert(&cov);
        let precision = Tensor::from_vec(p.concat(), (d, d), &Device::Cpu)?;
        let mean_t = Tensor::from_vec(mean.clone(), (1, d), &Device::Cpu)?;
        Ok(Self {
            mean,
            cov,
            precision,
            mean_t,
        })
    }

    /// A 2-D Gaussian with standard deviations `s1, s2` and correlation `rho`.
    pub fn correlated_2d(s1: f64, s2: f64, rho: f64) -> Result<Self> {
        Self::new(
            vec![1.0, -1.0],
            vec![vec![s1 * s1, rho * s1 * s2], vec![rho * s1 * s2, s2 * s2]],
        )
    }
}

impl Term for Gaussian {
    fn name(&self) -> String {
        format!("gaussian-{}d", self.mean.len())
    }
    fn has_value(&self) -> bool {
        true
    }
    fn value_and_grad(&self, x: &Tensor) -> Result<Eval> {
        let dt = x.dtype();
        let diff = x.to_dtype(DType::F64)?.broadcast_sub(&self.mean_t)?; // [n, d]
        let pd = diff.matmul(&self.precision)?; // [n, d]
        let value = ((&diff * &pd)?.sum(1)? * -0.5)?;
        Ok(Eval {
            log_density: Some(value.to_vec1()?),
            grad: pd.neg()?.to_dtype(dt)?,
        })
    }
}

/// The banana of Haario et al.: `y = (x1 / a, a * x2 + a * b * (x1^2 + a^2))`
/// is standard normal, i.e. `log p = -x1^2 / (2 a^2) - (a x2 + a b (x1^2 + a^2))^2 / 2`
/// up to a constant. Its means are `E x1 = 0`, `E x2 = -b (2 a^2)`.
pub struct Banana {
    pub a: f64,
    pub b: f64,
}

impl Term for Banana {
    fn name(&self) -> String {
        "banana".into()
    }
    fn has_value(&self) -> bool {
        true
    }
    fn value_and_grad(&self, x: &Tensor) -> Result<Eval> {
        let (a, b) = (self.a, self.b);
        autodiff(x, |x| {
            let x1 = x.narrow(1, 0, 1)?.squeeze(1)?;
            let x2 = x.narrow(1, 1, 1)?.squeeze(1)?;
            let y1 = (&x1 / a)?;
            let y2 = ((x2 * a)? + ((x1.sqr()? + a * a)? * (a * b))?)?;
            (y1.sqr()? + y2.sqr()?)? * -0.5
        })
    }
}

/// An equal mixture of `N(-m, I)` and `N(+m, I)` in `d` dimensions, `m = (mu, 0, ..., 0)`.
pub struct Mixture {
    pub mu: f64,
    pub d: usize,
}

impl Term for Mixture {
    fn name(&self) -> String {
        "mixture".into()
    }
    fn has_value(&self) -> bool {
        true
    }
    fn value_and_grad(&self, x: &Tensor) -> Result<Eval> {
        let mut m = vec![0.0; self.d];
        m[0] = self.mu;
        let m = Tensor::from_vec(m, (1, self.d), x.device())?.to_dtype(x.dtype())?;
        autodiff(x, |x| {
            // log(exp(a) + exp(b)) = max + log(1 + exp(-|a - b|))
            let a = (x.broadcast_sub(&m)?.sqr()?.sum(1)? * -0.5)?;
            let b = (x.broadcast_add(&m)?.sqr()?.sum(1)? * -0.5)?;
            let max = a.maximum(&b)?;
            let d = (&a - &b)?.abs()?;
            max + (d.neg()?.exp()? + 1.0)?.log()?
        })
    }
}

/// Neal's funnel in `d` dimensions: `v ~ N(0, scale^2)` (Neal's scale is
/// 3) and, given `v`, each of the other `d - 1` coordinates `~ N(0, e^v)`;
/// `log p = -v^2 / (2 scale^2) - sum_i (x_i^2 e^-v + v) / 2` up to a
/// constant. `E v = 0`, `E v^2 = scale^2`; its neck (`v` well below 0) is
/// where fixed-step samplers diverge.
pub struct Funnel {
    pub d: usize,
    pub scale: f64,
}

impl Term for Funnel {
    fn name(&self) -> String {
        "funnel".into()
    }
    fn has_value(&self) -> bool {
        true
    }
    fn value_and_grad(&self, x: &Tensor) -> Result<Eval> {
        let (rest, scale) = (self.d - 1, self.scale);
        autodiff(x, |x| {
            let v = x.narrow(1, 0, 1)?.squeeze(1)?;
            let xs = x.narrow(1, 1, rest)?;
            let sq = xs.sqr()?.sum(1)?;
            let inner = ((sq * v.neg()?.exp()?)? + (&v * rest as f64)?)?;
            (v.sqr()? * (-0.5 / (scale * scale)))? - (inner * 0.5)?
        })
    }
}
