//! The papers' own networks, for users who bring converted weights:
//! CaffeNet (the BVLC reference AlexNet, the condition network and the
//! encoder `E` up to fc6 of "Plug & Play Generative Networks" (supplementary), S9.4) and the DGN
//! fc6 generator of Dosovitskiy & Brox (2016), the `G` of PPGN-h and
//! DGN-AM.
//!
//! Weights are read from safetensors with the Caffe layer names (see
//! [`alexnet_tensors`] and [`generator_tensors`] for the names and shapes;
//! docs/caffe-weights.md says how to convert a `.caffemodel`). Caffe's
//! layouts carry over unchanged: convolution `[out, in/groups, kh, kw]`,
//! deconvolution `[in, out, kh, kw]`, inner product `[out, in]`, and blobs
//! flattened channel-major (CHW), which we honour when flattening or
//! reshaping our NHWC tensors. Images are Caffe's: BGR, 0..255 minus the
//! ImageNet mean pixel, 227x227 for CaffeNet; the generator outputs 256x256
//! which is center-cropped to 227.
//!
//! Both are described once, as graphs of the sampling engine
//! ([`CaffeNet::compile`], [`DgnGenerator::compile`]); the reference path
//! runs the same graphs through candle's autograd. Widths are a config (the
//! paper's sizes are [`CaffeNetConfig::caffenet`] and [`DgnConfig::fc6`]) so
//! that tests can check small instances against PyTorch in f64
//! (scripts/caffe_fixtures.py).

use std::collections::HashMap;

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

use super::weights::check_tensors;
use crate::nn::fast::build::{self, Builder};
use crate::nn::fast::kernels::Act;
use crate::nn::fast::real::Real;
use crate::nn::fast::window::Window;
use crate::nn::fast::{Net, Op, Shape};

/// The ImageNet mean pixel in BGR, as the Caffe models subtract it.
pub const MEAN_BGR: [f32; 3] = [104.0, 117.0, 123.0];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaffeNetConfig {
    /// Output channels of conv1..conv5.
    pub conv: [usize; 5],
    /// Width of fc6 and fc7 (the code `h` is fc6).
    pub fc: usize,
    pub classes: usize,
    /// Input side (227).
    pub image: usize,
}

impl CaffeNetConfig {
    pub fn caffenet() -> Self {
        Self {
            conv: [96, 256, 384, 384, 256],
            fc: 4096,
            classes: 1000,
            image: 227,
        }
    }
    /// Side of pool5 (6 for 227).
    pub fn pool5_side(&self) -> usize {
        let c1 = (self.image - 11) / 4 + 1; // conv1, stride 4
        let p1 = (c1 - 3) / 2 + 1;
        let p2 = (p1 - 3) / 2 + 1;
        (p2 - 3) / 2 + 1
    }
}

/// Tensor names and shapes of a CaffeNet safetensors file.
pub fn alexnet_tensors(cfg: &CaffeNetConfig) -> Vec<(String, Vec<usize>)> {
    let c = cfg.conv;
    let p = cfg.pool5_side();
    let mut t = Vec::new();
    // (name, out, in per group, kernel)
    for (name, out, inp, k) in [
        ("conv1", c[0], 3, 11),
        ("conv2", c[1], c[0] / 2, 5),
        ("conv3", c[2], c[1], 3),
        ("conv4", c[3], c[2] / 2, 3),
        ("conv5", c[4], c[3] / 2, 3),
    ] {
        t.push((format!("{name}.weight"), vec![out, inp, k, k]));
        t.push((format!("{name}.bias"), vec![out]));
    }
    for (name, out, inp) in [
        ("fc6", cfg.fc, c[4] * p * p),
        ("fc7", cfg.fc, cfg.fc),
        ("fc8", cfg.classes, cfg.fc),
    ] {
        t.push((format!("{name}.weight"), vec![out, inp]));
        t.push((format!("{name}.bias"), vec![out]));
    }
    t
}

/// A convolution with Caffe's channel `groups` on the value in `from`
/// (shape `s`), followed by a ReLU: for two groups, each half of the
/// channels through its half of the filters, side by side again. Returns
/// the slot and shape of the output.
#[allow(clippy::too_many_arguments)]
fn grouped_conv_op<T: Real + candle_core::WithDType>(
    b: &mut Builder<T>,
    (from, s): (usize, Shape),
    w: &Tensor,
    bias: &Tensor,
    groups: usize,
    stride: usize,
    pad: usize,
) -> Result<(usize, Shape)> {
    let (cout, _, k, _) = w.dims4()?;
    let (gi, go) = (s.2 / groups, cout / groups);
    let window = Window::symmetric(s.0, s.1, gi, k, stride, pad);
    let mut outs = Vec::new();
    for g in 0..groups {
        let x = match groups {
            1 => from,
            _ => b.push_from(
                from,
                Op::Slice {
                    at: (0, 0, g * gi),
                    out: (s.0, s.1, gi),
                },
            ),
        };
        let op = build::conv(
            window,
            &w.narrow(0, g * go, go)?,
            Some(&bias.narrow(0, g * go, go)?),
            Act::Relu,
        )?;
        outs.push(b.push_from(x, op));
    }
    let slot = match groups {
        1 => outs[0],
        _ => b.concat(&outs),
    };
    Ok((slot, (window.ho, window.wo, cout)))
}

