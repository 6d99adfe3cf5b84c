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
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use clap::Args;

use ppgn::density::condition::ClassCondition;
use ppgn::density::engine::EngineCondition;
use ppgn::density::{Sum, Term};
use ppgn::models::efficientnet_lite::{self, EfficientNetLite0};
use ppgn::models::fashion::{self as stack, Stack};
use ppgn::models::pretrained;
use ppgn::nn::fast::build;
use ppgn::nn::identity;
use ppgn::run::chains::{kernel, random_codes, Condition, Pipeline};
use ppgn::run::preset::Engine;
use ppgn::run::preset::{preset, SamplerConfig};
use ppgn::run::pretrained::PlugPair;
use ppgn::sampler::{init, ChainRngs};
use std::sync::Arc;

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
    /// Workloads to run, comma-separated: w1, w2, w3.
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
}

/// One measured row.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Timing {
    pub workload: String,
    pub chains: usize,
    pub ms_per_step: f64,
    pub peak_mb: f64,
    /// The peer's PyTorch version (absent for ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch: Option<String>,
}

/// Resets the resident-memory high-water mark (Linux; ignored elsewhere).
/// The resident-memory high-water mark in MB (0 where unknown).
fn peak_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Times the kernel of `cfg` on `pipeline` from `start`.
fn time_steps(
    name: &str,
    pipeline: &Pipeline,
    cfg: &SamplerConfig,
    start: &Tensor,
    a: &BenchArgs,
) -> anyhow::Result<Timing> {
    let n = start.dim(0)?;
    let k = kernel(cfg)?;
    let mut rngs = ChainRngs::new(7, n);
    let mut state = init(start, &pipeline.target)?;
    for t in 0..a.warmup {
        state = k.step(&mut rngs, &state, &pipeline.target, t)?.0;
    }
    let t0 = Instant::now();
    let mut steps = 0;
    while steps < 3 || t0.elapsed().as_secs_f64() < a.seconds {
        state = k
            .step(&mut rngs, &state, &pipeline.target, a.warmup + steps)?
            .0;
        steps += 1;
    }
    let ms = t0.elapsed().as_secs_f64() * 1000.0 / steps as f64;
    let row = Timing {
        workload: name.into(),
        chains: n,
        ms_per_step: ms,
        peak_mb: peak_mb(),
        torch: None,
    };
    eprintln!(
        "ours  {:<3} {:>4} chains: {:>9.1} ms/step, {:>8.2} steps/s per chain, peak {:>6.0} MB",
        row.workload,
        n,
        ms,
        1000.0 / ms * n as f64,
        row.peak_mb
    );
    Ok(row)
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    for w in &a.workloads {
        if !["w1", "w2", "w3"].contains(&w.as_str()) {
            bail!("--workloads: unknown workload {w:?}; expected w1, w2, w3");
        }
    }
    for (flag, chains) in [("--w1-chains", &a.w1_chains), ("--w2-chains", &a.w2_chains)] {
        if chains.is_empty() || chains.contains(&0) {
            bail!("{flag}: expected positive chain counts, e.g. 1,8,64,256");
        }
    }
    if !(a.seconds.is_finite() && a.seconds > 0.0) {
        bail!("--seconds must be positive, got {}", a.seconds);
    }
    if let Some(one) = &a.one {
        let (w, n) = one
            .split_once(':')
            .and_then(|(w, n)| Some((w.to_string(), n.parse::<usize>().ok()?)))
            .context("--one WORKLOAD:CHAINS")?;
        println!("{}", serde_json::to_string(&measure(&a, &w, n)?)?);
        return Ok(());
    }
    let threads = candle_core::utils::get_num_threads();
    if a.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let exe = std::env::current_exe().context("locating the ppgn binary")?;
    let python = a
        .python
        .clone()
        .or_else(|| std::env::var("PPGN_PYTHON").ok())
        .unwrap_or_else(|| "python3".into());
    // Each (workload, chains) runs `rounds` times, ours then the peer's,
    // so both see the same state of the machine; the medians are reported.
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for w in &a.workloads {
        let chains = if w == "w1" {
            a.w1_chains.clone()
        } else {
            a.w2_chains.clone()
        };
        for n in chains {
            let (mut mine, mut theirs) = (Vec::new(), Vec::new());
            for _ in 0..a.rounds {
                mine.push(child_ours(&a, &exe, w, n)?);
                if a.compare {
                    theirs.push(child_peer(&a, &python, threads, w, n)?);
                }
            }
            ours.push(median(mine));
            if a.compare {
                peer.push(median(theirs));
            }
        }
    }
    let peer = a.compare.then_some(peer);
    let table = markdown(&ours, peer.as_deref(), threads, a.rounds);
    println!("{table}");
    if let Some(p) = &a.markdown {
        ppgn::fsutil::write_atomic(p, table.as_bytes())?;
    }
    Ok(())
}

