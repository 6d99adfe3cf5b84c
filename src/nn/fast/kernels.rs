//! The kernels of the sampling engine, on flat NHWC slices: matrix products
//! (the `gemm` crate, as candle uses it), patch extraction and its adjoint
//! for any padding, the depthwise convolution and its adjoint, separable
//! resampling, and the activations with derivatives read from their
//! outputs. Work is split over images (or channel blocks at batch 1) so each
//! output element is summed in a fixed order whatever the thread count.

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
    fn source(o: usize, d: usize, stride: usize, pad: usize, n: usize) -> Option<usize> {
        (o * stride + d).checked_sub(pad).filter(|&i| i < n)
    }

    /// Calls `f(patch_offset, image_offset)` for every in-bounds (output
    /// pixel, tap); each pair moves `c` contiguous values.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize)) {
        let row_len = self.taps() * self.c;
        for oy in 0..self.ho {
            for ox in 0..self.wo {
                let row = (oy * self.wo + ox) * row_len;
                for dy in 0..self.kh {
                    let Some(iy) = Self::source(oy, dy, self.stride, self.pad_top, self.h) else {
                        continue;
                    };
                    for dx in 0..self.kw {
                        let Some(ix) = Self::source(ox, dx, self.stride, self.pad_left, self.w)
                        else {
                            continue;
                        };
                        f(
                            row + (dy * self.kw + dx) * self.c,
                            (iy * self.w + ix) * self.c,
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
        g.for_each_tap(|co, xo| col[co..co + g.c].copy_from_slice(&xi[xo..xo + g.c]));
    });
}

/// The adjoint of [`im2col`]: scatter-adds patches back to `x` (overwritten).
pub fn col2im<T: Real>(g: &Window, n: usize, cols: &[T], x: &mut [T], threaded: bool) {
    let (img, per) = (g.h * g.w * g.c, g.ho * g.wo * g.taps() * g.c);
    per_image(n, x, img, cols, per, threaded, |xi, col| {
        xi.fill(T::zero());
        g.for_each_tap(|co, xo| {
            for (a, &b) in xi[xo..xo + g.c].iter_mut().zip(&col[co..co + g.c]) {
                *a += b;
            }
        });
    });
}

/// A raw pointer that may cross threads; each work item writes a disjoint
/// (image, channel range) of the buffer behind it.
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

impl Act {
    pub fn apply<T: Real>(self, y: &mut [T]) {
        let six = T::from(6.0).unwrap();
        let f = |v: T| -> T {
            match self {
                Act::Identity => v,
                Act::Relu => v.max(T::zero()),
                Act::Relu6 => v.max(T::zero()).min(six),
                Act::Leaky(a) => {
                    if v > T::zero() {
                        v
                    } else {
                        v * T::from(a).unwrap()
                    }
                }
                // (1 + tanh(x / 2)) / 2, as crate::nn::sigmoid: no overflow
                Act::Sigmoid => {
                    let h = T::from(0.5).unwrap();
                    (T::one() + (v * h).tanh()) * h
                }
                Act::Tanh => v.tanh(),
            }
        };
        if self != Act::Identity {
            y.par_chunks_mut(1 << 14)
                .for_each(|c| c.iter_mut().for_each(|v| *v = f(*v)));
        }
    }

    /// `g *= act'(x)`, the derivative read from the output `y = act(x)`
    /// (zero at the kinks, as candle's and PyTorch's relu and relu6).
    pub fn backward<T: Real>(self, y: &[T], g: &mut [T]) {
        let six = T::from(6.0).unwrap();
        let d = |v: T| -> T {
            match self {
                Act::Identity => T::one(),
                Act::Relu => {
                    if v > T::zero() {
                        T::one()
                    } else {
                        T::zero()
                    }
                }
                Act::Relu6 => {
                    if v > T::zero() && v < six {
                        T::one()
                    } else {
                        T::zero()
                    }
                }
                Act::Leaky(a) => {
                    if v > T::zero() {
                        T::one()
                    } else if v < T::zero() {
                        T::from(a).unwrap()
                    } else {
                        T::zero()
                    }
                }
                Act::Sigmoid => v * (T::one() - v),
                Act::Tanh => T::one() - v * v,
            }
        };
        if self != Act::Identity {
            g.par_chunks_mut(1 << 14)
                .zip(y.par_chunks(1 << 14))
                .for_each(|(g, y)| g.iter_mut().zip(y).for_each(|(g, &y)| *g = *g * d(y)));
        }
    }
}
