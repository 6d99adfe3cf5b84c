//! The basic kernels of the sampling engine, on flat NHWC slices: matrix
//! products (the `gemm` crate, as candle uses it, or [`super::thin`]),
//! convolution windows with any padding, patch extraction and its adjoint,
//! separable resampling, and the activations with derivatives read from
//! their outputs. Work is split over images or blocks of output elements,
//! never over a sum, so each output element is summed in a fixed order
//! whatever the thread count.

use num_traits::Float;
use rayon::prelude::*;

/// What the engine computes in: `f32` for sampling, `f64` for gradient checks.
pub trait Real:
    Float + Send + Sync + 'static + std::iter::Sum + std::ops::AddAssign + std::fmt::Debug
{
}
impl Real for f32 {}
impl Real for f64 {}

/// `dst [m, n] = (accumulate ? dst : 0) + a b`, with `a` `[m, k]` given by
/// its row and column strides and `b` `[k, n]` likewise (so a transposed
/// operand is a stride swap, not a copy); on every thread or on this one.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    accumulate: bool,
    a: &[T],
    (a_rs, a_cs): (usize, usize),
    b: &[T],
    (b_rs, b_cs): (usize, usize),
    threaded: bool,
) {
    assert!(dst.len() >= m * n, "matmul: destination too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(T::zero());
        }
        return;
    }
    assert!(
        a.len() > (m - 1) * a_rs + (k - 1) * a_cs,
        "matmul: lhs too small"
    );
    assert!(
        b.len() > (k - 1) * b_rs + (n - 1) * b_cs,
        "matmul: rhs too small"
    );
    if super::thin::suits(m, n, a_cs, (b_rs, b_cs)) {
        return super::thin::matmul(m, n, k, dst, accumulate, a, a_rs, b, (b_rs, b_cs), threaded);
    }
    // Safety: the asserts above bound every index the product reads and
    // writes; the slices do not alias (one is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            if threaded {
                gemm::Parallelism::Rayon(0)
            } else {
                gemm::Parallelism::None
            },
        )
    }
}

/// A convolution's geometry on one image: input `h x w x c`, a `kh x kw`
/// window moved by `stride`, `pad_top` / `pad_left` zero rows/columns
/// before the image, output `ho x wo` (the padding after follows from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Window {
    /// Symmetric padding `pad`, output side from the usual formula.
    pub fn symmetric(h: usize, w: usize, c: usize, k: usize, stride: usize, pad: usize) -> Self {
        Self {
            h,
            w,
            c,
            kh: k,
            kw: k,
            stride,
            pad_top: pad,
            pad_left: pad,
            ho: (h + 2 * pad - k) / stride + 1,
            wo: (w + 2 * pad - k) / stride + 1,
        }
    }

    /// TensorFlow's "same": output `ceil(n / stride)`, the odd pixel of
    /// padding after the image.
    pub fn tf_same(h: usize, w: usize, c: usize, k: usize, stride: usize) -> Self {
        let (pad_top, ho) = crate::nn::tf_same(h, k, stride);
        let (pad_left, wo) = crate::nn::tf_same(w, k, stride);
        Self {
            h,
            w,
            c,
            kh: k,
            kw: k,
            stride,
            pad_top,
            pad_left,
            ho,
            wo,
        }
    }

    pub fn taps(&self) -> usize {
        self.kh * self.kw
    }

    /// True when the patches are the image itself (1x1, stride 1, no padding).
    pub fn is_pointwise(&self) -> bool {
        self.taps() == 1 && self.stride == 1 && self.pad_top == 0 && self.pad_left == 0
    }

    /// Input row/column of output `o` and tap `d`, if inside the image.
    #[inline]
    pub(crate) fn source(o: usize, d: usize, stride: usize, pad: usize, n: usize) -> Option<usize> {
        (o * stride + d).checked_sub(pad).filter(|&i| i < n)
    }

    /// Calls `f(out_pixel, first_tap, in_pixel, run)` for every output
    /// pixel and kernel row, with the run of taps whose sources are inside
    /// the image: taps `first_tap..first_tap + run` read pixels
    /// `in_pixel..in_pixel + run`, adjacent in both the kernel row and the
    /// image row (so `run * c` contiguous values on both sides).
    #[inline(always)]
    pub fn for_each_run(&self, mut f: impl FnMut(usize, usize, usize, usize)) {
        for oy in 0..self.ho {
            for dy in 0..self.kh {
                let Some(iy) = Self::source(oy, dy, self.stride, self.pad_top, self.h) else {
                    continue;
                };
                for ox in 0..self.wo {
                    // taps dx whose column ox*s + dx - pad lies in [0, w)
                    let x0 = ox * self.stride;
                    let lo = self.pad_left.saturating_sub(x0);
                    let hi = (self.w + self.pad_left).saturating_sub(x0).min(self.kw);
                    if lo < hi {
                        let ix = x0 + lo - self.pad_left;
                        f(
                            oy * self.wo + ox,
                            dy * self.kw + lo,
                            iy * self.w + ix,
                            hi - lo,
                        );
                    }
                }
            }
        }
    }
}

