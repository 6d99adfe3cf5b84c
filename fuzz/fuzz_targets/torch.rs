#![no_main]
// PyTorch checkpoints (the legacy torch.save format and the zip format).
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let p = common::as_file(data, "pt");
    let _ = ppgn::models::torch_file::read(&p, None);
});