/// One workload at `n` chains, in this process.
fn measure(a: &BenchArgs, w: &str, n: usize) -> anyhow::Result<Timing> {
    let dev = Device::Cpu;
    match w {
        "w1" => {
            let dir = stack::resolve_dir(a.models.as_deref());
            let s = Stack::load(&dir, DType::F32, &dev)?;
            let cfg = SamplerConfig {
                engine: a.engine,
                ..preset("ppgn")?
            };
            let condition = Condition::Classes((0..n).map(|i| i % 10).collect());
            let pipeline = Pipeline::fashion(&s, &cfg, &condition)?;
            let h0 = random_codes(n, s.classifier.cfg.h_dim, 1)?;
            time_steps("w1", &pipeline, &cfg, &h0, a)
        }
        "w2" => {
            let pair = PlugPair::faces_imagenet(&pretrained::home())?;
            let cfg = SamplerConfig {
                engine: a.engine,
                ..preset("faces")?
            };
            let pipeline = pair.pipeline(&vec![837; n], &cfg)?;
            time_steps("w2", &pipeline, &cfg, &pair.initial_codes(n, 1)?, a)
        }
        "w3" => {
            let net = pretrained::efficientnet_lite0(&pretrained::home(), DType::F32)?;
            let cfg = SamplerConfig {
                clip: Some((0.0, 1.0)),
                step: ppgn::sampler::schedule::Schedule::Constant { value: 0.005 },
                engine: a.engine,
                ..preset("faces")?
            };
            let side = efficientnet_lite::IMAGE_SIZE;
            let condition: Box<dyn Term> = match cfg.engine {
                Engine::Fast => {
                    let compiled =
                        build::net((side, side, 3), vec![EfficientNetLite0::normalise_op()])?
                            .then(net.compile(side)?)
                            .map_err(anyhow::Error::msg)?;
                    Box::new(EngineCondition::class(
                        Arc::new(compiled),
                        vec![980; n],
                        cfg.gradient,
                        1.0,
                        None,
                    )?)
                }
                Engine::Reference => Box::new(ClassCondition {
                    decode: identity(),
                    logits: Arc::new(move |x: &Tensor| {
                        net.forward(&EfficientNetLite0::normalise(x)?)
                    }),
                    classes: vec![980; n],
                    num_classes: efficientnet_lite::NUM_CLASSES,
                    gradient: cfg.gradient,
                }),
            };
            let pipeline = Pipeline {
                target: Sum::new(vec![(1.0, condition)]),
                decode: identity(),
                measure: Box::new(|_| Ok(Vec::new())),
            };
            let x0 = (Tensor::ones((n, side, side, 3), DType::F32, &dev)? * 0.5)?;
            time_steps("w3", &pipeline, &cfg, &x0, a)
        }
        other => bail!("unknown workload {other:?}"),
    }
}

/// The row with the median time of `rows` (peak memory: the largest).
fn median(mut rows: Vec<Timing>) -> Timing {
    rows.sort_by(|x, y| x.ms_per_step.total_cmp(&y.ms_per_step));
    let peak = rows.iter().map(|r| r.peak_mb).fold(0.0, f64::max);
    let mut m = rows.swap_remove(rows.len() / 2);
    m.peak_mb = peak;
    m
}

