//! The ops that read two or more values: [`Op::Add`] (residual
//! connections), [`Op::Concat`] (along channels) and [`Op::Binary`]
//! (elementwise sums, products, differences and quotients, the second value the
//! first's shape, one value per channel, or one value per image).

use rayon::prelude::*;

use super::real::Real;
use super::{len, Op, Shape};

/// An elementwise function of two values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Add,
    Mul,
    Sub,
    Div,
}

/// The output shape of `Binary` on inputs of shapes `a` and `b`, or why
/// they do not fit.
pub(crate) fn binary_shape(ins: &[Shape]) -> std::result::Result<Shape, String> {
    match ins {
        [a, b] if b == a || *b == (1, 1, a.2) || *b == (1, 1, 1) => Ok(*a),
        _ => Err(format!(
            "an elementwise op reads two values, the second of the first's shape, (1, 1, channels) or (1, 1, 1); given {ins:?}"
        )),
    }
}

/// `y = op(xs)` for an op that reads several values of shapes `ss`.
pub(crate) fn forward<T: Real>(op: &Op<T>, ss: &[Shape], xs: &[&[T]], y: &mut [T]) {
    match op {
        Op::Add => {
            y.copy_from_slice(xs[0]);
            for x in &xs[1..] {
                y.iter_mut().zip(x.iter()).for_each(|(v, &b)| *v += b);
            }
        }
        Op::Concat => {
            let c: usize = ss.iter().map(|s| s.2).sum();
            let mut off = 0;
            for (x, s) in xs.iter().zip(ss) {
                for (yp, xp) in y.chunks_mut(c).zip(x.chunks(s.2)) {
                    yp[off..off + s.2].copy_from_slice(xp);
                }
                off += s.2;
            }
        }
        Op::Binary(f) => {
            let (la, lb, c) = (len(ss[0]), len(ss[1]), ss[0].2);
            let images = y.par_chunks_mut(la).zip(xs[0].par_chunks(la));
            images.zip(xs[1].par_chunks(lb)).for_each(|((y, a), b)| {
                pieces(la, lb, c, b, |at, n, b| {
                    let (y, a) = (&mut y[at..at + n], &a[at..at + n]);
                    match f {
                        Binary::Add => map2(y, a, b, |a, b| a + b),
                        Binary::Mul => map2(y, a, b, |a, b| a * b),
                        Binary::Sub => map2(y, a, b, |a, b| a - b),
                        Binary::Div => map2(y, a, b, |a, b| a / b),
                    }
                })
            });
        }
        _ => unreachable!("several::forward of an op that reads one value"),
    }
}

/// The gradient owed to input `k` (of shapes `ss`, values `xs`) of an op
/// that reads several values, from its output gradient `g`.
pub(crate) fn backward_part<T: Real>(
    op: &Op<T>,
    ss: &[Shape],
    xs: &[&[T]],
    k: usize,
    g: &[T],
    gx: &mut [T],
) {
    match op {
        Op::Add => gx.copy_from_slice(g),
        Op::Concat => {
            let c: usize = ss.iter().map(|s| s.2).sum();
            let off: usize = ss[..k].iter().map(|s| s.2).sum();
            let ck = ss[k].2;
            for (xp, gp) in gx.chunks_mut(ck).zip(g.chunks(c)) {
                xp.copy_from_slice(&gp[off..off + ck]);
            }
        }
        Op::Binary(f) => binary_backward(*f, ss, xs, k, g, gx),
        _ => unreachable!("several::backward_part of an op that reads one value"),
    }
}

/// Calls `each(at, n, b)` for the pieces of one image of `a` (`la`
/// values, `c` channels) that read the same run of `b` (one image of it,
/// `lb` values): `a[at..at + n]` pairs with `b` value by value, or with
/// `b[0]` alone when `b` has one value. Walks `a` in order, without a
/// division per value.
#[inline]
fn pieces<T>(la: usize, lb: usize, c: usize, b: &[T], mut each: impl FnMut(usize, usize, &[T])) {
    if lb == la || lb == 1 {
        each(0, la, b);
    } else {
        for at in (0..la).step_by(c) {
            each(at, c, b);
        }
    }
}

/// `y = f(a, b)` value by value, `b` of `a`'s length or one value.
#[inline]
fn map2<T: Real>(y: &mut [T], a: &[T], b: &[T], f: impl Fn(T, T) -> T) {
    if let [b] = b {
        y.iter_mut().zip(a).for_each(|(y, &a)| *y = f(a, *b));
    } else {
        y.iter_mut()
            .zip(a)
            .zip(b)
            .for_each(|((y, &a), &b)| *y = f(a, b));
    }
}

/// `gb += g * d(a, b)` value by value, `gb` (and `b`) of `a`'s length or
/// one value (then summed in order into it).
#[inline]
fn sum2<T: Real>(gb: &mut [T], g: &[T], a: &[T], b: &[T], d: impl Fn(T, T) -> T) {
    if let ([gb], [b]) = (&mut *gb, b) {
        for (&g, &a) in g.iter().zip(a) {
            *gb += g * d(a, *b);
        }
    } else {
        for (((gb, &g), &a), &b) in gb.iter_mut().zip(g).zip(a).zip(b) {
            *gb += g * d(a, b);
        }
    }
}

/// [`backward_part`] of [`Op::Binary`]: `d/da` elementwise; `d/db` summed
/// over the values that share a `b` (per image, so the order of the sum
/// does not depend on the batch).
fn binary_backward<T: Real>(f: Binary, ss: &[Shape], xs: &[&[T]], k: usize, g: &[T], gx: &mut [T]) {
    let (la, lb, c) = (len(ss[0]), len(ss[1]), ss[0].2);
    let (a, b) = (xs[0], xs[1]);
    let one = T::one();
    if k == 0 {
        let images = gx.par_chunks_mut(la).zip(g.par_chunks(la));
        images.zip(b.par_chunks(lb)).for_each(|((gx, g), b)| {
            pieces(la, lb, c, b, |at, n, b| {
                let (gx, g) = (&mut gx[at..at + n], &g[at..at + n]);
                match f {
                    Binary::Add | Binary::Sub => gx.copy_from_slice(g),
                    Binary::Mul => map2(gx, g, b, |g, b| g * b),
                    Binary::Div => map2(gx, g, b, |g, b| g * (one / b)),
                }
            })
        });
    } else {
        let images = gx.par_chunks_mut(lb).zip(g.par_chunks(la));
        images
            .zip(a.par_chunks(la).zip(b.par_chunks(lb)))
            .for_each(|((gx, g), (a, b))| {
                gx.fill(T::zero());
                pieces(la, lb, c, b, |at, n, b| {
                    let (g, a) = (&g[at..at + n], &a[at..at + n]);
                    match f {
                        Binary::Add => sum2(gx, g, a, b, |_, _| one),
                        Binary::Sub => sum2(gx, g, a, b, |_, _| -one),
                        Binary::Mul => sum2(gx, g, a, b, |a, _| a),
                        Binary::Div => sum2(gx, g, a, b, |a, b| -a / (b * b)),
                    }
                })
            });
    }
}
