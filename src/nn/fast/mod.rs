//! The sampling engine: a frozen feed-forward network compiled to a list of
//! ops on flat NHWC buffers, with a forward pass that keeps every
//! activation and a backward pass to the input only.
//!
//! Sampling needs `d log p / d position` thousands of times through networks
//! whose weights never change. candle's autograd builds a graph per call,
//! computes weight gradients nobody reads, and allocates (and the kernel
//! zero-fills) fresh buffers for every temporary: on the faces workload that
//! page-zeroing alone was 31% of the step and matrix products only 8%
//! (`perf`, issue 7). Here the weights are laid out once for the products,
//! activations are fused into the op before them (their derivative is read
//! from the saved output), and all buffers live in a [`Workspace`] reused
//! from step to step. Results agree with the candle path (the reference)
//! to float rounding; tests check both against each other and against
//! finite differences in f64.

pub mod build;
pub mod depthwise;
pub mod kernels;
pub mod patches;
pub mod real;
pub mod simd;
pub mod thin;
pub mod window;

use crate::error::{Error, Result};
use kernels::{Act, SparseRows};
use real::Real;
use window::Window;

/// Per-image shape `(h, w, c)`; a vector is `(1, 1, len)`.
pub type Shape = (usize, usize, usize);

fn len((h, w, c): Shape) -> usize {
    h * w * c
}

/// One op of a compiled network. Weights are stored in the layout the
/// matrix products read.
#[derive(Debug, Clone)]
pub enum Op<T> {
    /// Convolution (also a fully connected layer: a 1x1 window on a
    /// `(1, 1, in)` input). `weight [taps*cin, cout]` in `(dy, dx, cin)`
    /// row order, then `bias`, then `act`.
    Conv {
        window: Window,
        weight: Vec<T>,
        bias: Vec<T>,
        act: Act,
    },
    /// Transposed convolution: the adjoint of the convolution `window`
    /// (from this op's output, `window.h x window.w x cout`, to its input
    /// `window.ho x window.wo x cin`). `weight [cin, taps*cout]`.
    ConvTranspose {
        window: Window,
        weight: Vec<T>,
        bias: Vec<T>,
        act: Act,
    },
    /// Depthwise convolution, `taps [kh*kw, c]`.
    Depthwise {
        window: Window,
        taps: Vec<T>,
        bias: Vec<T>,
        act: Act,
    },
    /// `x * scale[c] + shift[c]` per channel.
    Affine { scale: Vec<T>, shift: Vec<T> },
    /// Sub-pixel up-sampling by 2: channel `(r, s, c)` at `(y, x)` goes to
    /// pixel `(2y + r, 2x + s)`, channel `c` (`crate::nn::UpConv2x`).
    PixelShuffle2,
    /// Separable linear resampling (bilinear resize) to `rh.len() x rw.len()`.
    Resample {
        rh: SparseRows<T>,
        rw: SparseRows<T>,
    },
    /// Adds the activation `from` (an index into the tape: 0 is the input,
    /// `i + 1` the output of op `i`), a residual connection.
    AddFrom(usize),
    /// Global average over pixels -> `(1, 1, c)`.
    MeanPool,
    /// The same values read as another shape (a flatten or its inverse).
    Reshape(Shape),
}

impl<T: Real> Op<T> {
    /// Replaces the activation fused into this op (if it has one), e.g. to
    /// read a layer before its ReLU.
    pub fn set_act(&mut self, new: Act) {
        match self {
            Op::Conv { act, .. } | Op::ConvTranspose { act, .. } | Op::Depthwise { act, .. } => {
                *act = new
            }
            _ => {}
        }
    }

