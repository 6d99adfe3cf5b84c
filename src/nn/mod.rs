//! Layers built from candle primitives whose backward passes are correct
//! (matmul, reshape, permute, relu, tanh, exp/log) and our im2col/col2im
//! pair. We avoid the
//! candle ops with wrong or slow backward (`max_pool2d`,
//! `upsample_*`, `conv_transpose2d`, `softmax_last_dim`), so every network
//! here differentiates exactly, which the gradient-check tests verify in f64.
//!
//! All image tensors are NHWC (`[batch, height, width, channels]`): with
//! channels last, a convolution is one matrix product over patches.

pub mod adam;
pub mod depthwise;
pub mod fast;
pub mod frechet;
pub mod frozen;
pub mod im2col;
pub mod init;
pub mod resize;

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
    if (kh, kw, stride, pad) == (1, 1, 1, 0) {
        // a 1x1 convolution is a matrix product as it stands: no patches
        let y = frozen::matmul(
            &x.reshape((b * h * wd, cin))?,
            &w.reshape((cout, cin))?.t()?,
        )?;
        let y = match bias {
            Some(bias) => y.broadcast_add(bias)?,
            None => y,
        };
        return y.reshape((b, h, wd, cout));
    }
    let g = Batched {
        b,
        window: Window {
            h,
            w: wd,
            c: cin,
            kh,
            kw,
            stride,
            pad_top: pad,
            pad_left: pad,
            ho,
            wo,
        },
    };
    let patches = im2col::im2col(x, g)?; // [b*ho*wo, kh*kw*cin], column order (dy, dx, c)
                                         // [kh*kw*cin, cout] in the same (dy, dx, c) order
    let wm = w.permute((2, 3, 1, 0))?.reshape((kh * kw * cin, cout))?;
    let y = frozen::matmul(&patches, &wm)?;
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
    pub conv: Conv2d,
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
pub fn linear(vb: VarBuilder, din: usize, dout: usize) -> Result<frozen::Linear> {
    let weight = vb.get((dout, din), "weight")?;
    let bias = Some(vb.get(dout, "bias")?);
    Ok(frozen::Linear { weight, bias })
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

/// Depthwise 2-D convolution on NHWC input (one `k x k` filter per channel),
/// weights in PyTorch layout `[c, 1, kh, kw]`, symmetric zero padding.
/// Our custom op ([`depthwise`]), not candle's one-convolution-per-channel
/// grouped path.
pub fn depthwise_conv2d_nhwc(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let (_, h, wd, _) = x.dims4()?;
    let (_, _, kh, kw) = w.dims4()?;
    if h + 2 * pad < kh || wd + 2 * pad < kw {
        candle_core::bail!(
            "depthwise conv2d: input {h}x{wd} (pad {pad}) smaller than kernel {kh}x{kw}"
        )
    }
    let ho = (h + 2 * pad - kh) / stride + 1;
    let wo = (wd + 2 * pad - kw) / stride + 1;
    depthwise_conv2d_padded(x, w, bias, stride, (pad, pad), (ho, wo))
}

/// Depthwise convolution with `pad.0` zero rows above and `pad.1` zero
/// columns left of the input and output side `out` (the bottom/right
/// padding follows): TensorFlow's asymmetric "same" without a padded copy.
pub fn depthwise_conv2d_padded(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    pad: (usize, usize),
    out: (usize, usize),
) -> Result<Tensor> {
    let (b, h, wd, c) = x.dims4()?;
    let (wc, one, kh, kw) = w.dims4()?;
    if wc != c || one != 1 {
        candle_core::bail!(
            "depthwise conv2d: input has {c} channels, weight {:?} expects [{c}, 1, k, k]",
            w.dims()
        );
    }
    let g = Batched {
        b,
        window: Window {
            h,
            w: wd,
            c,
            kh,
            kw,
            stride,
            pad_top: pad.0,
            pad_left: pad.1,
            ho: out.0,
            wo: out.1,
        },
    };
    let taps = w.reshape((c, kh * kw))?.t()?; // [kh*kw, c], (dy, dx) order
    let y = depthwise::depthwise_conv2d(x, &taps, g)?;
    match bias {
        Some(bias) => y.broadcast_add(bias),
        None => Ok(y),
    }
}

pub use fast::window::tf_same;
use fast::window::{Batched, Window};

/// A differentiable function of a batch, e.g. `G`, `C`, or a layer of `E`.
pub type Func = std::sync::Arc<dyn Fn(&Tensor) -> Result<Tensor> + Send + Sync>;

/// The identity, for conditions on images sampled directly.
pub fn identity() -> Func {
    std::sync::Arc::new(|x: &Tensor| Ok(x.clone()))
}

/// Transposed 2-D convolution on NHWC input, weights in PyTorch's
/// `ConvTranspose2d` layout `[in, out, kh, kw]`: the adjoint of
/// [`conv2d_nhwc`] with the same weights, so one matrix product to patches
/// and our col2im (whose backward is im2col). Output side
/// `(in - 1) * stride - 2 * pad + k`.
pub fn conv_transpose2d_nhwc(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let (b, h, wd, cin) = x.dims4()?;
    let (wcin, cout, kh, kw) = w.dims4()?;
    if wcin != cin {
        candle_core::bail!(
            "conv_transpose2d: input has {cin} channels, weight {:?} expects {wcin}",
            w.dims()
        );
    }
    let side = |n: usize, k: usize| ((n - 1) * stride + k).checked_sub(2 * pad);
    let (Some(ho), Some(wo)) = (side(h, kh), side(wd, kw)) else {
        candle_core::bail!("conv_transpose2d: padding {pad} larger than the output")
    };
    let window = Window {
        h: ho,
        w: wo,
        c: cout,
        kh,
        kw,
        stride,
        pad_top: pad,
        pad_left: pad,
        ho: (ho + 2 * pad - kh) / stride + 1,
        wo: (wo + 2 * pad - kw) / stride + 1,
    };
    let g = Batched { b, window };
    if (window.ho, window.wo) != (h, wd) {
        candle_core::bail!("conv_transpose2d: geometry {g:?} does not invert to {h}x{wd}");
    }
    // [cin, kh*kw*cout] in im2col's (dy, dx, c) column order
    let wm = w.permute((0, 2, 3, 1))?.reshape((cin, kh * kw * cout))?;
    let cols = frozen::matmul(&x.reshape((b * h * wd, cin))?, &wm)?;
    let y = im2col::col2im(&cols, g)?;
    match bias {
        Some(bias) => y.broadcast_add(bias),
        None => Ok(y),
    }
}

/// `min(max(x, 0), 6)` as `x * 1[0 < x < 6] + 6 * 1[x >= 6]` with constant
/// masks: gradient 1 strictly inside (0, 6) and 0 elsewhere, as PyTorch's
/// `relu6`. (`relu(x) - relu(x - 6)` would pass the gradient at exactly 0,
/// since candle's relu does there.)
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    let x_const = x.detach();
    let inside = (x_const.gt(0.0)?.to_dtype(x.dtype())? * x_const.lt(6.0)?.to_dtype(x.dtype())?)?;
    let top = (x_const.ge(6.0)?.to_dtype(x.dtype())? * 6.0)?;
    (x * inside)? + top
}
