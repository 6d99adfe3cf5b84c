#![no_main]
// Networks brought as ONNX files.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ppgn::models::onnx::from_bytes::<f32>(data, None, None);
});
