//! A learned density on the classifier's code: a RealNVP flow (Dinh et
//! al. 2017, affine couplings) on the pre-ReLU fc code `u` (the generator
//! reads `h = relu(u)`). "Generating Class-conditional Images with
//! Gradient-based Inference" needs a prior with a value for its
//! Metropolis-Hastings samplers (S2); `N(0, sigma^2)` on a post-ReLU code
//! puts most of its mass where the generator has seen nothing.
//!
//! The flow maps base points `z ~ N(0, I)` to codes, `u = T(z)`:
//! `K` couplings, each `x <- x * exp(s(m x)) + t(m x)` with a fixed binary
//! mask `m` (1 on the dimensions it keeps) and `s`, `t` zero on those
//! dimensions, then a per-dimension affine map `u = x * exp(log_std) +
//! mean`. `s = scale * tanh(.)` and `t` come from one MLP per coupling.
//! The masks alternate even/odd dimensions, then first/second half.
//!
//! `log p(u) = log N(z; 0, I) - sum_k sum s_k - sum log_std` with `z =
//! T^-1(u)`. A whitened flow (`cfg.whiten`) follows the affine map with a
//! fixed linear colouring `u = y C + centre`, which adds `-log |det C|`. Sampling in the base space (neural transport, Hoffman et al.
//! 2019) needs only `T` ([`CodePrior::compile`]); the density in code
//! coordinates is [`CodePrior::compile_inverse`].

