//! The one integration-test binary (each test binary links all of candle).

mod bad_input;
mod cli_sample;
mod cluster;
mod data;
mod engine;
mod flow;
mod fuzz;
mod gradients;
mod kernels;
mod layers;
mod nuts;
mod onnx;
mod pairs;
mod pretrained;
mod report;
mod restore;
mod samplers;
mod score;
mod scores;
mod serve;
mod shipped;
mod stack_sampling;
mod steer;
mod train;
mod weights;

use std::path::PathBuf;

/// A fresh temporary folder for one test.
pub fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ppgn-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The values of a tensor of any float type, flattened, in f64.
pub fn vec_f64(t: &candle_core::Tensor) -> Vec<f64> {
    t.to_dtype(candle_core::DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .unwrap()
}

/// `max |t|` of an f32 tensor.
pub fn max_abs(t: &candle_core::Tensor) -> f32 {
    t.abs()
        .and_then(|t| t.max_all())
        .and_then(|t| t.to_scalar::<f32>())
        .unwrap()
}

/// `sum t^2` of an f32 tensor.
pub fn sum_sq(t: &candle_core::Tensor) -> f32 {
    t.sqr()
        .and_then(|t| t.sum_all())
        .and_then(|t| t.to_scalar::<f32>())
        .unwrap()
}

/// Runs the `ppgn` binary from the crate root.
pub fn ppgn(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ppgn"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

/// `ppgn` with `args`, `--out out`, then `extra`.
pub fn ppgn_into(args: &[&str], out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--out", out.to_str().unwrap()]);
    all.extend(extra);
    ppgn(&all)
}

/// Asserts a run succeeded and reads its folder's manifest.json.
pub fn manifest(out: &std::process::Output, dir: &std::path::Path) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// `max |a - b|` of f64 tensors.
pub fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f64 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f64>())
        .unwrap()
}
