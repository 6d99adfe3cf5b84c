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
//! Widths are a config (the paper's sizes are [`CaffeNetConfig::caffenet`]
//! and [`DgnConfig::fc6`]) so that tests can check the exact gradient of
//! small instances in f64.

use std::collections::HashMap;

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

use super::weights::check_tensors;
use crate::nn::{conv2d_nhwc, conv_transpose2d_nhwc, leaky_relu};

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

/// Max pooling on NHWC as the maximum of `k*k` strided views (exact
/// gradient from `maximum`; candle's `max_pool2d` backward is wrong).
/// Caffe rounds the output side up; with AlexNet's sizes it is exact.
pub fn max_pool_nhwc(x: &Tensor, k: usize, s: usize) -> Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    let (ho, wo) = ((h - k) / s + 1, (w - k) / s + 1);
    // pad so every strided view of length s*ho fits; the extra rows are
    // never selected
    let x = x.pad_with_zeros(1, 0, (k + s * ho).saturating_sub(h))?;
    let x = x.pad_with_zeros(2, 0, (k + s * wo).saturating_sub(w))?;
    let mut out: Option<Tensor> = None;
    for dy in 0..k {
        for dx in 0..k {
            let v = x
                .narrow(1, dy, s * ho)?
                .narrow(2, dx, s * wo)?
                .reshape((b, ho, s, wo, s, c))?
                .narrow(2, 0, 1)?
                .narrow(4, 0, 1)?
                .reshape((b, ho, wo, c))?;
            out = Some(match out {
                None => v,
                Some(o) => o.maximum(&v)?,
            });
        }
    }
    Ok(out.expect("k >= 1"))
}

/// Caffe's cross-channel local response normalisation:
/// `x / (1 + alpha / n * sum_{window of n channels} x^2)^beta`.
pub fn lrn_nhwc(x: &Tensor, n: usize, alpha: f64, beta: f64) -> Result<Tensor> {
    let c = x.dim(3)?;
    let sq = x.sqr()?.pad_with_zeros(3, n / 2, n / 2)?;
    let mut sum = sq.narrow(3, 0, c)?;
    for i in 1..n {
        sum = (sum + sq.narrow(3, i, c)?)?;
    }
    let denom = ((sum * (alpha / n as f64))? + 1.0)?.powf(beta)?;
    x / denom
}

/// A convolution with Caffe's channel groups.
fn grouped_conv(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    groups: usize,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    if groups == 1 {
        return conv2d_nhwc(x, w, Some(b), stride, pad);
    }
    let (cin, cout) = (x.dim(3)? / groups, w.dim(0)? / groups);
    let parts = (0..groups)
        .map(|g| {
            conv2d_nhwc(
                &x.narrow(3, g * cin, cin)?,
                &w.narrow(0, g * cout, cout)?,
                Some(&b.narrow(0, g * cout, cout)?),
                stride,
                pad,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 3)
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

    fn fc(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        let wt = &self.w[&format!("{name}.weight")];
        crate::nn::frozen::matmul(x, &wt.t()?)?.broadcast_add(&self.w[&format!("{name}.bias")])
    }

    fn conv(
        &self,
        x: &Tensor,
        name: &str,
        groups: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Tensor> {
        let w = &self.w[&format!("{name}.weight")];
        let b = &self.w[&format!("{name}.bias")];
        grouped_conv(x, w, b, groups, stride, pad)?.relu()
    }

    /// fc6 before its ReLU, `[n, fc]`, of Caffe-space images `[n, 227, 227, 3]`.
    pub fn fc6_pre(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv(x, "conv1", 1, 4, 0)?;
        let y = lrn_nhwc(&max_pool_nhwc(&y, 3, 2)?, 5, 1e-4, 0.75)?;
        let y = self.conv(&y, "conv2", 2, 1, 2)?;
        let y = lrn_nhwc(&max_pool_nhwc(&y, 3, 2)?, 5, 1e-4, 0.75)?;
        let y = self.conv(&y, "conv3", 1, 1, 1)?;
        let y = self.conv(&y, "conv4", 2, 1, 1)?;
        let y = self.conv(&y, "conv5", 2, 1, 1)?;
        let y = max_pool_nhwc(&y, 3, 2)?; // pool5 [n, 6, 6, 256]
                                          // Caffe flattens channel-major
        let y = y.permute((0, 3, 1, 2))?.flatten_from(1)?;
        self.fc(&y, "fc6")
    }

    /// The code `h`: fc6 after its ReLU (the encoder `E` of PPGN-h).
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        self.fc6_pre(x)?.relu()
    }

    /// Class logits `[n, classes]` (fc8).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.encode(x)?;
        let h7 = self.fc(&h, "fc7")?.relu()?;
        self.fc(&h7, "fc8")
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

    /// Caffe-space images `[n, side, side, 3]` (BGR minus the mean) of codes `[n, code]`.
    pub fn forward_full(&self, h: &Tensor) -> Result<Tensor> {
        let fc = |x: &Tensor, name: &str| -> Result<Tensor> {
            let y = crate::nn::frozen::matmul(x, &self.w[&format!("{name}.weight")].t()?)?
                .broadcast_add(&self.w[&format!("{name}.bias")])?;
            leaky_relu(&y, 0.3)
        };
        let y = fc(&fc(&fc(h, "defc7")?, "defc6")?, "defc5")?;
        let n = y.dim(0)?;
        // Caffe reshapes channel-major: [n, c, 4, 4] -> NHWC
        let mut y = y
            .reshape((n, self.cfg.channels[0], 4, 4))?
            .permute((0, 2, 3, 1))?
            .contiguous()?;
        let layers = dgn_layers(&self.cfg);
        for (i, (name, deconv, _, _)) in layers.iter().enumerate() {
            let w = &self.w[&format!("{name}.weight")];
            let b = &self.w[&format!("{name}.bias")];
            y = if *deconv {
                conv_transpose2d_nhwc(&y, w, Some(b), 2, 1)?
            } else {
                conv2d_nhwc(&y, w, Some(b), 1, 1)?
            };
            if i + 1 < layers.len() {
                y = leaky_relu(&y, 0.3)?;
            }
        }
        Ok(y)
    }

    /// The center `crop x crop` of [`DgnGenerator::forward_full`], what
    /// CaffeNet sees.
    pub fn forward(&self, h: &Tensor) -> Result<Tensor> {
        let off = (self.cfg.side - self.cfg.crop) / 2;
        self.forward_full(h)?
            .narrow(1, off, self.cfg.crop)?
            .narrow(2, off, self.cfg.crop)?
            .contiguous()
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
