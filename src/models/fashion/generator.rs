//! `G`: the generator `h -> x` ("Plug & Play Generative Networks" (supplementary), S9.4): fully
//! connected layers, then up-convolutions, to a 28x28 image in [0, 1].

use candle_core::{Module, Result, Tensor, WithDType};
use candle_nn::VarBuilder;

use crate::nn::frozen::Linear;
use serde::{Deserialize, Serialize};

use crate::nn::fast::kernels::Act;
use crate::nn::fast::real::Real;
use crate::nn::fast::window::Window;
use crate::nn::fast::{build, Net, Op};
use crate::nn::{leaky_relu, linear, sigmoid, Conv2d, UpConv2x};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GeneratorConfig {
    /// Width of the input code `h` (the classifier's `h_dim`).
    pub h_dim: usize,
    pub fc_dim: usize,
    /// Channels at 7x7, 14x14 and 28x28.
    pub channels: [usize; 3],
    pub leak: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            h_dim: 256,
            fc_dim: 256,
            channels: [64, 32, 16],
            leak: 0.2,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Generator {
    fc1: Linear,
    fc2: Linear,
    up1: UpConv2x,
    up2: UpConv2x,
    out: Conv2d,
    pub cfg: GeneratorConfig,
}

impl Generator {
    pub fn new(cfg: &GeneratorConfig, vb: VarBuilder) -> Result<Self> {
        let [c0, c1, c2] = cfg.channels;
        Ok(Self {
            fc1: linear(vb.pp("fc1"), cfg.h_dim, cfg.fc_dim)?,
            fc2: linear(vb.pp("fc2"), cfg.fc_dim, 7 * 7 * c0)?,
            up1: UpConv2x::new(vb.pp("up1"), c0, c1)?,
            up2: UpConv2x::new(vb.pp("up2"), c1, c2)?,
            out: Conv2d::new(vb.pp("out"), c2, 1, 3, 1, 1)?,
            cfg: cfg.clone(),
        })
    }
}

impl Generator {
    /// The sampling engine's twin of [`Generator::forward`] (input
    /// `(1, 1, h_dim)`, output `(28, 28, 1)`): activations fused into the
    /// op before them (leaky ReLU commutes with the pixel shuffle).
    pub fn compile<T: Real + WithDType>(&self) -> Result<Net<T>> {
        let a = Act::Leaky(self.cfg.leak);
        let [c0, c1, c2] = self.cfg.channels;
        let up = |u: &UpConv2x, side: usize, cin: usize| {
            build::conv(
                Window::symmetric(side, side, cin, 3, 1, 1),
                &u.conv.weight,
                u.conv.bias.as_ref(),
                a,
            )
        };
        build::net(
            (1, 1, self.cfg.h_dim),
            vec![
                build::linear(&self.fc1.weight, self.fc1.bias.as_ref(), a)?,
                build::linear(&self.fc2.weight, self.fc2.bias.as_ref(), a)?,
                Op::Reshape((7, 7, c0)),
                up(&self.up1, 7, c0)?,
                Op::PixelShuffle2,
                up(&self.up2, 14, c1)?,
                Op::PixelShuffle2,
                build::conv(
                    Window::symmetric(28, 28, c2, 3, 1, 1),
                    &self.out.weight,
                    self.out.bias.as_ref(),
                    Act::Sigmoid,
                )?,
            ],
        )
    }
}

impl Module for Generator {
    /// Codes `[n, h_dim]` -> images `[n, 28, 28, 1]` in [0, 1].
    fn forward(&self, h: &Tensor) -> Result<Tensor> {
        let a = self.cfg.leak;
        let n = h.dim(0)?;
        let x = leaky_relu(&self.fc1.forward(h)?, a)?;
        let x = leaky_relu(&self.fc2.forward(&x)?, a)?;
        let x = x.reshape((n, 7, 7, self.cfg.channels[0]))?;
        let x = leaky_relu(&self.up1.forward(&x)?, a)?; // [n, 14, 14, c1]
        let x = leaky_relu(&self.up2.forward(&x)?, a)?; // [n, 28, 28, c2]
        sigmoid(&self.out.forward(&x)?)
    }
}
