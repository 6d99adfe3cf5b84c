//! Depthwise convolution (one `kh x kw` filter per channel) and its
//! adjoint, NHWC, for the engine.
//!
//! Both passes are written as gathers over all channels of a pixel at
//! once, so the innermost loop is a contiguous multiply-add over channels
//! (vectorised, AVX2/FMA when present, its sums held in registers over a
//! block of channels through all taps) and every output element is owned
//! by one work item: the forward pass gathers an output pixel from its
//! window; the adjoint gathers an input pixel from the outputs whose window
//! covers it (for stride `s`, the taps where `iy + pad - dy` is a multiple
//! of `s`). Work items are (image, block of rows), so batch 1 uses every
//! thread too.

use rayon::prelude::*;

use super::real::{Real, Shared};
use super::simd::{dispatch, madd, mul_acc, Kernel};
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

/// Channels summed in registers at once: 32 `f32` are four AVX2
/// registers. The first version added each tap's product into the
/// destination pixel in memory (a load and a store per multiply-add) and
/// ran at 3-4% of the machine's peak on W2 (EfficientNet-Lite0's
/// depthwise layers, `ppgn bench --profile`); this one at 6-10%
/// (docs/speed.md).
const LANES: usize = 32;

/// One destination pixel's `c` channels: `dst = sum_(p, t) src[p..] *
/// taps[t..]` over `pairs` of (source offset, tap offset), in their
/// order, from zero: for each block of [`LANES`] channels (then one of
/// half as many, as EfficientNet's 144 and 240 channels leave) the sums
/// stay in registers through all taps, and are stored once.
#[inline(always)]
fn gather<T: Real, const FMA: bool>(
    dst: &mut [T],
    src: &[T],
    taps: &[T],
    pairs: &[(usize, usize)],
) {
    let c = dst.len();
    let mut b = 0;
    while b + LANES <= c {
        block::<T, FMA, LANES>(&mut dst[b..b + LANES], src, taps, pairs, b);
        b += LANES;
    }
    if b + LANES / 2 <= c {
        block::<T, FMA, { LANES / 2 }>(&mut dst[b..b + LANES / 2], src, taps, pairs, b);
        b += LANES / 2;
    }
    if b < c {
        let rest = &mut dst[b..];
        rest.fill(T::zero());
        for &(p, t) in pairs {
            mul_acc::<T, FMA>(rest, &src[p + b..p + c], &taps[t + b..t + c]);
        }
    }
}

/// Channels `b..b + L` of [`gather`], summed in `L` registers.
#[inline(always)]
fn block<T: Real, const FMA: bool, const L: usize>(
    dst: &mut [T],
    src: &[T],
    taps: &[T],
    pairs: &[(usize, usize)],
    b: usize,
) {
    let mut acc = [T::zero(); L];
    for &(p, t) in pairs {
        let (x, w) = (&src[p + b..p + b + L], &taps[t + b..t + b + L]);
        for l in 0..L {
            acc[l] = madd::<T, FMA>(x[l], w[l], acc[l]);
        }
    }
    dst.copy_from_slice(&acc);
}

