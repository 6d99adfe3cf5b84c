//! Depthwise convolution (one `kh x kw` filter per channel) and its
//! adjoint, NHWC, for the engine.
//!
//! Both passes are written as gathers over all channels of a pixel at
//! once, so the innermost loop is a contiguous multiply-add over channels
//! (vectorised, AVX2/FMA when present) and every output element is owned
//! by one work item: the forward pass gathers an output pixel from its
//! window; the adjoint gathers an input pixel from the outputs whose window
//! covers it (for stride `s`, the taps where `iy + pad - dy` is a multiple
//! of `s`). Work items are (image, block of rows), so batch 1 uses every
//! thread too.

use rayon::prelude::*;

use super::real::{Real, Shared};
use super::simd::{dispatch, mul_acc, Kernel};
use super::window::Window;

/// `(image, rows)` work items over `n` images of `rows` rows each: whole
/// images when there are enough of them, row blocks otherwise.
fn work_items(n: usize, rows: usize) -> Vec<(usize, std::ops::Range<usize>)> {
    let threads = rayon::current_num_threads().max(1);
    let blocks = if n >= 2 * threads {
        1
    } else {
        (4 * threads).div_ceil(n).min(rows).max(1)
    };
    let per = rows.div_ceil(blocks);
    (0..n)
        .flat_map(|i| {
            (0..rows)
                .step_by(per)
                .map(move |r| (i, r..(r + per).min(rows)))
        })
        .collect()
}

struct Rows<'a, T> {
    g: &'a Window,
    taps: &'a [T],
    /// the whole input (forward) or output gradient (adjoint)
    src: &'a [T],
    /// the whole destination, written at this item's rows only
    dst: Shared<T>,
    image: usize,
    rows: std::ops::Range<usize>,
    adjoint: bool,
}

impl<T: Real> Rows<'_, T> {
    /// Output pixel `(oy, ox)` of one image: `y = sum_taps x * taps`.
    #[inline(always)]
    fn forward<const FMA: bool>(&self, x: &[T], y: &mut [T]) {
        let (g, c) = (self.g, self.g.c);
        for oy in self.rows.clone() {
            for ox in 0..g.wo {
                let yo = &mut y[(oy * g.wo + ox) * c..(oy * g.wo + ox + 1) * c];
                yo.fill(T::zero());
                for dy in 0..g.kh {
                    let Some(iy) = Window::source(oy, dy, g.stride, g.pad_top, g.h) else {
                        continue;
                    };
                    for dx in 0..g.kw {
                        let Some(ix) = Window::source(ox, dx, g.stride, g.pad_left, g.w) else {
                            continue;
                        };
                        let p = (iy * g.w + ix) * c;
                        let t = (dy * g.kw + dx) * c;
                        mul_acc::<T, FMA>(yo, &x[p..p + c], &self.taps[t..t + c]);
                    }
                }
            }
        }
    }

    /// Input pixel `(iy, ix)` of one image: the sum over the outputs whose
    /// window reads it.
    #[inline(always)]
    fn adjoint<const FMA: bool>(&self, dy: &[T], dx: &mut [T]) {
        let (g, c, s) = (self.g, self.g.c, self.g.stride);
        // output index of input i through tap d, if any
        let out = |i: usize, d: usize, pad: usize, n_out: usize| -> Option<usize> {
            let t = (i + pad).checked_sub(d)?;
            (t % s == 0 && t / s < n_out).then_some(t / s)
        };
        for iy in self.rows.clone() {
            for ix in 0..g.w {
                let xo = &mut dx[(iy * g.w + ix) * c..(iy * g.w + ix + 1) * c];
                xo.fill(T::zero());
                for ky in 0..g.kh {
                    let Some(oy) = out(iy, ky, g.pad_top, g.ho) else {
                        continue;
                    };
                    for kx in 0..g.kw {
                        let Some(ox) = out(ix, kx, g.pad_left, g.wo) else {
                            continue;
                        };
                        let o = (oy * g.wo + ox) * c;
                        let t = (ky * g.kw + kx) * c;
                        mul_acc::<T, FMA>(xo, &dy[o..o + c], &self.taps[t..t + c]);
                    }
                }
            }
        }
    }
}

impl<T: Real> Kernel for Rows<'_, T> {
    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let g = self.g;
        let (img, out) = (g.h * g.w * g.c, g.ho * g.wo * g.c);
        let (src_len, dst_len) = if self.adjoint { (out, img) } else { (img, out) };
        let src = &self.src[self.image * src_len..(self.image + 1) * src_len];
        // Safety: this item writes only its own rows of its own image
        // (`forward` and `adjoint` index `dst` at `self.rows` only).
        let dst = unsafe {
            std::slice::from_raw_parts_mut(self.dst.ptr().add(self.image * dst_len), dst_len)
        };
        if self.adjoint {
            self.adjoint::<FMA>(src, dst)
        } else {
            self.forward::<FMA>(src, dst)
        }
    }
}

/// `y[o, c] = sum_taps x[src(o, tap), c] * taps[tap, c]` for `n` images
/// (`y` overwritten, `ho*wo*c` per image; bias added by the caller), or
/// with `adjoint` its transpose: `x`-shaped `dx` from `y`-shaped `dy`.
pub(crate) fn depthwise<T: Real>(
    g: &Window,
    n: usize,
    taps: &[T],
    src: &[T],
    dst: &mut [T],
    adjoint: bool,
) {
    let (img, out) = (g.h * g.w * g.c, g.ho * g.wo * g.c);
    let (src_len, dst_len, rows) = if adjoint {
        (out, img, g.h)
    } else {
        (img, out, g.ho)
    };
    let (src, dst) = (&src[..n * src_len], Shared(dst[..n * dst_len].as_mut_ptr()));
    work_items(n, rows)
        .into_par_iter()
        .for_each(|(image, rows)| {
            dispatch(Rows {
                g,
                taps,
                src,
                dst,
                image,
                rows,
                adjoint,
            })
        });
}
