//! The reference path: a compiled [`Net`] run through candle's autograd,
//! each op mapped to the candle ops (and the project's custom ops) it
//! stands for, so `--engine reference` computes the same network from the
//! same description and its gradient comes from candle, not from the
//! engine's hand-written backward passes. Tests hold the two against each
//! other and against finite differences.

use candle_core::{DType, Result, Tensor, WithDType};

use super::kernels::{Act, SparseRows};
use super::op::Op;
use super::pointwise::Pointwise;
use super::real::Real;
use super::several::Binary;
use super::window::{Batched, Window};
use super::{Net, Shape};
use crate::nn::{depthwise, frozen, im2col};

/// `net` as a differentiable candle function; its parameters become candle
/// tensors once, here, not at every call.
pub fn func(net: Net<f32>) -> Result<crate::nn::Func> {
    let p = std::sync::Arc::new(Interpreter::new(std::sync::Arc::new(net))?);
    Ok(std::sync::Arc::new(move |x| p.forward_to(x, p.net.len())))
}

/// `net` applied to `x [n, h, w, c]` (candle, differentiable).
pub fn forward<T: Real + WithDType>(net: &Net<T>, x: &Tensor) -> Result<Tensor> {
    forward_to(net, x, net.len())
}

/// The value of slot `slot` of `net` on `x`: `[n, h, w, c]`, or `[n, c]`
/// for a vector (`1 x 1 x c`), as candle networks take and give them.
pub fn forward_to<T: Real + WithDType>(net: &Net<T>, x: &Tensor, slot: usize) -> Result<Tensor> {
    let params = prepare(net, x.dtype())?;
    Ok(run(net, &params, x, &[slot])?.remove(0))
}

fn prepare<T: Real + WithDType>(net: &Net<T>, dtype: DType) -> Result<Vec<Params>> {
    net.ops()
        .iter()
        .enumerate()
        .map(|(i, op)| Params::of(op, net.shape(net.inputs(i)[0]), dtype))
        .collect()
}

/// A network with its parameters prepared once as candle tensors: what
/// `--engine reference` runs.
pub struct Interpreter {
    net: std::sync::Arc<Net<f32>>,
    params: Vec<Params>,
}

impl Interpreter {
    pub fn new(net: std::sync::Arc<Net<f32>>) -> Result<Self> {
        let params = prepare(net.as_ref(), DType::F32)?;
        Ok(Self { net, params })
    }

    /// The value of slot `slot` on `x` (differentiable).
    pub fn forward_to(&self, x: &Tensor, slot: usize) -> Result<Tensor> {
        Ok(run(&self.net, &self.params, x, &[slot])?.remove(0))
    }

    /// The values of `slots` on `x` from one pass (differentiable).
    pub fn forward_slots(&self, x: &Tensor, slots: &[usize]) -> Result<Vec<Tensor>> {
        run(&self.net, &self.params, x, slots)
    }
}

/// One op's parameters as candle tensors.
enum Params {
    None,
    /// A weight matrix and a bias (convolutions).
    Linear(Tensor, Tensor),
    /// Per-channel scale and shift.
    Affine(Tensor, Tensor),
    /// The dense row and column resampling matrices.
    Resample(Tensor, Tensor),
    /// The indices a gather reads.
    Index(Tensor),
}

impl Params {
    fn of<T: Real + WithDType>(op: &Op<T>, s: Shape, dt: DType) -> Result<Self> {
        let vec = |b: &[T]| tensor(b, &[b.len()], dt);
        Ok(match op {
            Op::Conv {
                window,
                weight,
                bias,
                ..
            } => {
                let k = window.taps() * window.c;
                Params::Linear(tensor(weight, &[k, bias.len()], dt)?, vec(bias)?)
            }
            Op::ConvTranspose {
                window,
                weight,
                bias,
                ..
            } => {
                let m = tensor(weight, &[s.2, window.taps() * window.c], dt)?;
                Params::Linear(m, vec(bias)?)
            }
            Op::Depthwise {
                window, taps, bias, ..
            } => Params::Linear(tensor(taps, &[window.taps(), window.c], dt)?, vec(bias)?),
            Op::Affine { scale, shift } => {
                // one number per channel, or one per value of an image
                let dims: &[usize] = if scale.len() == s.2 {
                    &[s.2]
                } else {
                    &[s.0, s.1, s.2]
                };
                Params::Affine(tensor(scale, dims, dt)?, tensor(shift, dims, dt)?)
            }
            Op::Gather { index, .. } => {
                let index: Vec<u32> = index.iter().map(|&i| i as u32).collect();
                let len = index.len();
                Params::Index(Tensor::from_vec(index, len, &candle_core::Device::Cpu)?)
            }
            Op::Resample { rh, rw } => Params::Resample(dense(rh, s.0, dt)?, dense(rw, s.1, dt)?),
            _ => Params::None,
        })
    }

