//! The ops of the sampling engine: what each computes forward and how its
//! input gradient is computed backward, on flat NHWC buffers of `n` images.

use super::kernels::{self, Act, SparseRows};
use super::real::Real;
use super::window::Window;
use super::{depthwise, len, patches, thin, Shape};

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
    /// `x * scale[c] + shift[c]` per channel.
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
    /// Global average over pixels -> `(1, 1, c)`.
    MeanPool,
    /// The same values read as another shape (a flatten or its inverse).
    Reshape(Shape),
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
        if !matches!(self, Op::Add) && ins.len() != 1 {
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
            } => check(
                (w.h, w.w, w.c) == s && taps.len() == w.taps() * w.c && bias.len() == w.c,
                format!(
                    "depthwise convolution expects {:?}, got {s:?}",
                    (w.h, w.w, w.c)
                ),
                (w.ho, w.wo, w.c),
            ),
            Op::Affine { scale, shift } => check(
                scale.len() == s.2 && shift.len() == s.2,
                format!("affine has {} channels, input {s:?}", scale.len()),
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
            Op::MeanPool => Ok((1, 1, s.2)),
            Op::Reshape(t) => check(len(*t) == len(s), format!("reshape {s:?} to {t:?}"), *t),
        }
    }
}

/// Whether every column a sparse `[to, from]` matrix reads is below `n`.
fn reads_within<T>(rows: &SparseRows<T>, n: usize) -> bool {
    rows.iter().flatten().all(|&(j, _)| j < n)
}

/// A convolution's output shape on input `s`, or why it does not fit.
fn conv_shape(
    w: &Window,
    weights: usize,
    cout: usize,
    s: Shape,
) -> std::result::Result<Shape, String> {
    if (w.h, w.w, w.c) != s {
        return Err(format!(
            "convolution expects {:?}, got {s:?}",
            (w.h, w.w, w.c)
        ));
    }
    if weights != w.taps() * w.c * cout {
        return Err(format!(
            "convolution weight has {weights} values, expected {}x{}x{cout}",
            w.taps(),
            w.c
        ));
    }
    Ok((w.ho, w.wo, cout))
}

/// A transposed convolution's output shape on input `s`, or why it does not fit.
fn conv_transpose_shape(
    w: &Window,
    weights: usize,
    bias: usize,
    s: Shape,
) -> std::result::Result<Shape, String> {
    let cin = weights / (w.taps() * w.c).max(1);
    if (w.ho, w.wo, cin) != s || weights != cin * w.taps() * w.c {
        return Err(format!(
            "transposed convolution expects {:?}, got {s:?}",
            (w.ho, w.wo, cin)
        ));
    }
    if bias != w.c {
        return Err("transposed convolution bias does not match its channels".into());
    }
    Ok((w.h, w.w, w.c))
}

impl<T: Real> Op<T> {
    /// `y = op(x)` for `n` inputs `x` of shape `s` (not [`Op::Add`]).
    pub(crate) fn forward(&self, s: Shape, n: usize, x: &[T], y: &mut [T], cols: &mut Vec<T>) {
        match self {
            Op::Conv {
                window: w,
                weight,
                bias,
                act,
            } => {
                let cout = bias.len();
                let (rows, k) = (n * w.ho * w.wo, w.taps() * w.c);
                for row in y.chunks_mut(cout) {
                    row.copy_from_slice(bias);
                }
                if thin::conv_suits(w, cout) {
                    thin::conv(w, n, weight, x, y, false);
                } else if w.is_pointwise() {
                    kernels::matmul(rows, cout, k, y, true, x, (k, 1), weight, (cout, 1), true);
                } else {
                    patches::conv(w, n, weight, cout, x, y, cols);
                }
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
            Op::MeanPool => mean_pool(s, x, y),
            Op::Reshape(_) => y.copy_from_slice(x),
            Op::Add => unreachable!("Net::forward adds the inputs of Op::Add itself"),
        }
    }

    /// The input gradient `gx` of `sum(g * op(x))` for inputs of shape `s`,
    /// `y` this op's output (activations read their derivative from it);
    /// `g` is overwritten (not [`Op::Add`]).
    pub(crate) fn backward(
        &self,
        s: Shape,
        n: usize,
        y: &[T],
        g: &mut [T],
        gx: &mut [T],
        cols: &mut Vec<T>,
    ) {
        match self {
            Op::Conv {
                window: w,
                weight,
                bias,
                act,
            } => {
                act.backward(y, g);
                let cout = bias.len();
                let (rows, k) = (n * w.ho * w.wo, w.taps() * w.c);
                if thin::conv_suits(w, cout) {
                    thin::conv(w, n, weight, g, gx, true);
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
                } else {
                    patches::conv_adjoint(w, n, weight, cout, g, gx, cols);
                }
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
            Op::MeanPool => mean_pool_adjoint(s, g, gx),
            Op::Reshape(_) => gx.copy_from_slice(g),
            Op::Add => unreachable!("Net::backward passes the gradient of Op::Add itself"),
        }
    }
}

/// The adjoint of [`mean_pool`]: each pixel gets its channel's gradient
/// over the pixel count.
fn mean_pool_adjoint<T: Real>((h, w, c): Shape, g: &[T], gx: &mut [T]) {
    let inv = T::one() / T::from(h * w).unwrap_or_else(T::one);
    for (xi, gi) in gx.chunks_mut(h * w * c).zip(g.chunks(c)) {
        for p in xi.chunks_mut(c) {
            for (a, &b) in p.iter_mut().zip(gi) {
                *a = b * inv;
            }
        }
    }
}

/// Global average over pixels of inputs of shape `s`.
fn mean_pool<T: Real>((h, w, c): Shape, x: &[T], y: &mut [T]) {
    let inv = T::one() / T::from(h * w).unwrap_or_else(T::one);
    for (yi, xi) in y.chunks_mut(c).zip(x.chunks(h * w * c)) {
        yi.fill(T::zero());
        for p in xi.chunks(c) {
            for (a, &b) in yi.iter_mut().zip(p) {
                *a += b;
            }
        }
        yi.iter_mut().for_each(|v| *v = *v * inv);
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
