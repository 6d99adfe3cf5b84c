//! The pixel-space DAE of PPGN-x ("Plug & Play Generative Networks" (supplementary), S9.2, S11): a
//! small convolutional autoencoder trained to remove Gaussian noise from
//! images, giving `d log p(x) / dx ~ (R(x) - x) / sigma^2`.

use candle_core::{Module, Result, Tensor, WithDType};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::nn::fast::kernels::Act;
use crate::nn::fast::real::Real;
use crate::nn::fast::window::Window;
use crate::nn::fast::{build, Net, Op};
use crate::nn::{leaky_relu, sigmoid, Conv2d, UpConv2x};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct XDaeConfig {
    /// Encoder channels at 28x28 and 14x14.
    pub channels: [usize; 2],
    /// Training noise std in pixel units ([0, 1] range).
    pub sigma: f64,
    pub leak: f64,
}

impl Default for XDaeConfig {
    fn default() -> Self {
        Self {
            channels: [32, 32],
            sigma: 0.1,
            leak: 0.2,
        }
    }
}

#[derive(Debug, Clone)]
pub struct XDae {
    enc1: Conv2d,
    enc2: Conv2d,
    dec1: UpConv2x,
    dec2: Conv2d,
    pub cfg: XDaeConfig,
}

impl XDae {
    pub fn new(cfg: &XDaeConfig, vb: VarBuilder) -> Result<Self> {
        let [c1, c2] = cfg.channels;
        Ok(Self {
            enc1: Conv2d::new(vb.pp("enc1"), 1, c1, 3, 1, 1)?,
            enc2: Conv2d::new(vb.pp("enc2"), c1, c2, 3, 2, 1)?,
            dec1: UpConv2x::new(vb.pp("dec1"), c2, c1 / 2)?,
            dec2: Conv2d::new(vb.pp("dec2"), c1 / 2, 1, 3, 1, 1)?,
            cfg: cfg.clone(),
        })
    }

    /// The reconstruction `R(x)` as an engine graph (input and output
    /// `(28, 28, 1)`): PPGN-x's prior's one description, run through
    /// candle's autograd by `crate::nn::fast::reference`.
    pub fn compile<T: Real + WithDType>(&self) -> Result<Net<T>> {
        let a = Act::Leaky(self.cfg.leak);
        let [c1, c2] = self.cfg.channels;
        let conv = |c: &Conv2d, side: usize, cin: usize, stride: usize, act: Act| {
            build::conv(
                Window::symmetric(side, side, cin, 3, stride, 1),
                &c.weight,
                c.bias.as_ref(),
                act,
            )
        };
        build::net(
            (28, 28, 1),
            vec![
                Op::Affine {
                    scale: vec![T::from_f64(2.0)],
                    shift: vec![T::from_f64(-1.0)],
                },
                conv(&self.enc1, 28, 1, 1, a)?,
                conv(&self.enc2, 28, c1, 2, a)?,
                // leaky ReLU commutes with the pixel shuffle
                conv(&self.dec1.conv, 14, c2, 1, a)?,
                Op::PixelShuffle2,
                conv(&self.dec2, 28, c1 / 2, 1, Act::Sigmoid)?,
            ],
        )
    }

    /// `(R(x) - x) / sigma^2`, the prior's gradient estimate.
    pub fn score(&self, x: &Tensor) -> Result<Tensor> {
        (self.forward(x)? - x)? / (self.cfg.sigma * self.cfg.sigma)
    }
}

impl Module for XDae {
    /// Images `[n, 28, 28, 1]` -> reconstructions in [0, 1].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.cfg.leak;
        let y = ((x * 2.0)? - 1.0)?;
        let y = leaky_relu(&self.enc1.forward(&y)?, a)?;
        let y = leaky_relu(&self.enc2.forward(&y)?, a)?; // [n, 14, 14, c2]
        let y = leaky_relu(&self.dec1.forward(&y)?, a)?; // [n, 28, 28, c1/2]
        sigmoid(&self.dec2.forward(&y)?)
    }
}
