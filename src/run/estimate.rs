//! What a sampling request will cost before any of it runs: memory, disk
//! and time. `ppgn sample --dry-run` prints it; `ppgn sample` refuses a
//! request whose memory the machine does not have, with the estimate,
//! instead of being killed by the kernel part-way.
//!
//! Memory: per chain, the engine's values and gradients of every slot of
//! the target's network, the chain's state (position, gradient, proposal
//! and their copies), every recorded snapshot (`steps / record_every + 1`
//! images) and the final images; plus the loaded networks. Disk:
//! `samples.npy` and `labels.npy`, and at most one byte per pixel for each
//! image drawn into the grids and the GIF. Time: one timed gradient
//! evaluation of a few chains, scaled to all chains and steps (an upper
//! bound: larger batches use the cores better).

use std::time::Instant;

use candle_core::{DType, Device};

use super::chains::{random_starts, Pipeline};
use super::fashion::Condition;
use super::preset::PriorKind;
use super::spec::{Networks, Request, SampleSpec};
use crate::density::Term;
use crate::error::{Error, Result};
use crate::models::fashion::{self as stack, Stack};
use crate::nn::fast::Op;

/// The estimated cost of a request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Estimate {
    pub chains: usize,
    pub steps: usize,
    pub memory_bytes: f64,
    pub disk_bytes: f64,
    /// When asked for (a timed probe): seconds on this machine.
    pub seconds: Option<f64>,
    /// What `/proc/meminfo` says is available, when it can be read.
    pub available_bytes: Option<f64>,
}

/// Bytes the process holds besides the chains (networks, buffers).
const BASE_BYTES: f64 = 150e6;

/// The share of the available memory a run may plan to use.
const HEADROOM: f64 = 0.8;

fn gb(b: f64) -> String {
    format!("{:.2} GB", b / 1e9)
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let avail = self
            .available_bytes
            .map_or("unknown".into(), |a| format!("{} available", gb(a)));
        write!(
            f,
            "{} chains x {} steps: about {} of memory ({avail}), {} of disk",
            self.chains,
            self.steps,
            gb(self.memory_bytes),
            gb(self.disk_bytes),
        )?;
        match self.seconds {
            Some(t) => write!(f, ", {t:.0} s on this machine (an upper bound)"),
            None => Ok(()),
        }
    }
}

impl Estimate {
    /// An error naming the estimate when the request does not fit in memory.
    pub fn check(&self) -> Result<()> {
        match self.available_bytes {
            Some(a) if self.memory_bytes > HEADROOM * a => {
                let per = (self.memory_bytes - BASE_BYTES).max(1.0) / self.chains as f64;
                let fit = ((HEADROOM * a - BASE_BYTES) / per).max(0.0) as usize;
                Err(Error::setting(
                    "the number of chains",
                    self.chains,
                    format!(
                        "at most about {fit} chains at these settings ({self}); use fewer chains or a larger --record-every"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn available_memory() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// The number of chains `spec` asks for, without building them.
pub fn chain_count(spec: &SampleSpec) -> Result<usize> {
    let groups = match &spec.request {
        Request::Neuron { .. } => 1,
        Request::Classes(names) if names.len() == 1 && names[0] == "all" => {
            crate::data::fashion_mnist::CLASS_NAMES.len()
        }
        Request::Classes(names) => names.len(),
    };
    groups.checked_mul(spec.chains).ok_or_else(|| {
        Error::setting(
            "chains",
            spec.chains,
            "a number of chains this machine can count",
        )
    })
}

/// The estimate for a request on the Fashion-MNIST stack `s`; with
/// `timed`, a probe measures the time too (what `--dry-run` prints; a run
/// only needs the memory).
pub fn fashion(spec: &SampleSpec, s: &Stack, timed: bool) -> Result<Estimate> {
    let n = chain_count(spec)?;
    let cfg = &spec.settings;
    let clf = s.classifier.compile::<f32>()?;
    // what one gradient evaluation runs: from the chain's position to the logits
    let net = match cfg.prior {
        PriorKind::XDae => clf,
        PriorKind::Flow => s
            .transport()?
            .then(s.generator.compile::<f32>()?)?
            .then(clf)?,
        _ => s.generator.compile::<f32>()?.then(clf)?,
    };
    let size = |(h, w, c): (usize, usize, usize)| (h * w * c) as f64;
    let activations: f64 = (0..=net.len()).map(|i| size(net.shape(i))).sum();
    // the convolutions' patch matrices (im2col; one per convolution: with
    // it the estimate was 10-15% above the peak resident memory
    // measured at 500 and 1,000 chains, `/usr/bin/time -f %M`)
    let patches: f64 = net
        .ops()
        .iter()
        .map(|op| match op {
            Op::Conv { window: w, .. } | Op::ConvTranspose { window: w, .. } if w.kh * w.kw > 1 => {
                (w.ho * w.wo * w.kh * w.kw * w.c) as f64
            }
            _ => 0.0,
        })
        .sum();
    let code = size(net.input());
    let image = 28.0 * 28.0;
    let records = (cfg.steps / spec.record_every + 1) as f64;
    let per_chain = 4.0 * (2.0 * activations + patches + 8.0 * code + (records + 3.0) * image);
    let nf = n as f64;
    Ok(Estimate {
        chains: n,
        steps: cfg.steps,
        memory_bytes: BASE_BYTES + nf * per_chain,
        disk_bytes: nf * (4.0 * image + 8.0) + nf * image * (2.0 + 2.0 * records),
        seconds: match timed {
            true => Some(probe(spec, s)? * nf * (cfg.steps * cfg.grads_per_step()) as f64),
            false => None,
        },
        available_bytes: available_memory(),
    })
}

/// Seconds of one gradient evaluation per chain, timed on a few chains.
fn probe(spec: &SampleSpec, s: &Stack) -> Result<f64> {
    let cfg = &spec.settings;
    let k = chain_count(spec)?.clamp(1, 4);
    let probe = Pipeline::fashion(s, cfg, &probe_condition(spec, k))?;
    let h0 = match cfg.prior {
        PriorKind::XDae => candle_core::Tensor::full(0.5f32, (k, 28, 28, 1), &Device::Cpu)?,
        prior => random_starts(prior, k, s.classifier.cfg.h_dim, spec.seed)?,
    };
    probe.target.value_and_grad(&h0)?;
    let t0 = Instant::now();
    probe.target.value_and_grad(&h0)?;
    Ok(t0.elapsed().as_secs_f64() / k as f64)
}

/// The condition of `k` chains like the request's (for the timing probe).
fn probe_condition(spec: &SampleSpec, k: usize) -> Condition {
    match &spec.request {
        Request::Neuron { layer, neuron } => Condition::Neuron {
            layer: layer.clone(),
            neuron: *neuron,
        },
        Request::Classes(_) => Condition::Classes(vec![0; k]),
    }
}

/// The estimate for `spec`, loading what it needs (the Fashion stack;
/// other networks are not estimated yet: `None`).
pub fn sample_cost(spec: &SampleSpec) -> Result<Option<Estimate>> {
    spec.validate()?;
    match &spec.networks {
        Networks::Fashion { models } => {
            let dir = stack::resolve_dir(models.as_deref());
            let s = Stack::load(&dir, DType::F32, &Device::Cpu)?;
            fashion(spec, &s, true).map(Some)
        }
        _ => Ok(None),
    }
}