impl<T: Real> Rows<'_, T> {
    /// Output pixel `(oy, ox)` of one image: `y = sum_taps x * taps`.
    #[inline(always)]
    fn forward<const FMA: bool>(&self, x: &[T], y: &mut [T]) {
        let (g, c) = (self.g, self.g.c);
        let mut pairs = Vec::with_capacity(g.taps());
        for oy in self.rows.clone() {
            for ox in 0..g.wo {
                pairs.clear();
                for dy in 0..g.kh {
                    let Some(iy) = Window::source(oy, dy, g.stride, g.pad_top, g.h) else {
                        continue;
                    };
                    for dx in 0..g.kw {
                        let Some(ix) = Window::source(ox, dx, g.stride, g.pad_left, g.w) else {
                            continue;
                        };
                        pairs.push(((iy * g.w + ix) * c, (dy * g.kw + dx) * c));
                    }
                }
                let o = (oy * g.wo + ox) * c;
                gather::<T, FMA>(&mut y[o..o + c], x, self.taps, &pairs);
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
        let mut pairs = Vec::with_capacity(g.taps());
        for iy in self.rows.clone() {
            for ix in 0..g.w {
                pairs.clear();
                for ky in 0..g.kh {
                    let Some(oy) = out(iy, ky, g.pad_top, g.ho) else {
                        continue;
                    };
                    for kx in 0..g.kw {
                        let Some(ox) = out(ix, kx, g.pad_left, g.wo) else {
                            continue;
                        };
                        pairs.push(((oy * g.wo + ox) * c, (ky * g.kw + kx) * c));
                    }
                }
                let i = (iy * g.w + ix) * c;
                gather::<T, FMA>(&mut dx[i..i + c], dy, self.taps, &pairs);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::fast::simd::uniform;

    /// Every `(row, column, channel)` of an `h x w x c` grid, in memory order.
    fn grid(h: usize, w: usize, c: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        (0..h).flat_map(move |a| (0..w).flat_map(move |b| (0..c).map(move |k| (a, b, k))))
    }

    /// The textbook sums, one value at a time, over the taps in the
    /// kernel's order from zero (the order the register blocks keep), for
    /// one image: the forward pass and the adjoint.
    struct Textbook<'a>(
        &'a Window,
        &'a [f32],
        &'a [f32],
        &'a [f32],
        &'a [f32],
        &'a [f32],
    );
    impl Kernel for Textbook<'_> {
        fn run<const FMA: bool>(self) {
            let Textbook(g, taps, x, y, dy, dx) = self;
            let c = g.c;
            let inside =
                |o: usize, d: usize, pad: usize, n: usize| Window::source(o, d, g.stride, pad, n);
            for (oy, ox, ch) in grid(g.ho, g.wo, c) {
                let mut s = 0f32;
                for (ky, kx, _) in grid(g.kh, g.kw, 1) {
                    if let (Some(iy), Some(ix)) = (
                        inside(oy, ky, g.pad_top, g.h),
                        inside(ox, kx, g.pad_left, g.w),
                    ) {
                        s = madd::<f32, FMA>(
                            x[(iy * g.w + ix) * c + ch],
                            taps[(ky * g.kw + kx) * c + ch],
                            s,
                        );
                    }
                }
                assert!(
                    s == y[(oy * g.wo + ox) * c + ch],
                    "forward {g:?} at {oy},{ox},{ch} with FMA {FMA}"
                );
            }
            for (iy, ix, ch) in grid(g.h, g.w, c) {
                let mut s = 0f32;
                for (ky, kx, _) in grid(g.kh, g.kw, 1) {
                    let (ty, tx) = (iy + g.pad_top, ix + g.pad_left);
                    if ty < ky || tx < kx || (ty - ky) % g.stride != 0 || (tx - kx) % g.stride != 0
                    {
                        continue;
                    }
                    let (oy, ox) = ((ty - ky) / g.stride, (tx - kx) / g.stride);
                    if oy < g.ho && ox < g.wo {
                        s = madd::<f32, FMA>(
                            dy[(oy * g.wo + ox) * c + ch],
                            taps[(ky * g.kw + kx) * c + ch],
                            s,
                        );
                    }
                }
                assert!(
                    s == dx[(iy * g.w + ix) * c + ch],
                    "adjoint {g:?} at {iy},{ix},{ch} with FMA {FMA}"
                );
            }
        }
    }

    /// Both passes equal the textbook sums bit for bit, at channel counts
    /// below, at and past the register block, strides 1 and 2, kernels of
    /// 3 and 5, symmetric and TensorFlow padding, on batches that split
    /// into row blocks and into images.
    #[test]
    fn register_blocks_sum_as_the_textbook_bit_for_bit() {
        let mut next = {
            let mut u = uniform(9);
            move || u() as f32
        };
        let windows = [
            Window::symmetric(7, 6, 3, 3, 1, 1),
            Window::symmetric(9, 9, 32, 3, 2, 1),
            Window::tf_same(8, 7, 40, 5, 2),
            Window::tf_same(9, 9, 144, 5, 2),
            Window::symmetric(5, 4, 59, 3, 1, 1),
            Window::tf_same(5, 5, 96, 5, 1),
            Window::symmetric(6, 6, 65, 3, 1, 0),
        ];
        for g in windows {
            for n in [1, 5] {
                let taps: Vec<f32> = (0..g.taps() * g.c).map(|_| next()).collect();
                let x: Vec<f32> = (0..n * g.h * g.w * g.c).map(|_| next()).collect();
                let dy: Vec<f32> = (0..n * g.ho * g.wo * g.c).map(|_| next()).collect();
                let (mut y, mut dx) = (vec![f32::NAN; dy.len()], vec![f32::NAN; x.len()]);
                depthwise(&g, n, &taps, &x, &mut y, false);
                depthwise(&g, n, &taps, &dy, &mut dx, true);
                let (img, out) = (g.h * g.w * g.c, g.ho * g.wo * g.c);
                for i in 0..n {
                    let (xs, ds) = (i * img..(i + 1) * img, i * out..(i + 1) * out);
                    dispatch(Textbook(
                        &g,
                        &taps,
                        &x[xs.clone()],
                        &y[ds.clone()],
                        &dy[ds],
                        &dx[xs],
                    ));
                }
            }
        }
    }
}
