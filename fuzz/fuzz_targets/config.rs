#![no_main]
// Sampler settings files (`ppgn sample --config FILE.toml`).
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let p = common::as_file(data, "toml");
    if let Ok(base) = ppgn::run::preset::preset("ppgn") {
        let _ = ppgn::run::config::settings::overlay_file(base, &p);
    }
});
