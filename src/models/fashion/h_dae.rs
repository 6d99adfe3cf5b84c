//! The DAE prior on `h` of PPGN-h ("Plug & Play Generative Networks" (supplementary), S9.3): an
//! MLP trained to undo Gaussian noise of std `sigma` on codes `h`, so that
//! `(R(h) - h) / sigma^2` estimates `d log p(h) / dh` (Alain & Bengio).
//!
//! `R(h) = h + f(h)` with `f` the MLP: the residual form learns only the
//! denoising step. (A plain bottleneck MLP, as in the paper, measured worse
//! than returning the noisy input here: test MSE 0.154 against sigma^2 = 0.005.)

use candle_core::{Module, Result, Tensor, WithDType};
use candle_nn::VarBuilder;

use crate::nn::frozen::Linear;
use serde::{Deserialize, Serialize};

use crate::nn::fast::kernels::Act;
use crate::nn::fast::real::Real;
use crate::nn::fast::{build, Net};
use crate::nn::linear;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HDaeConfig {
    pub h_dim: usize,
    /// Hidden widths (the paper's 4096-2048-1024-500-1024-2048-4096, scaled down).
    pub hidden: Vec<usize>,
    /// Training noise std; the prior gradient divides by its square.
    pub sigma: f64,
}

impl Default for HDaeConfig {
    fn default() -> Self {
        Self {
            h_dim: 256,
            hidden: vec![512, 512],
            sigma: 0.1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HDae {
    layers: Vec<Linear>,
    pub cfg: HDaeConfig,
}

impl HDae {
    pub fn new(cfg: &HDaeConfig, vb: VarBuilder) -> Result<Self> {
        let mut dims = vec![cfg.h_dim];
        dims.extend(&cfg.hidden);
        dims.push(cfg.h_dim);
        let layers = dims
            .windows(2)
            .enumerate()
            .map(|(i, w)| linear(vb.pp(format!("fc{}", i + 1)), w[0], w[1]))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            cfg: cfg.clone(),
        })
    }

    /// The reconstruction `R(h) = h + f(h)` as an engine graph (input and
    /// output `(1, 1, h_dim)`): the sampling prior's one description, run
    /// through candle's autograd by `crate::nn::fast::reference`.
    pub fn compile<T: Real + WithDType>(&self) -> Result<Net<T>> {
        let mut g = build::Builder::new((1, 1, self.cfg.h_dim));
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            let act = if i < last { Act::Relu } else { Act::Identity };
            g.push(build::linear(&l.weight, l.bias.as_ref(), act)?);
        }
        let f = g.last();
        g.add(&[0, f]);
        g.build()
    }

    /// `(R(h) - h) / sigma^2`, the prior's gradient estimate.
    pub fn score(&self, h: &Tensor) -> Result<Tensor> {
        (self.forward(h)? - h)? / (self.cfg.sigma * self.cfg.sigma)
    }
}

impl Module for HDae {
    /// The reconstruction `R(h) = h + f(h)`, `f` with ReLU between layers and a linear output.
    fn forward(&self, h: &Tensor) -> Result<Tensor> {
        let mut x = h.clone();
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            x = l.forward(&x)?;
            if i < last {
                x = x.relu()?;
            }
        }
        h + x
    }
}