    /// This op's output shape for input `s`, or why it does not fit.
    fn out_shape(&self, s: Shape, tape: &[Shape]) -> std::result::Result<Shape, String> {
        let conv_in = |w: &Window| (w.h, w.w, w.c);
        match self {
            Op::Conv {
                window: w,
                weight,
                bias,
                ..
            } => {
                let cout = bias.len();
                if conv_in(w) != s {
                    return Err(format!("convolution expects {:?}, got {s:?}", conv_in(w)));
                }
                if weight.len() != w.taps() * w.c * cout {
                    return Err(format!(
                        "convolution weight has {} values, expected {}x{}x{cout}",
                        weight.len(),
                        w.taps(),
                        w.c
                    ));
                }
                Ok((w.ho, w.wo, cout))
            }
            Op::ConvTranspose {
                window: w,
                weight,
                bias,
                ..
            } => {
                let cin = weight.len() / (w.taps() * w.c).max(1);
                if (w.ho, w.wo, cin) != s || weight.len() != cin * w.taps() * w.c {
                    return Err(format!(
                        "transposed convolution expects {:?}, got {s:?}",
                        (w.ho, w.wo, cin)
                    ));
                }
                if bias.len() != w.c {
                    return Err("transposed convolution bias does not match its channels".into());
                }
                Ok(conv_in(w))
            }
            Op::Depthwise {
                window: w,
                taps,
                bias,
                ..
            } => {
                if conv_in(w) != s || taps.len() != w.taps() * w.c || bias.len() != w.c {
                    return Err(format!(
                        "depthwise convolution expects {:?}, got {s:?}",
                        conv_in(w)
                    ));
                }
                Ok((w.ho, w.wo, w.c))
            }
            Op::Affine { scale, shift } => {
                if scale.len() != s.2 || shift.len() != s.2 {
                    return Err(format!("affine has {} channels, input {s:?}", scale.len()));
                }
                Ok(s)
            }
            Op::PixelShuffle2 => {
                if !s.2.is_multiple_of(4) {
                    return Err(format!(
                        "pixel shuffle needs channels divisible by 4, got {s:?}"
                    ));
                }
                Ok((2 * s.0, 2 * s.1, s.2 / 4))
            }
            Op::Resample { rh, rw } => {
                let fits =
                    |rows: &SparseRows<T>, n: usize| rows.iter().flatten().all(|&(j, _)| j < n);
                if !fits(rh, s.0) || !fits(rw, s.1) {
                    return Err(format!("resample reads outside its input {s:?}"));
                }
                Ok((rh.len(), rw.len(), s.2))
            }
            Op::AddFrom(j) => match tape.get(*j) {
                Some(&t) if t == s => Ok(s),
                other => Err(format!(
                    "residual from activation {j} ({other:?}) into {s:?}"
                )),
            },
            Op::MeanPool => Ok((1, 1, s.2)),
            Op::Reshape(t) => {
                if len(*t) != len(s) {
                    return Err(format!("reshape {s:?} to {t:?}"));
                }
                Ok(*t)
            }
        }
    }
}

/// A compiled network: ops and the shape of every activation.
#[derive(Debug, Clone)]
pub struct Net<T> {
    ops: Vec<Op<T>>,
    /// `shapes[0]` the input, `shapes[i + 1]` op `i`'s output.
    shapes: Vec<Shape>,
}

/// Buffers kept from call to call: the activations of the last forward
/// pass and the scratch of the backward one.
#[derive(Debug, Default)]
pub struct Workspace<T> {
    /// `acts[0]` the input, `acts[i + 1]` op `i`'s output.
    acts: Vec<Vec<T>>,
    cols: Vec<T>,
    grad: Vec<T>,
    spare: Vec<T>,
    /// Gradients owed to earlier activations by residual connections
    /// (`owed[j]` says whether `pending[j]` holds one this pass).
    pending: Vec<Vec<T>>,
    owed: Vec<bool>,
    batch: usize,
}

impl<T> Workspace<T> {
    /// Tape activation `i` of the last forward pass (0 the input, `i + 1`
    /// op `i`'s output), `[n, ...]`.
    pub fn activation(&self, i: usize) -> &[T] {
        &self.acts[i]
    }
}

/// Resizes without caring about the stale contents (every user overwrites).
fn sized<T: Real>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    if v.len() != n {
        v.resize(n, T::zero());
    }
    &mut v[..n]
}

