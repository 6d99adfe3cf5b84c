//! The ops of the sampling engine: what each computes forward and how its
//! input gradient is computed backward, on flat NHWC buffers of `n` images.

use super::kernels::{self, Act, SparseRows};
use super::pointwise::Pointwise;
use super::real::Real;
use super::several::Binary;
use super::shapes::{conv_shape, conv_transpose_shape, depthwise_shape, max_pool_shape};
use super::window::Window;
use super::winograd::{self, Plan};
use super::{depthwise, len, one_channel, patches, Shape};

/// One op of a compiled network. Weights are stored in the layout the
/// matrix products read.
#[derive(Debug, Clone)]
pub enum Op<T> {
    /// Convolution (also a fully connected layer: a 1x1 window on a
    /// `(1, 1, in)` input). `weight [taps*cin, cout]` in `(dy, dx, cin)`
    /// row order, then `bias`, then `act`.
    Conv {
        window: Window,
        weight: Vec<T>,
        bias: Vec<T>,
        act: Act,
    },
    /// Transposed convolution: the adjoint of the convolution `window`
    /// (from this op's output, `window.h x window.w x cout`, to its input
    /// `window.ho x window.wo x cin`). `weight [cin, taps*cout]`.
    ConvTranspose {
        window: Window,
        weight: Vec<T>,
        bias: Vec<T>,
        act: Act,
    },
    /// Depthwise convolution, `taps [kh*kw, c]`.
    Depthwise {
        window: Window,
        taps: Vec<T>,
        bias: Vec<T>,
        act: Act,
    },
    /// `x * scale + shift`, one number per channel (`len == c`) or one per
    /// value of an image (`len == h * w * c`).
    Affine { scale: Vec<T>, shift: Vec<T> },
    /// Sub-pixel up-sampling by 2: channel `(r, s, c)` at `(y, x)` goes to
    /// pixel `(2y + r, 2x + s)`, channel `c` (`crate::nn::UpConv2x`).
    PixelShuffle2,
    /// Separable linear resampling (bilinear resize) to `rh.len() x rw.len()`.
    Resample {
        rh: SparseRows<T>,
        rw: SparseRows<T>,
    },
    /// The sum of its inputs (all of one shape): a residual connection.
    Add,
    /// Its inputs (of one height and width) side by side along channels.
    Concat,
    /// An elementwise function of two values, the second of the first's
    /// shape, one per channel `(1, 1, c)` or one per image `(1, 1, 1)`.
    Binary(Binary),
    /// Max over each window of each channel (padding never wins); the
    /// gradient goes to the first arg-max of the window, as the exact
    /// gradient of a max does.
    MaxPool { window: Window },
    /// Cross-channel local response normalisation (CaffeNet's `norm1`,
    /// `norm2`; ONNX `LRN`): `x / (k + alpha / size * sum x^2)^beta`, the
    /// sum over `size` neighbouring channels (`(size - 1) / 2` before).
    Lrn {
        size: usize,
        alpha: f64,
        beta: f64,
        k: f64,
    },
    /// The block of shape `out` starting at row, column, channel `at`: a
    /// crop, or a group of channels.
    Slice { at: Shape, out: Shape },
    /// A pointwise function whose gradient needs its input.
    Pointwise(Pointwise),
    /// Softmax over the channels of each pixel, or its logarithm.
    Softmax { log: bool },
    /// Global average over pixels -> `(1, 1, c)`.
    MeanPool,
    /// The same values read as another shape (a flatten or its inverse).
    Reshape(Shape),
    /// Output value `i` of an image is input value `index[i]` of that
    /// image (a transpose, a channel-major flatten, a strided slice, a
    /// broadcast); the gradient sums back into the values read.
    Gather { index: Vec<usize>, out: Shape },
}

impl<T: Real> Op<T> {
    /// Replaces the activation fused into this op (if it has one), e.g. to
    /// read a layer before its ReLU.
    pub fn set_act(&mut self, new: Act) {
        match self {
            Op::Conv { act, .. } | Op::ConvTranspose { act, .. } | Op::Depthwise { act, .. } => {
                *act = new
            }
            _ => {}
        }
    }

