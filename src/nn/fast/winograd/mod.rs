//! 3x3 "same" convolutions (stride 1, one pixel of zero padding) by
//! Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray 2016, "Fast
//! Algorithms for Convolutional Neural Networks"): each 2x2 block of output
//! pixels comes from the 4x4 block of input around it with 16 products per
//! input and output channel where the direct sum takes 36. The input
//! blocks and the weights are transformed (`B^T d B`, `G g G^T`), the 16
//! transformed positions are 16 matrix products over the channels, and the
//! output transform (`A^T m A`) adds them back into 2x2 pixels.
//!
//! The weights' transform is made once per network (a [`Plan`], kept in
//! [`super::Net`]), for the forward pass and for the input gradient, which
//! is the same kind of convolution with the kernel turned by 180 degrees
//! and its channels swapped. The sums are reordered against the direct
//! convolution, so results differ from it by rounding (the tests hold the
//! two together in f64 and f32); each output is still summed in a fixed
//! order whatever the thread count.

use rayon::prelude::*;

use super::real::Real;
use super::window::Window;
use super::{kernels, patches};

/// Fewest input and output channels for which the transforms pay.
const MIN_CHANNELS: usize = 16;

/// Fewest 2x2 blocks of output (over all images) for which the 16 small
/// products pay. W1's first up-convolution (7x7, 128 to 256 channels, 16
/// blocks an image) took 0.252 ms this way against 0.231 ms by patches for
/// one image, and 0.784 against 0.999 ms for eight, in one run of the
/// ignored test `winograd_times_against_the_patches_on_w1s_shapes`
/// (2026-12-08, an Intel Xeon with AVX-512).
const MIN_BLOCKS: usize = 32;

/// Whether the convolution `g` to `cout` channels is one this file takes.
pub(crate) fn suits(g: &Window, cout: usize) -> bool {
    g.kh == 3
        && g.kw == 3
        && g.stride == 1
        && g.pad_top == 1
        && g.pad_left == 1
        && g.ho == g.h
        && g.wo == g.w
        && g.c >= MIN_CHANNELS
        && cout >= MIN_CHANNELS
}

/// A convolution's weights transformed: `forward [16, cin, cout]` and, for
/// the input gradient, `adjoint [16, cout, cin]`.
#[derive(Debug, Clone)]
pub(crate) struct Plan<T> {
    cin: usize,
    cout: usize,
    forward: Vec<T>,
    adjoint: Vec<T>,
}

/// `G`, the weights' transform (4x3).
const G: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// `G g G^T` of one 3x3 kernel `g[dy][dx]`, in f64.
fn transform_kernel(g: &[[f64; 3]; 3]) -> [f64; 16] {
    let mut gg = [[0.0; 3]; 4]; // G g
    for (a, row) in gg.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|i| G[a][i] * g[i][j]).sum();
        }
    }
    let mut u = [0.0; 16];
    for a in 0..4 {
        for b in 0..4 {
            u[a * 4 + b] = (0..3).map(|j| gg[a][j] * G[b][j]).sum();
        }
    }
    u
}

impl<T: Real> Plan<T> {
    /// The plan of weights `w [9*cin, cout]` in `(dy, dx, cin)` row order.
    pub(crate) fn new(cin: usize, cout: usize, w: &[T]) -> Self {
        let at = |dy: usize, dx: usize, i: usize, o: usize| {
            w[((dy * 3 + dx) * cin + i) * cout + o]
                .to_f64()
                .unwrap_or(0.0)
        };
        let cast = |v: f64| T::from(v).unwrap_or_else(T::zero);
        let mut forward = vec![T::zero(); 16 * cin * cout];
        let mut adjoint = vec![T::zero(); 16 * cin * cout];
        for i in 0..cin {
            for o in 0..cout {
                let g: [[f64; 3]; 3] =
                    std::array::from_fn(|dy| std::array::from_fn(|dx| at(dy, dx, i, o)));
                let turned: [[f64; 3]; 3] =
                    std::array::from_fn(|dy| std::array::from_fn(|dx| at(2 - dy, 2 - dx, i, o)));
                let (u, t) = (transform_kernel(&g), transform_kernel(&turned));
                for e in 0..16 {
                    forward[(e * cin + i) * cout + o] = cast(u[e]);
                    adjoint[(e * cout + o) * cin + i] = cast(t[e]);
                }
            }
        }
        Self {
            cin,
            cout,
            forward,
            adjoint,
        }
    }

    /// Whether `n` images of `g` are enough for this way to pay.
    pub(crate) fn pays(g: &Window, n: usize) -> bool {
        n * g.h.div_ceil(2) * g.w.div_ceil(2) >= MIN_BLOCKS
    }

