//! The benchmark workloads (`ppgn bench`): one sampler step (forward
//! through the networks, backward to the position, the update) on fixed
//! workloads, timed in this process, and the Markdown table of a sitting.
//!
//! - W1: the shipped Fashion-MNIST PPGN step (`ppgn` preset: G, the joint
//!   prior E(G(h)) - h, C, backward);
//! - W2: DCGAN faces + EfficientNet-Lite0 (resize 64 -> 224), `faces` preset;
//! - W3: EfficientNet-Lite0 on 224x224 pixels, class gradient.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use super::config::preset::{preset, Engine, SamplerConfig};
use super::drive::chains::{random_codes, Pipeline};
use super::pairs::fashion::Condition;
use super::pairs::pair::Pair;
use super::pairs::pretrained::PlugPair;
use crate::density::backend::Backend;
use crate::density::condition::NetCondition;
use crate::density::{Sum, Term};
use crate::error::{Error, Result};
use crate::models::efficientnet_lite::{self, EfficientNetLite0};
use crate::models::fashion::{self as stack, Stack};
use crate::models::plug::{ClassifierSide, GeneratorSide};
use crate::models::pretrained;
use crate::nn::fast::{build, flops, profile};
use crate::nn::identity;
use crate::sampler::{init, ChainRngs};

pub use table::markdown;

mod table;

/// The workloads' names.
pub const WORKLOADS: [&str; 4] = ["w1", "w2", "w3", "w2-onnx"];

/// How long to time.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Untimed steps first.
    pub warmup: usize,
    /// Timed seconds at least (and 3 steps at least).
    pub seconds: f64,
    /// After the timed steps, this many more with every op timed
    /// (`crate::nn::fast::profile`); 0 for none.
    pub profiled: usize,
}

/// `ppgn bench --one WORKLOAD:CHAINS`: that workload built and timed in
/// this process (the child a sitting runs for each measurement).
pub fn one(
    workload_chains: &str,
    engine: Engine,
    models: Option<&Path>,
    budget: Budget,
) -> Result<Timing> {
    let parsed = workload_chains
        .split_once(':')
        .and_then(|(w, n)| Some((w, n.parse::<usize>().ok()?)));
    let Some((w, n)) = parsed else {
        return Err(Error::setting(
            "one",
            format!("{workload_chains:?}"),
            "WORKLOAD:CHAINS, e.g. w1:8",
        ));
    };
    let (pipeline, cfg, start) = workload(w, n, engine, models)?;
    time_steps(w, &pipeline, &cfg, &start, budget)
}

/// The Python that runs the PyTorch peer: `given`, else `$PPGN_PYTHON`,
/// else `python3`.
pub fn peer_python(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("PPGN_PYTHON").ok())
        .unwrap_or_else(|| "python3".into())
}

/// One measured row.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Timing {
    pub workload: String,
    pub chains: usize,
    pub ms_per_step: f64,
    pub peak_mb: f64,
    /// The engine's floating-point operations in one step, counted
    /// (`crate::nn::fast::flops`; absent for the peer, whose step does the
    /// same arithmetic, and for candle's autograd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flops_per_step: Option<f64>,
    /// Where a step's time went (`ppgn bench --profile`; absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<StepProfile>,
    /// The peer's PyTorch version (absent for ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch: Option<String>,
}

/// The resident-memory high-water mark of this process in MB (Linux; 0 where unknown).
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

