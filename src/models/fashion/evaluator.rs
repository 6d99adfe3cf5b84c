//! The evaluator: an independent classifier used only to score samples,
//! never for sampling (so samples that fool `C` do not fool the score; a
//! guiding classifier is fooled by super-stimuli that fool no other). Deliberately a different architecture from
//! `C`: 5x5 kernels, average pooling, a 128-unit feature layer.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn::frozen::Linear;
use serde::{Deserialize, Serialize};

use crate::nn::{avg_pool2, flatten, linear, Conv2d};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvaluatorConfig {
    pub channels: [usize; 2],
    /// Width of the feature layer used for Frechet distances.
    pub feature_dim: usize,
    pub num_classes: usize,
    pub dropout: f32,
}

impl Default for EvaluatorConfig {
    fn default() -> Self {
        Self {
            channels: [24, 48],
            feature_dim: 128,
            num_classes: 10,
            dropout: 0.3,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Evaluator {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    pub cfg: EvaluatorConfig,
}

impl Evaluator {
    pub fn new(cfg: &EvaluatorConfig, vb: VarBuilder) -> Result<Self> {
        let [c1, c2] = cfg.channels;
        Ok(Self {
            conv1: Conv2d::new(vb.pp("conv1"), 1, c1, 5, 1, 2)?,
            conv2: Conv2d::new(vb.pp("conv2"), c1, c2, 5, 1, 2)?,
            fc1: linear(vb.pp("fc1"), 7 * 7 * c2, cfg.feature_dim)?,
            fc2: linear(vb.pp("fc2"), cfg.feature_dim, cfg.num_classes)?,
            cfg: cfg.clone(),
        })
    }

    /// Images `[n, 28, 28, 1]` in [0, 1] -> features `[n, feature_dim]` (post-ReLU).
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        let x = ((x * 2.0)? - 1.0)?;
        let x = avg_pool2(&self.conv1.forward(&x)?.relu()?)?; // [n, 14, 14, c1]
        let x = avg_pool2(&self.conv2.forward(&x)?.relu()?)?; // [n, 7, 7, c2]
        self.fc1.forward(&flatten(&x)?)?.relu()
    }

    pub fn head(&self, features: &Tensor) -> Result<Tensor> {
        self.fc2.forward(features)
    }
}

impl Module for Evaluator {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.head(&self.features(x)?)
    }
}
