//! `ppgn bench`: times one sampler step (forward through the networks,
//! backward to the position, the update) on fixed workloads, and with
//! `--compare` runs the PyTorch peer (bench/peer.py) in the same sitting
//! and prints the ratio ours / PyTorch per workload.
//!
//! - W1: the shipped Fashion-MNIST PPGN step (`ppgn` preset: G, the joint
//!   prior E(G(h)) - h, C, backward), at 1, 8, 64 and 256 chains;
//! - W2: DCGAN faces + EfficientNet-Lite0 (resize 64 -> 224), `faces`
//!   preset, at 1 and 8 chains;
//! - W3: EfficientNet-Lite0 on 224x224 pixels, class gradient, at 1 and 8.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use ppgn::run::bench::{check_request, markdown, Budget, Sitting};
use ppgn::run::config::preset::Engine;

#[derive(Args, Debug)]
#[command(
    after_help = "Each measurement runs in a child process: --warmup untimed steps, then \
steps until --seconds have passed (at least 3); each workload is measured --rounds times \
(with --compare, ours and the peer's alternating) and the median is reported. Peak memory is that process's resident \
high-water mark (Linux). The W2/W3 workloads need `ppgn models fetch`. With --compare, the PyTorch \
peer (bench/peer.py; see bench/README.md for its Python environment) runs the same workloads \
with the same weights and thread count."
)]
pub struct BenchArgs {
    /// Workloads to run, comma-separated: w1, w2, w3, w2-onnx (W2 from ONNX
    /// exports of the same networks, made on first use when Python has torch).
    #[arg(long, default_value = "w1,w2,w3", value_delimiter = ',')]
    pub workloads: Vec<String>,
    /// Chain counts for W1.
    #[arg(long, default_value = "1,8,64,256", value_delimiter = ',')]
    pub w1_chains: Vec<usize>,
    /// Chain counts (batch sizes) for W2 and W3.
    #[arg(long, default_value = "1,8", value_delimiter = ',')]
    pub w2_chains: Vec<usize>,
    /// Minimum timed seconds per workload and round.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Measurements per workload (ours and the peer's alternating); the
    /// medians are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// After the timed steps, profile this many more (every op of the
    /// engine timed) and print where a step's time goes, by op kind and
    /// pass, beside the time outside the engine.
    #[arg(long, default_value_t = 0, value_name = "STEPS")]
    pub profile: usize,
    /// Also run the PyTorch peer and print ours / PyTorch.
    #[arg(long)]
    pub compare: bool,
    /// Python for the peer [default: $PPGN_PYTHON or python3].
    #[arg(long)]
    pub python: Option<String>,
    /// Also write the table as Markdown (with the machine it ran on).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Model folder [default: $PPGN_MODELS or models/fashion-mnist].
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// What computes the gradients: `fast` (the sampling engine, what
    /// `ppgn sample` uses) or `reference` (candle's autograd).
    #[arg(long, value_parser = super::choice::<Engine>(), default_value = "fast")]
    pub engine: Engine,
    /// Run one workload at one chain count in this process and print its
    /// timing as JSON (each measurement runs in a child process of its own,
    /// so that its peak memory is its own).
    #[arg(long, hide = true)]
    pub one: Option<String>,
    /// In place of the workloads: how live `ppgn serve` is, a run of this many
    /// chains of `ppgn` (200 steps) watched by an event-stream client.
    #[arg(long)]
    pub serve: Option<usize>,
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    if let Some(chains) = a.serve {
        println!(
            "{}",
            ppgn::serve::bench::bench(chains, 200, a.models.clone())?
        );
        return Ok(());
    }
    check_request(
        &a.workloads,
        &[("--w1-chains", &a.w1_chains), ("--w2-chains", &a.w2_chains)],
        a.seconds,
    )?;
    if let Some(one) = &a.one {
        return run_one(&a, one);
    }
    let exe = std::env::current_exe().context("locating the ppgn binary")?;
    let python = ppgn::run::bench::peer_python(a.python.clone());
    let chains = |w: &str| match w {
        "w1" => a.w1_chains.clone(),
        _ => a.w2_chains.clone(),
    };
    let sitting = Sitting {
        exe: &exe,
        workloads: a.workloads.iter().map(|w| (w.clone(), chains(w))).collect(),
        rounds: a.rounds,
        budget: a.budget(),
        engine: a.engine,
        models: a.models.as_deref(),
        peer_python: a.compare.then_some(python),
    };
    let (ours, peer, peak) = sitting.run()?;
    let threads = candle_core::utils::get_num_threads();
    let table = markdown(
        &ours,
        peer.as_deref(),
        Some(&peak),
        (threads, a.rounds),
        &super::command_line(),
    );
    println!("{table}");
    if let Some(p) = &a.markdown {
        ppgn::fsutil::write_atomic(p, table.as_bytes())?;
    }
    Ok(())
}

impl BenchArgs {
    fn budget(&self) -> Budget {
        Budget {
            warmup: self.warmup,
            seconds: self.seconds,
            profiled: self.profile,
        }
    }
}

/// `--one WORKLOAD:CHAINS`: one workload timed in this process, printed
/// as JSON for the parent.
fn run_one(a: &BenchArgs, one: &str) -> anyhow::Result<()> {
    let row = ppgn::run::bench::one(one, a.engine, a.models.as_deref(), a.budget())?;
    eprintln!("{}", row.line());
    println!("{}", serde_json::to_string(&row)?);
    Ok(())
}
