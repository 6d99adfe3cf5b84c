//! The likelihood of a damaged observation `y = A(x) + noise` of an image
//! `x = G(h)`: what `ppgn restore` samples the code's posterior under. The
//! first paper's inpainting ("Plug & Play Generative Networks"
//! (supplementary), S10) is the case `A` = a mask; here `A` is any chain of
//! linear degradations of NHWC images ([`Degradation`]: a mask, a Gaussian
//! blur, average pooling, the identity), and
//!
//! `log p(y | h) = -sum_j (A(G(h)) - y)_j^2 / (2 v_j)`,
//! `v_j = s^2 + (A tau)_j^2`
//!
//! with `s` the observation's noise and `tau` the generator's own error (a
//! real image is `G(h)` plus what `G` cannot draw), one number or one per
//! pixel ([`variances`]: pushed through `A` as if the error were the same
//! over the pixels one observed value mixes; one number gives `s^2 +
//! tau^2` everywhere). The gradient is `-A^T ((A x - y) / v)` pulled back
//! through `G`, so each degradation has its adjoint
//! ([`Operator::adjoint`]), checked by `<A x, r> = <x, A^T r>` in the
//! tests.

use candle_core::Tensor;

use super::backend::Backend;
use super::{Eval, Term};
use crate::error::{Error, Result};

/// One linear degradation of an `h x w x c` image.
#[derive(Debug, Clone, PartialEq)]
pub enum Degradation {
    /// Keeps the observed pixels (`known = 1`, `h * w` values, the same on
    /// every channel) and zeroes the others.
    Mask { known: Vec<f64> },
    /// A Gaussian blur of standard deviation `sigma` pixels, its kernel cut
    /// at 3 sigma and renormalised where it leaves the image (so a flat
    /// image stays flat at the edges).
    Blur { sigma: f64 },
    /// Average pooling over `k x k` blocks (the side must divide by `k`).
    Down { k: usize },
    /// The identity: noise alone.
    Noise,
}

/// A chain of degradations applied in order to images of one shape.
#[derive(Debug, Clone)]
pub struct Operator {
    steps: Vec<Degradation>,
    /// The shape `(h, w, c)` each step reads, and the last step's output.
    shapes: Vec<(usize, usize, usize)>,
}

impl Operator {
    /// `steps` on images of shape `input`, refused in one line when a step
    /// does not fit the shape it reads (a mask of another size, a side
    /// that `down:K` does not divide, a blur that is not positive).
    pub fn new(steps: Vec<Degradation>, input: (usize, usize, usize)) -> Result<Self> {
        let mut shapes = vec![input];
        for s in &steps {
            let (h, w, c) = *shapes.last().expect("the input shape");
            let next = match s {
                Degradation::Mask { known } if known.len() != h * w => {
                    return Err(Error::shape(
                        "the mask",
                        format!("{w}x{h}, the image it reads"),
                        format!("{} pixels", known.len()),
                    ))
                }
                Degradation::Blur { sigma } if !(sigma.is_finite() && *sigma > 0.0) => {
                    return Err(Error::setting(
                        "operator",
                        format!("blur:{sigma}"),
                        "blur:SIGMA with SIGMA a positive number of pixels",
                    ))
                }
                Degradation::Down { k } if *k == 0 || h % k != 0 || w % k != 0 => {
                    return Err(Error::setting(
                        "operator",
                        format!("down:{k} of a {w}x{h} image"),
                        format!("down:K with K a divisor of both sides (of {w} and {h})"),
                    ))
                }
                Degradation::Down { k } => (h / k, w / k, c),
                _ => (h, w, c),
            };
            shapes.push(next);
        }
        Ok(Self { steps, shapes })
    }

    /// The shape `(h, w, c)` of an image the operator reads.
    pub fn input(&self) -> (usize, usize, usize) {
        self.shapes[0]
    }

    /// The shape `(h, w, c)` of what it makes (an observation).
    pub fn output(&self) -> (usize, usize, usize) {
        *self.shapes.last().expect("the input shape")
    }

    fn size((h, w, c): (usize, usize, usize)) -> usize {
        h * w * c
    }

    /// `A x` for `x` a batch of images, flat NHWC.
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        let n = x.len() / Self::size(self.input()).max(1);
        let mut v = x.to_vec();
        for (s, &shape) in self.steps.iter().zip(&self.shapes) {
            let size = Self::size(shape);
            v = (0..n)
                .flat_map(|i| forward(s, &v[i * size..(i + 1) * size], shape))
                .collect();
        }
        v
    }

    /// `A^T r` for `r` a batch of observations, flat NHWC.
    pub fn adjoint(&self, r: &[f64]) -> Vec<f64> {
        let n = r.len() / Self::size(self.output()).max(1);
        let mut v = r.to_vec();
        for (i, s) in self.steps.iter().enumerate().rev() {
            // step i reads shapes[i] and makes shapes[i + 1]
            let size = Self::size(self.shapes[i + 1]);
            v = (0..n)
                .flat_map(|j| backward(s, &v[j * size..(j + 1) * size], self.shapes[i]))
                .collect();
        }
        v
    }
}