    /// The two tensors, in `dt` (converted only when a caller computes in
    /// another float type than the one they were prepared in).
    fn pair(&self, dt: DType) -> Result<(Tensor, Tensor)> {
        match self {
            Params::Linear(a, b) | Params::Affine(a, b) | Params::Resample(a, b) => {
                Ok((a.to_dtype(dt)?, b.to_dtype(dt)?))
            }
            Params::None | Params::Index(_) => {
                candle_core::bail!("reference path: an op without its parameters")
            }
        }
    }
}

/// Runs `net` with its prepared `params` on `x` as far as the last of
/// `slots`, and gives their values.
fn run<T: Real + WithDType>(
    net: &Net<T>,
    params: &[Params],
    x: &Tensor,
    slots: &[usize],
) -> Result<Vec<Tensor>> {
    let n = x.dim(0)?;
    let (h, w, c) = net.input();
    let last = slots.iter().copied().max().unwrap_or(0);
    if last > net.len() {
        candle_core::bail!(
            "reference path: slot {last} past the output slot {}",
            net.len()
        );
    }
    let mut tape = vec![x.reshape((n, h, w, c))?];
    for (i, op) in net.ops().iter().enumerate().take(last) {
        let ins: Vec<&Tensor> = net.inputs(i).iter().map(|&s| &tape[s]).collect();
        let s = net.shape(net.inputs(i)[0]);
        let y = apply(op, &params[i], &ins, s, net.shape(i + 1))?;
        tape.push(y);
    }
    slots
        .iter()
        .map(|&slot| match net.shape(slot) {
            (1, 1, c) => tape[slot].reshape((n, c)),
            _ => Ok(tape[slot].clone()),
        })
        .collect()
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
            m[i * from + j] += v; // an index twice means the sum
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

/// An op with weights (its parameters `p`, laid out for candle) on `x`
/// of shape `s`, giving shape `out`.
fn weighted<T: Real + WithDType>(
    op: &Op<T>,
    p: &Params,
    x: &Tensor,
    s: Shape,
    out: Shape,
) -> Result<Tensor> {
    let n = x.dim(0)?;
    match op {
        Op::Conv { window, act: a, .. } => {
            let (wm, bias) = p.pair(x.dtype())?;
            let cols = if window.is_pointwise() {
                x.reshape((n * window.h * window.w, window.c))?
            } else {
                im2col::im2col(x, batched(n, window))?
            };
            let y = frozen::matmul(&cols, &wm)?.broadcast_add(&bias)?;
            act(*a, y.reshape((n, out.0, out.1, out.2))?)
        }
        Op::ConvTranspose { window, act: a, .. } => {
            let (wm, bias) = p.pair(x.dtype())?;
            let cols = frozen::matmul(&x.reshape((n * s.0 * s.1, s.2))?, &wm)?;
            let y = im2col::col2im(&cols, batched(n, window))?;
            act(*a, y.broadcast_add(&bias)?)
        }
        Op::Depthwise { window, act: a, .. } => {
            let (taps, bias) = p.pair(x.dtype())?;
            let y = depthwise::depthwise_conv2d(x, &taps, batched(n, window))?;
            act(*a, y.broadcast_add(&bias)?)
        }
        Op::Affine { .. } => {
            let (scale, shift) = p.pair(x.dtype())?;
            x.broadcast_mul(&scale)?.broadcast_add(&shift)
        }
        Op::Resample { .. } => {
            let (mh, mw) = p.pair(x.dtype())?;
            resample(x, &mh, &mw, s)
        }
        _ => candle_core::bail!("reference path: an op without weights taken for one"),
    }
}

/// One op on its inputs of shape `s` (the first), giving shape `out`.
fn apply<T: Real + WithDType>(
    op: &Op<T>,
    p: &Params,
    ins: &[&Tensor],
    s: Shape,
    out: Shape,
) -> Result<Tensor> {
    let x = ins[0];
    let n = x.dim(0)?;
    match op {
        Op::Conv { .. }
        | Op::ConvTranspose { .. }
        | Op::Depthwise { .. }
        | Op::Affine { .. }
        | Op::Resample { .. } => weighted(op, p, x, s, out),
        Op::PixelShuffle2 => {
            let (h, w, c) = (s.0, s.1, s.2 / 4);
            x.reshape((n, h, w, 2, 2, c))?
                .permute((0, 1, 3, 2, 4, 5))?
                .reshape((n, 2 * h, 2 * w, c))
        }
        Op::Add => {
            let mut y = x.clone();
            for t in &ins[1..] {
                y = (y + *t)?;
            }
            Ok(y)
        }
        Op::MeanPool => x.mean_keepdim(1)?.mean_keepdim(2),
        Op::Reshape(t) => x.reshape((n, t.0, t.1, t.2)),
        Op::Gather { out: t, .. } => match p {
            Params::Index(index) => x
                .reshape((n, s.0 * s.1 * s.2))?
                .index_select(index, 1)?
                .reshape((n, t.0, t.1, t.2)),
            _ => candle_core::bail!("reference path: a gather without its indices"),
        },
        Op::Concat => Tensor::cat(ins, 3),
        Op::Binary(f) => binary(*f, ins[0], ins[1]),
        Op::Slice { at, out } => x
            .narrow(1, at.0, out.0)?
            .narrow(2, at.1, out.1)?
            .narrow(3, at.2, out.2)?
            .contiguous(),
        Op::MaxPool { window } => max_pool(x, window),
        Op::Pointwise(f) => pointwise(*f, x),
        Op::Softmax { log } => softmax(x, *log),
        Op::Lrn {
            size,
            alpha,
            beta,
            k,
        } => lrn(x, *size, *alpha, *beta, *k),
    }
}

/// `x [n, h, w, c]` padded along `dim` with `before` and `after` rows of
/// `value`.
fn pad_with(x: &Tensor, dim: usize, before: usize, after: usize, value: f64) -> Result<Tensor> {
    let side = |k: usize| -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        dims[dim] = k;
        Tensor::ones(dims, x.dtype(), x.device())? * value
    };
    let mut all = Vec::new();
    if before > 0 {
        all.push(side(before)?);
    }
    all.push(x.clone());
    if after > 0 {
        all.push(side(after)?);
    }
    Tensor::cat(&all, dim)
}