    /// This op's output shape for inputs of shapes `ins`, or why they do
    /// not fit.
    pub(crate) fn out_shape(&self, ins: &[Shape]) -> std::result::Result<Shape, String> {
        let s = ins[0];
        if !self.reads_several() && ins.len() != 1 {
            return Err(format!("reads one input, given {}", ins.len()));
        }
        let check = |ok: bool, why: String, out: Shape| if ok { Ok(out) } else { Err(why) };
        match self {
            Op::Conv {
                window: w,
                weight,
                bias,
                ..
            } => conv_shape(w, weight.len(), bias.len(), s),
            Op::ConvTranspose {
                window: w,
                weight,
                bias,
                ..
            } => conv_transpose_shape(w, weight.len(), bias.len(), s),
            Op::Depthwise {
                window: w,
                taps,
                bias,
                ..
            } => depthwise_shape(w, taps.len(), bias.len(), s),
            Op::Affine { scale, shift } => check(
                (scale.len() == s.2 || scale.len() == len(s)) && shift.len() == scale.len(),
                format!("affine has {} values, input {s:?}", scale.len()),
                s,
            ),
            Op::PixelShuffle2 => check(
                s.2.is_multiple_of(4),
                format!("pixel shuffle needs channels divisible by 4, got {s:?}"),
                (2 * s.0, 2 * s.1, s.2 / 4),
            ),
            Op::Resample { rh, rw } => check(
                reads_within(rh, s.0) && reads_within(rw, s.1),
                format!("resample reads outside its input {s:?}"),
                (rh.len(), rw.len(), s.2),
            ),
            Op::Add => check(
                ins.len() >= 2 && ins.iter().all(|&t| t == s),
                format!("adds inputs of shapes {ins:?}: needs 2 or more of one shape"),
                s,
            ),
            Op::Binary(_) => super::several::binary_shape(ins),
            Op::Concat => check(
                ins.len() >= 2 && ins.iter().all(|t| (t.0, t.1) == (s.0, s.1)),
                format!("concatenates inputs of shapes {ins:?}: needs 2 or more of one height and width"),
                (s.0, s.1, ins.iter().map(|t| t.2).sum()),
            ),
            Op::MaxPool { window: w } => max_pool_shape(w, s),
            Op::Lrn { size, .. } => check(*size >= 1, "LRN of size 0".into(), s),
            Op::Slice { at, out } => check(
                at.0 + out.0 <= s.0 && at.1 + out.1 <= s.1 && at.2 + out.2 <= s.2,
                format!("slice {out:?} at {at:?} reaches outside its input {s:?}"),
                *out,
            ),
            Op::MeanPool => Ok((1, 1, s.2)),
            Op::Pointwise(_) | Op::Softmax { .. } => Ok(s),
            Op::Reshape(t) => check(len(*t) == len(s), format!("reshape {s:?} to {t:?}"), *t),
            Op::Gather { index, out } => check(
                index.len() == len(*out) && index.iter().all(|&i| i < len(s)),
                format!("gather of {out:?} reads outside its input {s:?}"),
                *out,
            ),
        }
    }

    /// Whether this op reads two or more values ([`Op::Add`],
    /// [`Op::Concat`], [`Op::Binary`]); [`super::Net`] runs those through
    /// [`Op::forward_several`] and [`Op::backward_part`].
    pub(crate) fn reads_several(&self) -> bool {
        matches!(self, Op::Add | Op::Concat | Op::Binary(_))
    }

    /// `y = op(xs)` for an op that reads several values of shapes `ss`.
    pub(crate) fn forward_several(&self, ss: &[Shape], xs: &[&[T]], y: &mut [T]) {
        super::several::forward(self, ss, xs, y)
    }

    /// The gradient owed to input `k` (of shapes `ss`, values `xs`) of an
    /// op that reads several values, from its output gradient `g`.
    pub(crate) fn backward_part(&self, ss: &[Shape], xs: &[&[T]], k: usize, g: &[T], gx: &mut [T]) {
        super::several::backward_part(self, ss, xs, k, g, gx)
    }
}

/// Whether every column a sparse `[to, from]` matrix reads is below `n`.
fn reads_within<T>(rows: &SparseRows<T>, n: usize) -> bool {
    rows.iter().flatten().all(|&(j, _)| j < n)
}

