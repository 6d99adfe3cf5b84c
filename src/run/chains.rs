//! Drives a batch of chains on any [`Pipeline`] (the Fashion-MNIST stack's
//! or a pretrained pair's): builds the kernel from a [`SamplerConfig`],
//! steps the chains, and records the condition measurement and image
//! snapshots along the way; builds the Fashion-MNIST target
//! (`eps1 * prior + eps2 * condition`) from a [`Condition`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::preset::{Engine, SamplerConfig};
use super::steer::Change;
use crate::density::Sum;
use crate::error::{Error, Result};
use crate::nn::Func;
use crate::sampler::adapt::DualAveraging;
use crate::sampler::{advance, init, ChainRngs, Info, Kernel};

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

/// Random starting positions for a prior's chains: `random_codes`, or
/// for the flow prior (whose chains move its base point) draws of its
/// base distribution `N(0, I)`, whose images `T(z)` are the prior's own
/// samples.
pub fn random_starts(
    prior: super::preset::PriorKind,
    n: usize,
    h_dim: usize,
    seed: u64,
) -> Result<Tensor> {
    random_starts_of(prior, Streams { seed, first: 0 }, n, h_dim)
}

/// [`random_starts`] of chains `first..first + n` of a larger run.
pub fn random_starts_of(
    prior: super::preset::PriorKind,
    streams: Streams,
    n: usize,
    h_dim: usize,
) -> Result<Tensor> {
    let Streams { seed, first } = streams;
    match prior {
        super::preset::PriorKind::Flow => {
            let z = Tensor::zeros((n, h_dim), candle_core::DType::F32, &Device::Cpu)?;
            Ok(ChainRngs::from_chain(seed ^ 0x5eed, first, n).normal_like(&z)?)
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
    /// Codes `[n, h_dim]` and images `[n, 28, 28, 1]` after the last step.
    pub codes: Tensor,
    pub images: Tensor,
    /// `p(y | x)` per chain at every recorded step (`record_every`).
    pub probability: Vec<Vec<f64>>,
    /// Images of every chain every `record_every` steps, `[n, 28, 28, 1]` each.
    pub snapshots: Vec<Tensor>,
    pub accepted: Vec<usize>,
    pub divergences: Vec<usize>,
    pub grad_evals: usize,
    /// Sum over steps of the mean acceptance probability.
    pub accept_sum: f64,
    pub wall_s: f64,
    pub rngs: ChainRngs,
    /// Step-size adaptation state, when adapting.
    pub adapt: Option<DualAveraging>,
    /// Changes of the settings made during the run (`super::steer`).
    pub changes: Vec<Change>,
}

#[derive(Serialize, Deserialize)]
struct StateMeta {
    step: usize,
    probability: Vec<Vec<f64>>,
    accepted: Vec<usize>,
    divergences: Vec<usize>,
    grad_evals: usize,
    accept_sum: f64,
    wall_s: f64,
    rngs: Vec<rand_chacha::ChaCha8Rng>,
    adapt: Option<DualAveraging>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    changes: Vec<Change>,
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
            probability: self.probability.clone(),
            accepted: self.accepted.clone(),
            divergences: self.divergences.clone(),
            grad_evals: self.grad_evals,
            accept_sum: self.accept_sum,
            wall_s: self.wall_s,
            rngs: self.rngs.0.clone(),
            adapt: self.adapt.clone(),
            changes: self.changes.clone(),
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
            probability: meta.probability,
            snapshots,
            accepted: meta.accepted,
            divergences: meta.divergences,
            grad_evals: meta.grad_evals,
            accept_sum: meta.accept_sum,
            wall_s: meta.wall_s,
            rngs: ChainRngs(meta.rngs),
            adapt: meta.adapt,
            changes: meta.changes,
        })
    }
}

impl ChainsOutput {
    /// A fresh run of the chains from `h0`.
    fn start(cfg: &SamplerConfig, h0: &Tensor, streams: Streams) -> Result<Self> {
        let n = h0.dim(0)?;
        Ok(ChainsOutput {
            step: 0,
            codes: h0.clone(),
            images: h0.clone(),
            probability: Vec::new(),
            snapshots: Vec::new(),
            accepted: vec![0; n],
            divergences: vec![0; n],
            grad_evals: 1,
            accept_sum: 0.0,
            wall_s: 0.0,
            rngs: ChainRngs::from_chain(streams.seed, streams.first, n),
            adapt: cfg
                .adapt
                .map(|delta| DualAveraging::new(cfg.step.at(0), delta)),
            changes: Vec::new(),
        })
    }

