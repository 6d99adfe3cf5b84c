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

/// The index into `b` (per image `lb` values) of value `i` of `a` (per
/// image `la` values, `c` channels).
#[inline]
fn b_index(i: usize, la: usize, lb: usize, c: usize) -> usize {
    let within = i % la;
    (i / la) * lb
        + match lb {
            l if l == la => within,
            1 => 0,
            _ => within % c,
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
            let (a, b) = (xs[0], xs[1]);
            for (i, (y, &a)) in y.iter_mut().zip(a).enumerate() {
                let b = b[b_index(i, la, lb, c)];
                *y = match f {
                    Binary::Add => a + b,
                    Binary::Mul => a * b,
                    Binary::Sub => a - b,
                    Binary::Div => a / b,
                };
            }
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

/// [`backward_part`] of [`Op::Binary`]: `d/da` elementwise; `d/db` summed
/// over the values that share a `b` (per image, so the order of the sum
/// does not depend on the batch).
fn binary_backward<T: Real>(f: Binary, ss: &[Shape], xs: &[&[T]], k: usize, g: &[T], gx: &mut [T]) {
    let (la, lb, c) = (len(ss[0]), len(ss[1]), ss[0].2);
    let (a, b) = (xs[0], xs[1]);
    let partial = |i: usize| -> T {
        let (av, bv) = (a[i], b[b_index(i, la, lb, c)]);
        match (f, k) {
            (Binary::Add, _) => T::one(),
            (Binary::Mul, 0) => bv,
            (Binary::Mul, _) => av,
            (Binary::Sub, 0) => T::one(),
            (Binary::Sub, _) => -T::one(),
            (Binary::Div, 0) => T::one() / bv,
            (Binary::Div, _) => -av / (bv * bv),
        }
    };
    if k == 0 {
        gx.par_chunks_mut(la).enumerate().for_each(|(img, gxi)| {
            for (j, v) in gxi.iter_mut().enumerate() {
                let i = img * la + j;
                *v = g[i] * partial(i);
            }
        });
    } else {
        gx.par_chunks_mut(lb).enumerate().for_each(|(img, gxi)| {
            gxi.fill(T::zero());
            for j in 0..la {
                let i = img * la + j;
                gxi[b_index(i, la, lb, c) - img * lb] += g[i] * partial(i);
            }
        });
    }
}