/// One measurement of ours in a child process.
fn child_ours(a: &BenchArgs, exe: &std::path::Path, w: &str, n: usize) -> anyhow::Result<Timing> {
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["bench", "--one", &format!("{w}:{n}")])
        .args(["--seconds", &a.seconds.to_string()])
        .args(["--warmup", &a.warmup.to_string()])
        .args([
            "--engine",
            if a.engine == Engine::Fast {
                "fast"
            } else {
                "reference"
            },
        ]);
    if let Some(m) = &a.models {
        cmd.arg("--models").arg(m);
    }
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running a benchmark child")?;
    if !out.status.success() {
        bail!("benchmark {w} at {n} chains failed (see above)");
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("benchmark {w} at {n} chains printed no timing"))
}

/// One measurement of the PyTorch peer (bench/peer.py `--one`).
fn child_peer(
    a: &BenchArgs,
    py: &str,
    threads: usize,
    w: &str,
    n: usize,
) -> anyhow::Result<Timing> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/peer.py");
    let out = std::process::Command::new(py)
        .arg(&script)
        .args(["--one", &format!("{w}:{n}")])
        .args(["--threads", &threads.to_string()])
        .args(["--seconds", &a.seconds.to_string()])
        .args(["--warmup", &a.warmup.to_string()])
        .arg("--models")
        .arg(stack::resolve_dir(a.models.as_deref()))
        .arg("--home")
        .arg(pretrained::home())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running the PyTorch peer with {py}"))?;
    if !out.status.success() {
        bail!(
            "the PyTorch peer failed (see above); it needs torch and numpy for {py} (bench/README.md)"
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with('{'))
        .context("the PyTorch peer printed no timing")
        .and_then(|l| serde_json::from_str(l).with_context(|| format!("peer output {l:?}")))
}

fn markdown(ours: &[Timing], peer: Option<&[Timing]>, threads: usize, rounds: usize) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mut t = format!(
        "# Sampler-step timings\n\nWritten by `{}`. Machine: {cpu}, {threads} threads (ours and PyTorch's `torch.set_num_threads`){}. Each time is the median of {} measurements (with the peer: ours and its alternating); peak memory is the largest. Times vary from run to run; compare ratios from one sitting.\n\n",
        super::command_line(),
        peer.and_then(|p| p.first())
            .and_then(|r| r.torch.as_ref())
            .map(|v| format!("; the peer ran PyTorch {v}"))
            .unwrap_or_default(),
        rounds
    );
    if peer.is_some() {
        t += "| workload | chains | ours ms/step | PyTorch ms/step | ours / PyTorch | ours steps/s per chain | ours peak MB | PyTorch peak MB |\n|---|---|---|---|---|---|---|---|\n";
    } else {
        t += "| workload | chains | ms/step | steps/s per chain | peak MB |\n|---|---|---|---|---|\n";
    }
    for r in ours {
        let per_chain = 1000.0 / r.ms_per_step * r.chains as f64;
        match peer {
            Some(p) => {
                let q = p
                    .iter()
                    .find(|q| q.workload == r.workload && q.chains == r.chains);
                let (pm, ratio, pp) = match q {
                    Some(q) => (
                        format!("{:.1}", q.ms_per_step),
                        format!("{:.2}", r.ms_per_step / q.ms_per_step),
                        format!("{:.0}", q.peak_mb),
                    ),
                    None => ("-".into(), "-".into(), "-".into()),
                };
                t += &format!(
                    "| {} | {} | {:.1} | {pm} | {ratio} | {per_chain:.2} | {:.0} | {pp} |\n",
                    r.workload, r.chains, r.ms_per_step, r.peak_mb
                );
            }
            None => {
                t += &format!(
                    "| {} | {} | {:.1} | {per_chain:.2} | {:.0} |\n",
                    r.workload, r.chains, r.ms_per_step, r.peak_mb
                )
            }
        }
    }
    t
}