/// Caffe's 3x3 stride-2 max pooling (`pool1`, `pool2`, `pool5`) on a value
/// of shape `s`.
fn pool_op<T: Real>(b: &mut Builder<T>, s: Shape) -> Shape {
    let window = Window::symmetric(s.0, s.1, s.2, 3, 2, 0);
    b.push(Op::MaxPool { window });
    (window.ho, window.wo, s.2)
}

/// CaffeNet's `norm1`, `norm2`.
fn lrn_op<T>() -> Op<T> {
    Op::Lrn {
        size: 5,
        alpha: 1e-4,
        beta: 0.75,
        k: 1.0,
    }
}

#[derive(Debug, Clone)]
pub struct CaffeNet {
    w: HashMap<String, Tensor>,
    pub cfg: CaffeNetConfig,
}

impl CaffeNet {
    pub fn from_tensors(w: HashMap<String, Tensor>, cfg: CaffeNetConfig) -> Result<Self> {
        check_tensors(&w, &alexnet_tensors(&cfg))?;
        Ok(Self { w, cfg })
    }

    /// The network on the sampling engine, from Caffe-space images `(227,
    /// 227, 3)` to the logits; taps `conv1`..`conv5` (after their ReLU),
    /// `pool5`, `h` (fc6 after its ReLU, the code), `fc7` and `logits`.
    pub fn compile<T: Real + candle_core::WithDType>(&self) -> Result<Net<T>> {
        let w = |name: &str, part: &str| &self.w[&format!("{name}.{part}")];
        let side = self.cfg.image;
        let mut b = Builder::new((side, side, 3));
        let mut at = (0, (side, side, 3));
        for (i, (name, groups, stride, pad)) in [
            ("conv1", 1, 4, 0),
            ("conv2", 2, 1, 2),
            ("conv3", 1, 1, 1),
            ("conv4", 2, 1, 1),
            ("conv5", 2, 1, 1),
        ]
        .into_iter()
        .enumerate()
        {
            let (wt, bias) = (w(name, "weight"), w(name, "bias"));
            let (slot, s) = grouped_conv_op(&mut b, at, wt, bias, groups, stride, pad)?;
            b.tap(name);
            at = (slot, s);
            if i < 2 || i == 4 {
                let s = pool_op(&mut b, s);
                if i < 2 {
                    b.push(lrn_op());
                } else {
                    b.tap("pool5");
                }
                at = (b.last(), s);
            }
        }
        let s = at.1;
        b.push(Op::Reshape((1, 1, s.0 * s.1 * s.2)));
        // Caffe flattens pool5 channel-major (c, y, x); the engine's values
        // are (y, x, c): fc6 reads its weight's columns in that order
        let fc6 = w("fc6", "weight");
        let fc6 = fc6
            .reshape((fc6.dim(0)?, s.2, s.0, s.1))?
            .permute((0, 2, 3, 1))?
            .reshape((fc6.dim(0)?, s.0 * s.1 * s.2))?;
        b.push(build::linear(&fc6, Some(w("fc6", "bias")), Act::Relu)?);
        b.tap("h");
        for (name, act, tap) in [("fc7", Act::Relu, "fc7"), ("fc8", Act::Identity, "logits")] {
            b.push(build::linear(
                w(name, "weight"),
                Some(w(name, "bias")),
                act,
            )?);
            b.tap(tap);
        }
        b.build()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DgnConfig {
    /// Width of the code (fc6) and of defc7, defc6, defc5.
    pub code: usize,
    /// Channels after the reshape to 4x4, and of deconv5, conv5_1, deconv4,
    /// conv4_1, deconv3, conv3_1, deconv2, deconv1.
    pub channels: [usize; 9],
    /// Output side before the crop (256) and after it (227).
    pub side: usize,
    pub crop: usize,
}

impl DgnConfig {
    pub fn fc6() -> Self {
        Self {
            code: 4096,
            channels: [256, 256, 512, 256, 256, 128, 128, 64, 32],
            side: 256,
            crop: 227,
        }
    }
}

/// The generator's layers after the fully connected ones: (name, kind,
/// in, out); deconvolutions are 4x4 stride 2 pad 1 (doubling the side),
/// convolutions 3x3 pad 1.
fn dgn_layers(cfg: &DgnConfig) -> Vec<(&'static str, bool, usize, usize)> {
    let c = cfg.channels;
    vec![
        ("deconv5", true, c[0], c[1]),
        ("conv5_1", false, c[1], c[2]),
        ("deconv4", true, c[2], c[3]),
        ("conv4_1", false, c[3], c[4]),
        ("deconv3", true, c[4], c[5]),
        ("conv3_1", false, c[5], c[6]),
        ("deconv2", true, c[6], c[7]),
        ("deconv1", true, c[7], c[8]),
        ("deconv0", true, c[8], 3),
    ]
}

/// Tensor names and shapes of a DGN fc6 generator safetensors file.
pub fn generator_tensors(cfg: &DgnConfig) -> Vec<(String, Vec<usize>)> {
    let mut t = Vec::new();
    let flat = cfg.channels[0] * 16;
    for (name, out, inp) in [
        ("defc7", cfg.code, cfg.code),
        ("defc6", cfg.code, cfg.code),
        ("defc5", flat, cfg.code),
    ] {
        t.push((format!("{name}.weight"), vec![out, inp]));
        t.push((format!("{name}.bias"), vec![out]));
    }
    for (name, deconv, cin, cout) in dgn_layers(cfg) {
        let shape = if deconv {
            vec![cin, cout, 4, 4]
        } else {
            vec![cout, cin, 3, 3]
        };
        t.push((format!("{name}.weight"), shape));
        t.push((format!("{name}.bias"), vec![cout]));
    }
    t
}

#[derive(Debug, Clone)]
pub struct DgnGenerator {
    w: HashMap<String, Tensor>,
    pub cfg: DgnConfig,
}

impl DgnGenerator {
    pub fn from_tensors(w: HashMap<String, Tensor>, cfg: DgnConfig) -> Result<Self> {
        check_tensors(&w, &generator_tensors(&cfg))?;
        let side = 4 << dgn_layers(&cfg).iter().filter(|l| l.1).count();
        if side != cfg.side || cfg.crop > cfg.side {
            candle_core::bail!(
                "generator config: six doublings of 4x4 give {side}, not side {} (crop {})",
                cfg.side,
                cfg.crop
            );
        }
        Ok(Self { w, cfg })
    }

    /// The generator on the sampling engine, from codes `(1, 1, code)` to
    /// the centre `crop x crop` of its Caffe-space images (what CaffeNet
    /// sees); taps `defc5` and `image`.
    pub fn compile<T: Real + candle_core::WithDType>(&self) -> Result<Net<T>> {
        let w = |name: &str, part: &str| &self.w[&format!("{name}.{part}")];
        let leaky = Act::Leaky(0.3);
        let mut b = Builder::new((1, 1, self.cfg.code));
        for name in ["defc7", "defc6"] {
            b.push(build::linear(
                w(name, "weight"),
                Some(w(name, "bias")),
                leaky,
            )?);
        }
        // Caffe reshapes defc5 channel-major to (c, 4, 4): its rows are put
        // in the engine's (y, x, c) order
        let c0 = self.cfg.channels[0];
        let (d5, b5) = (w("defc5", "weight"), w("defc5", "bias"));
        let d5 = d5
            .reshape((c0, 4, 4, self.cfg.code))?
            .permute((1, 2, 0, 3))?
            .reshape((16 * c0, self.cfg.code))?;
        let b5 = b5.reshape((c0, 4, 4))?.permute((1, 2, 0))?.flatten_all()?;
        b.push(build::linear(&d5, Some(&b5), leaky)?);
        b.tap("defc5");
        b.push(Op::Reshape((4, 4, c0)));
        let layers = dgn_layers(&self.cfg);
        let mut side = 4;
        for (i, (name, deconv, cin, _)) in layers.iter().enumerate() {
            let act = if i + 1 < layers.len() {
                leaky
            } else {
                Act::Identity
            };
            let (wt, bias) = (w(name, "weight"), Some(w(name, "bias")));
            b.push(if *deconv {
                side *= 2;
                build::conv_transpose((side / 2, side / 2), wt, bias, 2, 1, act)?
            } else {
                build::conv(Window::symmetric(side, side, *cin, 3, 1, 1), wt, bias, act)?
            });
        }
        let off = (self.cfg.side - self.cfg.crop) / 2;
        b.push(Op::Slice {
            at: (off, off, 0),
            out: (self.cfg.crop, self.cfg.crop, 3),
        });
        b.tap("image");
        b.build()
    }

    /// Caffe-space images to RGB in [0, 1] for display.
    pub fn to_rgb(x: &Tensor) -> Result<Tensor> {
        let mean = Tensor::new(&MEAN_BGR, x.device())?.to_dtype(x.dtype())?;
        let bgr = (x.broadcast_add(&mean)? / 255.0)?.clamp(0.0, 1.0)?;
        Tensor::cat(
            &[
                bgr.narrow(3, 2, 1)?,
                bgr.narrow(3, 1, 1)?,
                bgr.narrow(3, 0, 1)?,
            ],
            3,
        )
    }
}
