//! Matrix products where one side is thin: few rows (a fully connected
//! layer at a handful of chains) or few columns (a layer to a handful of
//! outputs; convolutions to one channel are `super::one_channel`'s). The
//! `gemm` crate packs both operands into panels for its microkernel,
//! which pays off for large blocks; for an `[8, 3136] x
//! [3136, 256]` product the packing of the weights dominates (measured
//! with temporary per-op timers on W1 at 8 chains: 0.36 ms forward and 0.74 ms
//! backward for `fc2`'s 6.4M multiply-adds). Here the weights are streamed
//! once in their stored layout, as dot products of 2 rows by 2 columns at
//! once (when the right-hand side's columns are contiguous) or as register
//! tiles of 4 rows by 16 columns over cache-sized pieces of it (when its
//! rows are), with AVX2/FMA when the CPU has it.

use rayon::prelude::*;

use super::real::{Real, Shared};
use super::simd::{axpy, dispatch, dot, madd, Kernel};

/// Whether [`matmul`] takes `[m, k] x [k, n]` with these strides: the
/// left-hand rows contiguous, one side thin, and either layout of the
/// right-hand side contiguous along one axis.
pub(crate) fn suits(m: usize, n: usize, a_cs: usize, (b_rs, b_cs): (usize, usize)) -> bool {
    a_cs == 1 && (m <= 16 || n <= 4) && (b_rs == 1 || b_cs == 1)
}

/// Columns of dst a row update covers when `b`'s rows are contiguous:
/// with 16 rows, 64 KB of dst, in the first two levels of cache.
const TILE: usize = 1024;

/// Columns of dst a register tile covers: two AVX2 vectors of f32.
const W: usize = 16;