    /// `y += conv(x)` for `n` images of `g` (forward), or, with `adjoint`,
    /// `y = conv^T(x)`: `x` the output gradient, `y` the input gradient
    /// (overwritten).
    pub(crate) fn run(
        &self,
        adjoint: bool,
        g: &Window,
        n: usize,
        x: &[T],
        y: &mut [T],
        scratch: &mut Vec<T>,
    ) {
        if n == 0 {
            return;
        }
        let (cin, cout, u, accumulate) = match adjoint {
            false => (self.cin, self.cout, &self.forward, true),
            true => (self.cout, self.cin, &self.adjoint, false),
        };
        let s = Side::new(g.h, g.w, cin, cout);
        let per_image = 16 * s.tiles() * (cin + cout);
        let (src, dst) = (s.h * s.w * cin, s.h * s.w * cout);
        let f = |m: usize, x: &[T], y: &mut [T], buf: &mut [T], threaded: bool| {
            s.block(u, m, x, y, buf, accumulate, threaded)
        };
        patches::blocks(n, per_image, x, src, y, dst, scratch, f);
    }
}

/// The geometry of one direction: `h x w` images, `cin` channels in,
/// `cout` out.
#[derive(Clone, Copy)]
struct Side {
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    /// Blocks of 2x2 output pixels down and across.
    th: usize,
    tw: usize,
}

impl Side {
    fn new(h: usize, w: usize, cin: usize, cout: usize) -> Self {
        Self {
            h,
            w,
            cin,
            cout,
            th: h.div_ceil(2),
            tw: w.div_ceil(2),
        }
    }

    fn tiles(&self) -> usize {
        self.th * self.tw
    }

    /// One block of `m` images: the input transformed into `buf`'s first
    /// part (`[tile, 16, cin]`), 16 products into its second (`[16, tile,
    /// cout]`), and the output transform into `y`.
    #[allow(clippy::too_many_arguments)]
    fn block<T: Real>(
        &self,
        u: &[T],
        m: usize,
        x: &[T],
        y: &mut [T],
        buf: &mut [T],
        accumulate: bool,
        threaded: bool,
    ) {
        let (cin, cout) = (self.cin, self.cout);
        let p = m * self.tiles();
        let (v, prod) = buf.split_at_mut(16 * p * cin);
        let prod = &mut prod[..16 * p * cout];
        let zeros = vec![T::zero(); cin];
        let scratch = || vec![T::zero(); 16 * cin];
        let input =
            |t: &mut Vec<T>, (i, vt): (usize, &mut [T])| self.input_tile(x, &zeros, i, t, vt);
        if threaded {
            let tiles = v.par_chunks_mut(16 * cin).enumerate();
            tiles.for_each_init(scratch, input);
        } else {
            let mut t = scratch();
            v.chunks_mut(16 * cin)
                .enumerate()
                .for_each(|tile| input(&mut t, tile));
        }
        let v = &*v;
        let product = |(e, pe): (usize, &mut [T])| {
            let (ve, ue) = (&v[e * cin..], &u[e * cin * cout..]);
            kernels::matmul(
                p,
                cout,
                cin,
                pe,
                false,
                ve,
                (16 * cin, 1),
                ue,
                (cout, 1),
                false,
            );
        };
        if threaded {
            prod.par_chunks_mut(p * cout).enumerate().for_each(product);
        } else {
            prod.chunks_mut(p * cout).enumerate().for_each(product);
        }
        let prod = &*prod;
        let scratch = || vec![T::zero(); 8 * cout];
        let rows = |s: &mut Vec<T>, (r, yr): (usize, &mut [T])| {
            let (img, ti) = (r / self.th, r % self.th);
            for tj in 0..self.tw {
                let t = (img * self.th + ti) * self.tw + tj;
                self.output_tile(prod, p, t, (ti, tj), s, yr, accumulate);
            }
        };
        // each image's rows in pairs (one block row of tiles), the last
        // pair of an odd height a single row
        let image = self.h * self.w * cout;
        let pairs = y
            .chunks_mut(image)
            .flat_map(|yi| yi.chunks_mut(2 * self.w * cout));
        if threaded {
            let pairs: Vec<&mut [T]> = pairs.collect();
            pairs
                .into_par_iter()
                .enumerate()
                .for_each_init(scratch, rows);
        } else {
            let mut s = scratch();
            pairs.enumerate().for_each(|pair| rows(&mut s, pair));
        }
    }