/// Max pooling as the maximum of the window's strided views (candle's
/// `max_pool2d` has no NHWC form and its backward was measured wrong);
/// padding is a value no input reaches, so it never wins.
fn max_pool(x: &Tensor, w: &Window) -> Result<Tensor> {
    let (b, c) = (x.dim(0)?, w.c);
    // rows (columns) every strided view of length stride * ho reaches
    let rows = w.kh - 1 + w.stride * w.ho;
    let cols = w.kw - 1 + w.stride * w.wo;
    let fit = |x: Tensor, dim: usize, pad: usize, n: usize, need: usize| -> Result<Tensor> {
        let x = pad_with(&x, dim, pad, need.saturating_sub(pad + n), -1e30)?;
        x.narrow(dim, 0, need)
    };
    let x = fit(x.clone(), 1, w.pad_top, w.h, rows)?;
    let x = fit(x, 2, w.pad_left, w.w, cols)?;
    let mut out: Option<Tensor> = None;
    for dy in 0..w.kh {
        for dx in 0..w.kw {
            let v = x
                .narrow(1, dy, w.stride * w.ho)?
                .narrow(2, dx, w.stride * w.wo)?
                .reshape((b, w.ho, w.stride, w.wo, w.stride, c))?
                .narrow(2, 0, 1)?
                .narrow(4, 0, 1)?
                .reshape((b, w.ho, w.wo, c))?;
            out = Some(match out {
                None => v,
                Some(o) => o.maximum(&v)?,
            });
        }
    }
    out.ok_or_else(|| candle_core::Error::Msg("max pooling over an empty window".into()))
}