impl<T: Real> Op<T> {
    /// `y = op(x)` for `n` inputs `x` of shape `s` (not [`Op::Add`]).
    /// `plan`: the op's weights made for [`winograd`], if it has them.
    pub(crate) fn forward(
        &self,
        s: Shape,
        n: usize,
        x: &[T],
        y: &mut [T],
        cols: &mut Vec<T>,
        plan: Option<&Plan<T>>,
    ) {
        match self {
            Op::Conv {
                window: w,
                weight,
                bias,
                act,
            } => {
                for row in y.chunks_mut(bias.len()) {
                    row.copy_from_slice(bias);
                }
                conv(w, n, weight, bias.len(), x, y, cols, plan);
                act.apply(y);
            }
            Op::ConvTranspose {
                window: w,
                weight,
                bias,
                act,
            } => {
                let cin = weight.len() / (w.taps() * w.c);
                patches::conv_transpose(w, n, weight, cin, x, y, cols);
                add_bias(y, bias);
                act.apply(y);
            }
            Op::Depthwise {
                window: w,
                taps,
                bias,
                act,
            } => {
                depthwise::depthwise(w, n, taps, x, y, false);
                add_bias(y, bias);
                act.apply(y);
            }
            Op::Affine { scale, shift } => {
                let c = scale.len();
                for (yr, xr) in y.chunks_mut(c).zip(x.chunks(c)) {
                    for j in 0..c {
                        yr[j] = xr[j] * scale[j] + shift[j];
                    }
                }
            }
            Op::PixelShuffle2 => shuffle(s, n, x, y, false),
            Op::Resample { rh, rw } => kernels::resample(rh, rw, s, n, x, y, false),
            Op::MeanPool => super::pool::mean_pool(s, x, y),
            Op::Reshape(_) => y.copy_from_slice(x),
            Op::Gather { index, .. } => super::pool::gather(index, x, y, false),
            Op::MaxPool { window } => super::pool::max_pool(window, x, y),
            Op::Lrn {
                size,
                alpha,
                beta,
                k,
            } => super::pool::lrn(s.2, (*size, *alpha, *beta, *k), x, y, None),
            Op::Slice { at, out } => slice(s, *at, *out, x, y, false),
            Op::Pointwise(f) => f.forward(x, y),
            Op::Softmax { log } => super::pointwise::softmax(s.2, *log, x, y, None),
            Op::Add | Op::Concat | Op::Binary(_) => {
                unreachable!("Net::forward runs forward_several")
            }
        }
    }

    /// The input gradient `gx` of `sum(g * op(x))` for inputs `x` of
    /// shape `s`, `y` this op's output (activations read their derivative
    /// from it); `g` is overwritten (not [`Op::Add`] or [`Op::Concat`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &self,
        s: Shape,
        n: usize,
        (x, y): (&[T], &[T]),
        g: &mut [T],
        gx: &mut [T],
        cols: &mut Vec<T>,
        plan: Option<&Plan<T>>,
    ) {
        match self {
            Op::Conv {
                window: w,
                weight,
                bias,
                act,
            } => {
                act.backward(y, g);
                conv_adjoint(w, n, weight, bias.len(), g, gx, cols, plan);
            }
            Op::ConvTranspose {
                window: w,
                weight,
                act,
                ..
            } => {
                act.backward(y, g);
                let cin = weight.len() / (w.taps() * w.c);
                patches::conv_transpose_adjoint(w, n, weight, cin, g, gx, cols);
            }
            Op::Depthwise {
                window: w,
                taps,
                act,
                ..
            } => {
                act.backward(y, g);
                depthwise::depthwise(w, n, taps, g, gx, true);
            }
            Op::Affine { scale, .. } => {
                let c = scale.len();
                for (xr, gr) in gx.chunks_mut(c).zip(g.chunks(c)) {
                    for j in 0..c {
                        xr[j] = gr[j] * scale[j];
                    }
                }
            }
            Op::PixelShuffle2 => shuffle(s, n, g, gx, true),
            Op::Resample { rh, rw } => kernels::resample(rh, rw, s, n, g, gx, true),
            Op::MeanPool => super::pool::mean_pool_adjoint(s, g, gx),
            Op::Reshape(_) => gx.copy_from_slice(g),
            Op::Gather { index, .. } => super::pool::gather(index, g, gx, true),
            Op::MaxPool { window } => super::pool::max_pool_adjoint(window, x, g, gx),
            Op::Lrn {
                size,
                alpha,
                beta,
                k,
            } => super::pool::lrn(s.2, (*size, *alpha, *beta, *k), x, gx, Some(g)),
            Op::Slice { at, out } => {
                gx.fill(T::zero());
                slice(s, *at, *out, g, gx, true)
            }
            Op::Pointwise(f) => f.backward(x, g, gx),
            Op::Softmax { log } => super::pointwise::softmax(s.2, *log, y, gx, Some(g)),
            Op::Add | Op::Concat | Op::Binary(_) => {
                unreachable!("Net::backward runs backward_part")
            }
        }
    }
}