    /// `B^T d B` of tile `i` (image, block row, block column) for every
    /// channel, into `vt [16, cin]`, by way of `t [16, cin]` (`B^T d`);
    /// `zeros` stands for the padding.
    fn input_tile<T: Real>(&self, x: &[T], zeros: &[T], i: usize, t: &mut [T], vt: &mut [T]) {
        let cin = self.cin;
        let (img, rest) = (i / self.tiles(), i % self.tiles());
        let (ti, tj) = (rest / self.tw, rest % self.tw);
        let mut d: [&[T]; 16] = [&zeros[..cin]; 16];
        for a in 0..4 {
            for b in 0..4 {
                let (r, c) = ((2 * ti + a).wrapping_sub(1), (2 * tj + b).wrapping_sub(1));
                if r < self.h && c < self.w {
                    let at = ((img * self.h + r) * self.w + c) * cin;
                    d[a * 4 + b] = &x[at..at + cin];
                }
            }
        }
        // row a of B^T (and column a of B) is `q[first] + sign q[second]`
        const B: [(usize, usize, bool); 4] =
            [(0, 2, true), (1, 2, false), (2, 1, true), (1, 3, true)];
        for (a, &(f, s, minus)) in B.iter().enumerate() {
            for b in 0..4 {
                pair(
                    &mut t[(a * 4 + b) * cin..][..cin],
                    d[f * 4 + b],
                    d[s * 4 + b],
                    minus,
                );
            }
        }
        for a in 0..4 {
            let row = &t[a * 4 * cin..][..4 * cin];
            for (b, &(f, s, minus)) in B.iter().enumerate() {
                let (p, q) = (&row[f * cin..][..cin], &row[s * cin..][..cin]);
                pair(&mut vt[(a * 4 + b) * cin..][..cin], p, q, minus);
            }
        }
    }

    /// `A^T m A` of tile `t` (block row and column `(ti, tj)`) from the
    /// products `prod [16, p, cout]`, by way of `s [8, cout]` (`A^T m`),
    /// added into (or written to) the rows `yr` of its block row.
    #[allow(clippy::too_many_arguments)]
    fn output_tile<T: Real>(
        &self,
        prod: &[T],
        p: usize,
        t: usize,
        (ti, tj): (usize, usize),
        s: &mut [T],
        yr: &mut [T],
        accumulate: bool,
    ) {
        let cout = self.cout;
        let mp: [&[T]; 16] = std::array::from_fn(|e| &prod[(e * p + t) * cout..][..cout]);
        // row i of A^T: m0 + m1 + m2, and m1 - m2 - m3
        for b in 0..4 {
            let col = |a: usize| mp[a * 4 + b];
            triple(&mut s[b * cout..][..cout], col(0), col(1), col(2), false);
            triple(
                &mut s[(4 + b) * cout..][..cout],
                col(1),
                col(2),
                col(3),
                true,
            );
        }
        let rows = (self.h - 2 * ti).min(2);
        let cols = (self.w - 2 * tj).min(2);
        for i in 0..rows {
            let si: [&[T]; 4] = std::array::from_fn(|b| &s[(4 * i + b) * cout..][..cout]);
            for j in 0..cols {
                let at = (i * self.w + 2 * tj + j) * cout;
                let out = &mut yr[at..at + cout];
                let (a, b, c) = match j {
                    0 => (si[0], si[1], si[2]),
                    _ => (si[1], si[2], si[3]),
                };
                match (accumulate, j == 1) {
                    (true, minus) => add_triple(out, a, b, c, minus),
                    (false, minus) => triple(out, a, b, c, minus),
                }
            }
        }
    }
}

/// `out = p + q`, or `p - q`.
#[inline]
fn pair<T: Real>(out: &mut [T], p: &[T], q: &[T], minus: bool) {
    let values = out.iter_mut().zip(p.iter().zip(q));
    if minus {
        values.for_each(|(o, (&p, &q))| *o = p - q);
    } else {
        values.for_each(|(o, (&p, &q))| *o = p + q);
    }
}

/// `out = a + b + c`, or `a - b - c`.
#[inline]
fn triple<T: Real>(out: &mut [T], a: &[T], b: &[T], c: &[T], minus: bool) {
    let values = out.iter_mut().zip(a.iter().zip(b.iter().zip(c)));
    if minus {
        values.for_each(|(o, (&a, (&b, &c)))| *o = a - b - c);
    } else {
        values.for_each(|(o, (&a, (&b, &c)))| *o = a + b + c);
    }
}

/// `out += a + b + c`, or `out += a - b - c`.
#[inline]
fn add_triple<T: Real>(out: &mut [T], a: &[T], b: &[T], c: &[T], minus: bool) {
    let values = out.iter_mut().zip(a.iter().zip(b.iter().zip(c)));
    if minus {
        values.for_each(|(o, (&a, (&b, &c)))| *o += a - b - c);
    } else {
        values.for_each(|(o, (&a, (&b, &c)))| *o += a + b + c);
    }
}

#[cfg(test)]
mod tests;
