//! Hand-designed image priors for sampling pixels directly (PPGN-x,
//! "Plug & Play Generative Networks" (supplementary), S7), applied to `decode(position)`:
//! total variation, and the inpainting context of S10. (L2 on pixels is
//! [`super::prior::GaussianPrior::l2_decay`]; a DAE on pixels would be
//! [`super::prior::AutoencoderPrior`].)

use candle_core::{DType, Tensor};

use super::backend::Backend;
use super::{autodiff, Eval, Term};
use crate::error::{Error, Result};
use crate::nn::Func;

/// Anisotropic total variation `-sum |x[i+1, j] - x[i, j]| + |x[i, j+1] - x[i, j]|`
/// on NHWC images.
pub struct TotalVariation {
    pub decode: Func,
}

pub fn total_variation(x: &Tensor) -> candle_core::Result<Tensor> {
    let (_, h, w, _) = x.dims4()?;
    let dy = (x.narrow(1, 1, h - 1)? - x.narrow(1, 0, h - 1)?)?.abs()?;
    let dx = (x.narrow(2, 1, w - 1)? - x.narrow(2, 0, w - 1)?)?.abs()?;
    dy.flatten_from(1)?.sum(1)? + dx.flatten_from(1)?.sum(1)?
}

impl Term for TotalVariation {
    fn name(&self) -> String {
        "total-variation".into()
    }
    fn has_value(&self) -> bool {
        true
    }
    fn value_and_grad(&self, p: &Tensor) -> Result<Eval> {
        autodiff(p, |p| total_variation(&(self.decode)(p)?)?.neg())
    }
}

/// The inpainting context (S10): `-|(1 - M) * (x_real - x)|^2` with `M = 1`
/// on the pixels to fill, so the known pixels of `x = G(position)` are
/// pulled toward the real image; `G` runs on its [`Backend`].
pub struct InpaintContext {
    decode: Backend,
    /// `x_real`, `[1, h, w, c]` (every chain's) or `[n, h, w, c]` flat.
    real: Vec<f32>,
    /// `1 - M` broadcast to the real images' shape, flat.
    known: Vec<f32>,
}

impl InpaintContext {
    /// `real [1, h, w, c]` (one image for every chain) or `[n, h, w, c]`,
    /// `mask` broadcastable to it (1 where pixels are unknown), `decode`
    /// from positions to images of that shape.
    pub fn new(decode: Backend, real: Tensor, mask: Tensor) -> Result<Self> {
        let known = match mask.broadcast_as(real.shape()) {
            Ok(m) => m.affine(-1.0, 1.0)?,
            Err(_) => {
                return Err(Error::shape(
                    "inpainting mask",
                    format!("the image's shape {:?}", real.dims()),
                    format!("{:?}", mask.dims()),
                ))
            }
        };
        let (h, w, c) = decode.net().output();
        if real.elem_count() != real.dim(0)? * h * w * c {
            return Err(Error::shape(
                "inpainting image",
                format!("{h}x{w}x{c}, what the generator makes"),
                format!("{:?}", real.dims()),
            ));
        }
        let flat = |t: &Tensor| -> Result<Vec<f32>> {
            Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)
        };
        Ok(Self {
            real: flat(&real)?,
            known: flat(&known)?,
            decode,
        })
    }
}

impl Term for InpaintContext {
    fn name(&self) -> String {
        "inpaint-context".into()
    }
    fn has_value(&self) -> bool {
        true
    }
    fn value_and_grad(&self, p: &Tensor) -> Result<Eval> {
        let n = p.dim(0)?;
        let pass = self.decode.vjp(p, &[], |x, d| {
            let images = self.real.len();
            if images == 0 || x.len() % images != 0 || (images != x.len() && images * n != x.len())
            {
                return Err(Error::shape(
                    "inpainting context",
                    format!("one real image, or one per chain ({n})"),
                    format!("{images} values of real images"),
                ));
            }
            let per = x.len() / n.max(1);
            let mut values = vec![0f64; n];
            for (i, (di, &xi)) in d.iter_mut().zip(x).enumerate() {
                // -(k (r - x))^2 and its derivative 2 k^2 (r - x), k in {0, 1}
                let j = i % images;
                let r = self.known[j] * (self.real[j] - xi);
                values[i / per] -= (r * r) as f64;
                *di = 2.0 * self.known[j] * r;
            }
            Ok(values)
        })?;
        Ok(Eval {
            log_density: Some(pass.seeded),
            grad: Tensor::from_vec(pass.grad, p.shape(), p.device())?,
        })
    }
}

/// Clamps the known pixels: `M * x + (1 - M) * x_real` (S10, every step).
/// `real` is one image or one per chain.
pub fn clamp_known(x: &Tensor, real: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.to_dtype(x.dtype())?.broadcast_as(x.shape())?;
    let real = real.to_dtype(x.dtype())?.broadcast_as(x.shape())?;
    Ok(((x * &m)? + (real * m.affine(-1.0, 1.0)?)?)?)
}

/// L2 decay of the decoded image around mid-grey, `-lambda / 2 |x - 0.5|^2`
/// (Simonyan et al.'s image prior; S7's hand-designed priors).
pub struct PixelL2 {
    pub decode: Func,
}

