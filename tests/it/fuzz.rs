//! Seeded property tests of the loaders of user input: valid files written
//! here, then mutated (bits flipped, bytes overwritten with extreme values,
//! truncated, extended), must load or give an error, never panic or abort.
//! (A panic fails the test; an allocation that aborts kills it.)

use std::path::Path;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use ppgn::data::{idx, npy};
use ppgn::run::config::preset::preset;
use ppgn::run::config::settings::overlay_file;
use ppgn::run::config::spec::Inpaint;

use super::tempdir;

/// `bytes` with one to four random mutations.
fn mutate(bytes: &[u8], r: &mut ChaCha8Rng) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for _ in 0..r.random_range(1..5) {
        if b.is_empty() {
            b.push(r.random());
            continue;
        }
        let at = r.random_range(0..b.len());
        match r.random_range(0..5) {
            0 => b[at] ^= 1 << r.random_range(0..8),
            1 => b[at] = [0, 0xff, 0x7f, 0x80][r.random_range(0..4)],
            2 => {
                // an extreme little-endian u32/u64 where a size may be
                let v: u64 = [u64::MAX, 1 << 40, 0, u32::MAX as u64][r.random_range(0..4)];
                for (i, x) in v.to_le_bytes().iter().enumerate().take(b.len() - at) {
                    b[at + i] = *x;
                }
            }
            3 => b.truncate(at),
            _ => b.extend((0..r.random_range(1..64)).map(|_| r.random::<u8>())),
        }
    }
    b
}

/// Runs `load` on `cases` mutations of `good` written to `path`; returns
/// how many loaded, and fails on a panic.
fn never_panics(
    what: &str,
    good: &[u8],
    path: &Path,
    cases: usize,
    seed: u64,
    load: impl Fn(&Path) -> bool,
) -> usize {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    assert!(
        std::fs::write(path, good).is_ok() && load(path),
        "{what}: the good file does not load"
    );
    let mut loaded = 0;
    for k in 0..cases {
        std::fs::write(path, mutate(good, &mut r)).unwrap();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load(path))) {
            Ok(ok) => loaded += ok as usize,
            Err(_) => panic!("{what}: case {k} panicked"),
        }
    }
    loaded
}

#[test]
fn npy_idx_safetensors_toml_and_png_loaders_never_panic() {
    let d = tempdir("fuzz-loaders");
    // .npy of each type the readers take
    let p = d.join("a.npy");
    npy::write_f32(&p, &[2, 3], &[0.5; 6]).unwrap();
    let good = std::fs::read(&p).unwrap();
    never_panics("npy", &good, &p, 500, 1, |p| {
        let a = npy::read_f32(p).is_ok();
        let b = npy::read_float(p).is_ok();
        let _ = npy::read_i64(p);
        a && b
    });
    // IDX (Fashion-MNIST's format)
    let good = idx::to_idx_bytes(&[2, 4, 4], &[7; 32]);
    never_panics("idx", &good, &d.join("a.idx"), 500, 2, |p| {
        idx::parse_idx(&std::fs::read(p).unwrap(), 3).is_ok()
    });
    // safetensors headers
    let p = d.join("w.safetensors");
    let t = std::collections::HashMap::from([(
        "w".to_string(),
        Tensor::ones((3, 2), candle_core::DType::F32, &Device::Cpu).unwrap(),
    )]);
    ppgn::models::weights::save_tensors(&p, &t).unwrap();
    let good = std::fs::read(&p).unwrap();
    never_panics("safetensors", &good, &p, 500, 3, |p| {
        ppgn::models::weights::load_tensors(p, &Device::Cpu).is_ok()
    });
    // a sampler settings file
    let good = b"eps1 = 0.001\nsteps = 3\n[step]\nkind = \"constant\"\nvalue = 0.2\n";
    never_panics("config", good, &d.join("c.toml"), 500, 4, |p| {
        overlay_file(preset("ppgn").unwrap(), p).is_ok()
    });
    // a mask PNG
    let p = d.join("m.png");
    let mut px = vec![0u8; 28 * 28];
    px[200..220].fill(255);
    {
        let f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
        let mut e = png::Encoder::new(f, 28, 28);
        e.set_color(png::ColorType::Grayscale);
        e.write_header().unwrap().write_image_data(&px).unwrap();
    }
    let good = std::fs::read(&p).unwrap();
    let loaded = never_panics("mask png", &good, &p, 500, 5, |p| {
        Inpaint::mask(p.to_str().unwrap(), 0).is_ok()
    });
    assert!(loaded < 500, "no mutation of the PNG was refused");
    let _ = std::fs::remove_dir_all(&d);
}

/// Mask specs with extreme numbers are errors, not panics (a corner at
/// `usize::MAX` once wrapped around the bounds check).
#[test]
fn mask_specs_with_extreme_numbers_are_refused() {
    let nums = [
        "0",
        "1",
        "12",
        "28",
        "29",
        "-1",
        "",
        "x",
        "18446744073709551615",
        "18446744073709551616",
    ];
    let mut r = ChaCha8Rng::seed_from_u64(6);
    for _ in 0..2000 {
        let mut pick = || nums[r.random_range(0..nums.len())];
        let spec = format!("{}x{}@{},{}", pick(), pick(), pick(), pick());
        let got = std::panic::catch_unwind(|| Inpaint::mask(&spec, 0));
        let Ok(got) = got else {
            panic!("{spec} panicked")
        };
        let fits = |a: &str, b: &str| match (a.parse::<usize>(), b.parse::<usize>()) {
            (Ok(a), Ok(b)) => b > 0 && a.checked_add(b).is_some_and(|e| e <= 28),
            _ => false,
        };
        let parts: Vec<&str> = spec.split(['x', '@', ',']).collect();
        let want = parts.len() == 4 && fits(parts[2], parts[0]) && fits(parts[3], parts[1]);
        assert_eq!(got.is_ok(), want, "{spec}: {got:?}");
    }
}

