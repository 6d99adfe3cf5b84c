//! The Fashion-MNIST stack's targets: the condition a run asks for
//! ([`Condition`]: classes, a hidden unit, inpainting), the prior on codes,
//! and the target `eps1 * prior + eps2 * condition` on the backend
//! [`Engine::choose`] picks, as the [`Pipeline`] the chain driver runs.

use candle_core::Tensor;

use super::chains::{kernel, Measure, Pipeline};
use super::preset::{Engine, PriorKind, SamplerConfig};
use crate::density::condition::{
    ClassCondition, ClassGradient, Neuron, NeuronCondition, Objective,
};
use crate::density::engine::EngineCondition;
use crate::density::image::InpaintContext;
use crate::density::prior::{DaePrior, GaussianPrior, JointPrior};
use crate::density::{Sum, Term};
use crate::error::{Error, Result};
use crate::models::fashion::Stack;
use crate::nn::identity;

/// The class condition `log p(y | G(h))` of the stack's classifier.
pub fn class_condition(
    stack: &Stack,
    classes: &[usize],
    gradient: ClassGradient,
) -> Result<ClassCondition> {
    Ok(ClassCondition {
        decode: stack.generator_net()?,
        logits: stack.classifier_net()?,
        classes: classes.to_vec(),
        num_classes: stack.classifier.cfg.num_classes,
        gradient,
    })
}

/// What the chains are conditioned on.
#[derive(Debug, Clone)]
pub enum Condition {
    /// One class per chain.
    Classes(Vec<usize>),
    /// A hidden unit of a classifier layer (`h1`, `h`, `logits`).
    Neuron { layer: String, neuron: Neuron },
    /// Inpainting (S10): a class per chain plus `weight` times the context
    /// term pulling the known pixels (`mask = 0`) of `G(h)` toward `real`.
    Inpaint {
        classes: Vec<usize>,
        /// `[n, 28, 28, 1]`
        real: Tensor,
        /// `[1, 28, 28, 1]`, 1 on the pixels to fill
        mask: Tensor,
        weight: f64,
    },
}

impl Condition {
    /// The condition term on codes `h` (through `G`).
    pub fn term(&self, stack: &Stack, cfg: &SamplerConfig) -> Result<Box<dyn Term>> {
        Ok(match self {
            Condition::Classes(c) => Box::new(class_condition(stack, c, cfg.gradient)?),
            Condition::Neuron { layer, neuron } => Box::new(NeuronCondition {
                decode: stack.generator_net()?,
                layer: stack.layer_net(layer)?,
                layer_name: layer.clone(),
                neuron: *neuron,
            }),
            Condition::Inpaint {
                classes,
                real,
                mask,
                weight,
            } => Box::new(Sum::new(vec![
                (
                    1.0,
                    Box::new(class_condition(stack, classes, cfg.gradient)?) as Box<dyn Term>,
                ),
                (
                    *weight,
                    Box::new(InpaintContext::new(
                        stack.generator_net()?,
                        real.clone(),
                        mask.clone(),
                    )?),
                ),
            ])),
        })
    }

    /// What progress reports per chain for images `x = G(h)` already decoded:
    /// `p(y | x)` for classes, the unit's activation for a neuron.
    pub fn measure(&self, stack: &Stack, cfg: &SamplerConfig) -> Result<Measure> {
        Ok(match self {
            Condition::Classes(c) | Condition::Inpaint { classes: c, .. } => {
                let cc = ClassCondition {
                    decode: identity(),
                    logits: stack.classifier_net()?,
                    classes: c.clone(),
                    num_classes: stack.classifier.cfg.num_classes,
                    gradient: cfg.gradient,
                };
                Box::new(move |x: &Tensor| cc.probability(x))
            }
            Condition::Neuron { layer, neuron } => {
                let term = NeuronCondition {
                    decode: identity(),
                    layer: stack.layer_net(layer)?,
                    layer_name: layer.clone(),
                    neuron: *neuron,
                };
                Box::new(move |x: &Tensor| {
                    let act = term.activation(&(term.layer)(x)?)?;
                    Ok(act.to_dtype(candle_core::DType::F64)?.to_vec1()?)
                })
            }
        })
    }
}

impl Pipeline {
    /// The Fashion-MNIST stack's pipeline.
    pub fn fashion(stack: &Stack, cfg: &SamplerConfig, condition: &Condition) -> Result<Self> {
        Ok(Self {
            target: target(stack, cfg, condition)?,
            backend: cfg.engine.choose(true),
            decode: stack.generator_net()?,
            measure: condition.measure(stack, cfg)?,
        })
    }
}

