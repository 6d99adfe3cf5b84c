//! The basic kernels of the sampling engine, on flat NHWC slices: matrix
//! products (the `gemm` crate, as candle uses it, or [`super::thin`]),
//! separable resampling, and the activations with derivatives read from
//! their outputs. Work is split over images or blocks of output elements,
//! never over a sum, so each output element is summed in a fixed order
//! whatever the thread count.

use rayon::prelude::*;

use super::real::Real;

/// `dst [m, n] = (accumulate ? dst : 0) + a b`, with `a` `[m, k]` given by
/// its row and column strides and `b` `[k, n]` likewise (so a transposed
/// operand is a stride swap, not a copy); on every thread or on this one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    accumulate: bool,
    a: &[T],
    (a_rs, a_cs): (usize, usize),
    b: &[T],
    (b_rs, b_cs): (usize, usize),
    threaded: bool,
) {
    assert!(dst.len() >= m * n, "matmul: destination too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(T::zero());
        }
        return;
    }
    assert!(
        a.len() > (m - 1) * a_rs + (k - 1) * a_cs,
        "matmul: lhs too small"
    );
    assert!(
        b.len() > (k - 1) * b_rs + (n - 1) * b_cs,
        "matmul: rhs too small"
    );
    if super::thin::suits(m, n, a_cs, (b_rs, b_cs)) {
        return super::thin::matmul(m, n, k, dst, accumulate, a, a_rs, b, (b_rs, b_cs), threaded);
    }
    // Safety: the asserts above bound every index the product reads and
    // writes; the slices do not alias (one is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            if threaded {
                gemm::Parallelism::Rayon(0)
            } else {
                gemm::Parallelism::None
            },
        )
    }
}

/// A sparse `[to, from]` matrix by rows: `(column, weight)` pairs.
pub type SparseRows<T> = Vec<Vec<(usize, T)>>;

/// The non-zero entries of a dense row-major `[to, from]` matrix.
pub fn sparse_rows<T: Real>(m: &[T], to: usize, from: usize) -> SparseRows<T> {
    (0..to)
        .map(|i| {
            (0..from)
                .filter(|&j| m[i * from + j] != T::zero())
                .map(|j| (j, m[i * from + j]))
                .collect()
        })
        .collect()
}

/// Separable resampling of `n` images: `y[i, j, c] = sum_{p, q} rh[i, p]
/// rw[j, q] x[p, q, c]` (`y` overwritten), one axis at a time through
/// `tmp [h, tw, c]` so the second pass moves whole rows. With `adjoint`,
/// the transpose: `x`-shaped output from a `y`-shaped input.
#[allow(clippy::too_many_arguments)]
pub(crate) fn resample<T: Real>(
    rh: &SparseRows<T>,
    rw: &SparseRows<T>,
    (h, w, c): (usize, usize, usize),
    n: usize,
    x: &[T],
    y: &mut [T],
    adjoint: bool,
) {
    let (th, tw) = (rh.len(), rw.len());
    let (small, big, row) = (h * w * c, th * tw * c, tw * c);
    let (src_len, dst_len) = if adjoint { (big, small) } else { (small, big) };
    let axpy = |y: &mut [T], a: T, x: &[T]| y.iter_mut().zip(x).for_each(|(y, &x)| *y += a * x);
    y[..n * dst_len]
        .par_chunks_mut(dst_len)
        .zip(x[..n * src_len].par_chunks(src_len))
        .for_each(|(yi, xi)| {
            let mut tmp = vec![T::zero(); h * row];
            yi.fill(T::zero());
            if adjoint {
                for (i, r) in rh.iter().enumerate() {
                    for &(p, a) in r {
                        axpy(
                            &mut tmp[p * row..(p + 1) * row],
                            a,
                            &xi[i * row..(i + 1) * row],
                        );
                    }
                }
                for p in 0..h {
                    for (j, r) in rw.iter().enumerate() {
                        for &(q, b) in r {
                            let t = (p * tw + j) * c;
                            axpy(
                                &mut yi[(p * w + q) * c..(p * w + q + 1) * c],
                                b,
                                &tmp[t..t + c],
                            );
                        }
                    }
                }
            } else {
                for p in 0..h {
                    for (j, r) in rw.iter().enumerate() {
                        for &(q, b) in r {
                            let t = (p * tw + j) * c;
                            axpy(
                                &mut tmp[t..t + c],
                                b,
                                &xi[(p * w + q) * c..(p * w + q + 1) * c],
                            );
                        }
                    }
                }
                for (i, r) in rh.iter().enumerate() {
                    for &(p, a) in r {
                        axpy(
                            &mut yi[i * row..(i + 1) * row],
                            a,
                            &tmp[p * row..(p + 1) * row],
                        );
                    }
                }
            }
        });
}

