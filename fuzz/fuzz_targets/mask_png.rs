#![no_main]
// Inpainting masks given as PNG files.
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let p = common::as_file(data, "png");
    if let Some(s) = p.to_str() {
        let _ = ppgn::run::config::spec::Inpaint::mask(s, 0);
    }
});