/// Calls `f(dst_image, src_image)` for `n` images, over threads or not.
fn per_image<T: Real>(
    n: usize,
    dst: &mut [T],
    dst_len: usize,
    src: &[T],
    src_len: usize,
    threaded: bool,
    f: impl Fn(&mut [T], &[T]) + Sync,
) {
    let (dst, src) = (&mut dst[..n * dst_len], &src[..n * src_len]);
    if threaded {
        dst.par_chunks_mut(dst_len)
            .zip(src.par_chunks(src_len))
            .for_each(|(d, s)| f(d, s));
    } else {
        dst.chunks_mut(dst_len)
            .zip(src.chunks(src_len))
            .for_each(|(d, s)| f(d, s));
    }
}

/// Patches of `n` images: `x [n, h, w, c]` -> `cols [n*ho*wo, kh*kw*c]`,
/// column order `(dy, dx, c)`, zeros outside the image.
pub fn im2col<T: Real>(g: &Window, n: usize, x: &[T], cols: &mut [T], threaded: bool) {
    let (img, per) = (g.h * g.w * g.c, g.ho * g.wo * g.taps() * g.c);
    per_image(n, cols, per, x, img, threaded, |col, xi| {
        col.fill(T::zero());
        let (c, k) = (g.c, g.taps() * g.c);
        g.for_each_run(|o, t, p, run| {
            col[o * k + t * c..o * k + (t + run) * c].copy_from_slice(&xi[p * c..(p + run) * c])
        });
    });
}

/// The adjoint of [`im2col`]: scatter-adds patches back to `x` (overwritten).
pub fn col2im<T: Real>(g: &Window, n: usize, cols: &[T], x: &mut [T], threaded: bool) {
    let (img, per) = (g.h * g.w * g.c, g.ho * g.wo * g.taps() * g.c);
    per_image(n, x, img, cols, per, threaded, |xi, col| {
        xi.fill(T::zero());
        let (c, k) = (g.c, g.taps() * g.c);
        g.for_each_run(|o, t, p, run| {
            let src = &col[o * k + t * c..o * k + (t + run) * c];
            for (a, &b) in xi[p * c..(p + run) * c].iter_mut().zip(src) {
                *a += b;
            }
        });
    });
}

/// A raw pointer that may cross threads, for kernels whose work items each
/// write a disjoint part of the buffer behind it.
#[derive(Clone, Copy)]
pub(crate) struct Shared<T>(pub(crate) *mut T);
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// (A method, so closures capture the whole `Send` wrapper.)
    pub(crate) fn ptr(&self) -> *mut T {
        self.0
    }
}

/// A sparse `[to, from]` matrix by rows: `(column, weight)` pairs.
pub type SparseRows<T> = Vec<Vec<(usize, T)>>;

/// The non-zero entries of a dense row-major `[to, from]` matrix.
pub fn sparse_rows<T: Real>(m: &[T], to: usize, from: usize) -> SparseRows<T> {
    (0..to)
        .map(|i| {
            (0..from)
                .filter(|&j| m[i * from + j] != T::zero())
                .map(|j| (j, m[i * from + j]))
                .collect()
        })
        .collect()
}

