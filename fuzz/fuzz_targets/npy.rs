#![no_main]
// The .npy readers (samples, labels, inputs of `ppgn onnx eval`).
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let p = common::as_file(data, "npy");
    let _ = ppgn::data::npy::read_f32(&p);
    let _ = ppgn::data::npy::read_float(&p);
    let _ = ppgn::data::npy::read_i64(&p);
    if let Ok(mut r) = ppgn::data::npy_stream::F32RowsReader::open(&p) {
        let n = r.shape[0].min(4);
        let _ = r.read(0..n);
    }
});
