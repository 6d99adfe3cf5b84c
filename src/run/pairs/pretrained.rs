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

use candle_core::Tensor;

use crate::density::backend::Backend;
use crate::density::condition::{
    class_probability, unit_activation, NetCondition, Neuron, Objective,
};
use crate::density::prior::GaussianPrior;
use crate::density::{Sum, Term};
use crate::error::{Error, Result};
use crate::models::caffe::{CaffeNet, CaffeNetConfig, DgnConfig, DgnGenerator};
use crate::models::plug::{ClassifierSide, GeneratorSide};
use crate::models::weights::load_tensors;
use crate::nn::fast::{build, reference, Net as FastNet};
use crate::nn::{identity, Func};
use crate::run::config::preset::{PriorKind, SamplerConfig};
use crate::run::drive::chains::Pipeline;

/// Weighted density terms.
pub type Terms = Vec<(f64, Box<dyn Term>)>;

/// A generator and a classifier that fit together.
pub struct PlugPair {
    /// `--generator` / `--classifier` names.
    pub names: (String, String),
    /// The classifier's class names, index order.
    pub class_names: Vec<String>,
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
    /// What the classifier reads to logits, compiled, with the
    /// classifier's layers as taps (for `--neuron`); `None` for the Caffe
    /// pair.
    pub classify: Option<Arc<FastNet<f32>>>,
    /// Codes to decoded images, compiled (what `decode` runs).
    pub decode_net: Arc<FastNet<f32>>,
    /// Codes to logits, compiled (`decode` then `logits`): what the
    /// condition runs. A tap `h` of the code's shape is the encoder's
    /// output `E(G(h))` (the joint prior).
    pub compiled: Arc<FastNet<f32>>,
    /// How starting codes are drawn: `N(0, I)` for a GAN, `relu(N(0, 2^2))`
    /// for post-ReLU fc6 codes.
    pub nonnegative_codes: bool,
    /// Whether the code has a Gaussian prior (a sidecar may say it has
    /// none: then the Gaussian term is left out).
    pub code_prior: bool,
}

impl PlugPair {
    /// Any generator with any classifier (built in or brought as ONNX files
    /// with sidecars): the chain moves the generator's code under its
    /// prior `N(0, I)` (a sidecar's `sigma` scales the code the generator
    /// reads) plus `log p(y | C(x))`, with `x` the generator's image mapped
    /// to [0, 1], resized (bilinear) to what the classifier reads,
    /// converted between grey and RGB, and mapped to the classifier's range.
    pub fn compose(g: GeneratorSide, c: ClassifierSide) -> Result<Self> {
        let (_, side, gc) = g.net.output();
        let (lo, hi) = g.range;
        // the generator's image in [0, 1]
        let mut decode_net = g.net.clone();
        if let Some(s) = g.sigma.filter(|&s| s != 1.0) {
            decode_net = build::net((1, 1, g.code), vec![build::affine(g.code, s, 0.0)])?
                .then(decode_net)?;
        }
        let unit = build::net(
            g.net.output(),
            vec![build::affine(gc, 1.0 / (hi - lo), -lo / (hi - lo))],
        )?;
        let decode_net = decode_net.then(unit)?;
        // ... to what the classifier reads
        let classify = c.reading((side, side, gc))?;
        let decode = reference::func(decode_net.clone())?;
        let logits = reference::func(classify.clone())?;
        let to_rgb: Func = if gc == 1 {
            Arc::new(|x: &Tensor| x.repeat((1, 1, 1, 3)))
        } else {
            identity()
        };
        Ok(Self {
            names: (g.name, c.name),
            decode,
            to_rgb,
            logits,
            code_dim: g.code,
            side,
            num_classes: c.class_names.len(),
            class_names: c.class_names,
            provenance: serde_json::json!({"generator": g.provenance, "classifier": c.provenance}),
            compiled: Arc::new(decode_net.clone().without_taps().then(classify.clone())?),
            decode_net: Arc::new(decode_net),
            classify: Some(Arc::new(classify)),
            nonnegative_codes: false,
            code_prior: g.sigma.is_some(),
        })
    }

