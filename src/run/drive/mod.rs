//! Driving chains: the pipeline and chain state, stepping with records and checkpoints, starts, batches, shards and their merge, progress, and the cost estimate.

pub mod batched;
pub mod chains;
pub mod driver;
pub mod estimate;
pub mod init;
pub mod merge;
pub mod progress;
pub mod shard;
pub mod starts;
