//! Ops from candle weights in PyTorch layouts (the networks' own tensors,
//! so a compiled network computes exactly what its candle twin does).

use candle_core::{Result, Tensor, WithDType};

use super::kernels::Act;
use super::real::Real;
use super::window::Window;
use super::Op;

/// A tensor's values, converted to `T`, in row-major order.
pub fn values<T: Real + WithDType>(t: &Tensor) -> Result<Vec<T>> {
    t.to_dtype(T::DTYPE)?.flatten_all()?.to_vec1::<T>()
}

/// A bias, or zeros.
fn bias_or_zeros<T: Real + WithDType>(b: Option<&Tensor>, c: usize) -> Result<Vec<T>> {
    match b {
        Some(b) => values(b),
        None => Ok(vec![T::zero(); c]),
    }
}

/// A convolution with weights `[out, in, kh, kw]` on `window`.
pub fn conv<T: Real + WithDType>(
    window: Window,
    weight: &Tensor,
    bias: Option<&Tensor>,
    act: Act,
) -> Result<Op<T>> {
    let (cout, cin, kh, kw) = weight.dims4()?;
    if (cin, kh, kw) != (window.c, window.kh, window.kw) {
        candle_core::bail!(
            "convolution weight {:?} does not fit {window:?}",
            weight.dims()
        );
    }
    Ok(Op::Conv {
        window,
        // [kh*kw*cin, cout] in (dy, dx, cin) row order
        weight: values(&weight.permute((2, 3, 1, 0))?.contiguous()?)?,
        bias: bias_or_zeros(bias, cout)?,
        act,
    })
}

/// A fully connected layer, weights `[out, in]`, on a `(1, 1, in)` input.
pub fn linear<T: Real + WithDType>(
    weight: &Tensor,
    bias: Option<&Tensor>,
    act: Act,
) -> Result<Op<T>> {
    let (dout, din) = weight.dims2()?;
    conv(
        Window::symmetric(1, 1, din, 1, 1, 0),
        &weight.reshape((dout, din, 1, 1))?,
        bias,
        act,
    )
}

/// A transposed convolution, weights `[in, out, kh, kw]`, stride and
/// symmetric padding as PyTorch's `ConvTranspose2d`, on `h x w` inputs.
pub fn conv_transpose<T: Real + WithDType>(
    (h, w): (usize, usize),
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    pad: usize,
    act: Act,
) -> Result<Op<T>> {
    let (_, cout, kh, kw) = weight.dims4()?;
    if kh != kw {
        candle_core::bail!("transposed convolution: square kernels only, got {kh}x{kw}");
    }
    let side = |n: usize| ((n - 1) * stride + kh).checked_sub(2 * pad);
    let (Some(ho), Some(wo)) = (side(h), side(w)) else {
        candle_core::bail!("transposed convolution: padding {pad} larger than the output")
    };
    // the convolution this op is the adjoint of: output image -> input
    let window = Window::symmetric(ho, wo, cout, kh, stride, pad);
    if (window.ho, window.wo) != (h, w) {
        candle_core::bail!("transposed convolution: {window:?} does not invert to {h}x{w}");
    }
    Ok(Op::ConvTranspose {
        window,
        // [cin, kh*kw*cout] in (dy, dx, cout) column order
        weight: values(&weight.permute((0, 2, 3, 1))?.contiguous()?)?,
        bias: bias_or_zeros(bias, cout)?,
        act,
    })
}

/// A depthwise convolution, weights `[c, 1, kh, kw]`, on `window`.
pub fn depthwise<T: Real + WithDType>(
    window: Window,
    weight: &Tensor,
    bias: Option<&Tensor>,
    act: Act,
) -> Result<Op<T>> {
    let (c, one, kh, kw) = weight.dims4()?;
    if (c, one, kh, kw) != (window.c, 1, window.kh, window.kw) {
        candle_core::bail!(
            "depthwise weight {:?} does not fit {window:?}",
            weight.dims()
        );
    }
    Ok(Op::Depthwise {
        window,
        // [kh*kw, c]
        taps: values(&weight.reshape((c, kh * kw))?.t()?.contiguous()?)?,
        bias: bias_or_zeros(bias, c)?,
        act,
    })
}

/// Bilinear resizing of `from` images to `to x to`, as PyTorch's
/// `F.interpolate(mode="bilinear", align_corners=False)` (`crate::nn::resize`).
pub fn bilinear<T: Real + WithDType>(from: (usize, usize), to: usize) -> Result<Op<T>> {
    bilinear_to(from, (to, to))
}

/// Bilinear resizing of `from` images to `to` (height, width).
pub fn bilinear_to<T: Real + WithDType>(from: (usize, usize), to: (usize, usize)) -> Result<Op<T>> {
    let rows = |n: usize, m: usize| -> Result<_> {
        let mat = crate::nn::resize::bilinear_matrix(n, m, T::DTYPE, &candle_core::Device::Cpu)?;
        Ok(super::kernels::sparse_rows(&values::<T>(&mat)?, m, n))
    };
    Ok(Op::Resample {
        rh: rows(from.0, to.0)?,
        rw: rows(from.1, to.1)?,
    })
}