/// One degradation of one `shape` image.
fn forward(s: &Degradation, x: &[f64], (h, w, c): (usize, usize, usize)) -> Vec<f64> {
    match s {
        Degradation::Mask { known } => x
            .iter()
            .enumerate()
            .map(|(i, v)| v * known[i / c])
            .collect(),
        Degradation::Blur { sigma } => {
            let k = kernel(*sigma);
            let norm = blur_norm(&k, h, w);
            let b = blur(x, &k, (h, w, c));
            b.iter().enumerate().map(|(i, v)| v / norm[i / c]).collect()
        }
        Degradation::Down { k } => {
            let (oh, ow) = (h / k, w / k);
            let mut y = vec![0f64; oh * ow * c];
            for r in 0..h {
                for col in 0..w {
                    for ch in 0..c {
                        y[((r / k) * ow + col / k) * c + ch] += x[(r * w + col) * c + ch];
                    }
                }
            }
            let a = 1.0 / (k * k) as f64;
            y.iter().map(|v| v * a).collect()
        }
        Degradation::Noise => x.to_vec(),
    }
}

/// The adjoint of one degradation on an observation of it, back to an
/// image of `shape`.
fn backward(s: &Degradation, r: &[f64], (h, w, c): (usize, usize, usize)) -> Vec<f64> {
    match s {
        // diagonal: its own adjoint
        Degradation::Mask { .. } | Degradation::Noise => forward(s, r, (h, w, c)),
        // A = D^-1 K with K symmetric (zero padding, a symmetric kernel):
        // A^T = K D^-1
        Degradation::Blur { sigma } => {
            let k = kernel(*sigma);
            let norm = blur_norm(&k, h, w);
            let scaled: Vec<f64> = r.iter().enumerate().map(|(i, v)| v / norm[i / c]).collect();
            blur(&scaled, &k, (h, w, c))
        }
        Degradation::Down { k } => {
            let ow = w / k;
            let a = 1.0 / (k * k) as f64;
            let mut x = vec![0f64; h * w * c];
            for row in 0..h {
                for col in 0..w {
                    for ch in 0..c {
                        x[(row * w + col) * c + ch] = a * r[((row / k) * ow + col / k) * c + ch];
                    }
                }
            }
            x
        }
    }
}

/// The 1-D Gaussian of `sigma`, cut at 3 sigma (at least one pixel each
/// side), summing to 1.
fn kernel(sigma: f64) -> Vec<f64> {
    let r = (3.0 * sigma).ceil().max(1.0) as i64;
    let g: Vec<f64> = (-r..=r)
        .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = g.iter().sum();
    g.iter().map(|v| v / s).collect()
}

/// The separable blur `K x` of one image with zero padding.
fn blur(x: &[f64], k: &[f64], (h, w, c): (usize, usize, usize)) -> Vec<f64> {
    let r = (k.len() / 2) as i64;
    let pass = |src: &[f64], along_rows: bool| {
        let mut dst = vec![0f64; src.len()];
        for row in 0..h as i64 {
            for col in 0..w as i64 {
                for (j, kj) in k.iter().enumerate() {
                    let d = j as i64 - r;
                    let (rr, cc) = if along_rows {
                        (row + d, col)
                    } else {
                        (row, col + d)
                    };
                    if rr < 0 || cc < 0 || rr >= h as i64 || cc >= w as i64 {
                        continue;
                    }
                    let (to, from) = (
                        (row * w as i64 + col) as usize,
                        (rr * w as i64 + cc) as usize,
                    );
                    for ch in 0..c {
                        dst[to * c + ch] += kj * src[from * c + ch];
                    }
                }
            }
        }
        dst
    };
    pass(&pass(x, false), true)
}

/// The kernel's mass inside the image at each pixel (`K 1`), what the blur
/// divides by.
fn blur_norm(k: &[f64], h: usize, w: usize) -> Vec<f64> {
    blur(&vec![1.0; h * w], k, (h, w, 1))
}

/// The variance of each observed value: `s^2 + (A tau)_j^2` for `tau`
/// one per pixel of the operator's input (flat NHWC), `[s^2 + tau^2]` for
/// one `tau`. Refused when `tau` has another length or a value that is not
/// 0 or more, or when a variance comes out 0.
pub fn variances(a: &Operator, noise_std: f64, tau: &[f64]) -> Result<Vec<f64>> {
    let pixels = Operator::size(a.input());
    if !(tau.len() == 1 || tau.len() == pixels) || tau.iter().any(|t| !(t.is_finite() && *t >= 0.0))
    {
        return Err(Error::setting(
            "tau",
            format!("{} values", tau.len()),
            format!("one value or one per pixel ({pixels}), each 0 or more"),
        ));
    }
    if tau.len() == 1 {
        return positive(vec![noise_std * noise_std + tau[0] * tau[0]], noise_std);
    }
    // a value no pixel reaches (a mask's hidden one) is 0 in A x and y
    // alike: its variance is never used, 1 keeps it positive
    let reached = a.apply(&vec![1.0; pixels]);
    let v = a
        .apply(tau)
        .iter()
        .zip(reached)
        .map(|(t, r)| {
            if r == 0.0 {
                1.0
            } else {
                noise_std * noise_std + t * t
            }
        })
        .collect();
    positive(v, noise_std)
}

