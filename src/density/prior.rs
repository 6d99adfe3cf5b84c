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

/// The flow prior's density in code coordinates, `log p(u) = log N(z; 0,
/// I) + log |det dz/du|` with `z = T^-1(u)`
/// (`crate::models::fashion::CodePrior`): a value and an exact gradient,
/// so MH, MALA and HMC can run on it. Its network is the flow's inverse,
/// whose output is `z` and then each coupling's `-s`; the value is
/// `-|z|^2 / 2 + sum(-s) + constant`, and the gradient seeds `-z` and 1.
pub struct FlowDensity {
    pub inverse: Backend,
    /// `-sum log_std - dim ln(2 pi) / 2`
    pub constant: f64,
}

impl FlowDensity {
    pub fn new(
        flow: &crate::models::fashion::CodePrior,
        engine: crate::nn::fast::Engine,
    ) -> Result<Self> {
        use crate::models::fashion::code_prior::HALF_LN_2PI;
        let net = std::sync::Arc::new(flow.compile_inverse::<f32>()?);
        Ok(Self {
            inverse: Backend::new(net, engine)?,
            constant: -flow.affine_log_det()? - flow.cfg.dim as f64 * HALF_LN_2PI,
        })
    }
}

impl Term for FlowDensity {
    fn name(&self) -> String {
        "code-prior".into()
    }
    fn has_value(&self) -> bool {
        true
    }
    fn value_and_grad(&self, u: &candle_core::Tensor) -> Result<Eval> {
        let n = u.dim(0)?;
        let dim = self.inverse.net().input().2;
        let constant = self.constant;
        let pass = self.inverse.vjp(u, &[], |out, d_out| {
            let per = out.len() / n.max(1);
            let mut values = vec![constant; n];
            for (i, v) in values.iter_mut().enumerate() {
                let (row, d_row) = (
                    &out[i * per..(i + 1) * per],
                    &mut d_out[i * per..(i + 1) * per],
                );
                for (j, (&o, d)) in row.iter().zip(d_row.iter_mut()).enumerate() {
                    let o = o as f64;
                    (*v, *d) = match j < dim {
                        true => (*v - 0.5 * o * o, -o as f32),
                        false => (*v + o, 1.0),
                    };
                }
            }
            Ok(values)
        })?;
        Ok(Eval {
            log_density: Some(pass.seeded),
            grad: candle_core::Tensor::from_vec(pass.grad, u.shape(), u.device())?,
        })
    }
}
