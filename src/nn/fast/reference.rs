//! The reference path: a compiled [`Net`] run through candle's autograd,
//! each op mapped to the candle ops (and the project's custom ops) it
//! stands for, so `--engine reference` computes the same network from the
//! same description and its gradient comes from candle, not from the
//! engine's hand-written backward passes. Tests hold the two against each
//! other and against finite differences.

use candle_core::{DType, Result, Tensor, WithDType};

use super::kernels::{Act, SparseRows};
use super::op::Op;
use super::real::Real;
use super::window::{Batched, Window};
use super::{Net, Shape};
use crate::nn::{depthwise, frozen, im2col};

/// `net` as a differentiable candle function.
pub fn func(net: Net<f32>) -> crate::nn::Func {
    let net = std::sync::Arc::new(net);
    std::sync::Arc::new(move |x| forward(net.as_ref(), x))
}

/// `net` applied to `x [n, h, w, c]` (candle, differentiable).
pub fn forward<T: Real + WithDType>(net: &Net<T>, x: &Tensor) -> Result<Tensor> {
    forward_to(net, x, net.len())
}

/// The value of slot `slot` of `net` on `x`: `[n, h, w, c]`, or `[n, c]`
/// for a vector (`1 x 1 x c`), as candle networks take and give them.
pub fn forward_to<T: Real + WithDType>(net: &Net<T>, x: &Tensor, slot: usize) -> Result<Tensor> {
    let n = x.dim(0)?;
    let (h, w, c) = net.input();
    let mut tape = vec![x.reshape((n, h, w, c))?];
    for (i, op) in net.ops().iter().enumerate().take(slot) {
        let ins: Vec<&Tensor> = net.inputs(i).iter().map(|&s| &tape[s]).collect();
        let s = net.shape(net.inputs(i)[0]);
        let y = apply(op, &ins, s, net.shape(i + 1), x.dtype())?;
        tape.push(y);
    }
    let y = tape.swap_remove(slot);
    match net.shape(slot) {
        (1, 1, c) => y.reshape((n, c)),
        _ => Ok(y),
    }
}

/// A tensor of `values` shaped `shape`, in `dtype`.
fn tensor<T: Real + WithDType>(values: &[T], shape: &[usize], dtype: DType) -> Result<Tensor> {
    Tensor::from_slice(values, shape, &candle_core::Device::Cpu)?.to_dtype(dtype)
}

/// A sparse `[to, from]` matrix made dense.
fn dense<T: Real + WithDType>(rows: &SparseRows<T>, from: usize, dtype: DType) -> Result<Tensor> {
    let mut m = vec![T::zero(); rows.len() * from];
    for (i, r) in rows.iter().enumerate() {
        for &(j, v) in r {
            m[i * from + j] = v;
        }
    }
    tensor(&m, &[rows.len(), from], dtype)
}

fn act(a: Act, y: Tensor) -> Result<Tensor> {
    match a {
        Act::Identity => Ok(y),
        Act::Relu => y.relu(),
        Act::Relu6 => crate::nn::relu6(&y),
        Act::Leaky(s) => crate::nn::leaky_relu(&y, s),
        Act::Sigmoid => crate::nn::sigmoid(&y),
        Act::Tanh => y.tanh(),
    }
}

/// One op on its inputs of shape `s` (the first), giving shape `out`.
fn apply<T: Real + WithDType>(
    op: &Op<T>,
    ins: &[&Tensor],
    s: Shape,
    out: Shape,
    dt: DType,
) -> Result<Tensor> {
    let x = ins[0];
    let n = x.dim(0)?;
    match op {
        Op::Conv {
            window,
            weight,
            bias,
            act: a,
        } => {
            let k = window.taps() * window.c;
            let wm = tensor(weight, &[k, bias.len()], dt)?;
            let cols = if window.is_pointwise() {
                x.reshape((n * window.h * window.w, window.c))?
            } else {
                im2col::im2col(x, batched(n, window))?
            };
            let y = frozen::matmul(&cols, &wm)?.broadcast_add(&tensor(bias, &[bias.len()], dt)?)?;
            act(*a, y.reshape((n, out.0, out.1, out.2))?)
        }
        Op::ConvTranspose {
            window,
            weight,
            bias,
            act: a,
        } => {
            let cin = s.2;
            let wm = tensor(weight, &[cin, window.taps() * window.c], dt)?;
            let cols = frozen::matmul(&x.reshape((n * s.0 * s.1, cin))?, &wm)?;
            let y = im2col::col2im(&cols, batched(n, window))?;
            act(*a, y.broadcast_add(&tensor(bias, &[bias.len()], dt)?)?)
        }
        Op::Depthwise {
            window,
            taps,
            bias,
            act: a,
        } => {
            let t = tensor(taps, &[window.taps(), window.c], dt)?;
            let y = depthwise::depthwise_conv2d(x, &t, batched(n, window))?;
            act(*a, y.broadcast_add(&tensor(bias, &[bias.len()], dt)?)?)
        }
        Op::Affine { scale, shift } => x
            .broadcast_mul(&tensor(scale, &[scale.len()], dt)?)?
            .broadcast_add(&tensor(shift, &[shift.len()], dt)?),
        Op::PixelShuffle2 => {
            let (h, w, c) = (s.0, s.1, s.2 / 4);
            x.reshape((n, h, w, 2, 2, c))?
                .permute((0, 1, 3, 2, 4, 5))?
                .reshape((n, 2 * h, 2 * w, c))
        }
        Op::Resample { rh, rw } => resample(x, rh, rw, s, dt),
        Op::Add => {
            let mut y = x.clone();
            for t in &ins[1..] {
                y = (y + *t)?;
            }
            Ok(y)
        }
        Op::MeanPool => x.mean_keepdim(1)?.mean_keepdim(2),
        Op::Reshape(t) => x.reshape((n, t.0, t.1, t.2)),
    }
}

/// Separable resampling of `x [n, H, W, C]` by the rows `rh` and `rw`:
/// rows first, then columns.
fn resample<T: Real + WithDType>(
    x: &Tensor,
    rh: &SparseRows<T>,
    rw: &SparseRows<T>,
    s: Shape,
    dt: DType,
) -> Result<Tensor> {
    let n = x.dim(0)?;
    let (mh, mw) = (dense(rh, s.0, dt)?, dense(rw, s.1, dt)?);
    let xr = x.permute((0, 2, 3, 1))?.reshape((n * s.1 * s.2, s.0))?;
    let y = frozen::matmul(&xr, &mh.t()?)?.reshape((n, s.1, s.2, rh.len()))?;
    let yc = y
        .permute((0, 3, 2, 1))?
        .reshape((n * rh.len() * s.2, s.1))?;
    frozen::matmul(&yc, &mw.t()?)?
        .reshape((n, rh.len(), s.2, rw.len()))?
        .permute((0, 1, 3, 2))?
        .contiguous()
}

fn batched(b: usize, window: &Window) -> Batched {
    Batched { b, window: *window }
}
