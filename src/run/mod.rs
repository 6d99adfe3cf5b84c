//! Runs: presets and settings, the pairs of networks chains run on
//! ([`pairs::pair::Pair`]), driving batched chains, and whole jobs ([`sample`]: a
//! [`SampleSpec`] in, a run folder out) with their run folders and
//! progress.

pub mod bench;
pub mod config;
pub mod drive;
pub mod jobs;
pub mod onnx;
pub mod output;
pub mod pairs;

pub use config::spec::{RunOutput, SampleSpec};
pub use drive::progress::{Progress, Silent};
pub use jobs::sample::sample;