/// `y += conv(x)` (a convolution `w` to `cout` filters) of `n` inputs, by
/// the kernel that suits its shape: to one channel, pointwise, Winograd's
/// (when the op has a plan and the batch is large enough) or patches.
#[allow(clippy::too_many_arguments)]
fn conv<T: Real>(
    w: &Window,
    n: usize,
    weight: &[T],
    cout: usize,
    x: &[T],
    y: &mut [T],
    cols: &mut Vec<T>,
    plan: Option<&Plan<T>>,
) {
    let (rows, k) = (n * w.ho * w.wo, w.taps() * w.c);
    if one_channel::conv_suits(w, cout) {
        one_channel::conv(w, n, weight, x, y, false);
    } else if w.is_pointwise() {
        kernels::matmul(rows, cout, k, y, true, x, (k, 1), weight, (cout, 1), true);
    } else if let Some(plan) = plan.filter(|_| Plan::<T>::pays(w, n)) {
        plan.run(false, w, n, x, y, cols);
    } else {
        patches::conv(w, n, weight, cout, x, y, cols);
    }
}

/// The weights of a convolution that [`winograd`] takes, made for it.
pub(crate) fn winograd_plan<T: Real>(op: &Op<T>) -> Option<std::sync::Arc<Plan<T>>> {
    match op {
        Op::Conv {
            window,
            weight,
            bias,
            ..
        } if winograd::suits(window, bias.len()) => {
            Some(std::sync::Arc::new(Plan::new(window.c, bias.len(), weight)))
        }
        _ => None,
    }
}

/// The input gradient of a convolution (`window` `w`, `cout` filters) of
/// `n` inputs, from the output gradient `g`, by the kernel its forward pass
/// used.
#[allow(clippy::too_many_arguments)]
fn conv_adjoint<T: Real>(
    w: &Window,
    n: usize,
    weight: &[T],
    cout: usize,
    g: &[T],
    gx: &mut [T],
    cols: &mut Vec<T>,
    plan: Option<&Plan<T>>,
) {
    let (rows, k) = (n * w.ho * w.wo, w.taps() * w.c);
    if one_channel::conv_suits(w, cout) {
        one_channel::conv(w, n, weight, g, gx, true);
    } else if w.is_pointwise() {
        kernels::matmul(
            rows,
            k,
            cout,
            gx,
            false,
            g,
            (cout, 1),
            weight,
            (1, cout),
            true,
        );
    } else if let Some(plan) = plan.filter(|_| Plan::<T>::pays(w, n)) {
        plan.run(true, w, n, g, gx, cols);
    } else {
        patches::conv_adjoint(w, n, weight, cout, g, gx, cols);
    }
}

/// [`Op::Slice`] of `n` inputs of shape `s` (`adjoint`: from the
/// slice-shaped `x` into its place in the input-shaped `y`).
fn slice<T: Real>(s: Shape, at: Shape, out: Shape, x: &[T], y: &mut [T], adjoint: bool) {
    let n = if adjoint {
        x.len() / len(out)
    } else {
        y.len() / len(out)
    };
    for b in 0..n {
        for i in 0..out.0 {
            for j in 0..out.1 {
                let small = ((b * out.0 + i) * out.1 + j) * out.2;
                let big = ((b * s.0 + at.0 + i) * s.1 + at.1 + j) * s.2 + at.2;
                if adjoint {
                    y[big..big + out.2].copy_from_slice(&x[small..small + out.2]);
                } else {
                    y[small..small + out.2].copy_from_slice(&x[big..big + out.2]);
                }
            }
        }
    }
}

fn add_bias<T: Real>(y: &mut [T], bias: &[T]) {
    use rayon::prelude::*;
    let c = bias.len();
    y.par_chunks_mut(c * 256).for_each(|chunk| {
        for row in chunk.chunks_mut(c) {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    });
}

/// [`Op::PixelShuffle2`] on input shape `s` (`adjoint`: its transpose, from
/// the output-shaped `x` to the input-shaped `y`).
fn shuffle<T: Real>((h, w, c4): Shape, n: usize, x: &[T], y: &mut [T], adjoint: bool) {
    let c = c4 / 4;
    for b in 0..n {
        for i in 0..h {
            for j in 0..w {
                for r in 0..2 {
                    for s in 0..2 {
                        let small = ((b * h + i) * w + j) * c4 + (r * 2 + s) * c;
                        let big = ((b * 2 * h + 2 * i + r) * 2 * w + 2 * j + s) * c;
                        if adjoint {
                            y[small..small + c].copy_from_slice(&x[big..big + c]);
                        } else {
                            y[big..big + c].copy_from_slice(&x[small..small + c]);
                        }
                    }
                }
            }
        }
    }
}
