//! One convolution window (input, kernel, stride, padding, output) for
//! every convolution of the engine, of training's im2col/col2im and of the
//! depthwise custom op, with patch extraction (`im2col`) and its adjoint.

use rayon::prelude::*;

use super::real::Real;

/// TensorFlow's "same" padding along one axis of `n` pixels: `(padding
/// before, output size)`; the odd pixel of padding goes after.
pub fn tf_same(n: usize, k: usize, stride: usize) -> (usize, usize) {
    let out = n.div_ceil(stride);
    let total = ((out - 1) * stride + k).saturating_sub(n);
    (total / 2, out)
}

/// A window over a batch of `b` images (what the candle custom ops carry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batched {
    pub b: usize,
    pub window: Window,
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
        let (pad_top, ho) = tf_same(h, k, stride);
        let (pad_left, wo) = tf_same(w, k, stride);
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

    /// The runs of [`Window::for_each_run`] as a list, for kernels whose
    /// loop body must be compiled inside their AVX2 or AVX-512 copy
    /// (`super::simd::dispatch`): a closure is a function of its own,
    /// built for the baseline, where a fused multiply-add is a call to
    /// `fmaf`.
    pub fn runs(&self) -> Vec<(usize, usize, usize, usize)> {
        let mut runs = Vec::with_capacity(self.ho * self.wo * self.kh);
        self.for_each_run(|o, t, p, run| runs.push((o, t, p, run)));
        runs
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
pub(crate) fn im2col<T: Real>(g: &Window, n: usize, x: &[T], cols: &mut [T], threaded: bool) {
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
pub(crate) fn col2im<T: Real>(g: &Window, n: usize, cols: &[T], x: &mut [T], threaded: bool) {
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