/// Rows of `b` a register tile runs over before the next tile: with TILE
/// columns, 256 KB of `b`, in the second level of cache.
const KC: usize = 64;

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
    /// The rows of dst (`m`).
    dst_rows: usize,
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
            // columns of b contiguous: dot products, 2 rows by 2 columns
            // of b at a time (each piece of a row or column loaded once
            // for 2 products), one at a time for those left over
            const DR: usize = 2;
            let blocked = rows.start + rows.len() / DR * DR;
            let pairs = cols.start + cols.len() / 2 * 2;
            for j in (cols.start..pairs).step_by(2) {
                for i in (rows.start..blocked).step_by(DR) {
                    self.dots::<DR, FMA>(i, j);
                }
            }
            for j in cols.clone() {
                let bj = &self.b[j * self.b_cs..j * self.b_cs + k];
                let rest = if j < pairs {
                    blocked..rows.end
                } else {
                    rows.clone()
                };
                for i in rest {
                    out(i, j..j + 1)[0] += dot::<T, FMA>(row(i), bj);
                }
            }
        } else {
            // rows of b contiguous: register tiles of 4 rows by W
            // columns over KC rows of b at a time (a piece of b read
            // from memory in order and reused from cache by every row
            // group), then row updates for the columns left over
            let full = cols.start + cols.len() / W * W;
            let fours = rows.start + rows.len() / 4 * 4;
            for c in (cols.start..full).step_by(TILE) {
                let c = c..(c + TILE).min(full);
                for k0 in (0..k).step_by(KC) {
                    let ks = k0..(k0 + KC).min(k);
                    for c0 in c.clone().step_by(W) {
                        for i in (rows.start..fours).step_by(4) {
                            self.tile::<FMA>(i, c0, ks.clone());
                        }
                    }
                    // fewer than 4 rows: a tile of them would wait on
                    // its few accumulators' FMA latency
                    self.row_updates::<FMA>(fours..rows.end, c.clone(), ks);
                }
            }
            self.row_updates::<FMA>(rows, full..cols.end, 0..k);
        }
    }

    /// `dst[i0..i0 + R, c0..c0 + W] += a[i0..i0 + R, ks] b[ks, c0..c0 + W]`
    /// (R = 4) for `b` with contiguous rows, the block of dst held in
    /// registers over `ks` (8 vectors of 8 f32 with AVX2; the row updates
    /// load and store dst once per row of `b`). The sums run in the row updates'
    /// order, so the results are theirs bit for bit.
    #[inline(always)]
    fn tile<const FMA: bool>(&self, i0: usize, c0: usize, ks: std::ops::Range<usize>) {
        const R: usize = 4;
        let n = self.n;
        assert!(
            i0 + R <= self.dst_rows
                && c0 + W <= n
                && ks.end <= self.k
                && (i0 + R - 1) * self.a_rs + self.k <= self.a.len()
                && (ks.is_empty() || (ks.end - 1) * self.b_rs + c0 + W <= self.b.len())
        );
        let mut acc = [[T::zero(); W]; R];
        for (r, row) in acc.iter_mut().enumerate() {
            // Safety: in dst (asserted); work items own disjoint blocks.
            let d = unsafe { std::slice::from_raw_parts(self.dst.ptr().add((i0 + r) * n + c0), W) };
            row.copy_from_slice(d);
        }
        let (a, b) = (self.a.as_ptr(), self.b.as_ptr());
        for kk in ks {
            // Safety: kk < k and the bounds asserted above.
            let bk = unsafe { &*(b.add(kk * self.b_rs + c0) as *const [T; W]) };
            for (r, row) in acc.iter_mut().enumerate() {
                let av = unsafe { *a.add((i0 + r) * self.a_rs + kk) };
                for l in 0..W {
                    row[l] = madd::<T, FMA>(av, bk[l], row[l]);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            // Safety: as above.
            let d =
                unsafe { std::slice::from_raw_parts_mut(self.dst.ptr().add((i0 + r) * n + c0), W) };
            d.copy_from_slice(row);
        }
    }

    /// `dst[i0 + r, j0 + c] += a[i0 + r, :] . b[:, j0 + c]` for r < R,
    /// c < 2, with `b`'s columns contiguous: the 2R dot products at once,
    /// each over 16 lanes of k, so a piece of a row of `a` is loaded once
    /// for two columns and a piece of a column of `b` once for R rows (one
    /// product at a time loads both for each multiply-add: the dense
    /// backward of W1 at 8 chains ran at 7% of the machine's peak,
    /// docs/performance.md). Each sum runs in `simd::dot`'s order, so the
    /// results are its bit for bit. R = 2 keeps the 4R vectors of 8 f32
    /// in AVX2's 16 registers; R = 4 measured no faster with AVX-512.
    #[inline(always)]
    fn dots<const R: usize, const FMA: bool>(&self, i0: usize, j0: usize) {
        const V: usize = 16;
        let (n, k) = (self.n, self.k);
        let a: [&[T]; R] =
            std::array::from_fn(|r| &self.a[(i0 + r) * self.a_rs..(i0 + r) * self.a_rs + k]);
        let b: [&[T]; 2] =
            std::array::from_fn(|c| &self.b[(j0 + c) * self.b_cs..(j0 + c) * self.b_cs + k]);
        let mut acc = [[[T::zero(); V]; 2]; R];
        let body = k / V * V;
        let (ap, bp) = (a.map(<[T]>::as_ptr), b.map(<[T]>::as_ptr));
        #[inline(always)]
        fn fma<T: Real, const FMA: bool, const V: usize>(
            x: [T; V],
            y: [T; V],
            z: [T; V],
        ) -> [T; V] {
            std::array::from_fn(|l| madd::<T, FMA>(x[l], y[l], z[l]))
        }
        for k0 in (0..body).step_by(V) {
            // Safety: k0 + V <= k, the length of every slice above.
            let load = |p: *const T| unsafe { *(p.add(k0) as *const [T; V]) };
            let (b0, b1) = (load(bp[0]), load(bp[1]));
            for (r, row) in acc.iter_mut().enumerate() {
                let ar = load(ap[r]);
                row[0] = fma::<T, FMA, V>(ar, b0, row[0]);
                row[1] = fma::<T, FMA, V>(ar, b1, row[1]);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (c, lanes) in row.iter().enumerate() {
                // the remainder, then the lanes: `simd::dot`'s order
                let mut s = T::zero();
                for kk in body..k {
                    s = madd::<T, FMA>(a[r][kk], b[c][kk], s);
                }
                let s = lanes.iter().fold(s, |t, &v| t + v);
                // Safety: in dst (the slices above are in bounds, and
                // i0 + r < m, j0 + c < n by the caller); work items own
                // disjoint blocks.
                unsafe { *self.dst.ptr().add((i0 + r) * n + j0 + c) += s };
            }
        }
    }

    /// The row updates of `dst[rows, cols] += a[rows, ks] b[ks, cols]` for
    /// `b` with contiguous rows: TILE columns at a time, each piece of a
    /// row of b added to every row of dst.
    #[inline(always)]
    fn row_updates<const FMA: bool>(
        &self,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        ks: std::ops::Range<usize>,
    ) {
        let (n, k) = (self.n, self.k);
        let row = |i: usize| &self.a[i * self.a_rs..i * self.a_rs + k];
        // Safety: work items own disjoint blocks of dst.
        let out = |i: usize, c: std::ops::Range<usize>| unsafe {
            std::slice::from_raw_parts_mut(self.dst.ptr().add(i * n + c.start), c.len())
        };
        for c0 in cols.clone().step_by(TILE) {
            let c = c0..(c0 + TILE).min(cols.end);
            for kk in ks.clone() {
                let bk = &self.b[kk * self.b_rs + c.start..kk * self.b_rs + c.end];
                for i in rows.clone() {
                    axpy::<T, FMA>(out(i, c.clone()), row(i)[kk], bk);
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
        dst_rows: m,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::fast::simd::uniform;

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

    /// The register tiles sum in the row updates' order: their results
    /// are the row updates' bit for bit, in f32, with and without FMA.
    #[test]
    fn register_tiles_equal_the_row_updates_bit_for_bit() {
        let mut next = uniform(3);
        for (m, k, n) in [(8, 300, 256), (7, 64, 40), (3, 1, 16), (16, 33, 100)] {
            let a: Vec<f32> = (0..m * k).map(|_| next() as f32).collect();
            let b: Vec<f32> = (0..k * n).map(|_| next() as f32).collect();
            let start: Vec<f32> = (0..m * n).map(|_| next() as f32).collect();
            let (mut tiled, mut rows) = (start.clone(), start.clone());
            let product = |dst: &mut Vec<f32>| Product {
                n,
                k,
                a: &a,
                a_rs: k,
                b: &b,
                b_rs: n,
                b_cs: 1,
                dst: Shared(dst.as_mut_ptr()),
                dst_rows: m,
            };
            let (p, q) = (product(&mut tiled), product(&mut rows));
            p.block::<false>(0..m, 0..n);
            q.row_updates::<false>(0..m, 0..n, 0..k);
            assert!(tiled == rows, "m {m} k {k} n {n}");
            dispatch(Fma(&p, &q, m, n));
        }
        struct Fma<'a, 'b>(&'a Product<'b, f32>, &'a Product<'b, f32>, usize, usize);
        impl Kernel for Fma<'_, '_> {
            fn run<const FMA: bool>(self) {
                let (m, n) = (self.2, self.3);
                self.0.block::<FMA>(0..m, 0..n);
                self.1.row_updates::<FMA>(0..m, 0..n, 0..self.0.k);
                let at = |p: &Product<f32>| unsafe {
                    std::slice::from_raw_parts(p.dst.ptr(), m * n).to_vec()
                };
                assert!(at(self.0) == at(self.1), "with FMA {FMA}: m {m} n {n}");
            }
        }
    }

    /// The blocks of dot products sum in `simd::dot`'s order: their
    /// results are one `dot` per output's, bit for bit.
    #[test]
    fn blocked_dot_products_equal_single_ones_bit_for_bit() {
        let mut next = uniform(5);
        for (m, k, n) in [(8, 300, 64), (7, 64, 5), (3, 17, 16), (16, 33, 9)] {
            let a: Vec<f32> = (0..m * k).map(|_| next() as f32).collect();
            let bt: Vec<f32> = (0..n * k).map(|_| next() as f32).collect();
            let mut dst = vec![0f32; m * n];
            matmul(m, n, k, &mut dst, false, &a, k, &bt, (1, k), false);
            struct One<'a>(&'a [f32], &'a [f32], &'a [f32], (usize, usize, usize));
            impl Kernel for One<'_> {
                fn run<const FMA: bool>(self) {
                    let (m, n, k) = self.3;
                    for i in 0..m {
                        for j in 0..n {
                            let d = dot::<f32, FMA>(
                                &self.0[i * k..(i + 1) * k],
                                &self.1[j * k..(j + 1) * k],
                            );
                            assert!(
                                self.2[i * n + j] == 0.0 + d,
                                "[{i}, {j}] of m {m} n {n} k {k}"
                            );
                        }
                    }
                }
            }
            dispatch(One(&a, &bt, &dst, (m, n, k)));
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
            // b as stored (rows contiguous) and transposed (columns)
            let bt: Vec<f32> = (0..n * k).map(|i| bf[(i % k) * n + i / k]).collect();
            for (threaded, transposed) in
                [(false, false), (true, false), (false, true), (true, true)]
            {
                let mut dst = vec![0f32; m * n];
                let (stored, strides) = if transposed {
                    (&bt, (1, k))
                } else {
                    (&bf, (n, 1))
                };
                matmul(m, n, k, &mut dst, false, &af, k, stored, strides, threaded);
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum();
                        let scale: f64 = (0..k).map(|t| (a[i * k + t] * b[t * n + j]).abs()).sum();
                        let got = dst[i * n + j] as f64;
                        assert!(
                            (got - want).abs() <= 1e-5 * scale,
                            "m {m} k {k} n {n} threaded {threaded} transposed {transposed}: [{i},{j}] {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