#[test]
fn torch_checkpoint_and_onnx_loaders_never_panic() {
    let d = tempdir("fuzz-torch-onnx");
    let good = super::pretrained::legacy_file();
    never_panics("torch legacy", &good, &d.join("a.pt"), 500, 6, |p| {
        ppgn::models::torch_file::read(p, None).is_ok()
    });
    let zipped = std::fs::read(super::pretrained::zip_file(&d)).unwrap();
    never_panics("torch zip", &zipped, &d.join("b.pt"), 300, 7, |p| {
        ppgn::models::torch_file::read(p, Some("netG_state_dict")).is_ok()
    });
    let onnx = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx/handmade.onnx"),
    )
    .unwrap();
    never_panics("onnx", &onnx, &d.join("m.onnx"), 500, 8, |p| {
        ppgn::models::onnx::from_bytes::<f32>(&std::fs::read(p).unwrap(), None, None).is_ok()
    });
    let found = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fuzz")
            .join(name)
    };
    // both .npy readers refuse `path` with a message containing `needle`
    let npy_refused = |path: &Path, needle: &str| {
        let whole = npy::read_f32(path).unwrap_err().to_string();
        let rows = ppgn::data::npy_stream::F32RowsReader::open(path)
            .err()
            .unwrap()
            .to_string();
        for e in [whole, rows] {
            assert!(e.contains(needle), "{e}");
        }
    };
    // what `cargo fuzz run onnx` found: an arithmetic node with no inputs,
    // folded on constants, indexed an empty list
    let crash = std::fs::read(found("onnx-arith-no-inputs.onnx")).unwrap();
    assert!(ppgn::models::onnx::from_bytes::<f32>(&crash, None, None).is_err());
    // what `cargo fuzz run npy` found: a version-3 header claiming 3 GB in
    // a file of 135 bytes, which the reader allocated before reading; each
    // reader refuses it, naming the header's length
    npy_refused(
        &found("npy-v3-header-of-3-gb.npy"),
        "header of 3014856322 bytes in a file of 135",
    );
    // and a 161-byte header whose 'descr' opens 42 nested lists, on which
    // npyz's Python-literal parser backtracked for over 10 minutes; the
    // header is now checked against what NumPy writes first
    let t = std::time::Instant::now();
    npy_refused(&found("npy-header-of-nested-lists.npy"), "structured dtype");
    assert!(t.elapsed().as_secs() < 10, "{:?}", t.elapsed());
    // what `cargo fuzz run torch` found: a 78-byte legacy checkpoint
    // whose pickle announces a string of 2.3 GB, which candle's pickle
    // machine allocated before reading
    let e = ppgn::models::torch_file::read(&found("torch-unicode-of-2-gb.pt"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("past the end of the file"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

/// The good inputs every fuzz target starts from (`fuzz/corpus/TARGET/seed-0`).
fn fuzz_seeds(d: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let p = d.join("a.npy");
    npy::write_f32(&p, &[2, 3], &[0.5; 6]).unwrap();
    let npy_bytes = std::fs::read(&p).unwrap();
    let p = d.join("w.safetensors");
    let t = std::collections::HashMap::from([(
        "w".to_string(),
        Tensor::ones((3, 2), candle_core::DType::F32, &Device::Cpu).unwrap(),
    )]);
    ppgn::models::weights::save_tensors(&p, &t).unwrap();
    let mut png_bytes = Vec::new();
    {
        let mut e = png::Encoder::new(&mut png_bytes, 28, 28);
        e.set_color(png::ColorType::Grayscale);
        let mut px = vec![0u8; 28 * 28];
        px[200..220].fill(255);
        e.write_header().unwrap().write_image_data(&px).unwrap();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    vec![
        ("idx", idx::to_idx_bytes(&[2, 4, 4], &[7; 32])),
        ("npy", npy_bytes),
        ("safetensors", std::fs::read(&p).unwrap()),
        ("torch", super::pretrained::legacy_file()),
        (
            "config",
            b"eps1 = 0.001\nsteps = 3\n[step]\nkind = \"constant\"\nvalue = 0.2\n".to_vec(),
        ),
        ("mask_png", png_bytes),
        (
            "onnx",
            std::fs::read(root.join("tests/fixtures/onnx/handmade.onnx")).unwrap(),
        ),
    ]
}

/// The committed seed corpora are these good inputs; with
/// `PPGN_WRITE_FUZZ_SEEDS=1` the test writes them.
#[test]
fn fuzz_seed_corpora_are_the_good_inputs() {
    let d = tempdir("fuzz-seeds");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let write = std::env::var_os("PPGN_WRITE_FUZZ_SEEDS").is_some();
    for (target, bytes) in fuzz_seeds(&d) {
        let p = root.join(target).join("seed-0");
        if write {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, &bytes).unwrap();
        }
        let src = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fuzz/fuzz_targets/{target}.rs")),
        )
        .unwrap_or_else(|_| panic!("no fuzz target {target}"));
        assert!(src.contains("fuzz_target!"), "{target}");
        assert_eq!(
            std::fs::read(&p).ok().as_deref(),
            Some(&bytes[..]),
            "{} is not the seed; rerun with PPGN_WRITE_FUZZ_SEEDS=1",
            p.display()
        );
    }
    let _ = std::fs::remove_dir_all(&d);
}
