//! Every pair is first-class: the same commands that work on the shipped
//! Fashion-MNIST stack work on a pair brought as ONNX files (the small
//! fixtures: a DCGAN-like generator of 3x16x16 images and a classifier of
//! them) and on the shipped generator guided by a classifier brought as an
//! ONNX file: batches, shards and `ppgn merge`, a kill and `--resume`,
//! the exact samplers, `--init` from a file, `--keep-above`, and `ppgn
//! eval` with an evaluator the user brings.

use std::path::{Path, PathBuf};

use crate::{manifest, ppgn, ppgn_into, tempdir};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

/// The fixture networks and their sidecars in `d`: (generator, classifier).
fn onnx_pair(d: &Path) -> (String, String) {
    for f in ["classifier.onnx", "dcgan.onnx"] {
        std::fs::copy(fixtures().join(f), d.join(f)).unwrap();
    }
    std::fs::write(
        d.join("names.txt"),
        (0..10).map(|i| format!("thing {i}\n")).collect::<String>(),
    )
    .unwrap();
    let g = d.join("g.toml");
    std::fs::write(
        &g,
        "[network]\nonnx = \"dcgan.onnx\"\nkind = \"generator\"\noutput_range = [-1.0, 1.0]\n",
    )
    .unwrap();
    let c = d.join("c.toml");
    std::fs::write(
        &c,
        "[network]\nonnx = \"classifier.onnx\"\nkind = \"classifier\"\nclasses = \"names.txt\"\n",
    )
    .unwrap();
    (
        g.to_str().unwrap().to_string(),
        c.to_str().unwrap().to_string(),
    )
}

