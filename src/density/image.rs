//! Hand-designed image priors for sampling pixels directly (PPGN-x,
//! papers/ppgn-supplementary.txt S7), applied to `decode(position)`:
//! total variation, and the inpainting context of S10. (L2 on pixels is
//! [`super::prior::GaussianPrior::l2_decay`]; the pixel DAE is
//! [`super::prior::DaePrior`].)

use candle_core::Tensor;

use super::condition::Net;
use super::{autodiff, Eval, Term};
use crate::error::{Error, Result};

/// Anisotropic total variation `-sum |x[i+1, j] - x[i, j]| + |x[i, j+1] - x[i, j]|`
/// on NHWC images.
pub struct TotalVariation {
    pub decode: Net,
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
/// on the pixels to fill, so the known pixels of `x = decode(position)` are
/// pulled toward the real image.
pub struct InpaintContext {
    pub decode: Net,
    /// `[n, h, w, c]`
    pub real: Tensor,
    /// `[n, h, w, c]` (or broadcastable), 1 where pixels are unknown.
    pub mask: Tensor,
}

impl InpaintContext {
    pub fn new(decode: Net, real: Tensor, mask: Tensor) -> Result<Self> {
        if mask.broadcast_as(real.shape()).is_err() {
            return Err(Error::Invalid(format!(
                "inpainting mask of shape {:?} does not fit images of shape {:?}",
                mask.dims(),
                real.dims()
            )));
        }
        Ok(Self { decode, real, mask })
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
        let known = self.mask.affine(-1.0, 1.0)?;
        autodiff(p, |p| {
            let x = (self.decode)(p)?;
            let d = (self.real.to_dtype(x.dtype())? - &x)?
                .broadcast_mul(&known.to_dtype(x.dtype())?)?;
            d.sqr()?.flatten_from(1)?.sum(1)?.neg()
        })
    }
}

/// Clamps the known pixels: `M * x + (1 - M) * x_real` (S10, every step).
pub fn clamp_known(x: &Tensor, real: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.to_dtype(x.dtype())?.broadcast_as(x.shape())?;
    Ok(((x * &m)? + (real.to_dtype(x.dtype())? * m.affine(-1.0, 1.0)?)?)?)
}