    /// Records the condition measurement and a snapshot of codes `h`
    /// (one pass of the decoder serves both); returns the chains' mean.
    fn record(&mut self, pipeline: &Pipeline, h: &Tensor) -> Result<f64> {
        let x = (pipeline.decode)(h)?;
        let p = (pipeline.measure)(&x)?;
        let m = p.iter().sum::<f64>() / h.dim(0)? as f64;
        self.probability.push(p);
        self.snapshots.push(x);
        Ok(m)
    }

    /// Counts step `step`'s acceptances, divergences and gradients.
    fn count(&mut self, step: usize, info: &Info) {
        let n = self.accepted.len();
        self.step = step;
        self.grad_evals += info.grad_evals;
        for i in 0..n {
            self.accepted[i] += info.accepted[i] as usize;
            self.divergences[i] += info.divergent[i] as usize;
        }
        self.accept_sum += info.accept_prob.iter().sum::<f64>() / n as f64;
    }
}

/// How a run ended.
pub enum Outcome {
    Finished(ChainsOutput),
    /// Stopped by the `stop` flag after this many steps; `checkpoint` was called.
    Interrupted(ChainsOutput),
}

/// What [`run_chains`] reports after every step.
pub struct Record<'a> {
    /// Steps done.
    pub step: usize,
    /// Whether this step was recorded (its snapshot and condition values
    /// are the last in `out`); `mean` is NaN otherwise.
    pub recorded: bool,
    /// The chains' mean condition value and mean acceptance so far.
    pub mean: f64,
    pub accept: f64,
    /// The step size in force.
    pub step_size: f64,
    /// The settings in force, with every change so far.
    pub settings: &'a SamplerConfig,
    /// The chains: the last snapshot and condition values are this step's.
    pub out: &'a ChainsOutput,
}

/// The settings of a run as it goes: the schedule of changes (the
/// settings' own and those made during the run), the kernel and the target
/// they give (`super::steer`).
struct Steered<'p> {
    all: SamplerConfig,
    pipeline: &'p Pipeline,
    kernel: Box<dyn Kernel>,
    /// The target rebuilt for changed weights.
    target: Option<Sum>,
    warmup: usize,
}

impl<'p> Steered<'p> {
    /// The settings in force at `out.step` of a fresh or resumed run.
    fn new(pipeline: &'p Pipeline, cfg: &SamplerConfig, out: &ChainsOutput) -> Result<Self> {
        let mut s = Steered {
            all: cfg.with_changes(&out.changes),
            pipeline,
            kernel: cfg.kernel()?,
            target: None,
            warmup: cfg.steps / 2,
        };
        s.kernel.check(&pipeline.target)?;
        let reweighted = s
            .all
            .changes
            .iter()
            .any(|c| c.at <= out.step && c.reweights());
        if reweighted || !s.all.changes.is_empty() {
            s.rebuild(out, reweighted)?;
        } else {
            s.adapted(out);
        }
        Ok(s)
    }

    fn target(&self) -> &Sum {
        self.target.as_ref().unwrap_or(&self.pipeline.target)
    }

    /// The step size from the adaptation state at `out.step`, when adapting.
    fn adapted(&mut self, out: &ChainsOutput) {
        if let Some(da) = out.adapt.as_ref().filter(|_| out.step > 0) {
            self.kernel.set_step_size(match out.step >= self.warmup {
                true => da.final_step(),
                false => da.current_step(),
            });
        }
    }

    /// The kernel (and, when `retarget`, the target) of the settings in
    /// force at `out.step`.
    fn rebuild(&mut self, out: &ChainsOutput, retarget: bool) -> Result<()> {
        let now = self.all.at_step(out.step);
        self.kernel = now.kernel()?;
        if retarget {
            let build = self.pipeline.retarget.as_ref().ok_or_else(|| {
                Error::unsupported(
                    "changing eps1 or eps2 during a run of these networks",
                    "change eps3 or the step, or start a new run with the new weights",
                )
            })?;
            self.target = Some(build(&now)?);
        }
        self.kernel.check(self.target())?;
        self.adapted(out);
        Ok(())
    }

    /// Applies the changes that take effect at `out.step`; whether the
    /// target changed (its value and gradient must be recomputed).
    fn at(&mut self, out: &ChainsOutput) -> Result<bool> {
        let changes: Vec<&Change> = self.all.changes_at(out.step).collect();
        if changes.is_empty() {
            return Ok(false);
        }
        let retarget = changes.iter().any(|c| c.reweights());
        self.rebuild(out, retarget)?;
        Ok(retarget)
    }

