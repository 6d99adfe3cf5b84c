//! The Fashion-MNIST stack's targets: the condition a run asks for
//! ([`Condition`]: classes, a hidden unit, inpainting), the prior on codes,
//! and the target `eps1 * prior + eps2 * condition` on the backend the
//! settings name (`SamplerConfig::engine`), as the [`Pipeline`] the chain
//! driver runs.

use std::sync::Arc;

use candle_core::Tensor;

use super::chains::{Measure, Pipeline};
use super::preset::{Engine, PriorKind, SamplerConfig};
use crate::density::backend::Backend;
use crate::density::condition::{
    class_probability, unit_activation, NetCondition, Neuron, Objective,
};
use crate::density::image::{clamp_known, InpaintContext};
use crate::density::prior::{AutoencoderPrior, GaussianPrior};
use crate::density::{Sum, Term};
use crate::error::{Error, Result};
use crate::models::fashion::Stack;
use crate::nn::fast::{Net, Op};

/// What the chains are conditioned on.
#[derive(Debug, Clone)]
pub enum Condition {
    /// One class per chain.
    Classes(Vec<usize>),
    /// A hidden unit of a classifier layer (`h1`, `h`, `logits`).
    Neuron { layer: String, neuron: Neuron },
    /// Inpainting (S10): a class per chain on the clamped image
    /// `M * G(h) + (1 - M) * real` (eq. 25, in every pass, so the class
    /// term and the joint prior's encoder see it), plus `weight` times the
    /// context term pulling the known pixels (`mask = 0`) of `G(h)` toward
    /// `real`.
    Inpaint {
        classes: Vec<usize>,
        /// `[1, 28, 28, 1]`: the one real image every chain fills
        real: Tensor,
        /// `[1, 28, 28, 1]`, 1 on the pixels to fill
        mask: Tensor,
        weight: f64,
    },
}

impl Condition {
    /// What progress reports per chain for images `x = G(h)` already decoded:
    /// `p(y | x)` for classes, the unit's activation for a neuron.
    pub fn measure(&self, stack: &Stack, engine: Engine) -> Result<Measure> {
        let on =
            |net| -> Result<crate::nn::Func> { Ok(Backend::new(Arc::new(net), engine)?.func()) };
        Ok(match self {
            Condition::Classes(c) | Condition::Inpaint { classes: c, .. } => {
                let (logits, classes) = (on(stack.classifier.compile()?)?, c.clone());
                Box::new(move |x: &Tensor| class_probability(&logits(x)?, &classes))
            }
            Condition::Neuron { layer, neuron } => {
                let (layer, neuron) = (on(stack.classifier.compile_to(layer)?)?, *neuron);
                Box::new(move |x: &Tensor| unit_activation(&layer(x)?, neuron))
            }
        })
    }
}

impl Pipeline {
    /// The Fashion-MNIST stack's pipeline.
    pub fn fashion(stack: &Stack, cfg: &SamplerConfig, condition: &Condition) -> Result<Self> {
        let g = Backend::new(Arc::new(code_to_image(stack, cfg)?), cfg.engine)?.func();
        // inpainting's snapshots, measurements and samples are clamped too
        let decode: crate::nn::Func = match condition {
            // PPGN-x's chains are images
            _ if cfg.prior == PriorKind::XDae => crate::nn::identity(),
            Condition::Inpaint { real, mask, .. } => {
                let (real, mask) = (real.clone(), mask.clone());
                Arc::new(move |h: &Tensor| {
                    clamp_known(&g(h)?, &real, &mask).map_err(candle_core::Error::wrap)
                })
            }
            _ => g,
        };
        Ok(Self {
            target: target(stack, cfg, condition)?,
            backend: cfg.engine,
            retarget: None,
            decode,
            measure: condition.measure(stack, cfg.engine)?,
        })
    }
}

impl Pipeline {
    /// [`Pipeline::fashion`] whose weights can change during the run
    /// (`super::steer`): it keeps the stack to rebuild the target.
    pub fn steerable(
        stack: &Arc<Stack>,
        cfg: &SamplerConfig,
        condition: &Condition,
    ) -> Result<Self> {
        let (s, c) = (stack.clone(), condition.clone());
        Ok(Self {
            retarget: Some(Box::new(move |cfg| target(&s, cfg, &c))),
            ..Self::fashion(stack, cfg, condition)?
        })
    }
}

