//! `D`: the discriminator that trains `G` (eq. 22), one logit per image for
//! "real". `log D(x) = log_sigmoid(logit)`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn::frozen::Linear;
use serde::{Deserialize, Serialize};

use crate::nn::{flatten, leaky_relu, linear, Conv2d};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiscriminatorConfig {
    /// Channels of the three stride-2 3x3 convolutions (28 -> 14 -> 7 -> 4).
    pub channels: [usize; 3],
    pub fc_dim: usize,
    pub leak: f64,
}

impl Default for DiscriminatorConfig {
    fn default() -> Self {
        Self {
            channels: [32, 64, 64],
            fc_dim: 128,
            leak: 0.2,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Discriminator {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    fc1: Linear,
    fc2: Linear,
    pub cfg: DiscriminatorConfig,
}

impl Discriminator {
    pub fn new(cfg: &DiscriminatorConfig, vb: VarBuilder) -> Result<Self> {
        let [c1, c2, c3] = cfg.channels;
        Ok(Self {
            conv1: Conv2d::new(vb.pp("conv1"), 1, c1, 3, 2, 1)?,
            conv2: Conv2d::new(vb.pp("conv2"), c1, c2, 3, 2, 1)?,
            conv3: Conv2d::new(vb.pp("conv3"), c2, c3, 3, 2, 1)?,
            fc1: linear(vb.pp("fc1"), 4 * 4 * c3, cfg.fc_dim)?,
            fc2: linear(vb.pp("fc2"), cfg.fc_dim, 1)?,
            cfg: cfg.clone(),
        })
    }
}

impl Module for Discriminator {
    /// Images `[n, 28, 28, 1]` in [0, 1] -> logits of "real" `[n]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.cfg.leak;
        let x = ((x * 2.0)? - 1.0)?;
        let x = leaky_relu(&self.conv1.forward(&x)?, a)?;
        let x = leaky_relu(&self.conv2.forward(&x)?, a)?;
        let x = leaky_relu(&self.conv3.forward(&x)?, a)?; // [n, 4, 4, c3]
        let x = leaky_relu(&self.fc1.forward(&flatten(&x)?)?, a)?;
        self.fc2.forward(&x)?.squeeze(1)
    }
}
