#![no_main]
// The IDX reader (Fashion-MNIST's files): any bytes load or give an error.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for dims in 1..=3 {
        let _ = ppgn::data::idx::parse_idx(data, dims);
    }
});
