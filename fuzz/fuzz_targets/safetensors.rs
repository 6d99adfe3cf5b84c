#![no_main]
// Weights files and checkpoints (safetensors with a JSON header).
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let p = common::as_file(data, "safetensors");
    let _ = ppgn::models::weights::load_tensors(&p, &candle_core::Device::Cpu);
    let _ = ppgn::models::weights::load_tensors_with_note(&p, &candle_core::Device::Cpu);
});