/// `eps1 * prior + eps2 * condition` on the backend `cfg.engine`: the
/// condition is one compiled network from the code to the logits or the
/// neuron's layer (`C . G`). The joint prior reads `E(G(h))` off that pass
/// when it goes through `h`'s ReLU (classes, the logits); otherwise it, like
/// the other priors, is its own term; so is the inpainting context (on `G`
/// alone).
pub fn target(stack: &Stack, cfg: &SamplerConfig, condition: &Condition) -> Result<Sum> {
    let g = code_to_image(stack, cfg)?;
    let clf = &stack.classifier;
    let class = |classes: &[usize]| Objective::Class {
        classes: classes.to_vec(),
        gradient: cfg.gradient,
    };
    let mut context: Option<(f64, Box<dyn Term>)> = None;
    let (head, objective, through_h) = match condition {
        Condition::Classes(classes) => (clf.compile()?, class(classes), true),
        Condition::Inpaint {
            classes,
            real,
            mask,
            weight,
        } => {
            let clamp = clamp_net(real, mask, g.output())?;
            let g = Backend::new(Arc::new(g.clone()), cfg.engine)?;
            let ctx = InpaintContext::new(g, real.clone(), mask.clone())?;
            context = Some((cfg.eps2 * weight, Box::new(ctx)));
            (clamp.then(clf.compile()?)?, class(classes), true)
        }
        // `h` keeps its ReLU (is E(G(h))) unless the unit is read at `h`
        Condition::Neuron { layer, neuron } => (
            clf.compile_to(layer)?,
            Objective::Unit(*neuron),
            matches!(layer.as_str(), "logits" | "fc8"),
        ),
    };
    // PPGN-x moves the image: the condition reads it directly
    let net = match cfg.prior {
        PriorKind::XDae if context.is_some() => {
            return Err(Error::unsupported(
                "inpainting with the x-dae prior (PPGN-x samples images, not codes)",
                "inpaint with --prior joint, h-dae, gaussian or none",
            ))
        }
        PriorKind::XDae => head,
        _ => g.then(head)?,
    };
    let joint = match cfg.prior == PriorKind::Joint && through_h {
        true => Some((net.tap("h")?, cfg.eps1)),
        false => None,
    };
    let mut terms: Vec<(f64, Box<dyn Term>)> = Vec::new();
    if joint.is_none() {
        if let Some(p) = prior_term(stack, cfg)? {
            terms.push((cfg.eps1, p));
        }
    }
    let backend = Backend::new(Arc::new(net), cfg.engine)?;
    let weighed = NetCondition::weighed(backend, objective, cfg.eps2, joint);
    let (w, term) = weighed.map_err(|e| match (e, condition) {
        // name the layer the unit was asked of
        (Error::NoSuchUnit { neuron, shape, .. }, Condition::Neuron { layer, .. }) => {
            Error::NoSuchUnit {
                neuron,
                layer: layer.clone(),
                shape,
            }
        }
        (e, _) => e,
    })?;
    terms.push((w, Box::new(term)));
    terms.extend(context);
    Ok(Sum::new(terms))
}

/// What the chains' positions decode through: `G`, or `G . relu . T`
/// when they are the flow prior's base points.
fn code_to_image(stack: &Stack, cfg: &SamplerConfig) -> Result<Net<f32>> {
    let g = stack.generator.compile::<f32>()?;
    match cfg.prior {
        PriorKind::Flow => stack.transport()?.then(g),
        _ => Ok(g),
    }
}

/// S10's eq. 25 as one engine op on `G`'s output of shape `shape`:
/// `x * M + (1 - M) * real`, a per-value affine map.
fn clamp_net(real: &Tensor, mask: &Tensor, shape: (usize, usize, usize)) -> Result<Net<f32>> {
    let (h, w, c) = shape;
    let one_image = |t: &Tensor, what: &str| -> Result<Vec<f32>> {
        let v: Vec<f32> = t
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        match v.len() == h * w * c {
            true => Ok(v),
            false => Err(Error::shape(
                what,
                format!("one {h}x{w}x{c} image, the same for every chain"),
                format!("{:?}", t.dims()),
            )),
        }
    };
    let (real, mask) = (
        one_image(real, "inpainting image")?,
        one_image(mask, "inpainting mask")?,
    );
    let shift = real.iter().zip(&mask).map(|(r, m)| (1.0 - m) * r).collect();
    Net::new(shape, vec![Op::Affine { scale: mask, shift }])
}

/// The prior on codes as its own term (`None` for no prior), on the
/// backend `cfg.engine`.
fn prior_term(stack: &Stack, cfg: &SamplerConfig) -> Result<Option<Box<dyn Term>>> {
    let backend = |net| Backend::new(Arc::new(net), cfg.engine);
    Ok(match cfg.prior {
        PriorKind::Joint => {
            let e = stack.classifier.compile()?.upto("h", false)?;
            let eg = stack.generator.compile::<f32>()?.then(e)?;
            Some(Box::new(AutoencoderPrior::joint(backend(eg)?)))
        }
        // a learned DAE: (R(v) - v) / sigma^2, on codes or on images
        PriorKind::HDae | PriorKind::XDae => {
            let label = if cfg.prior == PriorKind::HDae {
                "h-dae"
            } else {
                "x-dae"
            };
            let missing = || Error::NotInstalled {
                what: format!("the {label} prior"),
                missing: format!("models/fashion-mnist/{label}.safetensors").into(),
                hint: format!("train it with `ppgn train {label}` or choose another --prior"),
            };
            let (net, sigma) = match cfg.prior {
                PriorKind::HDae => {
                    let d = stack.h_dae.as_ref().ok_or_else(missing)?;
                    (d.compile()?, d.cfg.sigma)
                }
                _ => {
                    let d = stack.x_dae.as_ref().ok_or_else(missing)?;
                    (d.compile()?, d.cfg.sigma)
                }
            };
            Some(Box::new(AutoencoderPrior {
                reconstruct: backend(net)?,
                sigma,
                label,
            }))
        }
        PriorKind::Gaussian => Some(Box::new(GaussianPrior::new(cfg.prior_sigma))),
        // the base space's own N(0, I): the flow's density is in `T`
        PriorKind::Flow => Some(Box::new(GaussianPrior {
            sigma: 1.0,
            label: "flow-base",
        })),
        PriorKind::None => None,
    })
}

/// Checks that the kernel can run on the target before anything is written.
pub fn validate(stack: &Stack, cfg: &SamplerConfig, condition: &Condition) -> Result<()> {
    cfg.kernel()?.check(&target(stack, cfg, condition)?)
}
