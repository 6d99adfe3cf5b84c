//! Drives a batch of chains on the Fashion-MNIST stack: builds the target
//! (`eps1 * prior + eps2 * condition`) and the kernel from a
//! [`SamplerConfig`], steps them, and records the condition probability and
//! image snapshots along the way.

use std::time::Instant;

use candle_core::{Module, Tensor};

use super::preset::{PriorKind, SamplerConfig, SamplerKind};
use crate::density::condition::{ClassCondition, ClassGradient};
use crate::density::prior::{DaePrior, GaussianPrior, JointPrior};
use crate::density::{Sum, Term};
use crate::error::{Error, Result};
use crate::models::fashion::Stack;
use crate::sampler::clip::Clip;
use crate::sampler::hmc::Hmc;
use crate::sampler::mala::Mala;
use crate::sampler::mala_approx::MalaApprox;
use crate::sampler::map::Map;
use crate::sampler::rwmh::RandomWalk;
use crate::sampler::{init, ChainRngs, Info, Kernel};

pub fn kernel(cfg: &SamplerConfig) -> Result<Box<dyn Kernel>> {
    let clip = cfg.clip.map(|(lo, hi)| Clip::new_box(lo, hi)).transpose()?;
    Ok(match cfg.sampler {
        SamplerKind::Map => Box::new(Map {
            lr: cfg.step,
            decay: cfg.decay,
            clip,
        }),
        SamplerKind::MalaApprox => Box::new(MalaApprox {
            step: cfg.step,
            eps3: cfg.eps3,
            normalise: cfg.normalise,
            clip,
        }),
        SamplerKind::Mh => Box::new(RandomWalk { scale: cfg.step }),
        SamplerKind::Mala => Box::new(Mala {
            step: cfg.step,
            noise: cfg.noise,
            clip,
        }),
        SamplerKind::Hmc => Box::new(Hmc {
            step: cfg.step,
            leapfrog_steps: cfg.leapfrog_steps,
            jitter: 0.1,
            clip,
        }),
    })
}

/// The class condition `log p(y | G(h))` of the stack's classifier.
pub fn class_condition(
    stack: &Stack,
    classes: &[usize],
    gradient: ClassGradient,
) -> ClassCondition {
    ClassCondition {
        decode: stack.generator_net(),
        logits: stack.classifier_net(),
        classes: classes.to_vec(),
        num_classes: stack.classifier.cfg.num_classes,
        gradient,
    }
}

/// `eps1 * prior + eps2 * condition`.
pub fn target(stack: &Stack, cfg: &SamplerConfig, classes: &[usize]) -> Result<Sum> {
    let prior: Option<Box<dyn Term>> = match cfg.prior {
        PriorKind::Joint => Some(Box::new(JointPrior {
            encode: stack.encoder_net(),
            decode: stack.generator_net(),
        })),
        PriorKind::HDae => {
            let (r, sigma) = stack.h_dae_net().ok_or_else(|| {
                Error::Invalid(
                    "the h-dae prior needs models/fashion-mnist/h-dae.safetensors".into(),
                )
            })?;
            Some(Box::new(DaePrior {
                reconstruct: r,
                sigma,
                label: "h-dae",
            }))
        }
        PriorKind::Gaussian => Some(Box::new(GaussianPrior::new(cfg.prior_sigma))),
        PriorKind::None => None,
    };
    let mut terms: Vec<(f64, Box<dyn Term>)> = Vec::new();
    if let Some(p) = prior {
        terms.push((cfg.eps1, p));
    }
    terms.push((
        cfg.eps2,
        Box::new(class_condition(stack, classes, cfg.gradient)),
    ));
    Ok(Sum::new(terms))
}

/// What a run of chains produced.
pub struct ChainsOutput {
    /// Final codes `[n, h_dim]` and images `[n, 28, 28, 1]`.
    pub codes: Tensor,
    pub images: Tensor,
    /// `p(y | x)` per chain at every recorded step (`record_every`).
    pub probability: Vec<Vec<f64>>,
    /// Images of every chain every `record_every` steps, `[n, 28, 28, 1]` each.
    pub snapshots: Vec<Tensor>,
    pub accepted: Vec<usize>,
    pub divergences: Vec<usize>,
    pub grad_evals: usize,
    pub wall_s: f64,
}

/// Runs `cfg.steps` steps from `h0`, calling `progress(step, mean_p, accept_rate)` as it goes.
pub fn run_chains(
    stack: &Stack,
    cfg: &SamplerConfig,
    classes: &[usize],
    h0: &Tensor,
    seed: u64,
    record_every: usize,
    mut progress: impl FnMut(usize, f64, f64),
) -> Result<ChainsOutput> {
    let n = h0.dim(0)?;
    let target = target(stack, cfg, classes)?;
    let k = kernel(cfg)?;
    k.check(&target)?;
    let cond = class_condition(stack, classes, cfg.gradient);
    let mut rngs = ChainRngs::new(seed, n);
    let started = Instant::now();
    let mut state = init(h0, &target)?;
    let mut out = ChainsOutput {
        codes: h0.clone(),
        images: h0.clone(),
        probability: Vec::new(),
        snapshots: Vec::new(),
        accepted: vec![0; n],
        divergences: vec![0; n],
        grad_evals: 1,
        wall_s: 0.0,
    };
    let record = |out: &mut ChainsOutput, h: &Tensor| -> Result<f64> {
        let p = cond.probability(h)?;
        let m = p.iter().sum::<f64>() / n as f64;
        out.probability.push(p);
        out.snapshots.push(stack.generator.forward(h)?);
        Ok(m)
    };
    record(&mut out, &state.position)?;
    let mut acc_sum = 0.0;
    for t in 0..cfg.steps {
        let (next, info): (_, Info) = k.step(&mut rngs, &state, &target, t)?;
        state = next;
        out.grad_evals += info.grad_evals;
        for i in 0..n {
            out.accepted[i] += info.accepted[i] as usize;
            out.divergences[i] += info.divergent[i] as usize;
        }
        acc_sum += info.accept_prob.iter().sum::<f64>() / n as f64;
        if (t + 1) % record_every.max(1) == 0 || t + 1 == cfg.steps {
            let m = record(&mut out, &state.position)?;
            progress(t + 1, m, acc_sum / (t + 1) as f64);
        }
    }
    out.images = stack.generator.forward(&state.position)?;
    out.codes = state.position;
    out.wall_s = started.elapsed().as_secs_f64();
    Ok(out)
}