impl Term for PixelL2 {
    fn name(&self) -> String {
        "pixel-l2".into()
    }
    fn has_value(&self) -> bool {
        true
    }
    fn value_and_grad(&self, p: &Tensor) -> Result<Eval> {
        autodiff(p, |p| {
            let d = ((self.decode)(p)? - 0.5)?;
            d.sqr()?.flatten_from(1)?.sum(1)? * -0.5
        })
    }
}

/// A Gaussian blur as a hand-designed denoiser: the gradient
/// `(blur(x) - x)` is the DAE prior's `(R(x) - x) / sigma^2` with `R` a
/// blur (Alain & Bengio; S7 uses periodic blurring, which a step along
/// this gradient is). Gradient only; through `decode` by the chain rule.
pub struct BlurPrior {
    pub decode: Func,
    /// Blur standard deviation in pixels.
    pub sigma: f64,
}

/// Gaussian blur of NHWC images (zero padding renormalised, so edges keep
/// their brightness), with our depthwise convolution.
pub fn gaussian_blur(x: &Tensor, sigma: f64) -> candle_core::Result<Tensor> {
    let (_, _, _, c) = x.dims4()?;
    let r = (2.0 * sigma).ceil().max(1.0) as usize;
    let k = 2 * r + 1;
    let g: Vec<f64> = (0..k)
        .map(|i| (-((i as f64 - r as f64).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = g.iter().sum();
    let mut w = Vec::with_capacity(c * k * k);
    for _ in 0..c {
        for a in &g {
            for b in &g {
                w.push(a * b / (s * s));
            }
        }
    }
    let w = Tensor::from_vec(w, (c, 1, k, k), x.device())?.to_dtype(x.dtype())?;
    let blurred = crate::nn::depthwise_conv2d_nhwc(x, &w, None, 1, r)?;
    let norm = crate::nn::depthwise_conv2d_nhwc(&x.ones_like()?, &w, None, 1, r)?;
    blurred / norm
}

impl Term for BlurPrior {
    fn name(&self) -> String {
        format!("blur(sigma {})", self.sigma)
    }
    fn has_value(&self) -> bool {
        false
    }
    fn value_hint(&self) -> String {
        "the blur prior has only a gradient; sample with map or mala-approx".into()
    }
    fn value_and_grad(&self, p: &Tensor) -> Result<Eval> {
        let x = (self.decode)(&p.detach())?;
        let pull = (gaussian_blur(&x, self.sigma)? - &x)?.detach();
        // d/dp sum(pull * decode(p)) = J^T pull
        let mut e = autodiff(p, |p| ((self.decode)(p)? * &pull)?.flatten_from(1)?.sum(1))?;
        e.log_density = None;
        Ok(e)
    }
}

/// A decorrelated image parameterisation (Olah et al.'s "Fourier" space,
/// with the orthonormal cosine basis): per channel `x = sigmoid(B^T (S * c) B)`
/// where `B` is the `side x side` DCT-II basis and `S` scales frequency
/// `(ky, kx)` by `1 / max(1, |k|)^decay`, so that gradient steps on the
/// coefficients `c [n, side, side, 3]` change low frequencies first.
pub fn fourier_decoder(side: usize, decay: f64) -> Func {
    let n = side as f64;
    let mut b = vec![0f32; side * side];
    for k in 0..side {
        let ck = if k == 0 {
            (1.0 / n).sqrt()
        } else {
            (2.0 / n).sqrt()
        };
        for i in 0..side {
            b[k * side + i] =
                (ck * (std::f64::consts::PI * (i as f64 + 0.5) * k as f64 / n).cos()) as f32;
        }
    }
    let mut s = vec![0f32; side * side];
    for ky in 0..side {
        for kx in 0..side {
            let f = ((ky * ky + kx * kx) as f64).sqrt().max(1.0);
            s[ky * side + kx] = f.powf(-decay) as f32;
        }
    }
    let dev = candle_core::Device::Cpu;
    let basis = Tensor::from_vec(b, (side, side), &dev).expect("basis"); // [k, i]
    let scale = Tensor::from_vec(s, (side, side, 1), &dev).expect("scale");
    std::sync::Arc::new(move |c: &Tensor| {
        let basis = basis.to_dtype(c.dtype())?;
        let m = c.broadcast_mul(&scale.to_dtype(c.dtype())?)?; // [n, ky, kx, 3]
        let m = m.permute((0, 3, 1, 2))?.contiguous()?; // [n, 3, ky, kx]
        let img = basis.t()?.broadcast_matmul(&m)?.broadcast_matmul(&basis)?; // [n, 3, y, x]
        crate::nn::sigmoid(&img.permute((0, 2, 3, 1))?.contiguous()?)
    })
}

/// Jitter (S7; Mordvintsev et al.): the condition sees the image shifted by
/// a random `(dy, dx)` in `[-max, max]^2` (circularly) at every
/// evaluation, drawn from a seeded stream so a run repeats bit for bit.
pub fn jittered(inner: Func, max: usize, seed: u64) -> Func {
    use rand::{Rng, SeedableRng};
    let rng = std::sync::Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    std::sync::Arc::new(move |x: &Tensor| {
        let (dy, dx) = {
            let mut r = rng.lock().expect("jitter stream");
            let m = max as i32;
            (r.random_range(-m..=m), r.random_range(-m..=m))
        };
        inner(&x.roll(dy, 1)?.roll(dx, 2)?)
    })
}
