//! `E` / `C`: the classifier whose layers define the two code spaces of PPGN-h
//! ("Plug & Play Generative Networks" (supplementary), S9.4, Fig. S9a). `E1: x -> h1` is the spatial
//! feature layer (pool5 analogue), `E2: h1 -> h` the fully connected code
//! (fc6 analogue, post-ReLU), and `h -> logits` the classifier head.

use candle_core::{Module, Result, Tensor, WithDType};
use candle_nn::VarBuilder;

use crate::nn::frozen::Linear;
use serde::{Deserialize, Serialize};

use crate::nn::fast::kernels::Act;
use crate::nn::fast::real::Real;
use crate::nn::fast::window::Window;
use crate::nn::fast::{build, Net, Op};
use crate::nn::{flatten, linear, Conv2d};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassifierConfig {
    /// Channels of the three 3x3 convolutions (the 2nd and 3rd have stride 2).
    pub channels: [usize; 3],
    /// Width of the code `h` (fc6 analogue).
    pub h_dim: usize,
    pub num_classes: usize,
    /// Dropout on `h` during training.
    pub dropout: f32,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self {
            channels: [32, 64, 64],
            h_dim: 256,
            num_classes: 10,
            dropout: 0.3,
        }
    }
}

impl ClassifierConfig {
    /// Shape of `h1` per image: `[7, 7, channels[2]]`.
    pub fn h1_shape(&self) -> (usize, usize, usize) {
        (7, 7, self.channels[2])
    }
}

#[derive(Debug, Clone)]
pub struct Classifier {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    fc6: Linear,
    fc8: Linear,
    pub cfg: ClassifierConfig,
}

/// Every code of one forward pass.
pub struct ClassifierOutput {
    /// `[n, 7, 7, c]`, post-ReLU
    pub h1: Tensor,
    /// `[n, h_dim]`, post-ReLU
    pub h: Tensor,
    /// `[n, num_classes]`
    pub logits: Tensor,
}

impl Classifier {
    pub fn new(cfg: &ClassifierConfig, vb: VarBuilder) -> Result<Self> {
        let [c1, c2, c3] = cfg.channels;
        let (hh, hw, hc) = cfg.h1_shape();
        Ok(Self {
            conv1: Conv2d::new(vb.pp("conv1"), 1, c1, 3, 1, 1)?,
            conv2: Conv2d::new(vb.pp("conv2"), c1, c2, 3, 2, 1)?,
            conv3: Conv2d::new(vb.pp("conv3"), c2, c3, 3, 2, 1)?,
            fc6: linear(vb.pp("fc6"), hh * hw * hc, cfg.h_dim)?,
            fc8: linear(vb.pp("fc8"), cfg.h_dim, cfg.num_classes)?,
            cfg: cfg.clone(),
        })
    }

    /// `E1`: images `[n, 28, 28, 1]` in [0, 1] -> `h1` `[n, 7, 7, c]`.
    pub fn encode_h1(&self, x: &Tensor) -> Result<Tensor> {
        self.h1_pre_relu(x)?.relu()
    }

    /// `h1` before its ReLU (sampling reads the same layer off the compiled
    /// graph, `compile_to("h1")`).
    pub fn h1_pre_relu(&self, x: &Tensor) -> Result<Tensor> {
        let x = ((x * 2.0)? - 1.0)?;
        let x = self.conv1.forward(&x)?.relu()?;
        let x = self.conv2.forward(&x)?.relu()?;
        self.conv3.forward(&x)
    }

    /// `E2`: `h1` -> `h` `[n, h_dim]`.
    pub fn h1_to_h(&self, h1: &Tensor) -> Result<Tensor> {
        self.fc6.forward(&flatten(h1)?)?.relu()
    }

    /// The code before its ReLU, `u` with `h = relu(u)` (what the flow
    /// prior models).
    pub fn encode_pre_relu(&self, x: &Tensor) -> Result<Tensor> {
        self.fc6.forward(&flatten(&self.encode_h1(x)?)?)
    }

    /// `E = E2 . E1`: images -> `h`.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        self.h1_to_h(&self.encode_h1(x)?)
    }

    /// The classifier head: `h` -> logits.
    pub fn classify_h(&self, h: &Tensor) -> Result<Tensor> {
        self.fc8.forward(h)
    }

    /// The sampling engine's twin of [`Module::forward`]: images
    /// `(28, 28, 1)` -> logits, with taps `h1` (post-ReLU, `E1`), `h`
    /// (post-ReLU, what `E` gives) and `logits`.
    pub fn compile<T: Real + WithDType>(&self) -> Result<Net<T>> {
        let [c1, c2, _] = self.cfg.channels;
        let conv = |c: &Conv2d, side: usize, cin: usize| {
            build::conv(
                Window::symmetric(side, side, cin, 3, c.stride, c.pad),
                &c.weight,
                c.bias.as_ref(),
                Act::Relu,
            )
        };
        let (hh, hw, hc) = self.cfg.h1_shape();
        let mut g = build::Builder::new((28, 28, 1));
        g.push(build::affine(1, 2.0, -1.0));
        g.push(conv(&self.conv1, 28, 1)?);
        g.push(conv(&self.conv2, 28, c1)?);
        g.push(conv(&self.conv3, 14, c2)?);
        g.tap("h1");
        g.push(Op::Reshape((1, 1, hh * hw * hc)));
        g.push(build::linear(
            &self.fc6.weight,
            self.fc6.bias.as_ref(),
            Act::Relu,
        )?);
        g.tap("h");
        g.push(build::linear(
            &self.fc8.weight,
            self.fc8.bias.as_ref(),
            Act::Identity,
        )?);
        g.tap("logits");
        g.build()
    }

    /// [`Classifier::compile`] up to a layer before its ReLU (what neuron
    /// conditions read): `h1`, `h` (or `fc6`) or `logits` (or `fc8`).
    pub fn compile_to<T: Real + WithDType>(&self, layer: &str) -> crate::error::Result<Net<T>> {
        let name = match layer {
            "fc6" => "h",
            "fc8" => "logits",
            other => other,
        };
        self.compile::<T>()?.upto(name, true)
    }

    pub fn forward_all(&self, x: &Tensor) -> Result<ClassifierOutput> {
        let h1 = self.encode_h1(x)?;
        let h = self.h1_to_h(&h1)?;
        let logits = self.classify_h(&h)?;
        Ok(ClassifierOutput { h1, h, logits })
    }
}

impl Module for Classifier {
    /// Images -> logits.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.classify_h(&self.encode(x)?)
    }
}
