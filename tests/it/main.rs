//! The one integration-test binary (each test binary links all of candle).

mod cli_sample;
mod data;
mod gradients;
mod kernels;
mod pretrained;
mod report;
mod samplers;
mod scores;
mod shipped;
mod stack_sampling;
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
