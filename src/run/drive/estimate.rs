//! What a sampling request will cost before any of it runs: memory, disk
//! and time. `ppgn sample --dry-run` prints it; `ppgn sample` refuses a
//! request whose memory the machine does not have, with the estimate,
//! instead of being killed by the kernel part-way.
//!
//! Memory: per chain of a batch (`--batch`; chains run batch after batch),
//! the engine's values and gradients of every slot of the target's
//! network, the chain's state (position, gradient, proposal and their
//! copies), every recorded snapshot (`steps / record_every + 1` images) and
//! the final images; per chain of the run, its recorded condition values
//! and manifest entry; plus the loaded networks. The default batch is the
//! most chains whose share fits in [`BATCH_BYTES`]. Disk:
//! `samples.npy` and `labels.npy`, and at most one byte per pixel for each
//! image drawn into the grids and the GIF. Time: one timed gradient
//! evaluation of a few chains, scaled to all chains and steps (an upper
//! bound: larger batches use the cores better).

use std::time::Instant;

use crate::density::Term;
use crate::error::{Error, Result};
use crate::nn::fast::Op;
use crate::run::config::spec::{Request, SampleSpec};
use crate::run::pairs::pair::{Condition, Pair};

/// The estimated cost of a request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Estimate {
    /// Chains of this run (of its shard, with `--shard`).
    pub chains: usize,
    /// Chains per batch (`--batch`, or the default for this network).
    pub batch: usize,
    pub steps: usize,
    pub memory_bytes: f64,
    pub disk_bytes: f64,
    /// When asked for (a timed probe): seconds on this machine.
    pub seconds: Option<f64>,
    /// What `/proc/meminfo` says is available, when it can be read.
    pub available_bytes: Option<f64>,
    /// Free space where the run folder goes, when it can be asked.
    pub available_disk_bytes: Option<f64>,
}

/// Bytes the process holds besides the chains (networks, buffers).
const BASE_BYTES: f64 = 150e6;

/// What the default batch's chains may take.
pub const BATCH_BYTES: f64 = 200e6;

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
            "{} chains x {} steps in batches of {}: about {} of memory ({avail}), {} of disk",
            self.chains,
            self.steps,
            self.batch,
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
    /// An error naming the estimate when the request does not fit in
    /// memory or on the disk it goes to.
    pub fn check(&self) -> Result<()> {
        match self.available_bytes {
            Some(a) if self.memory_bytes > HEADROOM * a => Err(Error::setting(
                "the memory of the run",
                gb(self.memory_bytes),
                format!(
                    "at most {} ({self}); use a smaller --batch, fewer chains or a larger --record-every",
                    gb(HEADROOM * a)
                ),
            )),
            _ => Ok(()),
        }?;
        if let Some(free) = self.available_disk_bytes {
            if self.disk_bytes > free {
                return Err(Error::setting(
                    "the disk space of the run",
                    gb(self.disk_bytes),
                    format!(
                        "at most the {} free where it goes ({self}); free space, choose another --out or ask fewer chains",
                        gb(free)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn available_memory() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// The estimate for `n` chains of `spec` on `pair`; with `timed`, a probe
/// measures the time too (what `--dry-run` prints; a run only needs the
/// memory).
pub fn of(spec: &SampleSpec, pair: &dyn Pair, n: usize, timed: bool) -> Result<Estimate> {
    let cfg = &spec.settings;
    // what one gradient evaluation runs: from the chain's position to the logits
    let net = pair.cost_net(cfg)?;
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
    let image = size(pair.image());
    let records = (cfg.steps / spec.record_every + 1) as f64;
    let per_chain = 4.0 * (2.0 * activations + patches + 8.0 * code + (records + 3.0) * image);
    let batch = spec
        .batch
        .unwrap_or(((BATCH_BYTES / per_chain) as usize).max(1))
        .clamp(1, n.max(1));
    let plan = super::shard::Plan::new(n, batch, spec.shard)?;
    let n = plan.shard_chains().len();
    let nf = n as f64;
    // per chain of the run: its recorded values and its manifest entry
    // (JSON values of ~64 bytes each); the shown chains' snapshots
    let bookkeeping = nf * 64.0 * (records + 10.0);
    let shown = (16 * 10).min(n) as f64 * 4.0 * image * (records + 1.0);
    Ok(Estimate {
        chains: n,
        batch: plan.batch,
        steps: cfg.steps,
        memory_bytes: BASE_BYTES + batch as f64 * per_chain + bookkeeping + shown,
        disk_bytes: nf * (4.0 * image + 8.0) + nf * image * (2.0 + 2.0 * records),
        seconds: match timed {
            true => {
                let (grad, value) = probe(spec, pair, n)?;
                let steps = (cfg.steps * cfg.grads_per_step()) as f64;
                Some(nf * (steps * grad + cfg.start_evals() as f64 * value))
            }
            false => None,
        },
        available_bytes: available_memory(),
        available_disk_bytes: crate::fsutil::available_space(&spec.out),
    })
}

/// Seconds per chain of one gradient evaluation and of one value alone
/// (what a start candidate costs), timed on a few chains.
fn probe(spec: &SampleSpec, pair: &dyn Pair, n: usize) -> Result<(f64, f64)> {
    let cfg = &spec.settings;
    let k = n.clamp(1, 4);
    let condition = match &spec.request {
        Request::Neuron { layer, neuron } => Condition::Neuron {
            layer: layer.clone(),
            neuron: *neuron,
        },
        Request::Classes(_) => Condition::Classes(vec![0; k]),
    };
    let probe = pair.pipeline(cfg, &condition)?;
    let h0 = pair.random_starts(cfg, spec.seed.into(), k)?;
    probe.target.value_and_grad(&h0)?;
    let t0 = Instant::now();
    probe.target.value_and_grad(&h0)?;
    let grad = t0.elapsed().as_secs_f64() / k as f64;
    let t0 = Instant::now();
    probe.target.value(&h0)?;
    Ok((grad, t0.elapsed().as_secs_f64() / k as f64))
}

/// The estimate for `spec` with a timed probe, loading its networks.
pub fn sample_cost(spec: &SampleSpec) -> Result<Estimate> {
    spec.validate()?;
    let pair = crate::run::pairs::load::pair(&spec.networks, spec.data_dir.as_deref())?;
    let n = match &spec.request {
        Request::Neuron { .. } => spec.chains,
        Request::Classes(names) => {
            let groups = match names.as_slice() {
                [all] if all == "all" => pair.class_names().len(),
                _ => names.len(),
            };
            groups.checked_mul(spec.chains).ok_or_else(|| {
                Error::setting(
                    "chains",
                    spec.chains,
                    "a number of chains this machine can count",
                )
            })?
        }
    };
    of(spec, &*pair, n, true)
}
