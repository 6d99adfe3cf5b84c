//! A noise-conditional denoiser on the code: a score-based (diffusion)
//! prior. "Plug & Play Generative Networks" (supplementary), S9.3, uses a
//! DAE at one noise level as the prior on `h`, whose residual estimates the
//! score of the noised density (Alain & Bengio); trained at many noise
//! levels, the same residual gives the score at every level, and annealing
//! the level from large to small samples the prior itself (Song & Ermon
//! 2019; Ho et al. 2020).
//!
//! It models the pre-ReLU code `u` standardised per unit, `v = (u - mean) /
//! std`, as the flow prior does (`super::code_prior`): `h = relu(u)` is
//! about 80% exact zeros, a density with point masses that a Gaussian
//! noising smooths badly, while `u` is continuous. The generator reads
//! `relu(v * std + mean)` ([`CodeScore::to_code`]).
//!
//! Preconditioning and loss weighting follow Karras et al. 2022 ("EDM"):
//! `D(v; s) = c_skip(s) v + c_out(s) F(c_in(s) v, e(c_noise(s)))` with
//! `c_skip = sd^2 / (s^2 + sd^2)`, `c_out = s sd / sqrt(s^2 + sd^2)`,
//! `c_in = 1 / sqrt(s^2 + sd^2)`, `c_noise = ln(s) / 4`, and `e` fixed
//! sine and cosine features of `c_noise`. `F` is a residual MLP whose input
//! is `[c_in v, e]` and whose blocks each read the features again. The
//! score is `(D(v; s) - v) / s^2`.

use candle_core::{Module, Result, Tensor, WithDType};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::nn::fast::kernels::Act;
use crate::nn::fast::pointwise::Pointwise;
use crate::nn::fast::real::Real;
use crate::nn::fast::{build, Net, Op};
use crate::nn::frozen::Linear;
use crate::nn::linear;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CodeScoreConfig {
    /// The code's dimension (the classifier's `h_dim`).
    pub dim: usize,
    /// Width of the residual MLP.
    pub hidden: usize,
    /// Residual blocks (two layers each).
    pub blocks: usize,
    /// Sine-cosine pairs of the noise embedding.
    pub frequencies: usize,
    /// The embedding's smallest and largest angular frequency per unit of
    /// `c_noise`, geometrically spaced. Cards from before these fields
    /// were written used pi and 64 pi; new models use 0.5 and 16, whose
    /// features vary smoothly over the levels sampling visits (`c_noise`
    /// spans about 1.7 between 0.01 and 10).
    #[serde(default = "first_omega_min")]
    pub omega_min: f64,
    #[serde(default = "first_omega_max")]
    pub omega_max: f64,
    /// The standardised code's spread (`sd` above; 1 by construction).
    pub sigma_data: f64,
    /// The noise levels sampling anneals between.
    pub sigma_min: f64,
    pub sigma_max: f64,
    /// Training noise levels: `ln s ~ N(p_mean, p_std^2)` (EDM).
    pub p_mean: f64,
    pub p_std: f64,
    /// Whether the model's code is the per-unit standardised code
    /// whitened by the training codes' principal axes (`norm.white`, with
    /// its inverse `norm.colour`), so that its spread is 1 along every
    /// axis, as the preconditioning assumes. Cards from before the field
    /// read `false`.
    #[serde(default)]
    pub whiten: bool,
    /// Whether training started each residual block's second layer and
    /// the output layer at zero (`ppgn train code-score --zero-init`), so
    /// that the untrained denoiser is `c_skip(s) v`; otherwise every
    /// weight started at He's normal. Cards from before the field read
    /// `false`.
    #[serde(default)]
    pub zero_init: bool,
}

impl Default for CodeScoreConfig {
    fn default() -> Self {
        Self {
            dim: 256,
            hidden: 512,
            blocks: 3,
            frequencies: 16,
            omega_min: 0.5,
            omega_max: 16.0,
            sigma_data: 1.0,
            sigma_min: 0.01,
            sigma_max: 10.0,
            p_mean: -1.2,
            p_std: 1.2,
            whiten: false,
            zero_init: false,
        }
    }
}