/// A pointwise activation, applied in place after an affine op.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    Identity,
    Relu,
    /// `min(max(x, 0), 6)`
    Relu6,
    /// `x` for `x > 0`, `a x` below.
    Leaky(f64),
    Sigmoid,
    Tanh,
}

/// `y = f(y)` in parallel blocks (one loop per `f`, so it vectorises).
#[inline(always)]
fn map<T: Real>(y: &mut [T], f: impl Fn(T) -> T + Sync + Copy) {
    y.par_chunks_mut(1 << 14).for_each(|c| {
        // a copy on this stack frame, not a read through the closure's
        // reference (see `scale_by`)
        #[allow(clippy::redundant_locals)]
        let f = f;
        c.iter_mut().for_each(|v| *v = f(*v))
    });
}

/// `g = g * d(y)` in parallel blocks. (`f` and `d` are `move` closures
/// copied into each block's loop: constants read through a reference made
/// their branches a choice between addresses, which does not vectorise;
/// the leaky ReLU's derivative ran a value at a time, 9% of W1's step at
/// 8 chains.)
#[inline(always)]
fn scale_by<T: Real>(g: &mut [T], y: &[T], d: impl Fn(T) -> T + Sync + Copy) {
    g.par_chunks_mut(1 << 14)
        .zip(y.par_chunks(1 << 14))
        .for_each(|(g, y)| {
            #[allow(clippy::redundant_locals)]
            let d = d;
            g.iter_mut().zip(y).for_each(|(g, &y)| *g = *g * d(y))
        });
}

impl Act {
    pub fn apply<T: Real>(self, y: &mut [T]) {
        let (zero, one, half, six) = (
            T::zero(),
            T::one(),
            T::from(0.5).unwrap(),
            T::from(6.0).unwrap(),
        );
        match self {
            Act::Identity => {}
            Act::Relu => map(y, move |v| if v > zero { v } else { zero }),
            Act::Relu6 => map(y, move |v| {
                let r = if v > zero { v } else { zero };
                if r < six {
                    r
                } else {
                    six
                }
            }),
            Act::Leaky(a) => {
                let a = T::from(a).unwrap();
                map(y, move |v| if v > zero { v } else { v * a })
            }
            // (1 + tanh(x / 2)) / 2, as crate::nn::sigmoid: no overflow
            Act::Sigmoid => map(y, move |v| (one + (v * half).tanh()) * half),
            Act::Tanh => map(y, move |v| v.tanh()),
        }
    }

    /// `g *= act'(x)`, the derivative read from the output `y = act(x)`
    /// (zero at the kinks, as candle's and PyTorch's relu and relu6).
    pub fn backward<T: Real>(self, y: &[T], g: &mut [T]) {
        let (zero, one, six) = (T::zero(), T::one(), T::from(6.0).unwrap());
        match self {
            Act::Identity => {}
            Act::Relu => scale_by(g, y, move |v| if v > zero { one } else { zero }),
            Act::Relu6 => scale_by(g, y, move |v| if v > zero && v < six { one } else { zero }),
            Act::Leaky(a) => {
                let a = T::from(a).unwrap();
                // two selects summed (a chain of them became a table
                // look-up, a value at a time)
                scale_by(g, y, move |v| {
                    let above = if v > zero { one } else { zero };
                    let below = if v < zero { a } else { zero };
                    above + below
                })
            }
            Act::Sigmoid => scale_by(g, y, move |v| v * (one - v)),
            Act::Tanh => scale_by(g, y, move |v| one - v * v),
        }
    }
}