/// [`Op::Binary`]: candle's broadcasting elementwise ops.
fn binary(f: Binary, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    match f {
        Binary::Add => a.broadcast_add(b),
        Binary::Mul => a.broadcast_mul(b),
        Binary::Sub => a.broadcast_sub(b),
        Binary::Div => a.broadcast_div(b),
    }
}

/// [`Op::Softmax`] over channels: log-softmax has an exact backward in
/// candle (`softmax_last_dim` does not), the softmax is its exponential.
fn softmax(x: &Tensor, log: bool) -> Result<Tensor> {
    let l = candle_nn::ops::log_softmax(x, 3)?;
    if log {
        Ok(l)
    } else {
        l.exp()
    }
}

/// [`Op::Pointwise`] with candle's ops (and their autograd).
fn pointwise(f: Pointwise, x: &Tensor) -> Result<Tensor> {
    let hard_sigmoid = |x: &Tensor, a: f64, b: f64| x.affine(a, b)?.clamp(0f64, 1f64);
    match f {
        Pointwise::HardSigmoid { alpha, beta } => hard_sigmoid(x, alpha, beta),
        Pointwise::HardSwish => x * hard_sigmoid(x, 1.0 / 6.0, 0.5)?,
        Pointwise::Elu(a) => x.elu(a),
        // as the formula: candle's gelu_erf was measured 3e-8 off in f64
        Pointwise::Gelu => (x * 0.5)? * ((x / std::f64::consts::SQRT_2)?.erf()? + 1.0)?,
        Pointwise::Clip { lo, hi } => x.clamp(lo, hi),
        Pointwise::Erf => x.erf(),
        Pointwise::Sqrt => x.sqrt(),
        Pointwise::Pow(p) => x.powf(p),
        Pointwise::Relu => x.relu(),
        Pointwise::Leaky(a) => crate::nn::leaky_relu(x, a),
        Pointwise::Sigmoid => crate::nn::sigmoid(x),
        Pointwise::Tanh => x.tanh(),
        Pointwise::Exp => x.exp(),
        Pointwise::Log => x.log(),
    }
}

/// [`Op::Lrn`]: `x / (k + alpha / size * sum_{window} x^2)^beta`.
fn lrn(x: &Tensor, size: usize, alpha: f64, beta: f64, k: f64) -> Result<Tensor> {
    let c = x.dim(3)?;
    let sq = pad_with(&x.sqr()?, 3, (size - 1) / 2, size / 2, 0.0)?;
    let mut sum = sq.narrow(3, 0, c)?;
    for i in 1..size {
        sum = (sum + sq.narrow(3, i, c)?)?;
    }
    let denom = ((sum * (alpha / size as f64))? + k)?.powf(beta)?;
    x / denom
}

/// Separable resampling of `x [n, H, W, C]` by the dense `[H', H]` and
/// `[W', W]` matrices: rows first, then columns.
fn resample(x: &Tensor, mh: &Tensor, mw: &Tensor, s: Shape) -> Result<Tensor> {
    let n = x.dim(0)?;
    let (ho, wo) = (mh.dim(0)?, mw.dim(0)?);
    let xr = x.permute((0, 2, 3, 1))?.reshape((n * s.1 * s.2, s.0))?;
    let y = frozen::matmul(&xr, &mh.t()?)?.reshape((n, s.1, s.2, ho))?;
    let yc = y.permute((0, 3, 2, 1))?.reshape((n * ho * s.2, s.1))?;
    frozen::matmul(&yc, &mw.t()?)?
        .reshape((n, ho, s.2, wo))?
        .permute((0, 1, 3, 2))?
        .contiguous()
}

fn batched(b: usize, window: &Window) -> Batched {
    Batched { b, window: *window }
}
