//! Convolutions and transposed convolutions through patches (im2col /
//! col2im and one matrix product), in both directions, a few images at a
//! time.
//!
//! The patch matrix of a whole batch is large (W1 at 256 chains: 58 MB
//! for one 3x3 layer) and goes to memory and back between the copy and the
//! product. With enough images, each thread instead takes a block of
//! images whose patches fit in its cache (about 1 MB) and does the copy
//! and a single-threaded product on it; with few images (batch 1, a few
//! chains) the whole batch goes at once with threaded copies and products.

use rayon::prelude::*;

use super::kernels;
use super::real::Real;
use super::window::{self, Window};

/// Patch values per block of images a thread works on (about 1 MB of f32).
const BLOCK: usize = 1 << 18;

/// Calls `f(images, src, dst, cols, threaded)` on blocks of images (`src`
/// and `dst` cut at image boundaries, `cols` room for the blocks' patches
/// of `per_image` values per image): in parallel over cache-sized blocks
/// when there are enough images, else once on all with `threaded` set.
/// [`super::winograd`] splits its batches the same way.
#[allow(clippy::too_many_arguments)]
pub(super) fn blocks<T: Real>(
    n: usize,
    per_image: usize,
    src: &[T],
    src_len: usize,
    dst: &mut [T],
    dst_len: usize,
    cols: &mut Vec<T>,
    f: impl Fn(usize, &[T], &mut [T], &mut [T], bool) + Sync,
) {
    let threads = rayon::current_num_threads().max(1);
    let per = (BLOCK / per_image.max(1)).max(1);
    let (src, dst) = (&src[..n * src_len], &mut dst[..n * dst_len]);
    if n.div_ceil(per) < 2 * threads {
        if cols.len() < n * per_image {
            cols.resize(n * per_image, T::zero());
        }
        return f(n, src, dst, &mut cols[..n * per_image], true);
    }
    dst.par_chunks_mut(per * dst_len)
        .zip(src.par_chunks(per * src_len))
        .for_each_init(
            || vec![T::zero(); per * per_image],
            |buf, (d, s)| {
                let m = d.len() / dst_len;
                f(m, s, d, &mut buf[..m * per_image], false)
            },
        );
}

/// `y += patches(x) w` for `n` images, `w [taps*c, cout]` (`y` holds the bias).
pub(crate) fn conv<T: Real>(
    g: &Window,
    n: usize,
    w: &[T],
    cout: usize,
    x: &[T],
    y: &mut [T],
    cols: &mut Vec<T>,
) {
    let (k, rows) = (g.taps() * g.c, g.ho * g.wo);
    let f = |m: usize, x: &[T], y: &mut [T], cols: &mut [T], par: bool| {
        window::im2col(g, m, x, cols, par);
        kernels::matmul(m * rows, cout, k, y, true, cols, (k, 1), w, (cout, 1), par);
    };
    blocks(n, rows * k, x, g.h * g.w * g.c, y, rows * cout, cols, f);
}

/// The adjoint of [`conv`] in `x`: `dx = col2im(dy w^T)` (overwritten).
pub(crate) fn conv_adjoint<T: Real>(
    g: &Window,
    n: usize,
    w: &[T],
    cout: usize,
    dy: &[T],
    dx: &mut [T],
    cols: &mut Vec<T>,
) {
    let (k, rows) = (g.taps() * g.c, g.ho * g.wo);
    let f = |m: usize, dy: &[T], dx: &mut [T], cols: &mut [T], par: bool| {
        kernels::matmul(
            m * rows,
            k,
            cout,
            cols,
            false,
            dy,
            (cout, 1),
            w,
            (1, cout),
            par,
        );
        window::col2im(g, m, cols, dx, par);
    };
    blocks(n, rows * k, dy, rows * cout, dx, g.h * g.w * g.c, cols, f);
}

/// Transposed convolution, the adjoint of the convolution `g` with
/// weights `w [cin, taps*cout]` (`cout = g.c`): `y = col2im(x w)`
/// (overwritten) from `x [n, g.ho, g.wo, cin]`.
pub(crate) fn conv_transpose<T: Real>(
    g: &Window,
    n: usize,
    w: &[T],
    cin: usize,
    x: &[T],
    y: &mut [T],
    cols: &mut Vec<T>,
) {
    let (kc, rows) = (g.taps() * g.c, g.ho * g.wo);
    let f = |m: usize, x: &[T], y: &mut [T], cols: &mut [T], par: bool| {
        kernels::matmul(m * rows, kc, cin, cols, false, x, (cin, 1), w, (kc, 1), par);
        window::col2im(g, m, cols, y, par);
    };
    blocks(n, rows * kc, x, rows * cin, y, g.h * g.w * g.c, cols, f);
}

/// The adjoint of [`conv_transpose`]: `dx = patches(dy) w^T`.
pub(crate) fn conv_transpose_adjoint<T: Real>(
    g: &Window,
    n: usize,
    w: &[T],
    cin: usize,
    dy: &[T],
    dx: &mut [T],
    cols: &mut Vec<T>,
) {
    let (kc, rows) = (g.taps() * g.c, g.ho * g.wo);
    let f = |m: usize, dy: &[T], dx: &mut [T], cols: &mut [T], par: bool| {
        window::im2col(g, m, dy, cols, par);
        kernels::matmul(m * rows, cin, kc, dx, false, cols, (kc, 1), w, (1, kc), par);
    };
    blocks(n, rows * kc, dy, g.h * g.w * g.c, dx, rows * cin, cols, f);
}