/// `eps1 * prior + eps2 * condition`.
pub fn target(stack: &Stack, cfg: &SamplerConfig, condition: &Condition) -> Result<Sum> {
    if let Some(t) = engine_target(stack, cfg, condition)? {
        return Ok(t);
    }
    let prior = prior_term(stack, cfg)?;
    let mut terms: Vec<(f64, Box<dyn Term>)> = Vec::new();
    if let Some(p) = prior {
        terms.push((cfg.eps1, p));
    }
    terms.push((cfg.eps2, condition.term(stack, cfg)?));
    Ok(Sum::new(terms))
}

/// The prior on codes as its own candle term (`None` for no prior).
fn prior_term(stack: &Stack, cfg: &SamplerConfig) -> Result<Option<Box<dyn Term>>> {
    Ok(match cfg.prior {
        PriorKind::Joint => Some(Box::new(JointPrior {
            encode: stack.encoder_net()?,
            decode: stack.generator_net()?,
        })),
        PriorKind::HDae => {
            let (r, sigma) = stack.h_dae_net()?.ok_or_else(|| Error::NotInstalled {
                what: "the h-dae prior".into(),
                missing: "models/fashion-mnist/h-dae.safetensors".into(),
                hint: "train it with `ppgn train h-dae` or choose another --prior".into(),
            })?;
            Some(Box::new(DaePrior {
                reconstruct: r,
                sigma,
                label: "h-dae",
            }))
        }
        PriorKind::Gaussian => Some(Box::new(GaussianPrior::new(cfg.prior_sigma))),
        PriorKind::None => None,
    })
}

/// [`target`] on the sampling engine, for a class, neuron or inpainting
/// condition (`None` for a neuron of an unknown layer, left to the
/// reference path to report). The inpainting context and the priors other
/// than the joint one stay candle terms beside the engine's. The joint prior
/// reads `E(G(h))` off the condition's forward pass when that pass goes
/// through `h`'s ReLU (classes, the logits); otherwise it is its own term.
fn engine_target(stack: &Stack, cfg: &SamplerConfig, condition: &Condition) -> Result<Option<Sum>> {
    if cfg.engine.choose(true) != Engine::Fast {
        return Ok(None);
    }
    let g = stack.generator.compile::<f32>()?;
    let clf = &stack.classifier;
    let class = |classes: &[usize]| Objective::Class {
        classes: classes.to_vec(),
        gradient: cfg.gradient,
    };
    // the inpainting context stays a candle term beside the engine's class
    let mut context: Option<(f64, Box<dyn Term>)> = None;
    let (head, objective, through_h) = match condition {
        Condition::Classes(classes) => (clf.compile()?, class(classes), true),
        Condition::Inpaint {
            classes,
            real,
            mask,
            weight,
        } => {
            let ctx = InpaintContext::new(stack.generator_net()?, real.clone(), mask.clone())?;
            context = Some((cfg.eps2 * weight, Box::new(ctx)));
            (clf.compile()?, class(classes), true)
        }
        // `h` keeps its ReLU (is E(G(h))) unless the unit is read at `h`
        Condition::Neuron { layer, neuron } => (
            clf.compile_to(layer)?,
            Objective::Unit(*neuron),
            matches!(layer.as_str(), "logits" | "fc8"),
        ),
    };
    let net = g.then(head)?;
    // the joint prior off the condition's own pass when it has E(G(h)),
    // any other prior as its own term
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
    // eps2 weighs the condition in the sum, as on the reference path; a
    // term that also carries the joint prior weighs its two parts itself
    let (outer, inner) = match joint {
        Some(_) => (1.0, cfg.eps2),
        None => (cfg.eps2, 1.0),
    };
    let term = EngineCondition::new(std::sync::Arc::new(net), objective, inner, joint)?;
    terms.push((outer, Box::new(term)));
    terms.extend(context);
    Ok(Some(Sum::new(terms)))
}

/// Checks that the kernel can run on the target before anything is written.
pub fn validate(
    stack: &Stack,
    cfg: &SamplerConfig,
    condition: &Condition,
    h0: &Tensor,
) -> Result<()> {
    if let Condition::Neuron { layer, neuron } = condition {
        NeuronCondition {
            decode: stack.generator_net()?,
            layer: stack.layer_net(layer)?,
            layer_name: layer.clone(),
            neuron: *neuron,
        }
        .validate(h0)?;
    }
    kernel(cfg)?.check(&target(stack, cfg, condition)?)
}
