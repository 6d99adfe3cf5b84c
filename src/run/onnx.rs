//! Jobs on a network brought as an ONNX file (or its sidecar): `check`
//! (what it holds, whether ppgn imports all of it, its input gradient
//! against central differences in f64, the time of a forward and backward
//! pass) and `eval` (its output and input gradient on a batch from an
//! `.npy` file, to hold ppgn beside PyTorch).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::npy;
use crate::error::{Error, Result};
use crate::models::onnx::{self, to_engine, to_onnx, Imported};
use crate::models::plug::{self, Kind};
use crate::nn::fast::real::Real;
use crate::nn::fast::Workspace;

/// An imported file: an `.onnx` as it is, or the network a sidecar names
/// (with its sidecar checked too: which kind, what it reads and gives).
fn import<T: Real>(path: &Path) -> Result<(Imported<T>, Option<String>)> {
    if !plug::is_sidecar(&path.to_string_lossy()) {
        return Ok((onnx::load(path, None, None)?, None));
    }
    let loaded = plug::load(path)?;
    let (input, output) = (loaded.spec.input.clone(), loaded.spec.output.clone());
    let onnx_path = path
        .parent()
        .unwrap_or(Path::new("."))
        .join(&loaded.spec.onnx);
    let side = match loaded.spec.kind {
        Kind::Generator => {
            let g = loaded.generator()?;
            let (h, w, c) = g.net.output();
            format!(
                "a generator: codes of {} to {c} x {h} x {w} images in [{}, {}], prior {}",
                g.code,
                g.range.0,
                g.range.1,
                g.sigma.map_or("none".into(), |s| format!("N(0, {s}^2)"))
            )
        }
        Kind::Classifier => {
            let c = loaded.classifier()?;
            let (ch, h, w) = c.image;
            format!(
                "a classifier: {ch} x {h} x {w} images in [{}, {}] to {} classes ({}, ...)",
                c.range.0,
                c.range.1,
                c.class_names.len(),
                c.class_names
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    };
    let m = onnx::load(&onnx_path, input.as_deref(), output.as_deref())?;
    Ok((m, Some(side)))
}

/// What `ppgn onnx check` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckReport {
    pub file: PathBuf,
    /// What the sidecar says the network is, checked against the file.
    pub sidecar: Option<String>,
    pub opset: i64,
    pub input: (String, Vec<usize>),
    pub output: (String, Vec<usize>),
    /// Nodes of each op type in the file.
    pub ops: BTreeMap<String, usize>,
    /// Ops of the engine graph they became.
    pub engine_ops: usize,
    /// The worst relative error of the input gradient against central
    /// differences in f64 over `fd_points` random coordinates.
    pub fd_worst: f64,
    pub fd_points: usize,
    /// Median time of one forward and of one backward pass (batch 1, f32).
    pub forward_ms: f64,
    pub backward_ms: f64,
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} (opset {})", self.file.display(), self.opset)?;
        if let Some(s) = &self.sidecar {
            writeln!(f, "  sidecar: {s}")?;
        }
        writeln!(
            f,
            "  input  {:?} [batch, {}]",
            self.input.0,
            dims(&self.input.1)
        )?;
        writeln!(
            f,
            "  output {:?} [batch, {}]",
            self.output.0,
            dims(&self.output.1)
        )?;
        let ops: Vec<String> = self.ops.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(
            f,
            "  nodes: {} (all imported: {} engine ops)",
            ops.join(", "),
            self.engine_ops
        )?;
        writeln!(
            f,
            "  input gradient vs central differences in f64: worst relative error {:.1e} over {} coordinates",
            self.fd_worst, self.fd_points
        )?;
        writeln!(
            f,
            "  one image: forward {:.2} ms, backward {:.2} ms (f32, median of 7)",
            self.forward_ms, self.backward_ms
        )
    }
}

/// Checks the network of `path` (`.onnx` or a sidecar `.toml`).
pub fn check(path: &Path, seed: u64) -> Result<CheckReport> {
    let (m, sidecar) = import::<f64>(path)?;
    let (fd_worst, fd_points) = finite_differences(&m, seed)?;
    let (m32, _) = import::<f32>(path)?;
    let (forward_ms, backward_ms) = timing(&m32)?;
    Ok(CheckReport {
        file: path.to_path_buf(),
        sidecar,
        opset: m.opset,
        input: m.input.clone(),
        output: m.output.clone(),
        ops: m.op_counts.clone(),
        engine_ops: m.net.len(),
        fd_worst,
        fd_points,
        forward_ms,
        backward_ms,
    })
}