fn first_omega_min() -> f64 {
    std::f64::consts::PI
}

fn first_omega_max() -> f64 {
    64.0 * std::f64::consts::PI
}

/// EDM's preconditioning at one noise level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Precondition {
    pub c_skip: f64,
    pub c_out: f64,
    pub c_in: f64,
    pub c_noise: f64,
}

impl CodeScoreConfig {
    /// The preconditioning at noise level `sigma` (> 0).
    pub fn precondition(&self, sigma: f64) -> Precondition {
        let sd2 = self.sigma_data * self.sigma_data;
        let total = sigma * sigma + sd2;
        Precondition {
            c_skip: sd2 / total,
            c_out: sigma * self.sigma_data / total.sqrt(),
            c_in: 1.0 / total.sqrt(),
            c_noise: sigma.ln() / 4.0,
        }
    }

    /// The noise embedding `e(c_noise)`: `sin` and `cos` of `c_noise`
    /// times angular frequencies from `omega_min` to `omega_max`,
    /// geometrically spaced.
    pub fn embedding(&self, c_noise: f64) -> Vec<f64> {
        let k = self.frequencies;
        let ratio = self.omega_max / self.omega_min;
        let omega = |i: usize| {
            let t = if k > 1 {
                i as f64 / (k - 1) as f64
            } else {
                0.0
            };
            self.omega_min * ratio.powf(t)
        };
        let (sin, cos): (Vec<f64>, Vec<f64>) = (0..k)
            .map(|i| ((omega(i) * c_noise).sin(), (omega(i) * c_noise).cos()))
            .unzip();
        sin.into_iter().chain(cos).collect()
    }

    /// Width of `F`'s input: the scaled code and the embedding.
    pub fn input_width(&self) -> usize {
        self.dim + 2 * self.frequencies
    }

