//! Mean and max pooling, cross-channel local response normalisation and
//! gathers on flat NHWC buffers, forward and input gradient (CaffeNet's
//! `pool1..5` and `norm1`, `norm2`; ONNX `MaxPool`, `LRN`, `Transpose`). Work is split over images
//! only, so results do not depend on the thread count.

use rayon::prelude::*;

use super::real::Real;
use super::window::Window;
use super::Shape;

/// The input index of the first maximum of output pixel `(oy, ox)`,
/// channel `ch`, within one image `x` (padding is skipped: it never wins).
#[inline]
fn arg_max<T: Real>(w: &Window, x: &[T], oy: usize, ox: usize, ch: usize) -> usize {
    let mut best = usize::MAX;
    for ky in 0..w.kh {
        let Some(iy) = (oy * w.stride + ky).checked_sub(w.pad_top) else {
            continue;
        };
        if iy >= w.h {
            break;
        }
        for kx in 0..w.kw {
            let Some(ix) = (ox * w.stride + kx).checked_sub(w.pad_left) else {
                continue;
            };
            if ix >= w.w {
                break;
            }
            let i = (iy * w.w + ix) * w.c + ch;
            if best == usize::MAX || x[i] > x[best] {
                best = i;
            }
        }
    }
    best
}

/// `y = max over each window of x`, for `x [n, h, w, c]`.
pub fn max_pool<T: Real>(w: &Window, x: &[T], y: &mut [T]) {
    let (per_in, per_out) = (w.h * w.w * w.c, w.ho * w.wo * w.c);
    y.par_chunks_mut(per_out)
        .zip(x.par_chunks(per_in))
        .for_each(|(yi, xi)| {
            for oy in 0..w.ho {
                for ox in 0..w.wo {
                    for ch in 0..w.c {
                        let at = arg_max(w, xi, oy, ox, ch);
                        yi[(oy * w.wo + ox) * w.c + ch] =
                            if at == usize::MAX { T::zero() } else { xi[at] };
                    }
                }
            }
        });
}

/// The input gradient of [`max_pool`]: each output's gradient goes to its
/// window's first arg-max.
pub fn max_pool_adjoint<T: Real>(w: &Window, x: &[T], g: &[T], gx: &mut [T]) {
    let (per_in, per_out) = (w.h * w.w * w.c, w.ho * w.wo * w.c);
    gx.par_chunks_mut(per_in)
        .zip(x.par_chunks(per_in))
        .zip(g.par_chunks(per_out))
        .for_each(|((gxi, xi), gi)| {
            gxi.fill(T::zero());
            for oy in 0..w.ho {
                for ox in 0..w.wo {
                    for ch in 0..w.c {
                        let at = arg_max(w, xi, oy, ox, ch);
                        if at != usize::MAX {
                            gxi[at] += gi[(oy * w.wo + ox) * w.c + ch];
                        }
                    }
                }
            }
        });
}

/// Local response normalisation over `c` channels with `(size, alpha,
/// beta, k)`: `y = x d^-beta`, `d = k + alpha / size * sum_{window} x^2`,
/// the window from `(size - 1) / 2` channels before to `size / 2` after.
/// With `g` given it writes the input gradient of `sum(g * y)` into `out`
/// instead: `g d^-beta - 2 alpha beta / size * x * sum_{j: window(j)
/// holds i} g_j y_j / d_j`.
pub fn lrn<T: Real>(
    c: usize,
    (size, alpha, beta, k): (usize, f64, f64, f64),
    x: &[T],
    out: &mut [T],
    g: Option<&[T]>,
) {
    let (before, after) = ((size - 1) / 2, size / 2);
    let scale = alpha / size as f64;
    out.par_chunks_mut(c * 64)
        .zip(x.par_chunks(c * 64))
        .enumerate()
        .for_each(|(blk, (ob, xb))| {
            let mut d = vec![0f64; c];
            let mut t = vec![0f64; c];
            for (p, (op, xp)) in ob.chunks_mut(c).zip(xb.chunks(c)).enumerate() {
                for (i, di) in d.iter_mut().enumerate() {
                    let lo = i.saturating_sub(before);
                    let hi = (i + after).min(c - 1);
                    let sq: f64 = xp[lo..=hi]
                        .iter()
                        .map(|v| v.to_f64().unwrap_or(0.0).powi(2))
                        .sum();
                    *di = k + scale * sq;
                }
                let xv = |i: usize| xp[i].to_f64().unwrap_or(0.0);
                match g {
                    None => {
                        for i in 0..c {
                            op[i] = T::from(xv(i) * d[i].powf(-beta)).unwrap_or_else(T::zero);
                        }
                    }
                    Some(g) => {
                        let gp = &g[(blk * 64 + p) * c..(blk * 64 + p + 1) * c];
                        // t_j = g_j y_j / d_j = g_j x_j d_j^(-beta - 1)
                        for j in 0..c {
                            t[j] = gp[j].to_f64().unwrap_or(0.0) * xv(j) * d[j].powf(-beta - 1.0);
                        }
                        for i in 0..c {
                            // the j whose window holds i: i - after ..= i + before
                            let lo = i.saturating_sub(after);
                            let hi = (i + before).min(c - 1);
                            let s: f64 = t[lo..=hi].iter().sum();
                            let v = gp[i].to_f64().unwrap_or(0.0) * d[i].powf(-beta)
                                - 2.0 * scale * beta * xv(i) * s;
                            op[i] = T::from(v).unwrap_or_else(T::zero);
                        }
                    }
                }
            }
        });
}

/// The adjoint of [`mean_pool`]: each pixel gets its channel's gradient
/// over the pixel count.
pub fn mean_pool_adjoint<T: Real>((h, w, c): Shape, g: &[T], gx: &mut [T]) {
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
pub fn mean_pool<T: Real>((h, w, c): Shape, x: &[T], y: &mut [T]) {
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

/// [`super::Op::Gather`]: `y[i] = x[index[i]]` within each image; with
/// `adjoint`, `x` is the output gradient and `y` the input gradient (the
/// values gathered more than once get the sum, in index order).
pub fn gather<T: Real>(index: &[usize], x: &[T], y: &mut [T], adjoint: bool) {
    use rayon::prelude::*;
    let (lo, li) = if adjoint {
        (y.len() / (x.len() / index.len()).max(1), index.len())
    } else {
        (index.len(), x.len() / (y.len() / index.len()).max(1))
    };
    if adjoint {
        y.par_chunks_mut(lo)
            .zip(x.par_chunks(li))
            .for_each(|(gx, g)| {
                gx.fill(T::zero());
                for (&i, &v) in index.iter().zip(g) {
                    gx[i] += v;
                }
            });
    } else {
        y.par_chunks_mut(lo)
            .zip(x.par_chunks(li))
            .for_each(|(y, x)| y.iter_mut().zip(index).for_each(|(v, &i)| *v = x[i]));
    }
}