    /// DCGAN faces + EfficientNet-Lite0 from the cache of `ppgn models fetch`.
    pub fn faces_imagenet(home: &Path) -> Result<Self> {
        Self::compose(
            GeneratorSide::named("dcgan-faces", home)?,
            ClassifierSide::named("efficientnet-lite0", home, Path::new(""))?,
        )
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
            names: ("dgn-fc6".into(), "alexnet".into()),
            class_names: crate::data::imagenet::class_names()
                .into_iter()
                .map(String::from)
                .collect(),
            decode,
            to_rgb: Arc::new(|x: &Tensor| DgnGenerator::to_rgb(x)),
            logits,
            code_dim,
            side,
            num_classes: classes,
            provenance,
            nonnegative_codes: true,
            code_prior: true,
            classify: None,
            decode_net: Arc::new(gnet.clone()),
            compiled: Arc::new(gnet.then(cnet)?),
        })
    }

    /// The tap of `E(G(h))` in [`PlugPair::compiled`], when the pair has
    /// an encoder.
    fn joint_tap(&self) -> Option<usize> {
        let net = &self.compiled;
        net.tap("h").ok().filter(|&s| net.shape(s) == net.input())
    }

    /// The prior's terms for `cfg` (Gaussian, none, or the joint
    /// `E(G(h)) - h` read off the condition's pass when there is an
    /// encoder: then its tap and weight).
    pub fn prior(&self, cfg: &SamplerConfig) -> Result<(Terms, Option<(usize, f64)>)> {
        let mut terms: Terms = Vec::new();
        let joint = match (cfg.prior, self.joint_tap()) {
            (PriorKind::Gaussian, _) if !self.code_prior => None,
            (PriorKind::Gaussian, _) => {
                terms.push((cfg.eps1, Box::new(GaussianPrior::new(cfg.prior_sigma))));
                None
            }
            // read off the condition's own pass, which goes through E
            (PriorKind::Joint, Some(tap)) => Some((tap, cfg.eps1)),
            // the declared prior is the code's exact density: in the chains'
            // coordinates (a sidecar's sigma scales the code the generator
            // reads) it is N(0, I), whose draws the random starts are
            (PriorKind::Flow, _) if self.code_prior && !self.nonnegative_codes => {
                terms.push((
                    cfg.eps1,
                    Box::new(GaussianPrior {
                        sigma: 1.0,
                        label: "code-prior",
                    }),
                ));
                None
            }
            (PriorKind::None, _) => None,
            (PriorKind::Flow, _) => {
                return Err(Error::unsupported(
                    format!(
                        "the exact samplers' prior (flow, of the preset or --prior) needs a code prior with a density, which {} does not declare{}",
                        self.names.0,
                        if self.nonnegative_codes { " (its codes are post-ReLU)" } else { "" }
                    ),
                    "a generator whose sidecar says prior = \"gaussian\" (the default), or --preset faces",
                ))
            }
            (other, tap) => {
                return Err(Error::unsupported(
                    format!(
                        "prior {other:?} (of the preset or --prior) needs the shipped stack's encoder or DAEs, which {} does not have",
                        self.names.0
                    ),
                    format!(
                        "use --preset faces, or --prior gaussian{} or none",
                        if tap.is_some() { ", joint" } else { "" }
                    ),
                ))
            }
        };
        Ok((terms, joint))
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
        let (mut terms, joint) = self.prior(cfg)?;
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
            retarget: None,
        })
    }

    /// `eps1 * prior + eps2 * unit(C(G(h)))`: one unit of the classifier's
    /// layer `layer` (any node's output of an imported classifier; the
    /// layers `ppgn visualize` names on EfficientNet-Lite0).
    pub fn unit_pipeline(
        &self,
        layer: &str,
        neuron: Neuron,
        cfg: &SamplerConfig,
    ) -> Result<Pipeline> {
        let Some(classify) = &self.classify else {
            return Err(Error::unsupported(
                format!("a neuron condition on {}", self.names.1),
                "condition on classes",
            ));
        };
        let head = classify.upto(layer, false)?;
        let (mut terms, _) = self.prior(&SamplerConfig {
            prior: match cfg.prior {
                PriorKind::Joint => PriorKind::None,
                p => p,
            },
            ..cfg.clone()
        })?;
        let net = self.compiled.upto(layer, false)?;
        let backend = Backend::new(Arc::new(net), cfg.engine)?;
        let (w, term) = NetCondition::weighed(backend, Objective::Unit(neuron), cfg.eps2, None)
            .map_err(|e| match e {
                Error::NoSuchUnit { neuron, shape, .. } => Error::NoSuchUnit {
                    neuron,
                    layer: layer.into(),
                    shape,
                },
                e => e,
            })?;
        terms.push((w, Box::new(term)));
        let f = reference::func(head)?;
        Ok(Pipeline {
            target: Sum::new(terms),
            decode: self.decode.clone(),
            measure: Box::new(move |x: &Tensor| unit_activation(&f(x)?, neuron)),
            backend: cfg.engine,
            retarget: None,
        })
    }

    /// A class of the classifier by index or name (`all` is expanded by
    /// the caller).
    pub fn parse_class(&self, s: &str) -> Result<usize> {
        let imagenet = self.class_names.len() == 1000 && self.class_names[0] == "tench";
        let what = if imagenet { "ImageNet class" } else { "class" };
        crate::data::imagenet::parse_class_in(s, &self.class_names, what)
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
