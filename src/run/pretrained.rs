//! Plug and play with networks we did not train: the DCGAN faces generator
//! conditioned on an ImageNet class of EfficientNet-Lite0 (issue 6). The
//! chain moves the generator's code `z` under a Gaussian prior `N(0, I)`
//! (what the GAN was trained with) plus `log p(y | C(x))`, with
//! `x = (G(z) + 1) / 2` resized 64 -> 224 (bilinear, as matrix products)
//! and normalised as EfficientNet expects. The same [`Pipeline`] and
//! samplers as the Fashion-MNIST stack: only the networks change.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Tensor};

use super::chains::Pipeline;
use super::preset::{PriorKind, SamplerConfig};
use crate::density::condition::{identity, ClassCondition, Net};
use crate::density::prior::GaussianPrior;
use crate::density::{Sum, Term};
use crate::error::{Error, Result};
use crate::models::efficientnet_lite::{self, EfficientNetLite0};
use crate::models::pretrained;
use crate::nn::resize::resize_bilinear;

/// The loaded pair.
pub struct FacesImagenet {
    /// Codes `[n, 100]` to images `[n, 64, 64, 3]` in [0, 1].
    pub decode: Net,
    /// Images in [0, 1] to ImageNet logits `[n, 1000]`.
    pub logits: Net,
}

impl FacesImagenet {
    pub fn load(home: &Path) -> Result<Self> {
        let g = Arc::new(pretrained::dcgan_faces(home, DType::F32)?);
        let c: Arc<EfficientNetLite0> = Arc::new(pretrained::efficientnet_lite0(home, DType::F32)?);
        let decode: Net = Arc::new(move |z: &Tensor| (g.forward(z)? + 1.0)? * 0.5);
        let logits: Net = Arc::new(move |x: &Tensor| {
            let x = resize_bilinear(x, efficientnet_lite::IMAGE_SIZE)?;
            c.forward(&EfficientNetLite0::normalise(&x)?)
        });
        Ok(Self { decode, logits })
    }

    fn condition(&self, classes: &[usize], cfg: &SamplerConfig) -> ClassCondition {
        ClassCondition {
            decode: self.decode.clone(),
            logits: self.logits.clone(),
            classes: classes.to_vec(),
            num_classes: efficientnet_lite::NUM_CLASSES,
            gradient: cfg.gradient,
        }
    }

    /// `eps1 * log N(z; 0, sigma^2 I) + eps2 * log p(y | C(x))`; only the
    /// Gaussian prior (or none) exists for `z`.
    pub fn pipeline(&self, classes: &[usize], cfg: &SamplerConfig) -> Result<Pipeline> {
        let mut terms: Vec<(f64, Box<dyn Term>)> = Vec::new();
        match cfg.prior {
            PriorKind::Gaussian => {
                terms.push((cfg.eps1, Box::new(GaussianPrior::new(cfg.prior_sigma))))
            }
            PriorKind::None => {}
            other => {
                return Err(Error::Invalid(format!(
                    "prior {other:?} needs an encoder or a DAE of the generator's code; the DCGAN faces generator has neither: use --prior gaussian (its training prior, sigma 1) or none"
                )))
            }
        }
        terms.push((cfg.eps2, Box::new(self.condition(classes, cfg))));
        let probe = ClassCondition {
            decode: identity(),
            ..self.condition(classes, cfg)
        };
        Ok(Pipeline {
            target: Sum::new(terms),
            decode: self.decode.clone(),
            measure: Box::new(move |x: &Tensor| probe.probability(x)),
        })
    }

    /// EfficientNet's top-1 class of images in [0, 1].
    pub fn top1(&self, x: &Tensor) -> Result<Vec<usize>> {
        let l = (self.logits)(x)?;
        Ok(l.argmax(1)?
            .to_vec1::<u32>()?
            .into_iter()
            .map(|v| v as usize)
            .collect())
    }
}