use candle_core::{Module, Result, Tensor, WithDType, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::nn::fast::kernels::Act;
use crate::nn::fast::pointwise::Pointwise;
use crate::nn::fast::real::Real;
use crate::nn::fast::several::Binary;
use crate::nn::fast::{build, Net, Op};
use crate::nn::frozen::Linear;
use crate::nn::linear;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CodePriorConfig {
    /// The code's dimension (the classifier's `h_dim`).
    pub dim: usize,
    pub couplings: usize,
    /// Width of each coupling's hidden layer.
    pub hidden: usize,
    /// Whether the affine map is followed by a fixed colouring, `u = y C +
    /// centre` (`norm.colour`, its inverse `norm.white`, `norm.centre` and
    /// `log |det C|` in `norm.colour_log_det`): the training codes'
    /// principal axes and spreads, so that the untrained flow is their
    /// full-covariance Gaussian fit (`ppgn train code-prior --whiten`).
    #[serde(default)]
    pub whiten: bool,
}

impl Default for CodePriorConfig {
    fn default() -> Self {
        Self {
            dim: 256,
            couplings: 8,
            hidden: 256,
            whiten: false,
        }
    }
}

/// One coupling's network: `[s_raw, t] = fc2(relu(fc1(m x)))`.
#[derive(Debug, Clone)]
struct Coupling {
    fc1: Linear,
    fc2: Linear,
    /// per-dimension scale of `tanh`
    scale: Tensor,
    /// 1 on the dimensions this coupling keeps
    mask: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct CodePrior {
    couplings: Vec<Coupling>,
    mean: Tensor,
    log_std: Tensor,
    /// With `cfg.whiten`: the fixed colouring after the affine map.
    colour: Option<Colouring>,
    pub cfg: CodePriorConfig,
}

/// `u = y C + centre` and its inverse `y = (u - centre) W`, fixed at the
/// training codes' (never trained: used detached).
#[derive(Debug, Clone)]
struct Colouring {
    colour: Tensor,
    white: Tensor,
    centre: Tensor,
    /// `[1]`: `log |det C|`
    log_det: Tensor,
}

/// Coupling `k`'s mask on `dim` dimensions: even dimensions, odd ones,
/// the first half, the second half, in turn.
pub fn mask(k: usize, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|i| {
            let keep = match k % 4 {
                0 => i % 2 == 0,
                1 => i % 2 == 1,
                2 => i < dim / 2,
                _ => i >= dim / 2,
            };
            if keep {
                1.0
            } else {
                0.0
            }
        })
        .collect()
}

/// `0.5 ln(2 pi)`.
pub const HALF_LN_2PI: f64 = 0.918_938_533_204_672_7;

impl CodePrior {
    pub fn new(cfg: &CodePriorConfig, vb: VarBuilder) -> Result<Self> {
        let (d, k) = (cfg.dim, cfg.couplings);
        if d < 2 || k == 0 || cfg.hidden == 0 {
            candle_core::bail!(
                "a code prior needs dim >= 2, couplings >= 1, hidden >= 1, got {cfg:?}"
            );
        }
        let couplings = (0..k)
            .map(|i| {
                let vb = vb.pp(format!("c{i}"));
                Ok(Coupling {
                    fc1: linear(vb.pp("fc1"), d, cfg.hidden)?,
                    fc2: linear(vb.pp("fc2"), cfg.hidden, 2 * d)?,
                    scale: vb.get(d, "scale")?,
                    mask: mask(i, d),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let colour = match cfg.whiten {
            false => None,
            true => Some(Colouring {
                colour: vb.get((d, d), "norm.colour")?,
                white: vb.get((d, d), "norm.white")?,
                centre: vb.get(d, "norm.centre")?,
                log_det: vb.get(1, "norm.colour_log_det")?,
            }),
        };
        Ok(Self {
            couplings,
            mean: vb.get(d, "norm.mean")?,
            log_std: vb.get(d, "norm.log_std")?,
            colour,
            cfg: cfg.clone(),
        })
    }

    /// `(s, t)` of coupling `c` at `x [n, dim]`, both zero on the kept dimensions.
    fn shift_scale(&self, c: &Coupling, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let d = self.cfg.dim;
        let m = Tensor::from_slice(&c.mask, d, x.device())?.to_dtype(x.dtype())?;
        let free = m.affine(-1.0, 1.0)?;
        let o = c
            .fc2
            .forward(&c.fc1.forward(&x.broadcast_mul(&m)?)?.relu()?)?;
        let s = o.narrow(D::Minus1, 0, d)?.tanh()?;
        let s = s.broadcast_mul(&c.scale.broadcast_mul(&free)?)?;
        let t = o.narrow(D::Minus1, d, d)?.broadcast_mul(&free)?;
        Ok((s, t))
    }

    /// `u = T(z)` for base points `z [n, dim]`.
    pub fn transport(&self, z: &Tensor) -> Result<Tensor> {
        let mut x = z.clone();
        for c in &self.couplings {
            let (s, t) = self.shift_scale(c, &x)?;
            x = ((x * s.exp()?)? + t)?;
        }
        let y = x
            .broadcast_mul(&self.log_std.exp()?)?
            .broadcast_add(&self.mean)?;
        match &self.colour {
            None => Ok(y),
            Some(c) => y
                .matmul(&c.colour.detach())?
                .broadcast_add(&c.centre.detach()),
        }
    }

    /// `z = T^-1(u)` and `log p(u)` per row, for codes `u [n, dim]`.
    pub fn inverse(&self, u: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut log_det = self.log_std.sum_all()?.neg()?;
        let y = match &self.colour {
            None => u.clone(),
            Some(c) => {
                log_det = (log_det - c.log_det.detach().sum_all()?)?;
                u.broadcast_sub(&c.centre.detach())?
                    .matmul(&c.white.detach())?
            }
        };
        let mut x = y
            .broadcast_sub(&self.mean)?
            .broadcast_mul(&self.log_std.neg()?.exp()?)?;
        let mut log_det = log_det.broadcast_as(u.dim(0)?)?;
        for c in self.couplings.iter().rev() {
            let (s, t) = self.shift_scale(c, &x)?;
            x = ((x - t)? * s.neg()?.exp()?)?;
            log_det = (log_det - s.sum(D::Minus1)?)?;
        }
        let d = self.cfg.dim as f64;
        let base = (x.sqr()?.sum(D::Minus1)? * -0.5)?.affine(1.0, -d * HALF_LN_2PI)?;
        Ok((x, (base + log_det)?))
    }

    /// `-log p(u)` in nats per dimension, averaged over the rows of `u`.
    pub fn nll_per_dim(&self, u: &Tensor) -> Result<Tensor> {
        let (_, lp) = self.inverse(u)?;
        lp.mean_all()?.affine(-1.0 / self.cfg.dim as f64, 0.0)
    }

    /// `sum log_std` (and `log |det C|` when whitened), the log-determinant
    /// of the maps after the couplings.
    pub fn affine_log_det(&self) -> Result<f64> {
        let sum = |t: &Tensor| {
            t.to_dtype(candle_core::DType::F64)?
                .sum_all()?
                .to_scalar::<f64>()
        };
        Ok(sum(&self.log_std)? + self.colour.as_ref().map_or(Ok(0.0), |c| sum(&c.log_det))?)
    }

    /// The colouring as two engine ops: `u = y C + centre` and `y = (u -
    /// centre) W` (a linear op's weight is `[out, in]`: `C^T`, `W^T`).
    fn colour_ops<T: Real + WithDType>(&self) -> Result<Option<(Op<T>, Op<T>)>> {
        let Some(c) = &self.colour else {
            return Ok(None);
        };
        let back = (c.centre.neg()?.unsqueeze(0)?.matmul(&c.white)?).squeeze(0)?;
        Ok(Some((
            build::linear(&c.colour.t()?.contiguous()?, Some(&c.centre), Act::Identity)?,
            build::linear(&c.white.t()?.contiguous()?, Some(&back), Act::Identity)?,
        )))
    }

    /// One coupling's MLP on the engine, reading `x` in slot `x`: returns
    /// the slots of `s` (times `sign`) and of `t`.
    fn coupling_ops<T: Real + WithDType>(
        &self,
        g: &mut build::Builder<T>,
        c: &Coupling,
        x: usize,
        sign: f64,
    ) -> Result<(usize, usize)> {
        let d = self.cfg.dim;
        let zeros = vec![T::from_f64(0.0); d];
        let of = |v: &[f32], by: &dyn Fn(usize) -> f64| -> Vec<T> {
            v.iter()
                .enumerate()
                .map(|(i, &m)| T::from_f64(m as f64 * by(i)))
                .collect()
        };
        let scale: Vec<f64> = c.scale.to_dtype(candle_core::DType::F64)?.to_vec1()?;
        let free: Vec<f32> = c.mask.iter().map(|m| 1.0 - m).collect();
        let kept = g.push_from(
            x,
            Op::Affine {
                scale: of(&c.mask, &|_| 1.0),
                shift: zeros.clone(),
            },
        );
        let hidden = g.push_from(
            kept,
            build::linear(&c.fc1.weight, c.fc1.bias.as_ref(), Act::Relu)?,
        );
        let o = g.push_from(
            hidden,
            build::linear(&c.fc2.weight, c.fc2.bias.as_ref(), Act::Identity)?,
        );
        let raw_s = g.push_from(
            o,
            Op::Slice {
                at: (0, 0, 0),
                out: (1, 1, d),
            },
        );
        let raw_t = g.push_from(
            o,
            Op::Slice {
                at: (0, 0, d),
                out: (1, 1, d),
            },
        );
        let th = g.push_from(raw_s, Op::Pointwise(Pointwise::Tanh));
        let s = g.push_from(
            th,
            Op::Affine {
                scale: of(&free, &|i| sign * scale[i]),
                shift: zeros.clone(),
            },
        );
        let t = g.push_from(
            raw_t,
            Op::Affine {
                scale: of(&free, &|_| 1.0),
                shift: zeros,
            },
        );
        Ok((s, t))
    }

    fn norm(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        Ok((
            self.mean.to_dtype(candle_core::DType::F64)?.to_vec1()?,
            self.log_std.to_dtype(candle_core::DType::F64)?.to_vec1()?,
        ))
    }

    /// `T` as an engine graph: base points `(1, 1, dim)` -> codes `u`
    /// (before the ReLU the generator applies).
    pub fn compile<T: Real + WithDType>(&self) -> Result<Net<T>> {
        let mut g = build::Builder::new((1, 1, self.cfg.dim));
        let mut x = 0;
        for c in &self.couplings {
            let (s, t) = self.coupling_ops(&mut g, c, x, 1.0)?;
            let e = g.push_from(s, Op::Pointwise(Pointwise::Exp));
            let xe = g.push_several(&[x, e], Op::Binary(Binary::Mul));
            x = g.add(&[xe, t]);
        }
        let (mean, log_std) = self.norm()?;
        let y = g.push_from(
            x,
            Op::Affine {
                scale: log_std.iter().map(|l| T::from_f64(l.exp())).collect(),
                shift: mean.iter().map(|&m| T::from_f64(m)).collect(),
            },
        );
        if let Some((colour, _)) = self.colour_ops()? {
            g.push_from(y, colour);
        }
        g.tap("u");
        g.build()
    }

    /// `T^-1` as an engine graph: codes `(1, 1, dim)` -> `(1, 1, dim * (K
    /// + 1))`, the base point `z` and then each coupling's `-s`, so that
    /// `log p(u) = -|z|^2 / 2 + sum(-s) - sum log_std - dim ln(2 pi) / 2`
    /// (`crate::density::prior::FlowDensity` seeds its gradient).
    pub fn compile_inverse<T: Real + WithDType>(&self) -> Result<Net<T>> {
        let d = self.cfg.dim;
        let (mean, log_std) = self.norm()?;
        let mut g = build::Builder::new((1, 1, d));
        if let Some((_, white)) = self.colour_ops()? {
            g.push(white);
        }
        let mut x = g.push(Op::Affine {
            scale: log_std.iter().map(|l| T::from_f64((-l).exp())).collect(),
            shift: mean
                .iter()
                .zip(&log_std)
                .map(|(m, l)| T::from_f64(-m * (-l).exp()))
                .collect(),
        });
        let mut neg_s = Vec::new();
        for c in self.couplings.iter().rev() {
            let (ns, t) = self.coupling_ops(&mut g, c, x, -1.0)?;
            let e = g.push_from(ns, Op::Pointwise(Pointwise::Exp));
            let shifted = g.push_several(&[x, t], Op::Binary(Binary::Sub));
            x = g.push_several(&[shifted, e], Op::Binary(Binary::Mul));
            neg_s.push(ns);
        }
        let mut out = vec![x];
        out.extend(neg_s);
        g.concat(&out);
        g.build()
    }
}