fn add_bias<T: Real>(y: &mut [T], bias: &[T]) {
    use rayon::prelude::*;
    let c = bias.len();
    y.par_chunks_mut(c * 256).for_each(|chunk| {
        for row in chunk.chunks_mut(c) {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    });
}

impl<T: Real> Net<T> {
    /// Checks that the ops chain from `input` and records their shapes.
    pub fn new(input: Shape, ops: Vec<Op<T>>) -> Result<Self> {
        let mut shapes = vec![input];
        for (i, op) in ops.iter().enumerate() {
            let s = op
                .out_shape(shapes[i], &shapes)
                .map_err(|message| Error::Network {
                    at: format!("op {i}"),
                    message,
                })?;
            shapes.push(s);
        }
        Ok(Self { ops, shapes })
    }

    /// This network followed by `next` (whose input must be this output).
    pub fn then(self, next: Net<T>) -> Result<Self> {
        if next.input() != self.output() {
            return Err(Error::Network {
                at: "a chain of two networks".into(),
                message: format!(
                    "the first's output {:?} is not the second's input {:?}",
                    self.output(),
                    next.input()
                ),
            });
        }
        let offset = self.ops.len();
        let mut ops = self.ops;
        ops.extend(next.ops.into_iter().map(|op| match op {
            Op::AddFrom(j) => Op::AddFrom(j + offset),
            op => op,
        }));
        Net::new(self.shapes[0], ops)
    }

    pub fn input(&self) -> Shape {
        self.shapes[0]
    }
    pub fn ops(&self) -> &[Op<T>] {
        &self.ops
    }
    pub fn output(&self) -> Shape {
        *self.shapes.last().unwrap()
    }
    /// Number of ops (the index of the output activation on the tape).
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// The shape of tape activation `i`.
    pub fn shape(&self, i: usize) -> Shape {
        self.shapes[i]
    }

    /// Runs `n` inputs `x [n, ...]` forward, keeping every activation in
    /// `ws.acts`; returns the output `[n, ...]`.
    pub fn forward<'a>(&self, x: &[T], n: usize, ws: &'a mut Workspace<T>) -> Result<&'a [T]> {
        if x.len() != n * len(self.input()) {
            return Err(Error::shape(
                "network input",
                format!(
                    "{n} x {:?} = {} values",
                    self.input(),
                    n * len(self.input())
                ),
                x.len(),
            ));
        }
        ws.batch = n;
        ws.acts.resize_with(self.ops.len() + 1, Vec::new);
        sized(&mut ws.acts[0], x.len()).copy_from_slice(x);
        for (i, op) in self.ops.iter().enumerate() {
            let (before, after) = ws.acts.split_at_mut(i + 1);
            let (x, y) = (&before[i][..], &mut after[0]);
            let y = sized(y, n * len(self.shapes[i + 1]));
            match op {
                Op::Conv {
                    window: w,
                    weight,
                    bias,
                    act,
                } => {
                    let cout = bias.len();
                    let (rows, k) = (n * w.ho * w.wo, w.taps() * w.c);
                    for row in y.chunks_mut(cout) {
                        row.copy_from_slice(bias);
                    }
                    if thin::conv_suits(w, cout) {
                        thin::conv(w, n, weight, x, y, false);
                    } else if w.is_pointwise() {
                        kernels::matmul(rows, cout, k, y, true, x, (k, 1), weight, (cout, 1), true);
                    } else {
                        patches::conv(w, n, weight, cout, x, y, &mut ws.cols);
                    }
                    act.apply(y);
                }
                Op::ConvTranspose {
                    window: w,
                    weight,
                    bias,
                    act,
                } => {
                    let cin = weight.len() / (w.taps() * w.c);
                    patches::conv_transpose(w, n, weight, cin, x, y, &mut ws.cols);
                    add_bias(y, bias);
                    act.apply(y);
                }
                Op::Depthwise {
                    window: w,
                    taps,
                    bias,
                    act,
                } => {
                    depthwise::depthwise(w, n, taps, x, y, false);
                    add_bias(y, bias);
                    act.apply(y);
                }
                Op::Affine { scale, shift } => {
                    let c = scale.len();
                    for (yr, xr) in y.chunks_mut(c).zip(x.chunks(c)) {
                        for j in 0..c {
                            yr[j] = xr[j] * scale[j] + shift[j];
                        }
                    }
                }
                Op::PixelShuffle2 => shuffle(self.shapes[i], n, x, y, false),
                Op::Resample { rh, rw } => {
                    kernels::resample(rh, rw, self.shapes[i], n, x, y, false)
                }
                Op::AddFrom(j) => {
                    for ((v, &a), &b) in y.iter_mut().zip(x).zip(&before[*j]) {
                        *v = a + b;
                    }
                }
                Op::MeanPool => {
                    let (h, w, c) = self.shapes[i];
                    let inv = T::one() / T::from(h * w).unwrap();
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
                Op::Reshape(_) => y.copy_from_slice(x),
            }
        }
        Ok(&ws.acts[self.ops.len()])
    }

    /// The gradient of `sum(dy * output)` with respect to the input of the
    /// last [`Net::forward`] on `ws`, into `dx`.
    pub fn backward(&self, dy: &[T], ws: &mut Workspace<T>, dx: &mut Vec<T>) -> Result<()> {
        let n = ws.batch;
        if ws.acts.len() != self.ops.len() + 1 || ws.acts[0].len() != n * len(self.input()) {
            return Err(Error::unsupported(
                "backward on a workspace this network's forward pass did not fill",
                "call forward first, with the same workspace",
            ));
        }
        if dy.len() != n * len(self.output()) {
            return Err(Error::shape(
                "output gradient",
                format!(
                    "{n} x {:?} = {} values",
                    self.output(),
                    n * len(self.output())
                ),
                dy.len(),
            ));
        }
        ws.pending.resize_with(self.ops.len() + 1, Vec::new);
        ws.owed.clear();
        ws.owed.resize(self.ops.len() + 1, false);
        let mut g = std::mem::take(&mut ws.grad);
        sized(&mut g, dy.len()).copy_from_slice(dy);
        let mut spare = std::mem::take(&mut ws.spare);
        for (i, op) in self.ops.iter().enumerate().rev() {
            // g is d/d acts[i+1]; make spare d/d acts[i]
            if std::mem::take(&mut ws.owed[i + 1]) {
                g.iter_mut()
                    .zip(&ws.pending[i + 1])
                    .for_each(|(a, &b)| *a += b);
            }
            let y = &ws.acts[i + 1];
            let gx = sized(&mut spare, n * len(self.shapes[i]));
            match op {
                Op::Conv {
                    window: w,
                    weight,
                    bias,
                    act,
                } => {
                    act.backward(y, &mut g);
                    let cout = bias.len();
                    let (rows, k) = (n * w.ho * w.wo, w.taps() * w.c);
                    if thin::conv_suits(w, cout) {
                        thin::conv(w, n, weight, &g, gx, true);
                    } else if w.is_pointwise() {
                        kernels::matmul(
                            rows,
                            k,
                            cout,
                            gx,
                            false,
                            &g,
                            (cout, 1),
                            weight,
                            (1, cout),
                            true,
                        );
                    } else {
                        patches::conv_adjoint(w, n, weight, cout, &g, gx, &mut ws.cols);
                    }
                }
                Op::ConvTranspose {
                    window: w,
                    weight,
                    act,
                    ..
                } => {
                    act.backward(y, &mut g);
                    let cin = weight.len() / (w.taps() * w.c);
                    patches::conv_transpose_adjoint(w, n, weight, cin, &g, gx, &mut ws.cols);
                }
                Op::Depthwise {
                    window: w,
                    taps,
                    act,
                    ..
                } => {
                    act.backward(y, &mut g);
                    depthwise::depthwise(w, n, taps, &g, gx, true);
                }
                Op::Affine { scale, .. } => {
                    let c = scale.len();
                    for (xr, gr) in gx.chunks_mut(c).zip(g.chunks(c)) {
                        for j in 0..c {
                            xr[j] = gr[j] * scale[j];
                        }
                    }
                }
                Op::PixelShuffle2 => shuffle(self.shapes[i], n, &g, gx, true),
                Op::Resample { rh, rw } => {
                    kernels::resample(rh, rw, self.shapes[i], n, &g, gx, true)
                }
                Op::AddFrom(j) => {
                    gx.copy_from_slice(&g);
                    let p = sized(&mut ws.pending[*j], g.len());
                    if ws.owed[*j] {
                        p.iter_mut().zip(&g).for_each(|(a, &b)| *a += b);
                    } else {
                        p.copy_from_slice(&g);
                        ws.owed[*j] = true;
                    }
                }
                Op::MeanPool => {
                    let (h, w, c) = self.shapes[i];
                    let inv = T::one() / T::from(h * w).unwrap();
                    for (xi, gi) in gx.chunks_mut(h * w * c).zip(g.chunks(c)) {
                        for p in xi.chunks_mut(c) {
                            for (a, &b) in p.iter_mut().zip(gi) {
                                *a = b * inv;
                            }
                        }
                    }
                }
                Op::Reshape(_) => gx.copy_from_slice(&g),
            }
            std::mem::swap(&mut g, &mut spare);
        }
        if std::mem::take(&mut ws.owed[0]) {
            g.iter_mut().zip(&ws.pending[0]).for_each(|(a, &b)| *a += b);
        }
        dx.clear();
        dx.extend_from_slice(&g);
        ws.grad = g;
        ws.spare = spare;
        Ok(())
    }
}

/// [`Op::PixelShuffle2`] on input shape `s` (`adjoint`: its transpose, from
/// the output-shaped `x` to the input-shaped `y`).
fn shuffle<T: Real>((h, w, c4): Shape, n: usize, x: &[T], y: &mut [T], adjoint: bool) {
    let c = c4 / 4;
    for b in 0..n {
        for i in 0..h {
            for j in 0..w {
                for r in 0..2 {
                    for s in 0..2 {
                        let small = ((b * h + i) * w + j) * c4 + (r * 2 + s) * c;
                        let big = ((b * 2 * h + 2 * i + r) * 2 * w + 2 * j + s) * c;
                        if adjoint {
                            y[small..small + c].copy_from_slice(&x[big..big + c]);
                        } else {
                            y[big..big + c].copy_from_slice(&x[small..small + c]);
                        }
                    }
                }
            }
        }
    }
}