/// Nearest-neighbour resizing of `from` images to `to` (what PyTorch's
/// `interpolate(mode="nearest")` does and exports as ONNX `Resize` with
/// `asymmetric` coordinates and `floor`: output pixel `i` reads input
/// `floor(i * from / to)`).
pub fn nearest<T: Real>(from: (usize, usize), to: (usize, usize)) -> Op<T> {
    let rows = |n: usize, m: usize| -> super::kernels::SparseRows<T> {
        (0..m)
            .map(|i| vec![((i * n / m).min(n - 1), T::one())])
            .collect()
    };
    Op::Resample {
        rh: rows(from.0, to.0),
        rw: rows(from.1, to.1),
    }
}

/// Zero padding of `from` images by `(top, bottom, left, right)` pixels.
pub fn pad<T: Real>(
    from: (usize, usize),
    (top, bottom, left, right): (usize, usize, usize, usize),
) -> Op<T> {
    let rows = |n: usize, before: usize, after: usize| -> super::kernels::SparseRows<T> {
        (0..before + n + after)
            .map(|i| match i.checked_sub(before) {
                Some(j) if j < n => vec![(j, T::one())],
                _ => Vec::new(),
            })
            .collect()
    };
    Op::Resample {
        rh: rows(from.0, top, bottom),
        rw: rows(from.1, left, right),
    }
}

/// Average pooling over `window`, padding counted as zeros (PyTorch's
/// default `count_include_pad`): a depthwise convolution with equal taps.
pub fn average_pool<T: Real>(window: Window) -> Op<T> {
    let tap = T::one() / T::from(window.taps()).unwrap_or_else(T::one);
    Op::Depthwise {
        window,
        taps: vec![tap; window.taps() * window.c],
        bias: vec![T::zero(); window.c],
        act: Act::Identity,
    }
}

/// `x * scale + shift` with the same numbers on every channel.
pub fn affine<T: Real>(c: usize, scale: f64, shift: f64) -> Op<T> {
    Op::Affine {
        scale: vec![T::from(scale).unwrap(); c],
        shift: vec![T::from(shift).unwrap(); c],
    }
}

/// A compiled network from ops, with candle's error type.
pub fn net<T: Real>(input: super::Shape, ops: Vec<Op<T>>) -> Result<super::Net<T>> {
    super::Net::new(input, ops).map_err(|e| candle_core::Error::Msg(e.to_string()))
}

/// A network built op by op: each op reads the last value unless told
/// otherwise; layers are named as they are built.
pub struct Builder<T> {
    input: super::Shape,
    ops: Vec<Op<T>>,
    inputs: Vec<Vec<usize>>,
    taps: Vec<(String, usize)>,
}

impl<T: Real> Builder<T> {
    pub fn new(input: super::Shape) -> Self {
        Self {
            input,
            ops: Vec::new(),
            inputs: Vec::new(),
            taps: Vec::new(),
        }
    }

    /// The slot of the last value (0, the input, before any op).
    pub fn last(&self) -> usize {
        self.ops.len()
    }

    /// Appends `op` reading the last value; returns its output's slot.
    pub fn push(&mut self, op: Op<T>) -> usize {
        let last = self.last();
        self.ops.push(op);
        self.inputs.push(vec![last]);
        self.last()
    }

    /// Appends `op` reading the value in `slot`; returns its output's slot.
    pub fn push_from(&mut self, slot: usize, op: Op<T>) -> usize {
        self.ops.push(op);
        self.inputs.push(vec![slot]);
        self.last()
    }

    /// Appends the values in `slots` side by side along channels; returns
    /// its slot.
    pub fn concat(&mut self, slots: &[usize]) -> usize {
        self.ops.push(Op::Concat);
        self.inputs.push(slots.to_vec());
        self.last()
    }

    /// Appends `op` reading the values in `slots` (e.g. an [`Op::Binary`]
    /// of two); returns its output's slot.
    pub fn push_several(&mut self, slots: &[usize], op: Op<T>) -> usize {
        self.ops.push(op);
        self.inputs.push(slots.to_vec());
        self.last()
    }

    /// Appends the sum of the values in `slots`; returns its slot.
    pub fn add(&mut self, slots: &[usize]) -> usize {
        self.ops.push(Op::Add);
        self.inputs.push(slots.to_vec());
        self.last()
    }

    /// Names the last value.
    pub fn tap(&mut self, name: &str) {
        self.taps.push((name.to_string(), self.last()));
    }

    /// The network, checked.
    pub fn build(self) -> Result<super::Net<T>> {
        let mut net = super::Net::graph(self.input, self.ops, self.inputs)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        for (name, slot) in self.taps {
            net = net
                .with_tap(&name, Some(slot))
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        }
        Ok(net)
    }
}
