//! What a batch of chains runs on and what it carries: the [`Pipeline`]
//! (any generator and condition network: the Fashion-MNIST stack's or a
//! pretrained pair's), the chains' random starts and streams, and their
//! state, [`ChainsOutput`] (positions, records of the condition value and
//! image snapshots, acceptances, the changes made), which checkpoints
//! hold. `super::driver` steps them.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::density::Sum;
use crate::error::{Error, Result};
use crate::nn::Func;
use crate::run::config::preset::{Engine, SamplerConfig};
use crate::run::config::steer::Change;
use crate::sampler::adapt::DualAveraging;
use crate::sampler::{ChainRngs, Info};

/// `relu(N(0, 2^2))` codes, non-negative like post-ReLU `h`: the random
/// start of every chain (seeded apart from the chains' own streams).
pub fn random_codes(n: usize, h_dim: usize, seed: u64) -> Result<Tensor> {
    random_codes_from(0, n, h_dim, seed)
}

/// [`random_codes`] of chains `first..first + n` of a larger run.
fn random_codes_from(first: usize, n: usize, h_dim: usize, seed: u64) -> Result<Tensor> {
    let z = Tensor::zeros((n, h_dim), candle_core::DType::F32, &Device::Cpu)?;
    Ok((ChainRngs::from_chain(seed ^ 0x5eed, first, n).normal_like(&z)? * 2.0)?.relu()?)
}

/// Random starting positions of the Fashion-MNIST stack's chains under
/// `cfg`, for chains `streams.first..streams.first + n` of a run:
/// `random_codes`; for the flow prior (whose chains move its base point)
/// draws of its base distribution `N(0, I)`, whose images `T(z)` are the
/// prior's own samples; for the score prior `N(0, s_max^2 I)`, the noised
/// prior at the top of its ladder; for PPGN-x (whose chains are images)
/// random images. The sampling jobs and the report start the same way.
pub fn fashion_starts(
    stack: &crate::models::fashion::Stack,
    cfg: &SamplerConfig,
    streams: Streams,
    n: usize,
) -> Result<Tensor> {
    use crate::run::config::preset::PriorKind;
    let Streams { seed, first } = streams;
    let h_dim = stack.classifier.cfg.h_dim;
    let normal = |shape: &[usize]| -> Result<Tensor> {
        let z = Tensor::zeros(shape, candle_core::DType::F32, &Device::Cpu)?;
        ChainRngs::from_chain(seed ^ 0x5eed, first, n).normal_like(&z)
    };
    match cfg.prior {
        PriorKind::Flow => normal(&[n, h_dim]),
        PriorKind::Score => {
            let top = match cfg.noise_levels {
                Some((max, _)) => max,
                None => stack.code_score()?.cfg.sigma_max,
            };
            Ok((normal(&[n, h_dim])? * top)?)
        }
        // mid-grey with N(0, 0.2^2) noise per pixel, clipped to [0, 1]
        PriorKind::XDae => {
            let side = crate::data::fashion_mnist::SIDE;
            Ok((normal(&[n, side, side, 1])? * 0.2)?
                .affine(1.0, 0.5)?
                .clamp(0.0, 1.0)?)
        }
        _ => random_codes_from(first, n, h_dim, seed),
    }
}

/// Which random streams a group of chains draws from: chain `first + i`'s
/// stream of `seed` for its row `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streams {
    pub seed: u64,
    /// The global id of the group's first chain.
    pub first: usize,
}

impl From<u64> for Streams {
    /// All the chains of a run, from chain 0.
    fn from(seed: u64) -> Self {
        Self { seed, first: 0 }
    }
}

/// A per-chain measurement of decoded images (the progress bar's number).
pub type Measure = Box<dyn Fn(&Tensor) -> Result<Vec<f64>> + Send + Sync>;

/// What the chain driver needs of the networks, whichever they are: the
/// target on codes, the generator for snapshots and the per-chain
/// condition measurement. Plug and play: any generator and condition
/// network that fit these three make a run.
pub struct Pipeline {
    /// `eps1 * prior + eps2 * condition` on codes.
    pub target: Sum,
    /// Codes to images `[n, h, w, c]`.
    pub decode: Func,
    pub measure: Measure,
    /// What computes the terms' networks (`crate::density::backend`).
    pub backend: Engine,
    /// The target for other settings (new eps1 and eps2 during a run),
    /// where the networks allow it.
    pub retarget: Option<Retarget>,
}

