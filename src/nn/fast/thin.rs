//! Matrix products where one side is thin: few rows (a fully connected
//! layer at a handful of chains) or few columns (a convolution to one
//! channel). The `gemm` crate packs both operands into panels for its
//! microkernel, which pays off for large blocks; for an `[8, 3136] x
//! [3136, 256]` product the packing of the weights dominates (measured
//! with temporary per-op timers on W1 at 8 chains: 0.36 ms forward and 0.74 ms
//! backward for `fc2`'s 6.4M multiply-adds). Here the weights are streamed
//! once in their stored layout, as dot products (when the right-hand
//! side's columns are contiguous) or as row updates (when its rows are),
//! in cache-sized blocks, with AVX2/FMA when the CPU has it.

use rayon::prelude::*;

use super::real::{Real, Shared};
use super::simd::{axpy, dispatch, dot, Kernel};
use super::window::Window;

/// Whether [`matmul`] takes `[m, k] x [k, n]` with these strides: the
/// left-hand rows contiguous, one side thin, and either layout of the
/// right-hand side contiguous along one axis.
pub(crate) fn suits(m: usize, n: usize, a_cs: usize, (b_rs, b_cs): (usize, usize)) -> bool {
    a_cs == 1 && (m <= 16 || n <= 4) && (b_rs == 1 || b_cs == 1)
}

/// Columns of dst a row update covers when `b`'s rows are contiguous:
/// with 16 rows, 64 KB of dst, in the first two levels of cache.
const TILE: usize = 1024;

/// The operands of one product, as raw parts shared by the work items.
#[derive(Clone, Copy)]
struct Product<'a, T> {
    n: usize,
    k: usize,
    a: &'a [T],
    a_rs: usize,
    b: &'a [T],
    b_rs: usize,
    b_cs: usize,
    dst: Shared<T>,
}

impl<T: Real> Product<'_, T> {
    /// `dst[rows, cols] += a[rows, :] b[:, cols]`, each piece of `b` read
    /// once for all the rows while it is in the first-level cache (a row
    /// at a time streamed a fully connected layer's 3 MB of weights once
    /// per chain from the last level: on W1 at 8 chains, one thread, the
    /// dense ops took 1.15 ms forward and 2.0 ms backward).
    #[inline(always)]
    fn block<const FMA: bool>(&self, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) {
        let (n, k) = (self.n, self.k);
        let row = |i: usize| &self.a[i * self.a_rs..i * self.a_rs + k];
        // Safety: work items own disjoint blocks of dst.
        let out = |i: usize, c: std::ops::Range<usize>| unsafe {
            std::slice::from_raw_parts_mut(self.dst.ptr().add(i * n + c.start), c.len())
        };
        if self.b_rs == 1 {
            // columns of b contiguous: one dot product per output, a
            // column of b against every row
            for j in cols {
                let bj = &self.b[j * self.b_cs..j * self.b_cs + k];
                for i in rows.clone() {
                    out(i, j..j + 1)[0] += dot::<T, FMA>(row(i), bj);
                }
            }
        } else {
            // rows of b contiguous: row updates of TILE columns, each
            // piece of a row of b added to every row of dst
            for c0 in cols.clone().step_by(TILE) {
                let c = c0..(c0 + TILE).min(cols.end);
                for kk in 0..k {
                    let bk = &self.b[kk * self.b_rs + c.start..kk * self.b_rs + c.end];
                    for i in rows.clone() {
                        axpy::<T, FMA>(out(i, c.clone()), row(i)[kk], bk);
                    }
                }
            }
        }
    }

    fn run(&self, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) {
        struct Block<'a, 'b, T>(
            &'a Product<'b, T>,
            std::ops::Range<usize>,
            std::ops::Range<usize>,
        );
        impl<T: Real> Kernel for Block<'_, '_, T> {
            #[inline(always)]
            fn run<const FMA: bool>(self) {
                self.0.block::<FMA>(self.1, self.2)
            }
        }
        dispatch(Block(self, rows, cols))
    }
}