fn bytes(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `--shard 1/2` + `--shard 2/2` + `ppgn merge` give the unsharded run's
/// samples, labels and shown chains byte for byte, on an ONNX pair, at the
/// same `--batch` (a batch's size may change the bits of the engine's
/// sums, so batches are part of the settings a merge must share).
#[test]
fn an_onnx_pair_runs_in_batches_and_shards_that_merge_to_the_whole_run() {
    let d = tempdir("pairs-shards");
    let (g, c) = onnx_pair(&d);
    let common = [
        "sample",
        "--generator",
        &g,
        "--classifier",
        &c,
        "--class",
        "thing 1,4,7",
        "--chains",
        "3",
        "--steps",
        "12",
        "--record-every",
        "3",
        "--seed",
        "5",
        "-q",
    ];
    let whole = d.join("whole");
    let m = manifest(&ppgn_into(&common, &whole, &[]), &whole);
    assert_eq!(m["image"], serde_json::json!([16, 16, 3]));
    assert_eq!(m["batch"], 9);
    let batched = d.join("batched");
    let mb = manifest(&ppgn_into(&common, &batched, &["--batch", "2"]), &batched);
    assert_eq!(mb["batch"], 2);
    assert_eq!(
        std::fs::metadata(whole.join("samples.npy")).unwrap().len(),
        std::fs::metadata(batched.join("samples.npy"))
            .unwrap()
            .len()
    );
    let shards: Vec<PathBuf> = (1..=2).map(|k| d.join(format!("s{k}"))).collect();
    for (k, s) in shards.iter().enumerate() {
        let shard = format!("{}/2", k + 1);
        ok(&ppgn_into(&common, s, &["--batch", "2", "--shard", &shard]));
    }
    let merged = d.join("merged");
    let mut args = vec!["merge".to_string()];
    args.extend(shards.iter().map(|s| s.to_str().unwrap().to_string()));
    args.extend(["--out".into(), merged.to_str().unwrap().into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&ppgn(&args));
    for f in ["samples.npy", "labels.npy", "shown.npy"] {
        assert_eq!(
            bytes(batched.join(f)),
            bytes(merged.join(f)),
            "merged shards: {f}"
        );
    }
    for f in ["grid.png", "start.png", "chains.png", "chains.gif"] {
        assert!(merged.join(f).exists(), "{f}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// A run of an ONNX pair killed with SIGKILL after its first checkpoint
/// and resumed with `--resume --out DIR` alone finishes to the bits of an
/// uninterrupted run.
#[test]
fn an_onnx_pair_killed_and_resumed_gives_the_same_bits() {
    let d = tempdir("pairs-kill");
    let (g, c) = onnx_pair(&d);
    let common = [
        "sample",
        "--generator",
        &g,
        "--classifier",
        &c,
        "--class",
        "2,3",
        "--chains",
        "2",
        "--steps",
        "6000",
        "--record-every",
        "1000",
        "--batch",
        "2",
        "--seed",
        "1",
        "-q",
    ];
    let a = d.join("a");
    ok(&ppgn_into(&common, &a, &[]));
    let b = d.join("b");
    let checkpoint = ppgn::run::output::folder::RunFolder::partial_path(&b)
        .join(ppgn::run::drive::chains::CHECKPOINT);
    let mut all: Vec<&str> = common.to_vec();
    all.extend(["--out", b.to_str().unwrap()]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ppgn"))
        .args(&all)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !checkpoint.exists() && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !b.exists() && checkpoint.exists(),
        "the run was not killed between its first checkpoint and its end"
    );
    ok(&ppgn(&[
        "sample",
        "--resume",
        "--out",
        b.to_str().unwrap(),
        "-q",
    ]));
    for f in ["samples.npy", "labels.npy", "shown.npy"] {
        assert_eq!(bytes(a.join(f)), bytes(b.join(f)), "{f}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// `--preset exact-nuts` on a pair with a declared prior: NUTS's metric,
/// learnt in warm-up (its one window ends at step 26 of 30), is in the
/// checkpoint, so a run stopped at step 30 resumes to the same bits
/// (without it the resumed chains would move with the identity metric).
/// At 20 steps the 10 of warm-up left dual averaging at a step so large
/// that no chain moved after it, and a resume without the metric passed.
/// Its tree evaluations are whole batches (the classifier holds one class
/// per chain), the step adapts toward NUTS's 0.8, and the manifest has each
/// chain's mean tree depth.
#[test]
fn exact_nuts_on_an_onnx_pair_resumes_with_its_learnt_metric() {
    let d = tempdir("pairs-nuts");
    let (g, c) = onnx_pair(&d);
    let common = [
        "sample",
        "--generator",
        &g,
        "--classifier",
        &c,
        "--class",
        "0,5",
        "--chains",
        "2",
        "--preset",
        "exact-nuts",
        "--steps",
        "60",
        "--record-every",
        "5",
        "-q",
    ];
    crate::cli_sample::assert_resumes_identically(&common, &d.join("a"), &d.join("b"), "30");
    let text = std::fs::read_to_string(d.join("a/manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["sampler"]["sampler"], "nuts");
    let rates: Vec<f64> = m["chains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["accept_rate"].as_f64().unwrap())
        .collect();
    assert!(
        rates.iter().all(|r| (0.3..=1.0).contains(r)),
        "acceptance {rates:?}"
    );
    // each chain's mean tree depth, the same after the resume (the
    // checkpoint keeps the sums)
    let text = std::fs::read_to_string(d.join("b/manifest.json")).unwrap();
    let resumed: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (a, b) in m["chains"]
        .as_array()
        .unwrap()
        .iter()
        .zip(resumed["chains"].as_array().unwrap())
    {
        let depth = a["mean_tree_depth"].as_f64().unwrap();
        assert!((1.0..=10.0).contains(&depth), "tree depth {depth}");
        assert_eq!(a["mean_tree_depth"], b["mean_tree_depth"]);
        // the share of the lockstep passes' rows this chain used
        let used = a["lockstep_rows_used"].as_f64().unwrap();
        assert!(used > 0.0 && used <= 1.0, "rows used {used}");
        assert_eq!(a["lockstep_rows_used"], b["lockstep_rows_used"]);
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// `--preset exact-mala` and `exact-hmc` on a pair whose generator
/// declares a Gaussian code prior: Metropolis-Hastings on `N(0, I)` plus
/// the condition, from importance-resampled prior draws (counted in the
/// budget), with acceptance rates and R-hat in the manifest.
#[test]
fn exact_samplers_run_on_an_onnx_pair_with_a_declared_prior() {
    let d = tempdir("pairs-exact");
    let (g, c) = onnx_pair(&d);
    for (preset, steps) in [("exact-mala", "30"), ("exact-hmc", "6")] {
        let out = d.join(preset);
        let args = [
            "sample",
            "--generator",
            &g,
            "--classifier",
            &c,
            "--class",
            "0,5",
            "--chains",
            "4",
            "--preset",
            preset,
            "--steps",
            steps,
            "-q",
        ];
        let m = manifest(&ppgn_into(&args, &out, &[]), &out);
        assert_eq!(m["sampler"]["prior"], "flow", "{preset}");
        let rates: Vec<f64> = m["chains"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["accept_rate"].as_f64().unwrap())
            .collect();
        assert!(
            rates.iter().all(|r| (0.0..=1.0).contains(r)) && rates.iter().any(|&r| r > 0.0),
            "{preset}: acceptance {rates:?}"
        );
        // the 100 start candidates are in the budget
        assert!(
            m["grad_evals_per_chain"].as_u64().unwrap() > 100,
            "{preset}"
        );
        assert!(m["diagnostics"].is_object(), "{preset}");
    }
    // a pair whose generator declares no prior has no exact density
    let none = d.join("none.toml");
    std::fs::write(
        &none,
        "[network]\nonnx = \"dcgan.onnx\"\nkind = \"generator\"\noutput_range = [-1.0, 1.0]\nprior = \"none\"\n",
    )
    .unwrap();
    let o = ppgn(&[
        "sample",
        "--generator",
        none.to_str().unwrap(),
        "--classifier",
        &c,
        "--class",
        "1",
        "--preset",
        "exact-mala",
        "-q",
        "--out",
        d.join("x").to_str().unwrap(),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.lines().count() <= 2 && e.contains("prior"),
        "{e}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// `--init codes:FILE.npy` starts every chain from the file's rows (two
/// seeds, the same starts), `--keep-above` keeps RGB samples, and what the
/// pair lacks is refused in one line naming it.
#[test]
fn init_from_a_file_keep_above_and_what_a_pair_lacks() {
    let d = tempdir("pairs-init");
    let (g, c) = onnx_pair(&d);
    let codes = d.join("codes.npy");
    let v: Vec<f32> = (0..2 * 16)
        .map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0)
        .collect();
    ppgn::data::npy::write_f32(&codes, &[2, 16], &v).unwrap();
    let init = format!("codes:{}", codes.display());
    let run = |seed: &str, out: &Path, extra: &[&str]| {
        let mut args = vec![
            "sample",
            "--generator",
            &g,
            "--classifier",
            &c,
            "--class",
            "3",
            "--chains",
            "2",
            "--steps",
            "5",
            "--seed",
            seed,
            "-q",
        ];
        args.extend(extra);
        ppgn_into(&args, out, &[])
    };
    let (a, b) = (d.join("a"), d.join("b"));
    manifest(&run("1", &a, &["--init", &init]), &a);
    let m = manifest(&run("2", &b, &["--init", &init, "--keep-above", "0"]), &b);
    assert_eq!(m["init"], init);
    let first = |dir: &Path| {
        let (shape, v) = ppgn::data::npy::read_f32(&dir.join("shown.npy")).unwrap();
        let per: usize = shape[1..].iter().product();
        v[..per].to_vec()
    };
    assert_eq!(
        first(&a),
        first(&b),
        "the same codes, the same start images"
    );
    let r = d.join("r");
    manifest(&run("2", &r, &[]), &r);
    assert_ne!(first(&r), first(&b), "random starts differ from the file's");
    let (shape, _) = ppgn::data::npy::read_f32(&b.join("kept.npy")).unwrap();
    assert_eq!(shape, vec![2, 3, 16, 16]);
    // a file of the wrong width, an image start and inpainting on a pair
    // without an encoder or data: one line each
    let bad = d.join("bad.npy");
    ppgn::data::npy::write_f32(&bad, &[2, 9], &[0.0; 18]).unwrap();
    let bad_init = format!("codes:{}", bad.display());
    for (extra, needle) in [
        (vec!["--init", bad_init.as_str()], "[rows, 16]"),
        (vec!["--init", "test:3"], "does not have"),
    ] {
        let o = run("1", &d.join("bad"), &extra);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && e.contains(needle) && e.lines().count() <= 2,
            "{extra:?}: {e}"
        );
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// The shipped generator with its code prior, guided by a classifier
/// brought as an ONNX file (here the fixture's, reading the 28x28 grey
/// images resized to its 16x16 RGB input): the joint prior, the flow's
/// exact sampler and `--autotune` all run, and the stack's independent
/// evaluator judges the samples.
#[test]
fn the_shipped_generator_guided_by_an_onnx_classifier() {
    let d = tempdir("pairs-guide");
    let (_, c) = onnx_pair(&d);
    for (name, extra) in [
        ("ppgn", vec!["--steps", "10"]),
        ("exact", vec!["--preset", "exact-mala", "--steps", "10"]),
        ("tuned", vec!["--steps", "10", "--autotune"]),
    ] {
        let out = d.join(name);
        let mut args = vec![
            "sample",
            "--classifier",
            &c,
            "--class",
            "all",
            "--chains",
            "1",
            "-q",
        ];
        args.extend(extra);
        let m = manifest(&ppgn_into(&args, &out, &[]), &out);
        assert_eq!(m["generator"], "fashion");
        assert!(m["evaluator"].as_str().unwrap().contains("independent"));
        assert_eq!(m["chains"].as_array().unwrap().len(), 10, "{name}");
        assert_eq!(m["chains"][9]["class_name"], "thing 9");
        assert!(m["models"]["guide"]["sha256"].is_string(), "{name}");
        let (shape, _) = ppgn::data::npy::read_f32(&out.join("samples.npy")).unwrap();
        assert_eq!(shape, vec![10, 1, 28, 28]);
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// `ppgn eval` on any run: the default evaluator refuses images it cannot
/// read in one line naming both shapes; an evaluator brought as a sidecar
/// scores the run against real images given as a file: the Frechet
/// distance of the samples to themselves is zero and to other images is
/// not, accuracy and MS-SSIM are in range, and an unknown feature node is
/// named with the known ones.
#[test]
fn eval_scores_any_run_with_an_evaluator_the_user_brings() {
    let d = tempdir("pairs-eval");
    let (g, c) = onnx_pair(&d);
    let run = d.join("run");
    let args = [
        "sample",
        "--generator",
        &g,
        "--classifier",
        &c,
        "--class",
        "1,6",
        "--chains",
        "6",
        "--steps",
        "8",
        "-q",
    ];
    manifest(&ppgn_into(&args, &run, &[]), &run);
    let r = run.to_str().unwrap();
    let o = ppgn(&["eval", r]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && e.lines().count() == 1
            && e.contains("[n, 1, 28, 28]")
            && e.contains("[n, 3, 16, 16]")
            && e.contains("--evaluator"),
        "{e}"
    );
    let samples = run.join("samples.npy");
    let eval = |real: &Path, extra: &[&str]| -> serde_json::Value {
        let mut a = vec![
            "eval",
            r,
            "--evaluator",
            &c,
            "--real",
            real.to_str().unwrap(),
        ];
        a.extend(extra);
        ok(&ppgn(&a));
        serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap()
    };
    let same = eval(&samples, &[]);
    let s = &same["samples"];
    let fd = s["frechet_distance"].as_f64().unwrap();
    assert!(fd.abs() < 1e-3, "the samples against themselves: FD {fd}");
    let acc = s["evaluator_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc), "{acc}");
    for v in s["ms_ssim_per_class"].as_object().unwrap().values() {
        let v = v.as_f64().unwrap();
        assert!(v.is_finite() && v <= 1.0 + 1e-9, "MS-SSIM {v}");
    }
    // other images: noise, as a folder of PNGs is read too
    let noise = d.join("noise.npy");
    let v: Vec<f32> = (0..12 * 3 * 16 * 16)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    ppgn::data::npy::write_f32(&noise, &[12, 3, 16, 16], &v).unwrap();
    let other = eval(&noise, &["--features", "/Flatten"]);
    let fd_noise = other["samples"]["frechet_distance"].as_f64().unwrap();
    assert!(fd_noise > 1e-2, "samples against noise: FD {fd_noise}");
    assert_eq!(other["features"], "/Flatten");
    let o = ppgn(&[
        "eval",
        r,
        "--evaluator",
        &c,
        "--real",
        noise.to_str().unwrap(),
        "--features",
        "/nope",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("unknown layer \"/nope\""),
        "{e}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// `ppgn inpaint` on a pair without a data set: the real image is a PNG of
/// the generator's size, the mask is made at that size, every sample keeps
/// the known pixels exactly (the clamp of S10, eq. 25) and fills the hole;
/// a test image, a mask outside the image and an image of another size are
/// refused in one line.
#[test]
fn an_onnx_pair_inpaints_an_image_given_as_a_file() {
    let d = tempdir("pairs-inpaint");
    let (g, c) = onnx_pair(&d);
    let px: Vec<u8> = (0..16 * 16 * 3).map(|i| ((i * 37) % 256) as u8).collect();
    let png = d.join("real.png");
    std::fs::write(&png, ppgn::data::image::encode_png(&px, 16, 16, 3).unwrap()).unwrap();
    let png = png.to_str().unwrap();
    let out = d.join("run");
    let args = [
        "inpaint",
        "--generator",
        &g,
        "--classifier",
        &c,
        "--image",
        png,
        "--mask",
        "6x4@5,3",
        "--class",
        "3",
        "--chains",
        "3",
        "--steps",
        "20",
        "-q",
    ];
    let m = manifest(&ppgn_into(&args, &out, &[]), &out);
    assert_eq!(m["chains"].as_array().unwrap().len(), 3);
    let (shape, v) = ppgn::data::npy::read_f32(&out.join("samples.npy")).unwrap();
    assert_eq!(shape, vec![3, 3, 16, 16]);
    let mut hole_moved = false;
    for n in 0..3 {
        for ch in 0..3 {
            for y in 0..16 {
                for x in 0..16 {
                    let got = v[((n * 3 + ch) * 16 + y) * 16 + x];
                    let real = px[(y * 16 + x) * 3 + ch] as f32 / 255.0;
                    let inside = (5..11).contains(&x) && (3..7).contains(&y);
                    if !inside {
                        assert!(
                            (got - real).abs() < 1e-6,
                            "known pixel {n},{ch},{y},{x}: {got} vs {real}"
                        );
                    } else {
                        hole_moved |= (got - real).abs() > 1e-3;
                    }
                }
            }
        }
    }
    assert!(hole_moved, "the hole was filled");
    assert!(out.join("inpaint.png").exists());
    let small = d.join("small.png");
    std::fs::write(
        &small,
        ppgn::data::image::encode_png(&[9u8; 8 * 8], 8, 8, 1).unwrap(),
    )
    .unwrap();
    for (image, mask, needle) in [
        ("test:3", "6x4@5,3", "does not have"),
        (png, "20x4@5,3", "a patch inside the 16x16 image"),
        (small.to_str().unwrap(), "6x4@5,3", "one 16x16x3 image"),
    ] {
        let o = ppgn(&[
            "inpaint",
            "--generator",
            &g,
            "--classifier",
            &c,
            "--image",
            image,
            "--mask",
            mask,
            "--class",
            "3",
            "-q",
            "--out",
            d.join("bad").to_str().unwrap(),
        ]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && e.contains(needle) && e.lines().count() == 1,
            "{image}: {e}"
        );
        assert!(!d.join("bad").exists());
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// `ppgn restore` on an ONNX pair: the image a PNG of the generator's
/// size, exact-mala with eps2 1, tau as given (no card has the
/// generator's error), the arrays at the pair's shape; without --tau, and
/// with a test image the pair has no data set for, refused in one line.
#[test]
fn an_onnx_pair_restores_an_image_given_as_a_file() {
    let d = tempdir("pairs-restore");
    let (g, c) = onnx_pair(&d);
    let px: Vec<u8> = (0..16 * 16 * 3).map(|i| ((i * 37) % 256) as u8).collect();
    let png = d.join("real.png");
    std::fs::write(&png, ppgn::data::image::encode_png(&px, 16, 16, 3).unwrap()).unwrap();
    let png = png.to_str().unwrap();
    let out = d.join("run");
    let base = [
        "restore",
        "--generator",
        &g,
        "--classifier",
        &c,
        "--operator",
        "blur:1+down:2",
        "--noise-std",
        "0.05",
        "--chains",
        "2",
        "--steps",
        "20",
        "--record-every",
        "2",
        "-q",
    ];
    let mut args = base.to_vec();
    args.extend(["--image", png, "--tau", "0.1"]);
    let m = manifest(&ppgn_into(&args, &out, &[]), &out);
    assert_eq!(m["tau"].as_f64().unwrap(), 0.1);
    // exact-mala on every pair: the generator's declared prior
    assert_eq!(m["sampler"]["preset"], "exact-mala");
    assert_eq!(m["sampler"]["eps2"].as_f64().unwrap(), 1.0);
    let (shape, _) = ppgn::data::npy::read_f32(&out.join("observed.npy")).unwrap();
    assert_eq!(shape, vec![1, 3, 8, 8]);
    let (shape, _) = ppgn::data::npy::read_f32(&out.join("samples.npy")).unwrap();
    assert_eq!(shape, vec![1, 10, 3, 16, 16]);
    for (extra, needle) in [
        (vec!["--image", png], "give --tau"),
        (vec!["--image", "test:0", "--tau", "0.1"], "does not have"),
    ] {
        let mut args = base.to_vec();
        args.extend(extra);
        let o = ppgn_into(&args, &d.join("refused"), &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(needle), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!d.join("refused").exists());
    }
}

/// `--classifier fashion-guide` guides the shipped generator with the
/// model folder's `guide` (`ppgn train guide`): here a copy of the stack
/// whose guide is the classifier's own weights under the guide's name,
/// and which has no evaluator (sampling never reads it: the manifest says
/// there is none and has no verdicts). The run names the guide and its
/// weights' hash in the manifest, moves the chains toward the class (the
/// guide's p(trouser) rises over the run), and a folder without a guide
/// is refused in one line naming the command that makes one.
#[test]
fn the_shipped_generator_guided_by_the_folders_guide() {
    let d = tempdir("pairs-fashion-guide");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fashion-mnist");
    let stack = d.join("stack");
    std::fs::create_dir_all(&stack).unwrap();
    for f in std::fs::read_dir(&shipped).unwrap() {
        let f = f.unwrap().path();
        if !f
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("evaluator")
        {
            std::fs::copy(&f, stack.join(f.file_name().unwrap())).unwrap();
        }
    }
    let s = stack.to_str().unwrap();
    let args = |out: &str| -> Vec<String> {
        [
            "sample",
            "--models",
            s,
            "--classifier",
            "fashion-guide",
            "--class",
            "1",
            "--chains",
            "2",
            "--steps",
            "30",
            "--seed",
            "3",
            "-q",
            "--out",
            out,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let missing = d.join("missing");
    let a = args(missing.to_str().unwrap());
    let o = ppgn(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.lines().count() == 1 && e.contains("ppgn train guide"),
        "{e}"
    );
    let mut card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(stack.join("classifier.json")).unwrap()).unwrap();
    card["network"] = "guide".into();
    std::fs::write(stack.join("guide.json"), card.to_string()).unwrap();
    std::fs::copy(
        stack.join("classifier.safetensors"),
        stack.join("guide.safetensors"),
    )
    .unwrap();
    let out = d.join("run");
    let a = args(out.to_str().unwrap());
    let m = manifest(
        &ppgn(&a.iter().map(String::as_str).collect::<Vec<_>>()),
        &out,
    );
    assert_eq!(m["models"]["guide"]["name"], "fashion guide");
    assert!(
        m["evaluator"].as_str().unwrap().starts_with("none"),
        "{}",
        m["evaluator"]
    );
    assert!(m["chains"][0]["evaluator_class"].is_null());
    assert_eq!(
        m["models"]["guide"]["weights_sha256"],
        card["weights_sha256"]
    );
    for c in m["chains"].as_array().unwrap() {
        let (first, last) = (
            c["condition_value"][0].as_f64().unwrap(),
            c["final_condition_value"].as_f64().unwrap(),
        );
        assert!(last > first && last > 0.5, "p(trouser) {first} -> {last}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}
