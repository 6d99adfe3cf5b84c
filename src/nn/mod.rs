//! Layers built from candle primitives whose backward passes are correct
//! (matmul, reshape, permute, relu, tanh, exp/log) and our im2col/col2im
//! pair. We avoid the
//! candle ops with wrong or slow backward (DESIGN.md: `max_pool2d`,
//! `upsample_*`, `conv_transpose2d`, `softmax_last_dim`), so every network
//! here differentiates exactly, which the gradient-check tests verify in f64.
//!
//! All image tensors are NHWC (`[batch, height, width, channels]`): with
//! channels last, a convolution is one matrix product over patches.

pub mod adam;
pub mod im2col;
pub mod init;

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use rand::Rng;

/// 2-D convolution on NHWC input, weights in PyTorch layout `[out, in, kh, kw]`.
///
/// Implemented as im2col (our custom op, whose backward is col2im) and one
/// matrix product with the reshaped kernel.
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: usize,
    pub pad: usize,
}

impl Conv2d {
    pub fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        let weight = vb.get((cout, cin, k, k), "weight")?;
        let bias = Some(vb.get(cout, "bias")?);
        Ok(Self {
            weight,
            bias,
            stride,
            pad,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d_nhwc(x, &self.weight, self.bias.as_ref(), self.stride, self.pad)
    }
}

/// `y[b, i, j, o] = bias[o] + sum_{dy,dx,c} x_pad[b, i*s+dy, j*s+dx, c] * w[o, c, dy, dx]`.
pub fn conv2d_nhwc(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let (b, h, wd, cin) = x.dims4()?;
    let (cout, wcin, kh, kw) = w.dims4()?;
    if wcin != cin {
        candle_core::bail!(
            "conv2d: input has {cin} channels, weight {:?} expects {wcin}",
            w.dims()
        );
    }
    let ho = (h + 2 * pad).checked_sub(kh).map(|v| v / stride + 1);
    let wo = (wd + 2 * pad).checked_sub(kw).map(|v| v / stride + 1);
    let (Some(ho), Some(wo)) = (ho, wo) else {
        candle_core::bail!("conv2d: input {h}x{wd} (pad {pad}) smaller than kernel {kh}x{kw}")
    };
    let g = im2col::Geometry {
        b,
        h,
        w: wd,
        c: cin,
        kh,
        kw,
        stride,
        pad,
    };
    let patches = im2col::im2col(x, g)?; // [b*ho*wo, kh*kw*cin], column order (dy, dx, c)
                                         // [kh*kw*cin, cout] in the same (dy, dx, c) order
    let wm = w.permute((2, 3, 1, 0))?.reshape((kh * kw * cin, cout))?;
    let y = patches.matmul(&wm)?;
    let y = match bias {
        Some(bias) => y.broadcast_add(bias)?,
        None => y,
    };
    y.reshape((b, ho, wo, cout))
}

/// Up-convolution by 2 (sub-pixel convolution): a 3x3 convolution to
/// `4 * cout` channels, each group of four filling one 2x2 output block.
/// It has the expressiveness of a stride-2 transposed convolution with a
/// 4x4 kernel, without candle's slow `conv_transpose2d`.
#[derive(Debug, Clone)]
pub struct UpConv2x {
    conv: Conv2d,
    cout: usize,
}

impl UpConv2x {
    pub fn new(vb: VarBuilder, cin: usize, cout: usize) -> Result<Self> {
        Ok(Self {
            conv: Conv2d::new(vb, cin, 4 * cout, 3, 1, 1)?,
            cout,
        })
    }
}

impl Module for UpConv2x {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, w, _) = x.dims4()?;
        let y = self.conv.forward(x)?; // [b, h, w, 4*cout], channel = (r, s, c)
        y.reshape((b, h, w, 2, 2, self.cout))?
            .permute((0, 1, 3, 2, 4, 5))? // [b, h, r, w, s, c]
            .reshape((b, 2 * h, 2 * w, self.cout))
    }
}

/// Fully connected layer, weights `[out, in]` as in PyTorch.
pub fn linear(vb: VarBuilder, din: usize, dout: usize) -> Result<candle_nn::Linear> {
    let w = vb.get((dout, din), "weight")?;
    let b = vb.get(dout, "bias")?;
    Ok(candle_nn::Linear::new(w, Some(b)))
}

/// Leaky ReLU as `relu(x) - a * relu(-x)`: exact gradient from relu's.
pub fn leaky_relu(x: &Tensor, a: f64) -> Result<Tensor> {
    x.relu()? - (x.neg()?.relu()? * a)?
}

/// Logistic sigmoid via tanh, which saturates without overflow: `(1 + tanh(x/2)) / 2`.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    ((x * 0.5)?.tanh()? + 1.0)? * 0.5
}

/// `log(sigmoid(x)) = -softplus(-x)`, computed stably as
/// `min(x, 0) - log(1 + exp(-|x|))`.
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let min0 = x.neg()?.relu()?.neg()?;
    min0 - (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// 2x2 average pooling on NHWC by reshape + mean (exact gradient).
pub fn avg_pool2(x: &Tensor) -> Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    x.reshape((b, h / 2, 2, w / 2, 2, c))?.mean(4)?.mean(2)
}

/// Flattens all but the first dimension.
pub fn flatten(x: &Tensor) -> Result<Tensor> {
    x.flatten_from(1)
}

/// Inverted dropout with a mask drawn from `rng` (candle's own CPU RNG
/// cannot be seeded, and training must be reproducible).
pub fn dropout(x: &Tensor, p: f32, rng: &mut impl Rng) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 - p;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.random::<f32>() < keep {
                1.0 / keep
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    x * mask
}

/// Standard-normal noise from `rng`, shaped like `like`.
pub fn gaussian_like(like: &Tensor, std: f64, rng: &mut impl Rng) -> Result<Tensor> {
    let v: Vec<f32> = (0..like.elem_count())
        .map(|_| rand_distr::Distribution::sample(&rand_distr::StandardNormal, rng))
        .collect();
    Tensor::from_vec(v, like.shape(), like.device())?.to_dtype(like.dtype())? * std
}

/// Mean squared error over all elements.
pub fn mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    (a - b)?.sqr()?.mean_all()
}

/// Class accuracy of `logits` [n, k] against `labels` [n] (u32).
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    let pred = logits.argmax(D::Minus1)?;
    let ok = pred
        .eq(labels)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok(ok as f64 / labels.dim(0)? as f64)
}