/// Builds a [`Pipeline`]'s target for settings.
pub type Retarget = Box<dyn Fn(&SamplerConfig) -> Result<Sum> + Send + Sync>;

/// The checkpoint file in a run's staging folder.
pub const CHECKPOINT: &str = "checkpoint.safetensors";

/// Seconds between checkpoints at most (the first record, an interruption
/// and a change of the settings always write one): a checkpoint holds every
/// snapshot so far, and writing it at every record of a run recorded at
/// every step (a live view's) took most of the time.
pub const CHECKPOINT_SECONDS: f64 = 10.0;

/// What a run of chains produced (also what a checkpoint holds).
pub struct ChainsOutput {
    /// Steps done.
    pub step: usize,
    /// Positions `[n, ...]` and decoded images `[n, h, w, c]` after the
    /// last step.
    pub codes: Tensor,
    pub images: Tensor,
    /// The condition's value per chain at every recorded step
    /// (`record_every`): `p(y | x)` for a class, the unit's activation
    /// for a neuron.
    pub condition_value: Vec<Vec<f64>>,
    /// Decoded images of every chain every `record_every` steps.
    pub snapshots: Vec<Tensor>,
    pub accepted: Vec<usize>,
    pub divergences: Vec<usize>,
    /// Each chain's tree depths summed over steps (NUTS; zeros otherwise).
    pub tree_depth: Vec<usize>,
    /// Each chain's leaves summed over steps (NUTS; zeros otherwise).
    pub leaves: Vec<usize>,
    pub grad_evals: usize,
    /// Sum over steps of the mean acceptance probability.
    pub accept_sum: f64,
    pub wall_s: f64,
    pub rngs: ChainRngs,
    /// Step-size adaptation state, when adapting.
    pub adapt: Option<DualAveraging>,
    /// Changes of the settings made during the run (`crate::run::config::steer`).
    pub changes: Vec<Change>,
    /// What the kernel learnt in warm-up ([`crate::sampler::Kernel::learnt`]:
    /// NUTS's metric), as of the last checkpoint.
    pub learnt: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct StateMeta {
    step: usize,
    // checkpoints of earlier versions call it `probability`
    #[serde(alias = "probability")]
    condition_value: Vec<Vec<f64>>,
    accepted: Vec<usize>,
    divergences: Vec<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tree_depth: Vec<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    leaves: Vec<usize>,
    grad_evals: usize,
    accept_sum: f64,
    wall_s: f64,
    rngs: Vec<rand_chacha::ChaCha8Rng>,
    adapt: Option<DualAveraging>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    changes: Vec<Change>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    learnt: Option<serde_json::Value>,
}

impl ChainsOutput {
    /// The state of the chains as a checkpoint holds it: JSON for the
    /// numbers and random streams, tensors `{prefix}codes` and
    /// `{prefix}snapshots` (images are decoded again on loading).
    pub fn to_parts(&self, prefix: &str) -> Result<(serde_json::Value, HashMap<String, Tensor>)> {
        let mut t = HashMap::new();
        t.insert(format!("{prefix}codes"), self.codes.clone());
        if !self.snapshots.is_empty() {
            t.insert(
                format!("{prefix}snapshots"),
                Tensor::stack(&self.snapshots, 0)?,
            );
        }
        let meta = StateMeta {
            step: self.step,
            condition_value: self.condition_value.clone(),
            accepted: self.accepted.clone(),
            divergences: self.divergences.clone(),
            tree_depth: self.tree_depth.clone(),
            leaves: self.leaves.clone(),
            grad_evals: self.grad_evals,
            accept_sum: self.accept_sum,
            wall_s: self.wall_s,
            rngs: self.rngs.0.clone(),
            adapt: self.adapt.clone(),
            changes: self.changes.clone(),
            learnt: self.learnt.clone(),
        };
        Ok((serde_json::to_value(&meta).expect("serialises"), t))
    }

