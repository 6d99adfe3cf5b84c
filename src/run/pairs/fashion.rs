//! The Fashion-MNIST stack's targets: the condition a run asks for
//! ([`Condition`]: classes, a hidden unit, inpainting), the prior on codes,
//! and the target `eps1 * prior + eps2 * condition` on the backend the
//! settings name (`SamplerConfig::engine`), as the [`Pipeline`] the chain
//! driver runs.

use std::sync::Arc;

use candle_core::Tensor;

use crate::density::backend::Backend;
use crate::density::condition::{class_probability, unit_activation, NetCondition, Objective};
use crate::density::image::{clamp_known, InpaintContext};
use crate::density::prior::{AutoencoderPrior, GaussianPrior};
use crate::density::score::{DenoisedCondition, Denoiser, ScorePrior};
use crate::density::{Sum, Term};
use crate::error::{Error, Result};
use crate::models::fashion::Stack;
use crate::nn::fast::Net;
use crate::run::config::preset::{Engine, PriorKind, SamplerConfig};
use crate::run::drive::chains::{Measure, Pipeline};

pub use super::pair::Condition;
use super::pair::Restoring;

/// The condition network a Fashion-MNIST generator's chains are guided
/// by when it is not the stack's own classifier: any classifier side
/// (`crate::models::plug`), read on the generator's 28x28 grey images.
pub struct Guide {
    /// `--classifier` as given.
    pub name: String,
    /// Images `[n, 28, 28, 1]` in [0, 1] to logits, with the classifier's
    /// layers as taps.
    pub net: Net<f32>,
    pub class_names: Vec<String>,
    pub provenance: serde_json::Value,
}

/// The condition network up to `layer` (the logits when `None`): the
/// stack's classifier, or the guide.
fn head(stack: &Stack, guide: Option<&Guide>, layer: Option<&str>) -> Result<Net<f32>> {
    match (guide, layer) {
        (None, None) => Ok(stack.classifier.compile()?),
        (None, Some(l)) => stack.classifier.compile_to(l),
        (Some(g), None) => Ok(g.net.clone()),
        (Some(g), Some(l)) => g.net.upto(l, false),
    }
}

/// What progress reports per chain for images `x = G(h)` already decoded:
/// `p(y | x)` for classes, the unit's activation for a neuron.
pub fn measure(
    stack: &Stack,
    guide: Option<&Guide>,
    condition: &Condition,
    engine: Engine,
) -> Result<Measure> {
    let on = |net| -> Result<crate::nn::Func> { Ok(Backend::new(Arc::new(net), engine)?.func()) };
    Ok(match condition {
        Condition::Classes(c) | Condition::Inpaint { classes: c, .. } => {
            let (logits, classes) = (on(head(stack, guide, None)?)?, c.clone());
            Box::new(move |x: &Tensor| class_probability(&logits(x)?, &classes))
        }
        Condition::Neuron { layer, neuron } => {
            let (layer, neuron) = (on(head(stack, guide, Some(layer))?)?, *neuron);
            Box::new(move |x: &Tensor| unit_activation(&layer(x)?, neuron))
        }
        Condition::Restore(r) => r.measure()?,
    })
}

impl Pipeline {
    /// The Fashion-MNIST stack's pipeline.
    pub fn fashion(stack: &Stack, cfg: &SamplerConfig, condition: &Condition) -> Result<Self> {
        Self::guided(stack, None, cfg, condition)
    }