/// `dst [m, n] = (accumulate ? dst : 0) + a b` for `a [m, k]` with
/// contiguous rows (row stride `a_rs`) and `b` with strides `(b_rs, b_cs)`,
/// one of them 1 (see [`suits`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    accumulate: bool,
    a: &[T],
    a_rs: usize,
    b: &[T],
    (b_rs, b_cs): (usize, usize),
    threaded: bool,
) {
    let dst = &mut dst[..m * n];
    if !accumulate {
        dst.fill(T::zero());
    }
    let p = Product {
        n,
        k,
        a,
        a_rs,
        b,
        b_rs,
        b_cs,
        dst: Shared(dst.as_mut_ptr()),
    };
    let threads = rayon::current_num_threads().max(1);
    let work = m * n * k;
    if !threaded || work < 1 << 15 || threads == 1 {
        return p.run(0..m, 0..n);
    }
    // split the long side into a few blocks per thread
    let pieces = if m <= 16 { threads } else { 4 * threads };
    if n >= m {
        let per = n.div_ceil(pieces).next_multiple_of(16);
        (0..n.div_ceil(per))
            .into_par_iter()
            .for_each(|b| p.run(0..m, b * per..((b + 1) * per).min(n)));
    } else {
        let per = m.div_ceil(pieces);
        (0..m.div_ceil(per))
            .into_par_iter()
            .for_each(|b| p.run(b * per..((b + 1) * per).min(m), 0..n));
    }
}

/// Whether [`conv`] handles a convolution: one output channel (a grey
/// generator's last layer), where patches would copy every pixel `taps`
/// times to feed a product with a dimension of 1 (measured on W1 at 64
/// chains: 7.6 of 47 ms through im2col and `gemm`, 3.4 ms here). One
/// input channel is left to im2col: its short dot products in the
/// backward pass made the direct form slower (4.8 -> 5.9 ms).
pub(crate) fn conv_suits(g: &Window, cout: usize) -> bool {
    cout == 1 && !g.is_pointwise()
}

struct ConvArgs<'a, T> {
    g: &'a Window,
    /// `[taps*c]`: the one output channel's weights
    w: &'a [T],
}

impl<T: Real> ConvArgs<'_, T> {
    /// One image: `y [ho*wo] += conv(x)`: per output pixel and kernel
    /// row, one dot product over the adjacent taps' pixels and channels.
    #[inline(always)]
    fn forward<const FMA: bool>(&self, x: &[T], y: &mut [T]) {
        let c = self.g.c;
        self.g.for_each_run(|o, t, p, run| {
            y[o] += dot::<T, FMA>(&x[p * c..(p + run) * c], &self.w[t * c..(t + run) * c]);
        });
    }

    /// One image: `dx [h*w, c] = conv^T(dy)` (overwritten).
    #[inline(always)]
    fn adjoint<const FMA: bool>(&self, dy: &[T], dx: &mut [T]) {
        let c = self.g.c;
        dx.fill(T::zero());
        self.g.for_each_run(|o, t, p, run| {
            axpy::<T, FMA>(
                &mut dx[p * c..(p + run) * c],
                dy[o],
                &self.w[t * c..(t + run) * c],
            );
        });
    }
}