    /// `F`'s input rows `[c_in(s_i) v_i, e(c_noise(s_i))]` for codes `v`
    /// (row-major `[n, dim]`) at levels `sigmas` (one per row).
    pub fn net_input(&self, v: &[f64], sigmas: &[f64]) -> Vec<f64> {
        let d = self.dim;
        let mut out = Vec::with_capacity(sigmas.len() * self.input_width());
        for (row, &s) in v.chunks(d).zip(sigmas) {
            let p = self.precondition(s);
            out.extend(row.iter().map(|x| x * p.c_in));
            out.extend(self.embedding(p.c_noise));
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct CodeScore {
    fc_in: Linear,
    blocks: Vec<(Linear, Linear)>,
    fc_out: Linear,
    /// Per-unit mean and standard deviation of the training codes `u`.
    mean: Tensor,
    std: Tensor,
    /// With `cfg.whiten`: `[dim, dim]` matrices taking the per-unit
    /// standardised code `z` (rows) to the model's `v = z W` and back, `z
    /// = v C`.
    white: Option<(Tensor, Tensor)>,
    pub cfg: CodeScoreConfig,
}

impl CodeScore {
    pub fn new(cfg: &CodeScoreConfig, vb: VarBuilder) -> Result<Self> {
        let (d, w, e) = (cfg.dim, cfg.hidden, 2 * cfg.frequencies);
        let omegas = cfg.omega_min > 0.0 && cfg.omega_max >= cfg.omega_min;
        if d == 0 || w == 0 || !(cfg.sigma_min > 0.0 && cfg.sigma_max > cfg.sigma_min) || !omegas {
            candle_core::bail!(
                "a code score model needs dim >= 1, hidden >= 1, 0 < sigma_min < sigma_max and 0 < omega_min <= omega_max, got {cfg:?}"
            );
        }
        let blocks = (0..cfg.blocks)
            .map(|i| {
                let vb = vb.pp(format!("b{i}"));
                Ok((linear(vb.pp("fc1"), w + e, w)?, linear(vb.pp("fc2"), w, w)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            fc_in: linear(vb.pp("fc_in"), d + e, w)?,
            blocks,
            fc_out: linear(vb.pp("fc_out"), w, d)?,
            mean: vb.get(d, "norm.mean")?,
            std: vb.get(d, "norm.std")?,
            white: match cfg.whiten {
                true => Some((
                    vb.get((d, d), "norm.white")?,
                    vb.get((d, d), "norm.colour")?,
                )),
                false => None,
            },
            cfg: cfg.clone(),
        })
    }

    /// The variables `--zero-init` starts at zero: each residual block's
    /// second layer and the output layer, weights and biases.
    pub fn zero_init_names(&self) -> Vec<String> {
        (0..self.cfg.blocks)
            .map(|i| format!("b{i}.fc2"))
            .chain(["fc_out".to_string()])
            .flat_map(|l| [format!("{l}.weight"), format!("{l}.bias")])
            .collect()
    }

    /// `F` on input rows `[n, dim + 2 * frequencies]` (candle, for training).
    pub fn f(&self, input: &Tensor) -> Result<Tensor> {
        let e = input.narrow(1, self.cfg.dim, 2 * self.cfg.frequencies)?;
        let mut h = self.fc_in.forward(input)?.relu()?;
        for (fc1, fc2) in &self.blocks {
            let r = fc1.forward(&Tensor::cat(&[&h, &e], 1)?)?.relu()?;
            h = (h + fc2.forward(&r)?)?;
        }
        self.fc_out.forward(&h)
    }

    /// EDM's training loss on clean standardised codes `v [n, dim]` noised
    /// by `noise` (standard normal, `[n, dim]`) at levels `sigmas`: the mean
    /// over rows and units of `|F - (v - c_skip y) / c_out|^2` with `y = v
    /// + s noise`, which is `lambda(s) |D(y; s) - v|^2` with EDM's weight
    /// `lambda = 1 / c_out^2`.
    pub fn loss(&self, v: &Tensor, noise: &Tensor, sigmas: &[f64]) -> Result<Tensor> {
        let n = v.dim(0)?;
        let col = |f: &dyn Fn(f64) -> f64| -> Result<Tensor> {
            let c: Vec<f64> = sigmas.iter().map(|&s| f(s)).collect();
            Tensor::from_vec(c, (n, 1), v.device())?.to_dtype(v.dtype())
        };
        let s = col(&|s| s)?;
        let y = (v + noise.broadcast_mul(&s)?)?;
        let (c_skip, c_out, c_in) = (
            col(&|s| self.cfg.precondition(s).c_skip)?,
            col(&|s| self.cfg.precondition(s).c_out)?,
            col(&|s| self.cfg.precondition(s).c_in)?,
        );
        let emb: Vec<f64> = sigmas
            .iter()
            .flat_map(|&s| self.cfg.embedding(self.cfg.precondition(s).c_noise))
            .collect();
        let emb = Tensor::from_vec(emb, (n, 2 * self.cfg.frequencies), v.device())?
            .to_dtype(v.dtype())?;
        let input = Tensor::cat(&[&y.broadcast_mul(&c_in)?, &emb], 1)?;
        let target = (v - y.broadcast_mul(&c_skip)?)?.broadcast_div(&c_out)?;
        (self.f(&input)? - target)?.sqr()?.mean_all()
    }

    /// `D(v; s)` for codes `v [n, dim]` at levels `sigmas` (candle).
    pub fn denoise(&self, v: &Tensor, sigmas: &[f64]) -> Result<Tensor> {
        let n = v.dim(0)?;
        let rows: Vec<f64> = v
            .to_dtype(candle_core::DType::F64)?
            .flatten_all()?
            .to_vec1()?;
        let input = self.cfg.net_input(&rows, sigmas);
        let input = Tensor::from_vec(input, (n, self.cfg.input_width()), v.device())?
            .to_dtype(v.dtype())?;
        let f = self.f(&input)?;
        let col = |g: &dyn Fn(&Precondition) -> f64| -> Result<Tensor> {
            let c: Vec<f64> = sigmas
                .iter()
                .map(|&s| g(&self.cfg.precondition(s)))
                .collect();
            Tensor::from_vec(c, (n, 1), v.device())?.to_dtype(v.dtype())
        };
        v.broadcast_mul(&col(&|p| p.c_skip)?)? + f.broadcast_mul(&col(&|p| p.c_out)?)?
    }

    /// Pre-ReLU codes `u [n, dim]` in the model's code: standardised,
    /// `z = (u - mean) / std`, and whitened, `v = z W`, when the model is.
    pub fn standardise(&self, u: &Tensor) -> Result<Tensor> {
        let z = u.broadcast_sub(&self.mean)?.broadcast_div(&self.std)?;
        match &self.white {
            Some((w, _)) => z.matmul(&w.to_dtype(z.dtype())?),
            None => Ok(z),
        }
    }

    /// The model's codes `v` as per-unit standardised codes `z` (the
    /// space the cards measure every model's draws in).
    pub fn unwhiten(&self, v: &Tensor) -> Result<Tensor> {
        match &self.white {
            Some((_, c)) => v.matmul(&c.to_dtype(v.dtype())?),
            None => Ok(v.clone()),
        }
    }

    /// Per-unit mean and standard deviation of the codes, as f64.
    pub fn norm(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        let v = |t: &Tensor| t.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>();
        Ok((v(&self.mean)?, v(&self.std)?))
    }

    /// `F` as an engine graph: input `(1, 1, dim + 2 * frequencies)`,
    /// output `(1, 1, dim)`; the preconditioning around it is per chain
    /// (`crate::density::score`).
    pub fn compile<T: Real + WithDType>(&self) -> Result<Net<T>> {
        let (d, e) = (self.cfg.dim, 2 * self.cfg.frequencies);
        let mut g = build::Builder::new((1, 1, d + e));
        let emb = g.push(Op::Slice {
            at: (0, 0, d),
            out: (1, 1, e),
        });
        let mut h = g.push_from(
            0,
            build::linear(&self.fc_in.weight, self.fc_in.bias.as_ref(), Act::Relu)?,
        );
        for (fc1, fc2) in &self.blocks {
            let cat = g.concat(&[h, emb]);
            let r = g.push_from(
                cat,
                build::linear(&fc1.weight, fc1.bias.as_ref(), Act::Relu)?,
            );
            let o = g.push_from(
                r,
                build::linear(&fc2.weight, fc2.bias.as_ref(), Act::Identity)?,
            );
            h = g.add(&[h, o]);
        }
        g.push_from(
            h,
            build::linear(
                &self.fc_out.weight,
                self.fc_out.bias.as_ref(),
                Act::Identity,
            )?,
        );
        g.build()
    }

    /// Standardised codes `v` to the generator's `h = relu(v * std +
    /// mean)` (`relu((v C) * std + mean)` when whitened), as an engine
    /// graph (what the score prior puts before `G`).
    pub fn to_code<T: Real + WithDType>(&self) -> Result<Net<T>> {
        let (mean, std) = self.norm()?;
        if let Some((_, c)) = &self.white {
            // u_j = sum_i v_i C_ij std_j + mean_j: a linear layer of
            // weight [out j, in i] = C_ij std_j
            let weight = c.t()?.broadcast_mul(&self.std.unsqueeze(1)?)?;
            return build::net(
                (1, 1, self.cfg.dim),
                vec![build::linear(&weight, Some(&self.mean), Act::Relu)?],
            );
        }
        build::net(
            (1, 1, self.cfg.dim),
            vec![
                Op::Affine {
                    scale: std.iter().map(|&s| T::from_f64(s)).collect(),
                    shift: mean.iter().map(|&m| T::from_f64(m)).collect(),
                },
                Op::Pointwise(Pointwise::Relu),
            ],
        )
    }
}