/// `v`, refused where a variance is 0: a likelihood of no spread.
fn positive(v: Vec<f64>, noise_std: f64) -> Result<Vec<f64>> {
    if v.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return Err(Error::setting(
            "noise-std",
            format!("{noise_std}, with a tau of 0 where a value is observed"),
            "a noise level or a tau above 0 (a likelihood of no spread has no posterior to sample)",
        ));
    }
    Ok(v)
}

/// `-sum_j (A x - y)_j^2 / (2 var_j)` per image and its gradient in `x`,
/// `-A^T ((A x - y) / var)`, for `x` a batch of images, `y` one
/// observation for all or one per image (flat NHWC) and `var` one variance
/// or one per observed value.
pub fn log_likelihood(a: &Operator, x: &[f64], y: &[f64], var: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let ax = a.apply(x);
    let m = Operator::size(a.output()).max(1);
    let n = ax.len() / m;
    let v = |i: usize| var[i % m % var.len().max(1)];
    let r: Vec<f64> = ax
        .iter()
        .enumerate()
        .map(|(i, x)| (x - y[i % y.len().max(1)]) / v(i))
        .collect();
    let values = (0..n)
        .map(|i| {
            -(i * m..(i + 1) * m)
                .map(|j| r[j] * r[j] * v(j))
                .sum::<f64>()
                / 2.0
        })
        .collect();
    let grad = a.adjoint(&r).iter().map(|g| -g).collect();
    (values, grad)
}

/// The root mean square of `A x - y` per image of the batch `x` (`y` one
/// observation for all or one per image).
pub fn residual_rms(a: &Operator, x: &[f64], y: &[f64]) -> Vec<f64> {
    let m = Operator::size(a.output()).max(1) as f64;
    let (values, _) = log_likelihood(a, x, y, &[0.5]);
    values.iter().map(|v| (-v / m).sqrt()).collect()
}

/// The observation term `log p(y | h)` on a code: [`log_likelihood`] of
/// `G(h)`, pulled back through `G` on its [`Backend`].
pub struct Observation {
    decode: Backend,
    operator: Operator,
    /// One observation for every chain, or one per chain, flat.
    observed: Vec<f64>,
    /// One variance, or one per observed value ([`variances`]).
    variance: Vec<f64>,
}

impl Observation {
    /// The term of observation `observed` (`[1 or n, ...]` of the
    /// operator's output shape) made by `operator` from `decode`'s images,
    /// with noise of variance `variance` (one, or one per observed value:
    /// [`variances`]; each positive).
    pub fn new(
        decode: Backend,
        operator: Operator,
        observed: &Tensor,
        variance: Vec<f64>,
    ) -> Result<Self> {
        if decode.net().output() != operator.input() {
            return Err(Error::shape(
                "the operator's input",
                format!("{:?}, what the generator makes", decode.net().output()),
                format!("{:?}", operator.input()),
            ));
        }
        let (oh, ow, oc) = operator.output();
        match observed.dims() {
            [k, h, w, c] if *k > 0 && (*h, *w, *c) == (oh, ow, oc) => {}
            dims => {
                return Err(Error::shape(
                    "the observation",
                    format!("[n, {oh}, {ow}, {oc}], what the operator makes"),
                    format!("{dims:?}"),
                ))
            }
        }
        let observed: Vec<f64> = observed
            .to_dtype(candle_core::DType::F64)?
            .flatten_all()?
            .to_vec1()?;
        let each = variance.len() == 1 || variance.len() == Operator::size((oh, ow, oc));
        if !each || variance.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(Error::setting(
                "noise",
                format!(
                    "{} variances ({:?}...)",
                    variance.len(),
                    &variance[..variance.len().min(3)]
                ),
                format!(
                    "one positive variance s^2 + tau^2, or one per observed value ({})",
                    Operator::size((oh, ow, oc))
                ),
            ));
        }
        Ok(Self {
            decode,
            operator,
            observed,
            variance,
        })
    }
}

impl Term for Observation {
    fn name(&self) -> String {
        "observation".into()
    }
    fn has_value(&self) -> bool {
        true
    }
    fn value_and_grad(&self, p: &Tensor) -> Result<Eval> {
        let n = p.dim(0)?;
        let m = Operator::size(self.operator.output());
        let images = self.observed.len() / m;
        if images != 1 && images != n {
            return Err(Error::shape(
                "the observation",
                format!("one observation, or one per chain ({n})"),
                format!("{images} observations"),
            ));
        }
        let pass = self.decode.vjp(p, &[], |x, d| {
            let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let (values, grad) = log_likelihood(&self.operator, &x, &self.observed, &self.variance);
            for (di, g) in d.iter_mut().zip(grad) {
                *di = g as f32;
            }
            Ok(values)
        })?;
        Ok(Eval {
            log_density: Some(pass.seeded),
            grad: Tensor::from_vec(pass.grad, p.shape(), p.device())?,
        })
    }
}