    /// The state [`ChainsOutput::to_parts`] wrote (`path` names the file
    /// in errors).
    pub fn from_parts(
        path: &Path,
        meta: serde_json::Value,
        t: &HashMap<String, Tensor>,
        prefix: &str,
        decode: &Func,
    ) -> Result<Self> {
        let meta: StateMeta = serde_json::from_value(meta)
            .map_err(|e| Error::data(path, format!("unreadable checkpoint: {e}")))?;
        let codes = t
            .get(&format!("{prefix}codes"))
            .ok_or_else(|| Error::data(path, "checkpoint lacks its codes"))?
            .clone();
        let snapshots = match t.get(&format!("{prefix}snapshots")) {
            Some(s) => (0..s.dim(0)?)
                .map(|i| s.get(i))
                .collect::<candle_core::Result<_>>()?,
            None => Vec::new(),
        };
        Ok(Self {
            step: meta.step,
            images: decode(&codes)?,
            codes,
            condition_value: meta.condition_value,
            snapshots,
            accepted: meta.accepted,
            // checkpoints of earlier versions (no NUTS) have none
            tree_depth: or_zeros(meta.tree_depth, meta.divergences.len()),
            leaves: or_zeros(meta.leaves, meta.divergences.len()),
            divergences: meta.divergences,
            grad_evals: meta.grad_evals,
            accept_sum: meta.accept_sum,
            wall_s: meta.wall_s,
            rngs: ChainRngs(meta.rngs),
            adapt: meta.adapt,
            changes: meta.changes,
            learnt: meta.learnt,
        })
    }
}

impl ChainsOutput {
    /// A fresh run of the chains from `h0`.
    pub fn start(cfg: &SamplerConfig, h0: &Tensor, streams: Streams) -> Result<Self> {
        let n = h0.dim(0)?;
        Ok(ChainsOutput {
            step: 0,
            codes: h0.clone(),
            images: h0.clone(),
            condition_value: Vec::new(),
            snapshots: Vec::new(),
            accepted: vec![0; n],
            divergences: vec![0; n],
            tree_depth: vec![0; n],
            leaves: vec![0; n],
            grad_evals: 1 + cfg.start_evals(),
            accept_sum: 0.0,
            wall_s: 0.0,
            rngs: ChainRngs::from_chain(streams.seed, streams.first, n),
            adapt: cfg
                .adapt
                .map(|delta| DualAveraging::new(cfg.step.at(0), delta)),
            changes: Vec::new(),
            learnt: None,
        })
    }

    /// Records the condition measurement and a snapshot of codes `h`
    /// (one pass of the decoder serves both); returns the chains' mean.
    pub fn record(&mut self, pipeline: &Pipeline, h: &Tensor) -> Result<f64> {
        let x = (pipeline.decode)(h)?;
        let p = (pipeline.measure)(&x)?;
        let m = p.iter().sum::<f64>() / h.dim(0)? as f64;
        self.condition_value.push(p);
        self.snapshots.push(x);
        Ok(m)
    }

    /// Counts step `step`'s acceptances, divergences and gradients.
    pub fn count(&mut self, step: usize, info: &Info) {
        let n = self.accepted.len();
        self.step = step;
        self.grad_evals += info.grad_evals;
        for i in 0..n {
            self.accepted[i] += info.accepted[i] as usize;
            self.divergences[i] += info.divergent[i] as usize;
            self.tree_depth[i] += info.tree_depth.get(i).copied().unwrap_or(0);
            self.leaves[i] += info.leaves.get(i).copied().unwrap_or(0);
        }
        self.accept_sum += info.accept_prob.iter().sum::<f64>() / n as f64;
    }
}

/// `v`, or `n` zeros when it is empty (a count an older checkpoint lacks).
fn or_zeros(v: Vec<usize>, n: usize) -> Vec<usize> {
    match v.is_empty() {
        true => vec![0; n],
        false => v,
    }
}

/// How a run ended.
pub enum Outcome {
    Finished(ChainsOutput),
    /// Stopped by the `stop` flag after this many steps; `checkpoint` was called.
    Interrupted(ChainsOutput),
}