/// A convolution to one channel ([`conv_suits`]), `w [taps*c]` as
/// [`super::Op::Conv`]'s: `y += conv(x)` for `n` images (`y` holds the
/// bias), or with `adjoint` `x`-shaped `dx = conv^T(dy)` from `y`-shaped
/// `dy`. Work is split over images.
pub(crate) fn conv<T: Real>(
    g: &Window,
    n: usize,
    w: &[T],
    src: &[T],
    dst: &mut [T],
    adjoint: bool,
) {
    let (img, out) = (g.h * g.w * g.c, g.ho * g.wo);
    let (src_len, dst_len) = if adjoint { (out, img) } else { (img, out) };
    struct Image<'a, T>(&'a ConvArgs<'a, T>, &'a [T], &'a mut [T], bool);
    impl<T: Real> Kernel for Image<'_, T> {
        #[inline(always)]
        fn run<const FMA: bool>(self) {
            if self.3 {
                self.0.adjoint::<FMA>(self.1, self.2)
            } else {
                self.0.forward::<FMA>(self.1, self.2)
            }
        }
    }
    let a = ConvArgs { g, w };
    dst[..n * dst_len]
        .par_chunks_mut(dst_len)
        .zip(src[..n * src_len].par_chunks(src_len))
        .for_each(|(d, s)| dispatch(Image(&a, s, d, adjoint)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniform numbers in [-0.5, 0.5) from a linear congruential generator.
    fn uniform(mut seed: u64) -> impl FnMut() -> f64 {
        move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        }
    }

    /// Every shape the thin product takes (few rows or few columns, counts
    /// that are and are not multiples of a vector, both layouts of `b`,
    /// accumulating or not, on one thread or several) against the textbook
    /// product in f64.
    #[test]
    fn thin_products_equal_the_textbook_product() {
        let mut next = uniform(1);
        for m in [1, 2, 3, 4, 5, 7, 8, 13, 16] {
            for n in [1, 5, 16, 17, 33, 100] {
                for k in [1, 7, 64, 130] {
                    let a: Vec<f64> = (0..m * k).map(|_| next()).collect();
                    let b: Vec<f64> = (0..k * n).map(|_| next()).collect();
                    let start: Vec<f64> = (0..m * n).map(|_| next()).collect();
                    for (rows_contiguous, accumulate, threaded) in [
                        (true, false, false),
                        (true, true, true),
                        (false, false, true),
                        (false, true, false),
                    ] {
                        // b [k, n] stored with rows contiguous, or as its
                        // transpose (columns contiguous)
                        let (stored, strides) = if rows_contiguous {
                            (b.clone(), (n, 1))
                        } else {
                            let t: Vec<f64> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
                            (t, (1, k))
                        };
                        let mut dst = start.clone();
                        matmul(
                            m, n, k, &mut dst, accumulate, &a, k, &stored, strides, threaded,
                        );
                        for i in 0..m {
                            for j in 0..n {
                                let base = if accumulate { start[i * n + j] } else { 0.0 };
                                let want =
                                    base + (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum::<f64>();
                                let got = dst[i * n + j];
                                assert!(
                                    (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
                                    "m {m} n {n} k {k} rows {rows_contiguous} acc {accumulate}: [{i},{j}] {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// The same in f32 at the sizes of a network's last layers at a few
    /// chains (a 1x1 convolution at 2x2 pixels, a classifier head), against
    /// the product in f64 within f32 rounding of the sum of |a b|.
    #[test]
    fn thin_products_in_f32_at_network_sizes() {
        let mut next = uniform(7);
        for (m, k, n) in [
            (4, 320, 1280),
            (1, 1280, 1000),
            (8, 1152, 192),
            (16, 3136, 256),
        ] {
            let a: Vec<f64> = (0..m * k).map(|_| next()).collect();
            let b: Vec<f64> = (0..k * n).map(|_| next()).collect();
            let (af, bf): (Vec<f32>, Vec<f32>) = (
                a.iter().map(|&v| v as f32).collect(),
                b.iter().map(|&v| v as f32).collect(),
            );
            for threaded in [false, true] {
                let mut dst = vec![0f32; m * n];
                matmul(m, n, k, &mut dst, false, &af, k, &bf, (n, 1), threaded);
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum();
                        let scale: f64 = (0..k).map(|t| (a[i * k + t] * b[t * n + j]).abs()).sum();
                        let got = dst[i * n + j] as f64;
                        assert!(
                            (got - want).abs() <= 1e-5 * scale,
                            "m {m} k {k} n {n} threaded {threaded}: [{i},{j}] {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