/// Workload `w` at `n` chains: its pipeline, settings and start.
pub fn workload(
    w: &str,
    n: usize,
    engine: Engine,
    models: Option<&Path>,
) -> Result<(Pipeline, SamplerConfig, Tensor)> {
    let dev = Device::Cpu;
    match w {
        "w1" => {
            let s = Stack::load(&stack::resolve_dir(models), DType::F32, &dev)?;
            let cfg = SamplerConfig {
                engine,
                ..preset("ppgn")?
            };
            let condition = Condition::Classes((0..n).map(|i| i % 10).collect());
            let pipeline = Pipeline::fashion(&s, &cfg, &condition)?;
            Ok((pipeline, cfg, random_codes(n, s.classifier.cfg.h_dim, 1)?))
        }
        "w2" | "w2-onnx" => {
            let home = pretrained::home();
            let pair = if w == "w2" {
                PlugPair::faces_imagenet(&home)?
            } else {
                // the same networks exported to ONNX by
                // scripts/pretrained_fixtures.py --onnx
                let side = |name: &str| home.join("onnx").join(name);
                faces_onnx(&home)?;
                PlugPair::compose(
                    GeneratorSide::named(&side("dcgan-faces.toml").to_string_lossy(), &home)?,
                    ClassifierSide::named(
                        &side("efficientnet-lite0.toml").to_string_lossy(),
                        &home,
                        Path::new(""),
                    )?,
                )?
            };
            let cfg = SamplerConfig {
                engine,
                ..preset("faces")?
            };
            let pipeline = pair.pipeline(&vec![837; n], &cfg)?;
            let z0 = Pair::random_starts(&pair, &cfg, 1.into(), n)?;
            Ok((pipeline, cfg, z0))
        }
        "w3" => w3(n, engine),
        other => Err(Error::unknown("workload", other, &WORKLOADS)),
    }
}

/// Makes the ONNX files of workload `w2-onnx` in `home/onnx` unless they
/// are there, with `scripts/pretrained_fixtures.py --onnx-only` (Python
/// with torch: `$PPGN_PYTHON` or `python3`), or says in one line how to.
pub fn faces_onnx(home: &Path) -> Result<()> {
    let onnx = home.join("onnx");
    if onnx.join("dcgan-faces.toml").exists() && onnx.join("efficientnet-lite0.toml").exists() {
        return Ok(());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pretrained_fixtures.py");
    let py = std::env::var("PPGN_PYTHON").unwrap_or_else(|_| "python3".into());
    eprintln!(
        "w2-onnx: exporting the faces pair to {} with {py} (once)",
        home.join("onnx").display()
    );
    let made = std::process::Command::new(&py)
        .arg(&script)
        .arg("--onnx-only")
        .env("PPGN_HOME", home)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match made {
        Ok(s) if s.success() => Ok(()),
        _ => Err(Error::NotInstalled {
            what: "the faces pair exported to ONNX (workload w2-onnx)".into(),
            missing: home.join("onnx").join("dcgan-faces.toml"),
            hint: format!(
                "{py} with torch and onnx could not make it; run `PPGN_HOME={} python3 {} --onnx-only` where they are installed (after `ppgn models fetch`)",
                home.display(),
                script.display()
            ),
        }),
    }
}

/// W3: EfficientNet-Lite0's class gradient on 224x224 pixels.
fn w3(n: usize, engine: Engine) -> Result<(Pipeline, SamplerConfig, Tensor)> {
    let net = pretrained::efficientnet_lite0(&pretrained::home(), DType::F32)?;
    let cfg = SamplerConfig {
        clip: Some((0.0, 1.0)),
        step: crate::sampler::schedule::Schedule::Constant { value: 0.005 },
        engine,
        ..preset("faces")?
    };
    let side = efficientnet_lite::IMAGE_SIZE;
    let compiled = build::net((side, side, 3), vec![EfficientNetLite0::normalise_op()])?
        .then(net.compile(side)?)?;
    let backend = Backend::new(Arc::new(compiled), cfg.engine)?;
    let condition: Box<dyn Term> = Box::new(NetCondition::class(
        backend,
        vec![980; n],
        cfg.gradient,
        1.0,
        None,
    )?);
    let pipeline = Pipeline {
        target: Sum::new(vec![(1.0, condition)]),
        decode: identity(),
        measure: Box::new(|_| Ok(Vec::new())),
        backend: cfg.engine,
        retarget: None,
    };
    let x0 = (Tensor::ones((n, side, side, 3), DType::F32, &Device::Cpu)? * 0.5)?;
    Ok((pipeline, cfg, x0))
}

/// Times the kernel of `cfg` on `pipeline` from `start`.
pub fn time_steps(
    name: &str,
    pipeline: &Pipeline,
    cfg: &SamplerConfig,
    start: &Tensor,
    budget: Budget,
) -> Result<Timing> {
    let n = start.dim(0)?;
    let k = cfg.kernel()?;
    let mut rngs = ChainRngs::new(7, n);
    let mut state = init(start, &pipeline.target)?;
    for t in 0..budget.warmup {
        state = k.step(&mut rngs, &state, &pipeline.target, t)?.0;
    }
    let t0 = Instant::now();
    let mut steps = 0;
    let mut counted = 0;
    while steps < 3 || t0.elapsed().as_secs_f64() < budget.seconds {
        if steps == 0 {
            flops::start();
        }
        state = k
            .step(&mut rngs, &state, &pipeline.target, budget.warmup + steps)?
            .0;
        if steps == 0 {
            counted = flops::stop();
        }
        steps += 1;
    }
    let ms_per_step = t0.elapsed().as_secs_f64() * 1000.0 / steps as f64;
    let mut profiled = None;
    if budget.profiled > 0 {
        let t0 = Instant::now();
        profile::start();
        for t in 0..budget.profiled {
            let t = budget.warmup + steps + t;
            state = k.step(&mut rngs, &state, &pipeline.target, t)?.0;
        }
        let mut ops = profile::stop();
        let per = budget.profiled as f64;
        for r in &mut ops {
            r.entry.seconds /= per;
            r.entry.calls /= budget.profiled as u64;
            r.entry.flops /= budget.profiled as u64;
        }
        profiled = Some(StepProfile {
            ms_per_step: t0.elapsed().as_secs_f64() * 1000.0 / per,
            ops,
        });
    }
    Ok(Timing {
        workload: name.into(),
        chains: n,
        ms_per_step,
        peak_mb: peak_mb(),
        flops_per_step: (counted > 0).then_some(counted as f64),
        profile: profiled,
        torch: None,
    })
}

/// Where the time of a profiled step went: the step's wall time (each op
/// timed, so a little longer than a timed step) and the engine's ops by
/// kind and pass, per step; the rest of the step is outside the engine
/// (the sampler's update, the density's sums, copies).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StepProfile {
    pub ms_per_step: f64,
    pub ops: Vec<profile::Row>,
}

