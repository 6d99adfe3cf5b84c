//! Whole jobs: sampling on any pair, visualisation, and `--autotune`'s pilot.

pub mod autotune;
pub mod restore;
pub mod sample;
pub mod visualize;