/// The input gradient of `sum(w * y)` on two random inputs against central
/// differences, at up to 24 coordinates; the worst error relative to the
/// largest gradient entry.
fn finite_differences(m: &Imported<f64>, seed: u64) -> Result<(f64, usize)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = 2;
    let (li, lo) = (len(m.net.input()), len(m.net.output()));
    let x: Vec<f64> = (0..n * li).map(|_| rng.random_range(-1.0..1.0)).collect();
    let w: Vec<f64> = (0..n * lo).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut ws = Workspace::default();
    let f = |x: &[f64], ws: &mut Workspace<f64>| -> Result<f64> {
        let y = m.net.forward(x, n, ws)?;
        Ok(y.iter().zip(&w).map(|(a, b)| a * b).sum())
    };
    f(&x, &mut ws)?;
    let mut g = Vec::new();
    m.net.backward(&w, &mut ws, &mut g)?;
    let scale = g.iter().fold(1e-12, |a: f64, v| a.max(v.abs()));
    let points = 24.min(x.len());
    let mut worst = 0.0f64;
    for _ in 0..points {
        let i = rng.random_range(0..x.len());
        let h = 1e-6 * x[i].abs().max(1.0);
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[i] += h;
        xm[i] -= h;
        let d = (f(&xp, &mut ws)? - f(&xm, &mut ws)?) / (2.0 * h);
        worst = worst.max((d - g[i]).abs() / scale);
    }
    Ok((worst, points))
}

fn len((h, w, c): (usize, usize, usize)) -> usize {
    h * w * c
}

/// Median milliseconds of a forward and of a backward pass of one input.
fn timing(m: &Imported<f32>) -> Result<(f64, f64)> {
    let x = vec![0.1f32; len(m.net.input())];
    let dy = vec![1.0f32; len(m.net.output())];
    let mut ws = Workspace::default();
    let mut g = Vec::new();
    let (mut fw, mut bw) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let t = Instant::now();
        m.net.forward(&x, 1, &mut ws)?;
        fw.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        m.net.backward(&dy, &mut ws, &mut g)?;
        bw.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok((median(fw), median(bw)))
}

/// What `ppgn onnx eval` is asked to do.
#[derive(Debug, Clone)]
pub struct EvalSpec {
    pub network: PathBuf,
    pub input: PathBuf,
    pub out: PathBuf,
    /// The gradient of the sum over the batch of this value of each
    /// sample's flattened output, with respect to the input.
    pub grad_of: Option<(usize, PathBuf)>,
}

/// Runs the raw graph of `spec.network` on the batch in `spec.input`
/// (float32 or float64, `[n, ...]` in the file's layout) and writes its
/// output (and gradient) in the input's float type; returns the batch size.
pub fn eval(spec: &EvalSpec) -> Result<usize> {
    let (m, _) = import::<f64>(&spec.network)?;
    let (shape, x, is_f64) = npy::read_float(&spec.input)?;
    if shape.len() != m.input.1.len() + 1 || shape[1..] != m.input.1[..] {
        return Err(Error::shape(
            format!(
                "{} (the network's input {:?})",
                spec.input.display(),
                m.input.0
            ),
            format!("[n, {}]", dims(&m.input.1)),
            format!("{shape:?}"),
        ));
    }
    let n = shape[0];
    let lo = len(m.net.output());
    if let Some((k, _)) = &spec.grad_of {
        if *k >= lo {
            return Err(Error::setting(
                "--grad-of",
                k,
                format!("an index of the output's {lo} values per sample"),
            ));
        }
    }
    let mut ws = Workspace::default();
    let y = to_onnx(
        &m.output.1,
        m.net.forward(&to_engine(&m.input.1, &x), n, &mut ws)?,
    );
    let mut out_shape = vec![n];
    out_shape.extend(&m.output.1);
    write(&spec.out, &out_shape, &y, is_f64)?;
    if let Some((k, path)) = &spec.grad_of {
        let mut dy = vec![0.0; n * lo];
        for s in 0..n {
            dy[s * lo + k] = 1.0;
        }
        let mut g = Vec::new();
        m.net
            .backward(&to_engine(&m.output.1, &dy), &mut ws, &mut g)?;
        write(path, &shape, &to_onnx(&m.input.1, &g), is_f64)?;
    }
    Ok(n)
}

fn dims(d: &[usize]) -> String {
    d.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn write(path: &Path, shape: &[usize], v: &[f64], f64_out: bool) -> Result<()> {
    if f64_out {
        npy::write_f64(path, shape, v)
    } else {
        let v: Vec<f32> = v.iter().map(|&a| a as f32).collect();
        npy::write_f32(path, shape, &v)
    }
}
