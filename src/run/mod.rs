//! Runs: presets and driving batched chains.

pub mod chains;
pub mod preset;
pub mod pretrained;
pub mod settings;
