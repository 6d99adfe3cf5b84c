//! Priors on the position (the code `h`, or the image for PPGN-x).

use super::backend::Backend;
use super::{Eval, Term};
use crate::error::Result;

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

/// A prior whose gradient is an autoencoder's reconstruction error,
/// `dlog p(v)/dv ~ (R(v) - v) / sigma^2` ("Plug & Play Generative Networks"
/// (supplementary), S9.3, after Alain & Bengio): the learned DAE on `h`
/// (trained with noise `sigma`), or the Noiseless Joint PPGN-h prior, `R =
/// E . G` with `sigma = 1` (S9.4; eps1 scales it). Gradient only: there is
/// no log-density value. `R` is a compiled network run by its [`Backend`].
/// (Where the condition's own pass already computes `E(G(h))`, the joint
/// prior is read off it instead: [`super::condition::NetCondition`].)
pub struct AutoencoderPrior {
    pub reconstruct: Backend,
    pub sigma: f64,
    pub label: &'static str,
}

impl AutoencoderPrior {
    /// The joint prior `E(G(h)) - h` of the network `E . G`.
    pub fn joint(encode_decode: Backend) -> Self {
        Self {
            reconstruct: encode_decode,
            sigma: 1.0,
            label: "joint-prior",
        }
    }
}

impl Term for AutoencoderPrior {
    fn name(&self) -> String {
        self.label.into()
    }
    fn has_value(&self) -> bool {
        false
    }
    fn value_hint(&self) -> String {
        match self.label {
            "joint-prior" => super::condition::JOINT_HINT.into(),
            _ => format!(
                "the {} prior gives only a gradient; use the Gaussian prior for MH, MALA or HMC",
                self.label
            ),
        }
    }
    fn value_and_grad(&self, v: &candle_core::Tensor) -> Result<Eval> {
        let v = v.detach();
        let out = self.reconstruct.net().len();
        let r = self.reconstruct.values(&v, &[out])?.remove(0);
        let r = candle_core::Tensor::from_vec(r, v.shape(), v.device())?;
        Ok(Eval {
            log_density: None,
            grad: ((r - &v)? / (self.sigma * self.sigma))?,
        })
    }
}
