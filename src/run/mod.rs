//! Runs: presets and settings, the pairs of networks chains run on
//! ([`pair::Pair`]), driving batched chains, and whole jobs ([`sample`]: a
//! [`SampleSpec`] in, a run folder out) with their run folders and
//! progress.

pub mod autotune;
pub mod batched;
pub mod bench;
pub mod chains;
pub mod choice;
pub mod driver;
pub mod estimate;
pub mod fashion;
pub mod fashion_pair;
pub mod folder;
pub mod init;
pub mod inpaint;
pub mod load;
pub mod merge;
pub mod onnx;
pub mod outputs;
pub mod pair;
pub mod plug_pair;
pub mod preset;
pub mod pretrained;
pub mod progress;
pub mod sample;
pub mod settings;
pub mod shard;
pub mod spec;
pub mod starts;
pub mod steer;
pub mod visualize;

pub use progress::{Progress, Silent};
pub use sample::sample;
pub use spec::{RunOutput, SampleSpec};
