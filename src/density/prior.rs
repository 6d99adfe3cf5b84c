//! Priors on the position (the code `h`, or the image for PPGN-x).

use super::{Eval, Term};
use crate::error::Result;
use crate::nn::Func;

/// `N(0, sigma^2 I)`: `log p = -|h|^2 / (2 sigma^2)` (Xu et al. eq. 4). With
/// `sigma^2 = 1 / lambda` it is DGN-AM's L2 decay on `h` (or on pixels).
pub struct GaussianPrior {
    pub sigma: f64,
    pub label: &'static str,
}

impl GaussianPrior {
    pub fn new(sigma: f64) -> Self {
        Self {
            sigma,
            label: "gaussian",
        }
    }
    /// L2 decay `-lambda / 2 |h|^2`.
    pub fn l2_decay(lambda: f64) -> Self {
        Self {
            sigma: 1.0 / lambda.sqrt(),
            label: "l2-decay",
        }
    }
}

impl Term for GaussianPrior {
    fn name(&self) -> String {
        format!("{}(sigma {})", self.label, self.sigma)
    }
    fn has_value(&self) -> bool {
        true
    }
    fn value_and_grad(&self, h: &candle_core::Tensor) -> Result<Eval> {
        let s2 = self.sigma * self.sigma;
        let sq = super::per_chain_sum(&h.sqr()?)?;
        Ok(Eval {
            log_density: Some(sq.into_iter().map(|v| -v / (2.0 * s2)).collect()),
            grad: (h / -s2)?,
        })
    }
}

/// The learned DAE prior (S9.3; Alain & Bengio): `dlog p(v)/dv ~ (R(v) - v) / sigma^2`
/// for a DAE `R` trained with noise `sigma` (the h-DAE, or the pixel DAE for PPGN-x).
/// Gradient only: there is no log-density value.
pub struct DaePrior {
    pub reconstruct: Func,
    pub sigma: f64,
    pub label: &'static str,
}

impl Term for DaePrior {
    fn name(&self) -> String {
        self.label.into()
    }
    fn has_value(&self) -> bool {
        false
    }
    fn value_hint(&self) -> String {
        "a DAE prior gives only a gradient; use the Gaussian prior for MH, MALA or HMC".into()
    }
    fn value_and_grad(&self, v: &candle_core::Tensor) -> Result<Eval> {
        let v = v.detach();
        let r = (self.reconstruct)(&v)?;
        Ok(Eval {
            log_density: None,
            grad: ((r - &v)? / (self.sigma * self.sigma))?,
        })
    }
}

/// The Noiseless Joint PPGN-h prior: `E(G(h)) - h`, the encoder and
/// generator as an autoencoder of `h` ("Plug & Play Generative Networks" (supplementary), S9.4;
/// eps1 scales it). Gradient only.
pub struct JointPrior {
    pub encode: Func,
    pub decode: Func,
}

impl Term for JointPrior {
    fn name(&self) -> String {
        "joint-prior".into()
    }
    fn has_value(&self) -> bool {
        false
    }
    fn value_hint(&self) -> String {
        super::condition::JOINT_HINT.into()
    }
    fn value_and_grad(&self, h: &candle_core::Tensor) -> Result<Eval> {
        let h = h.detach();
        let r = (self.encode)(&(self.decode)(&h)?)?;
        Ok(Eval {
            log_density: None,
            grad: (r - &h)?,
        })
    }
}
