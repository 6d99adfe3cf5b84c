//! Runs: presets, driving batched chains, and the files a run writes.

pub mod chains;
pub mod experiments;
pub mod preset;
pub mod pretrained;