/// The machine's peak as the bench measured it: GFLOP/s of a loop of
/// fused multiply-adds on every thread, and the vector width it ran.
#[derive(Debug, Clone, Copy)]
pub struct Peak {
    pub gflops: f64,
    pub vector: &'static str,
}

impl Peak {
    /// Measured now, on rayon's threads (`crate::nn::fast::flops`).
    pub fn measure() -> Self {
        let (gflops, vector) = flops::peak_gflops();
        Self { gflops, vector }
    }
}

impl Timing {
    /// One line for a person: time, GFLOP/s, rate per chain, memory.
    pub fn line(&self) -> String {
        let gflops = self
            .flops_per_step
            .map_or("-".into(), |f| format!("{:.1}", f / self.ms_per_step / 1e6));
        format!(
            "ours  {:<3} {:>4} chains: {:>9.1} ms/step, {gflops:>6} GFLOP/s, {:>8.2} steps/s per chain, peak {:>6.0} MB",
            self.workload,
            self.chains,
            self.ms_per_step,
            1000.0 / self.ms_per_step * self.chains as f64,
            self.peak_mb
        )
    }
}

/// The row with the median time of `rows` (peak memory: the largest).
pub fn median(mut rows: Vec<Timing>) -> Timing {
    rows.sort_by(|x, y| x.ms_per_step.total_cmp(&y.ms_per_step));
    let peak = rows.iter().map(|r| r.peak_mb).fold(0.0, f64::max);
    let mut m = rows.swap_remove(rows.len() / 2);
    m.peak_mb = peak;
    m
}

