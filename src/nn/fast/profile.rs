//! Where the engine's time goes: while profiling is on, every op of every
//! [`super::Net`] pass is timed, and the times and operation counts
//! ([`super::flops`]) are summed by the op's kind and pass (forward, or
//! backward to the input). `ppgn bench --profile` reads it; timing each op
//! costs a clock read on either side, so a profiled step is not a timed one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::op::Op;

static PROFILING: AtomicBool = AtomicBool::new(false);
static TABLE: Mutex<BTreeMap<(&'static str, bool), Entry>> = Mutex::new(BTreeMap::new());

/// The sum over the ops of one kind and pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub calls: u64,
    pub seconds: f64,
    pub flops: u64,
}

/// One row of a profile.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// The op's kind ([`kind`]).
    pub kind: String,
    /// The backward pass (the input gradient) rather than the forward one.
    pub backward: bool,
    #[serde(flatten)]
    pub entry: Entry,
}

/// Starts profiling from an empty table.
pub fn start() {
    if let Ok(mut t) = TABLE.lock() {
        t.clear();
    }
    PROFILING.store(true, Ordering::SeqCst);
}

/// Stops profiling and returns the table, the most time first.
pub fn stop() -> Vec<Row> {
    PROFILING.store(false, Ordering::SeqCst);
    let table = TABLE.lock().map(|t| t.clone()).unwrap_or_default();
    let mut rows: Vec<Row> = table
        .into_iter()
        .map(|((kind, backward), entry)| Row {
            kind: kind.into(),
            backward,
            entry,
        })
        .collect();
    rows.sort_by(|a, b| b.entry.seconds.total_cmp(&a.entry.seconds));
    rows
}

/// Whether ops are being timed.
pub(crate) fn profiling() -> bool {
    PROFILING.load(Ordering::Relaxed)
}

/// Adds one op's pass to the table.
pub(crate) fn record(kind: &'static str, backward: bool, took: Duration, flops: u64) {
    if let Ok(mut t) = TABLE.lock() {
        let e = t.entry((kind, backward)).or_default();
        e.calls += 1;
        e.seconds += took.as_secs_f64();
        e.flops += flops;
    }
}

/// The kind an op is profiled under: its variant, with a convolution on
/// one pixel (a fully connected layer) apart from the spatial ones.
pub fn kind<T>(op: &Op<T>) -> &'static str {
    match op {
        Op::Conv { window, .. } if window.h == 1 && window.w == 1 && window.kh == 1 => "dense",
        Op::Conv { .. } => "conv",
        Op::ConvTranspose { .. } => "conv-transpose",
        Op::Depthwise { .. } => "depthwise",
        Op::Affine { .. } => "affine",
        Op::PixelShuffle2 => "pixel-shuffle",
        Op::Resample { .. } => "resample",
        Op::Add => "add",
        Op::Concat => "concat",
        Op::Binary(_) => "binary",
        Op::MaxPool { .. } => "max-pool",
        Op::Lrn { .. } => "lrn",
        Op::Slice { .. } => "slice",
        Op::Pointwise(_) => "pointwise",
        Op::Softmax { .. } => "softmax",
        Op::MeanPool => "mean-pool",
        Op::Reshape(_) => "reshape",
        Op::Gather { .. } => "gather",
    }
}
