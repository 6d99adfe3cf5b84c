//! Pointwise functions that are not fused into the op before them
//! ([`super::kernels::Act`] reads its derivative from the output, which
//! only a monotone function allows): their input gradient is computed from
//! the input. They are the activations and elementwise functions of
//! ONNX-exported networks (`HardSigmoid`, `HardSwish`, `Elu`, `Gelu`,
//! `Clip`, `Erf`, `Sqrt`, `Pow` by a constant). Computed in f64 per value.
//! Also the softmax over channels (`Softmax`, `LogSoftmax`).

use rayon::prelude::*;

use super::real::Real;

/// One pointwise function `y = f(x)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pointwise {
    /// `clamp(alpha x + beta, 0, 1)`
    HardSigmoid {
        alpha: f64,
        beta: f64,
    },
    /// `x * clamp(x / 6 + 1 / 2, 0, 1)`
    HardSwish,
    /// `x` above 0, `alpha (e^x - 1)` below.
    Elu(f64),
    /// `x Phi(x) = x (1 + erf(x / sqrt 2)) / 2`, the exact form.
    Gelu,
    /// `min(max(x, lo), hi)`
    Clip {
        lo: f64,
        hi: f64,
    },
    Erf,
    Sqrt,
    /// `x^p` for a constant `p`.
    Pow(f64),
    /// The activations [`super::kernels::Act`] fuses, for where there is
    /// no op to fuse them into.
    Relu,
    /// `x` above 0, `a x` below.
    Leaky(f64),
    Sigmoid,
    Tanh,
    Exp,
    /// The natural logarithm (a classifier that gives probabilities read
    /// as logits).
    Log,
}

impl Pointwise {
    /// `f(x)`.
    pub fn value(self, x: f64) -> f64 {
        match self {
            Pointwise::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Pointwise::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Pointwise::Elu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x.exp_m1()
                }
            }
            Pointwise::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
            Pointwise::Clip { lo, hi } => x.max(lo).min(hi),
            Pointwise::Erf => libm::erf(x),
            Pointwise::Sqrt => x.sqrt(),
            Pointwise::Pow(p) => x.powf(p),
            Pointwise::Relu => x.max(0.0),
            Pointwise::Leaky(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Pointwise::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Pointwise::Tanh => x.tanh(),
            Pointwise::Exp => x.exp(),
            Pointwise::Log => x.ln(),
        }
    }

    /// `f'(x)` (zero at the kinks of the piecewise ones, as PyTorch).
    pub fn derivative(self, x: f64) -> f64 {
        let inside = |v: f64, lo: f64, hi: f64| if v > lo && v < hi { 1.0 } else { 0.0 };
        match self {
            Pointwise::HardSigmoid { alpha, beta } => alpha * inside(alpha * x + beta, 0.0, 1.0),
            Pointwise::HardSwish => {
                if x >= 3.0 {
                    1.0
                } else if x <= -3.0 {
                    0.0
                } else {
                    (2.0 * x + 3.0) / 6.0
                }
            }
            Pointwise::Elu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    a * x.exp()
                }
            }
            Pointwise::Gelu => {
                let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
                let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
                cdf + x * pdf
            }
            Pointwise::Clip { lo, hi } => inside(x, lo, hi),
            Pointwise::Erf => 2.0 / std::f64::consts::PI.sqrt() * (-x * x).exp(),
            Pointwise::Sqrt => 0.5 / x.sqrt(),
            Pointwise::Pow(p) => p * x.powf(p - 1.0),
            Pointwise::Relu => inside(x, 0.0, f64::INFINITY),
            Pointwise::Leaky(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    a
                }
            }
            Pointwise::Sigmoid => {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 - s)
            }
            Pointwise::Tanh => 1.0 - x.tanh().powi(2),
            Pointwise::Exp => x.exp(),
            Pointwise::Log => 1.0 / x,
        }
    }

    /// `y = f(x)`.
    pub fn forward<T: Real>(self, x: &[T], y: &mut [T]) {
        y.par_chunks_mut(1 << 14)
            .zip(x.par_chunks(1 << 14))
            .for_each(|(y, x)| {
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = T::from(self.value(x.to_f64().unwrap_or(f64::NAN))).unwrap_or_else(T::nan);
                }
            });
    }

    /// `gx = g * f'(x)`.
    pub fn backward<T: Real>(self, x: &[T], g: &[T], gx: &mut [T]) {
        gx.par_chunks_mut(1 << 14)
            .zip(x.par_chunks(1 << 14).zip(g.par_chunks(1 << 14)))
            .for_each(|(gx, (x, g))| {
                for ((gx, &x), &g) in gx.iter_mut().zip(x).zip(g) {
                    let d = self.derivative(x.to_f64().unwrap_or(f64::NAN));
                    *gx = g * T::from(d).unwrap_or_else(T::nan);
                }
            });
    }
}

/// Softmax (or its logarithm, `log`) over the `c` channels of each pixel:
/// with `g` absent, `out = softmax(v)` of the input `v`; with `g`, `v` is
/// the op's output and `out` the input gradient of `sum(g * output)`:
/// `y (g - sum(g y))` for the softmax, `g - softmax sum(g)` for its log.
pub fn softmax<T: Real>(c: usize, log: bool, v: &[T], out: &mut [T], g: Option<&[T]>) {
    let f = |t: T| t.to_f64().unwrap_or(f64::NAN);
    let back = |t: f64| T::from(t).unwrap_or_else(T::nan);
    out.par_chunks_mut(c * 64)
        .zip(v.par_chunks(c * 64))
        .enumerate()
        .for_each(|(blk, (ob, vb))| {
            for (p, (o, v)) in ob.chunks_mut(c).zip(vb.chunks(c)).enumerate() {
                match g {
                    None => {
                        let max = v.iter().map(|&t| f(t)).fold(f64::NEG_INFINITY, f64::max);
                        let lse = max + v.iter().map(|&t| (f(t) - max).exp()).sum::<f64>().ln();
                        for (o, &t) in o.iter_mut().zip(v) {
                            let l = f(t) - lse;
                            *o = back(if log { l } else { l.exp() });
                        }
                    }
                    Some(g) => {
                        let g = &g[(blk * 64 + p) * c..(blk * 64 + p + 1) * c];
                        if log {
                            let s: f64 = g.iter().map(|&t| f(t)).sum();
                            for ((o, &y), &gi) in o.iter_mut().zip(v).zip(g) {
                                *o = back(f(gi) - f(y).exp() * s);
                            }
                        } else {
                            let s: f64 = g.iter().zip(v).map(|(&a, &b)| f(a) * f(b)).sum();
                            for ((o, &y), &gi) in o.iter_mut().zip(v).zip(g) {
                                *o = back(f(y) * (f(gi) - s));
                            }
                        }
                    }
                }
            }
        });
}