/// One measurement of the PyTorch peer (`bench/peer.py --one`) with the
/// Python `py`: workload `w` at `n` chains, `(seconds, warmup)`.
pub fn peer_timing(
    py: &str,
    threads: usize,
    (w, n): (&str, usize),
    (seconds, warmup): (f64, usize),
    models: Option<&Path>,
) -> Result<Timing> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/peer.py");
    let failed = |message: String| Error::External {
        tool: format!("the PyTorch peer ({py})"),
        message,
    };
    let out = std::process::Command::new(py)
        .arg(&script)
        .args(["--one", &format!("{w}:{n}")])
        .args(["--threads", &threads.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--warmup", &warmup.to_string()])
        .arg("--models")
        .arg(stack::resolve_dir(models))
        .arg("--home")
        .arg(pretrained::home())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| failed(format!("cannot run: {e}")))?;
    if !out.status.success() {
        return Err(failed(
            "failed (see above); it needs torch and numpy (bench/README.md)".into(),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| failed("printed no timing".into()))?;
    serde_json::from_str(line).map_err(|e| failed(format!("output {line:?}: {e}")))
}

/// One sitting of `ppgn bench`: every workload at its chain counts,
/// `rounds` times, each measurement of ours in a child process of `exe`
/// (`ppgn bench --one`, so its peak memory is its own) and, with
/// `peer_python`, the PyTorch peer's right after it, so both see the same
/// state of the machine.
pub struct Sitting<'a> {
    pub exe: &'a Path,
    /// Workloads with their chain counts.
    pub workloads: Vec<(String, Vec<usize>)>,
    pub rounds: usize,
    pub budget: Budget,
    pub engine: crate::run::config::preset::Engine,
    pub models: Option<&'a Path>,
    pub peer_python: Option<String>,
}

/// Checks a bench request before anything is timed: known workloads,
/// positive chain counts (each with the flag that gave them) and seconds.
pub fn check_request(
    workloads: &[String],
    chains: &[(&str, &[usize])],
    seconds: f64,
) -> Result<()> {
    for w in workloads {
        if !WORKLOADS.contains(&w.as_str()) {
            return Err(Error::unknown("workload", w, &WORKLOADS));
        }
    }
    for &(flag, counts) in chains {
        if counts.is_empty() || counts.contains(&0) {
            return Err(Error::setting(
                flag,
                format!("{counts:?}"),
                "positive chain counts, e.g. 1,8,64,256",
            ));
        }
    }
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(Error::setting(
            "--seconds",
            seconds,
            "a positive number of seconds",
        ));
    }
    Ok(())
}

impl Sitting<'_> {
    /// The medians of ours and, with a peer, of the peer's, and the
    /// machine's peak measured before them.
    pub fn run(&self) -> Result<(Vec<Timing>, Option<Vec<Timing>>, Peak)> {
        if self.rounds == 0 {
            return Err(Error::setting("--rounds", 0, "at least 1"));
        }
        if self.workloads.iter().any(|(w, _)| w == "w2-onnx") {
            faces_onnx(&pretrained::home())?;
        }
        let peak = Peak::measure();
        let threads = candle_core::utils::get_num_threads();
        let (mut ours, mut peer) = (Vec::new(), Vec::new());
        for (w, chains) in &self.workloads {
            for &n in chains {
                let (mut mine, mut theirs) = (Vec::new(), Vec::new());
                for _ in 0..self.rounds {
                    mine.push(self.child(w, n)?);
                    if let Some(py) = &self.peer_python {
                        let b = (self.budget.seconds, self.budget.warmup);
                        theirs.push(peer_timing(py, threads, (w, n), b, self.models)?);
                    }
                }
                ours.push(median(mine));
                if self.peer_python.is_some() {
                    peer.push(median(theirs));
                }
            }
        }
        Ok((ours, self.peer_python.is_some().then_some(peer), peak))
    }

    /// One measurement of ours in a child process.
    fn child(&self, w: &str, n: usize) -> Result<Timing> {
        let mut cmd = std::process::Command::new(self.exe);
        cmd.args(["bench", "--one", &format!("{w}:{n}")])
            .args(["--seconds", &self.budget.seconds.to_string()])
            .args(["--warmup", &self.budget.warmup.to_string()])
            .args(["--profile", &self.budget.profiled.to_string()])
            .args([
                "--engine",
                &crate::run::config::preset::Choice::name(self.engine),
            ]);
        if let Some(m) = self.models {
            cmd.arg("--models").arg(m);
        }
        let failed = |message: String| Error::External {
            tool: format!("the benchmark of {w} at {n} chains"),
            message,
        };
        let out = cmd
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| failed(format!("cannot run: {e}")))?;
        if !out.status.success() {
            return Err(failed("failed (see above)".into()));
        }
        serde_json::from_slice(&out.stdout).map_err(|_| failed("printed no timing".into()))
    }
}