    /// Adds changes made at the record of `out.step` (after the settings'
    /// own changes of the same step).
    fn add(&mut self, out: &mut ChainsOutput, made: Vec<Change>) -> Result<()> {
        for mut c in made.into_iter().filter(|c| !c.is_empty()) {
            c.at = out.step;
            c.validate()?;
            self.all = self.all.with_changes(std::slice::from_ref(&c));
            out.changes.push(c);
        }
        Ok(())
    }

    /// The step size the kernel uses at step `t`.
    fn step_size(&self, out: &ChainsOutput, t: usize) -> f64 {
        match &out.adapt {
            Some(da) if t >= self.warmup => da.final_step(),
            Some(da) => da.current_step(),
            None => self.all.at_step(t).step.at(t),
        }
    }
}

/// Runs the chains from `h0` (or from `resume`) to `cfg.steps` (or the
/// first stop of its changes), recording every `record_every` steps,
/// calling `progress` after every step and `checkpoint(output)` at the
/// first record, then at most every [`CHECKPOINT_SECONDS`]; `progress` may return changes of the
/// settings, which take effect from that step on and are kept in the
/// output. When `stop` becomes true it checkpoints and returns
/// [`Outcome::Interrupted`]; resuming from that checkpoint gives the same
/// bits as an uninterrupted run (the state is the position, the chains'
/// random streams and the changes made; the target is re-evaluated exactly).
#[allow(clippy::too_many_arguments)]
pub fn run_chains(
    pipeline: &Pipeline,
    cfg: &SamplerConfig,
    h0: &Tensor,
    streams: impl Into<Streams>,
    record_every: usize,
    resume: Option<ChainsOutput>,
    stop: &AtomicBool,
    mut progress: impl FnMut(&Record) -> Vec<Change>,
    mut checkpoint: impl FnMut(&ChainsOutput) -> Result<()>,
) -> Result<Outcome> {
    let started = Instant::now();
    let record = |out: &mut ChainsOutput, h: &Tensor| out.record(pipeline, h);
    let mut out = match resume {
        Some(r) => r,
        None => {
            let mut out = ChainsOutput::start(cfg, h0, streams.into())?;
            record(&mut out, h0)?;
            out
        }
    };
    let base_wall = out.wall_s;
    let mut steered = Steered::new(pipeline, cfg, &out)?;
    let mut state = init(&out.codes, steered.target())?;
    let first = out.step;
    let mut saved: Option<Instant> = None;
    for t in out.step..cfg.steps {
        if t >= steered.all.last_step() {
            break;
        }
        if t > first && steered.at(&out)? {
            state = init(&state.position, steered.target())?;
        }
        let target = steered.target.as_ref().unwrap_or(&pipeline.target);
        let (next, info) = advance(
            steered.kernel.as_mut(),
            &mut out.rngs,
            &state,
            target,
            t,
            steered.warmup,
            out.adapt.as_mut(),
        )?;
        state = next;
        out.count(t + 1, &info);
        // a record, then the front end (at every step: it may pause, stop
        // or change the settings at any step)
        let due = out.step % record_every.max(1) == 0 || out.step == steered.all.last_step();
        let mean = match due {
            true => record(&mut out, &state.position)?,
            false => f64::NAN,
        };
        let made = progress(&Record {
            step: out.step,
            recorded: due,
            mean,
            accept: out.accept_sum / out.step as f64,
            step_size: steered.step_size(&out, out.step),
            settings: &steered.all,
            out: &out,
        });
        let changed = !made.is_empty();
        steered.add(&mut out, made)?;
        let end = steered.all.last_step();
        if !due && out.step == end {
            // a stop made here: the record a stop always has
            record(&mut out, &state.position)?;
        }
        let interrupted = stop.load(Ordering::SeqCst) && out.step < end;
        if due || changed || interrupted {
            out.codes = state.position.clone();
            out.wall_s = base_wall + started.elapsed().as_secs_f64();
            let stale = saved.is_none_or(|s| s.elapsed().as_secs_f64() >= CHECKPOINT_SECONDS);
            if out.step < end && (stale || changed || interrupted) {
                checkpoint(&out)?;
                saved = Some(Instant::now());
            }
            if interrupted {
                out.images = (pipeline.decode)(&state.position)?;
                return Ok(Outcome::Interrupted(out));
            }
        }
    }
    out.images = (pipeline.decode)(&state.position)?;
    out.codes = state.position;
    out.wall_s = base_wall + started.elapsed().as_secs_f64();
    Ok(Outcome::Finished(out))
}