    /// The pipeline of the stack's generator and priors guided by `guide`
    /// (the stack's own classifier when `None`).
    pub fn guided(
        stack: &Stack,
        guide: Option<&Guide>,
        cfg: &SamplerConfig,
        condition: &Condition,
    ) -> Result<Self> {
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
            target: guided_target(stack, guide, cfg, condition)?,
            backend: cfg.engine,
            retarget: None,
            decode,
            measure: measure(stack, guide, condition, cfg.engine)?,
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
    guided_target(stack, None, cfg, condition)
}

/// [`target`] with the condition read by `guide` (the stack's classifier
/// when `None`). A guide has no `E`: the joint prior is then its own term.
pub fn guided_target(
    stack: &Stack,
    guide: Option<&Guide>,
    cfg: &SamplerConfig,
    condition: &Condition,
) -> Result<Sum> {
    if let Condition::Restore(r) = condition {
        return restore_target(stack, cfg, r);
    }
    let g = code_to_image(stack, cfg)?;
    let (head, objective, through_h, context) = reading(stack, guide, cfg, condition, &g)?;
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
    // one denoiser for the score prior and the condition read through it
    let denoiser = match cfg.prior {
        PriorKind::Score => Some(denoiser(stack, cfg)?),
        _ => None,
    };
    let mut terms: Vec<Weighted> = Vec::new();
    if joint.is_none() {
        if let Some(p) = prior_term(stack, cfg, denoiser.clone())? {
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
    match denoiser {
        // read on the denoiser's estimate of the clean code, and first, so
        // that the score prior reuses the estimate its pass made
        Some(denoiser) => {
            let read = DenoisedCondition {
                denoiser,
                condition: Box::new(term),
                through: cfg.through_denoiser,
            };
            terms.insert(0, (w, Box::new(read)));
        }
        None => terms.push((w, Box::new(term))),
    }
    terms.extend(context);
    Ok(Sum::new(terms))
}

/// A term with its weight in the target.
type Weighted = (f64, Box<dyn Term>);

/// A restoration's target: `eps1 *` the prior (the joint prior as its own
/// term) and `eps2 *` the observation's log-likelihood on `G`.
fn restore_target(stack: &Stack, cfg: &SamplerConfig, r: &Restoring) -> Result<Sum> {
    if cfg.prior == PriorKind::XDae {
        return Err(Error::unsupported(
            "restoring with the x-dae prior (PPGN-x samples images, not codes)",
            "restore with --prior flow, joint, h-dae, gaussian or none",
        ));
    }
    let g = Backend::new(Arc::new(code_to_image(stack, cfg)?), cfg.engine)?;
    let mut terms: Vec<Weighted> = Vec::new();
    if let Some(p) = prior_term(stack, cfg, None)? {
        terms.push((cfg.eps1, p));
    }
    terms.push((cfg.eps2, Box::new(r.term(g)?)));
    Ok(Sum::new(terms))
}

/// What the condition reads, given the decoder `g` of the chains'
/// positions: the network from images to the logits or the unit's layer
/// (behind inpainting's clamp), the objective, whether that network's
/// pass goes through `h` with its ReLU (so the joint prior can be read off
/// it), and inpainting's context term with its weight.
fn reading(
    stack: &Stack,
    guide: Option<&Guide>,
    cfg: &SamplerConfig,
    condition: &Condition,
    g: &Net<f32>,
) -> Result<(Net<f32>, Objective, bool, Option<Weighted>)> {
    let own = guide.is_none();
    let class = |classes: &[usize]| Objective::Class {
        classes: classes.to_vec(),
        gradient: cfg.gradient,
    };
    let mut context: Option<Weighted> = None;
    let (head, objective, through_h) = match condition {
        Condition::Classes(classes) => (head(stack, guide, None)?, class(classes), own),
        Condition::Inpaint {
            classes,
            real,
            mask,
            weight,
        } => {
            let clamp = super::pair::clamp_net(real, mask, g.output())?;
            let g = Backend::new(Arc::new(g.clone()), cfg.engine)?;
            let ctx = InpaintContext::new(g, real.clone(), mask.clone())?;
            context = Some((cfg.eps2 * weight, Box::new(ctx)));
            (clamp.then(head(stack, guide, None)?)?, class(classes), own)
        }
        // `h` keeps its ReLU (is E(G(h))) unless the unit is read at `h`
        Condition::Neuron { layer, neuron } => (
            head(stack, guide, Some(layer))?,
            Objective::Unit(*neuron),
            own && matches!(layer.as_str(), "logits" | "fc8"),
        ),
        Condition::Restore(_) => unreachable!("a restoration reads no class (restore_target)"),
    };
    Ok((head, objective, through_h, context))
}

/// What the chains' positions decode through: `G`, or `G . relu . T`
/// when they are the flow prior's base points.
pub fn code_to_image(stack: &Stack, cfg: &SamplerConfig) -> Result<Net<f32>> {
    let g = stack.generator.compile::<f32>()?;
    match cfg.prior {
        PriorKind::Flow => stack.transport()?.then(g),
        PriorKind::Score => stack.code_score()?.to_code()?.then(g),
        _ => Ok(g),
    }
}

/// The score model's denoiser on the backend `cfg.engine`.
fn denoiser(stack: &Stack, cfg: &SamplerConfig) -> Result<Arc<Denoiser>> {
    let model = stack.code_score()?;
    Ok(Arc::new(Denoiser::new(
        Backend::new(Arc::new(model.compile()?), cfg.engine)?,
        model.cfg.clone(),
    )))
}

/// The prior on codes as its own term (`None` for no prior), on the
/// backend `cfg.engine` (the score prior's on `denoiser`).
fn prior_term(
    stack: &Stack,
    cfg: &SamplerConfig,
    denoiser: Option<Arc<Denoiser>>,
) -> Result<Option<Box<dyn Term>>> {
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
        PriorKind::Score => Some(Box::new(ScorePrior {
            denoiser: match denoiser {
                Some(d) => d,
                None => self::denoiser(stack, cfg)?,
            },
        })),
        PriorKind::None => None,
    })
}