/// Separable resampling of `n` images: `y[i, j, c] = sum_{p, q} rh[i, p]
/// rw[j, q] x[p, q, c]` (`y` overwritten), one axis at a time through
/// `tmp [h, tw, c]` so the second pass moves whole rows. With `adjoint`,
/// the transpose: `x`-shaped output from a `y`-shaped input.
#[allow(clippy::too_many_arguments)]
pub fn resample<T: Real>(
    rh: &SparseRows<T>,
    rw: &SparseRows<T>,
    (h, w, c): (usize, usize, usize),
    n: usize,
    x: &[T],
    y: &mut [T],
    adjoint: bool,
) {
    let (th, tw) = (rh.len(), rw.len());
    let (small, big, row) = (h * w * c, th * tw * c, tw * c);
    let (src_len, dst_len) = if adjoint { (big, small) } else { (small, big) };
    let axpy = |y: &mut [T], a: T, x: &[T]| y.iter_mut().zip(x).for_each(|(y, &x)| *y += a * x);
    y[..n * dst_len]
        .par_chunks_mut(dst_len)
        .zip(x[..n * src_len].par_chunks(src_len))
        .for_each(|(yi, xi)| {
            let mut tmp = vec![T::zero(); h * row];
            yi.fill(T::zero());
            if adjoint {
                for (i, r) in rh.iter().enumerate() {
                    for &(p, a) in r {
                        axpy(
                            &mut tmp[p * row..(p + 1) * row],
                            a,
                            &xi[i * row..(i + 1) * row],
                        );
                    }
                }
                for p in 0..h {
                    for (j, r) in rw.iter().enumerate() {
                        for &(q, b) in r {
                            let t = (p * tw + j) * c;
                            axpy(
                                &mut yi[(p * w + q) * c..(p * w + q + 1) * c],
                                b,
                                &tmp[t..t + c],
                            );
                        }
                    }
                }
            } else {
                for p in 0..h {
                    for (j, r) in rw.iter().enumerate() {
                        for &(q, b) in r {
                            let t = (p * tw + j) * c;
                            axpy(
                                &mut tmp[t..t + c],
                                b,
                                &xi[(p * w + q) * c..(p * w + q + 1) * c],
                            );
                        }
                    }
                }
                for (i, r) in rh.iter().enumerate() {
                    for &(p, a) in r {
                        axpy(
                            &mut yi[i * row..(i + 1) * row],
                            a,
                            &tmp[p * row..(p + 1) * row],
                        );
                    }
                }
            }
        });
}

/// A pointwise activation, applied in place after an affine op.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    Identity,
    Relu,
    /// `min(max(x, 0), 6)`
    Relu6,
    /// `x` for `x > 0`, `a x` below.
    Leaky(f64),
    Sigmoid,
    Tanh,
}

/// `y = f(y)` in parallel blocks (one loop per `f`, so it vectorises).
#[inline(always)]
fn map<T: Real>(y: &mut [T], f: impl Fn(T) -> T + Sync) {
    y.par_chunks_mut(1 << 14)
        .for_each(|c| c.iter_mut().for_each(|v| *v = f(*v)));
}

/// `g = g * d(y)` in parallel blocks.
#[inline(always)]
fn scale_by<T: Real>(g: &mut [T], y: &[T], d: impl Fn(T) -> T + Sync) {
    g.par_chunks_mut(1 << 14)
        .zip(y.par_chunks(1 << 14))
        .for_each(|(g, y)| g.iter_mut().zip(y).for_each(|(g, &y)| *g = *g * d(y)));
}

impl Act {
    pub fn apply<T: Real>(self, y: &mut [T]) {
        let (zero, one, half, six) = (
            T::zero(),
            T::one(),
            T::from(0.5).unwrap(),
            T::from(6.0).unwrap(),
        );
        match self {
            Act::Identity => {}
            Act::Relu => map(y, |v| if v > zero { v } else { zero }),
            Act::Relu6 => map(y, |v| {
                let r = if v > zero { v } else { zero };
                if r < six {
                    r
                } else {
                    six
                }
            }),
            Act::Leaky(a) => {
                let a = T::from(a).unwrap();
                map(y, |v| if v > zero { v } else { v * a })
            }
            // (1 + tanh(x / 2)) / 2, as crate::nn::sigmoid: no overflow
            Act::Sigmoid => map(y, |v| (one + (v * half).tanh()) * half),
            Act::Tanh => map(y, |v| v.tanh()),
        }
    }

    /// `g *= act'(x)`, the derivative read from the output `y = act(x)`
    /// (zero at the kinks, as candle's and PyTorch's relu and relu6).
    pub fn backward<T: Real>(self, y: &[T], g: &mut [T]) {
        let (zero, one, six) = (T::zero(), T::one(), T::from(6.0).unwrap());
        match self {
            Act::Identity => {}
            Act::Relu => scale_by(g, y, |v| if v > zero { one } else { zero }),
            Act::Relu6 => scale_by(g, y, |v| if v > zero && v < six { one } else { zero }),
            Act::Leaky(a) => {
                let a = T::from(a).unwrap();
                scale_by(g, y, |v| {
                    if v > zero {
                        one
                    } else if v < zero {
                        a
                    } else {
                        zero
                    }
                })
            }
            Act::Sigmoid => scale_by(g, y, |v| v * (one - v)),
            Act::Tanh => scale_by(g, y, |v| one - v * v),
        }
    }
}
