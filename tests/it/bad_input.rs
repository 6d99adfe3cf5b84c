//! Bad input through the command line, as a user would give it: every
//! case exits non-zero with one clear line on stderr naming what is wrong,
//! and leaves nothing behind (no output folder, no hidden partial folder).
//! The files the cases read are written here, broken on purpose.

use std::path::Path;

use super::{ppgn, tempdir};

/// Broken and odd files for the cases, in `d`.
fn write_inputs(d: &Path) {
    let w = |name: &str, bytes: &[u8]| std::fs::write(d.join(name), bytes).unwrap();
    w("bad.toml", b"not a toml [");
    w("badtype.toml", b"eps2 = \"x\"\n");
    w("unknown.toml", b"bogus = 1\n");
    w("nan.toml", b"eps1 = nan\n");
    w("candidates.toml", b"start_candidates = 8\n");
    w("mala.toml", b"sampler = \"mala\"\nprior = \"gaussian\"\n");
    w("no-candidates.toml", b"start_candidates = 0\n");
    w("notpng.png", b"hello");
    w("not.onnx", b"hello");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fashion-mnist");
    let weights = std::fs::read(shipped.join("classifier.safetensors")).unwrap();
    // a model folder whose classifier was cut short
    let tm = d.join("truncated-models");
    std::fs::create_dir_all(&tm).unwrap();
    for f in std::fs::read_dir(&shipped).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, tm.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(tm.join("classifier.safetensors"), &weights[..100]).unwrap();
    // model folders whose generator card has no error-by-value table, and
    // one whose table descends
    let card = std::fs::read_to_string(shipped.join("generator.json")).unwrap();
    let card: serde_json::Value = serde_json::from_str(&card).unwrap();
    for (name, table) in [
        ("untabled-models", None),
        ("bad-table-models", Some([0.3, 0.1])),
    ] {
        let m = d.join(name);
        std::fs::create_dir_all(&m).unwrap();
        for f in std::fs::read_dir(&shipped).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, m.join(f.file_name().unwrap())).unwrap();
        }
        let mut card = card.clone();
        let t = &mut card["error_by_value"];
        match table {
            None => *t = serde_json::Value::Null,
            Some(q) => t["quantiles"][0] = serde_json::json!(q),
        }
        std::fs::write(m.join("generator.json"), card.to_string()).unwrap();
    }
    // a run folder with a truncated samples.npy, and an empty one
    let run = d.join("broken-run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("samples.npy"), b"\x93NUMPY\x01\x00").unwrap();
    std::fs::write(run.join("labels.npy"), b"\x93NUMPY\x01\x00").unwrap();
    std::fs::create_dir_all(d.join("empty-run")).unwrap();
    std::fs::create_dir_all(d.join("existing")).unwrap();
    // --init files: codes of the wrong width, a NaN, images of the wrong size
    let npy = |name: &str, shape: &[usize], v: &[f32]| {
        ppgn::data::npy::write_f32(&d.join(name), shape, v).unwrap()
    };
    npy("codes-narrow.npy", &[1, 5], &[0.0; 5]);
    npy("codes-nan.npy", &[1, 256], &[f32::NAN; 256]);
    npy("codes-few.npy", &[3, 256], &[0.0; 768]);
    npy("images-small.npy", &[1, 1, 16, 16], &[0.5; 256]);
    npy("images-28.npy", &[1, 1, 28, 28], &[0.5; 784]);
    ppgn::data::image::save_grid(&d.join("mask-small.png"), &[1.0; 256], 1, (16, 16, 1), 1)
        .unwrap();
    // a run of 3x16x16 images, which the default evaluator cannot read
    let rgb = d.join("rgb-run");
    std::fs::create_dir_all(&rgb).unwrap();
    ppgn::data::npy::write_f32(&rgb.join("samples.npy"), &[2, 3, 16, 16], &[0.5; 1536]).unwrap();
    ppgn::data::npy::write_i64(&rgb.join("labels.npy"), &[2], &[0, 1]).unwrap();
}

#[test]
fn forty_kinds_of_bad_input_each_give_one_clear_line_and_leave_nothing() {
    let d = tempdir("bad-input");
    write_inputs(&d);
    let p = |name: &str| d.join(name).to_str().unwrap().to_string();
    let out = p("out");
    let o = out.as_str();
    // `ppgn sample` with `v`, two steps unless `v` says
    let s = |v: &[&str]| -> Vec<String> {
        let mut a = vec!["sample".to_string()];
        a.extend(v.iter().map(|x| x.to_string()));
        if !v.contains(&"--steps") {
            a.extend(["--steps".into(), "2".into()]);
        }
        a
    };
    // `ppgn restore` of test image 0 with `v`, two steps
    let s_restore = |v: &[&str]| -> Vec<String> {
        let mut a = vec!["restore".to_string(), "--steps".into(), "2".into()];
        a.extend(v.iter().map(|x| x.to_string()));
        a
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        // unknown names
        (s(&["--class", "sock"]), "unknown class \"sock\""),
        (s(&["--class", "10"]), "expected an index 0..10"),
        (s(&["--preset", "nope"]), "unknown preset \"nope\""),
        (
            s(&["--sampler", "nope"]),
            "possible values: map, mala-approx",
        ),
        (s(&["--prior", "nope"]), "possible values: joint"),
        (s(&["--engine", "gpu"]), "possible values: fast, reference"),
        (s(&["--gradient", "nope"]), "possible values: logit"),
        (s(&["--neuron", "nope:1"]), "unknown layer \"nope\""),
        (
            s(&["--init", "nope"]),
            "expected random, test:INDEX, codes:FILE.npy",
        ),
        (
            s(&["--generator", "nope", "--classifier", "efficientnet-lite0"]),
            "--generator nope with --classifier efficientnet-lite0",
        ),
        (
            vec!["visualize".into(), "--class".into(), "nope".into()],
            "did you mean one of",
        ),
        (
            vec!["train".into(), "nope".into()],
            "possible values: classifier",
        ),
        (
            vec!["models".into(), "tensors".into(), "nope".into()],
            "unknown network \"nope\"",
        ),
        (
            vec!["train".into(), "guide".into(), "--adversarial".into(), "linf:0.1".into()],
            "l2:EPS with EPS > 0",
        ),
        (
            vec!["train".into(), "h-dae".into(), "--noise-std".into(), "0.1".into()],
            "--noise-std or --adversarial with h-dae",
        ),
        // out-of-range and non-finite numbers
        (s(&["--chains", "0"]), "chains = 0: expected at least 1"),
        (s(&["--chains", "abc"]), "invalid value 'abc' for '--chains"),
        (s(&["--steps", "0"]), "steps = 0: expected at least 1"),
        (
            s(&["--step", "-0.5"]),
            "step = -0.5: expected a positive number",
        ),
        (s(&["--step", "nan"]), "step = NaN"),
        (s(&["--eps1", "inf"]), "eps1 = inf: expected a finite"),
        (s(&["--eps2", "nan"]), "eps2 = NaN"),
        (s(&["--eps3", "-1"]), "eps3 = -1"),
        (
            s(&["--adapt", "1.5"]),
            "adapt = 1.5: expected a target acceptance",
        ),
        (s(&["--record-every", "0"]), "record_every = 0"),
        (
            s(&["--keep-above", "1.5"]),
            "expected a probability in [0, 1]",
        ),
        (s(&["--clip", "5,1"]), "LO <= HI"),
        (
            s(&["--sampler", "hmc", "--leapfrog-steps", "0"]),
            "leapfrog step",
        ),
        (
            s(&["--neuron", "h:9999"]),
            "neuron channel 9999 does not exist",
        ),
        (
            s(&["--neuron", "h1:3@99,99"]),
            "at column 99, row 99 does not exist",
        ),
        (
            s(&["--init", "test:99999"]),
            "an image of the test set, 0..10000",
        ),
        (
            s(&["--class", "1", "--chains", "100000000"]),
            "the memory of the run",
        ),
        (
            s(&["--scale", "0"]),
            "scale = 0: expected a factor from 1 to 32",
        ),
        (s(&["--batch", "0"]), "batch = 0: expected at least 1 chain"),
        (
            s(&["--shard", "3/2"]),
            "shard = 3/2: expected K/N with 1 <= K <= N",
        ),
        (
            s(&["--chains", "2", "--batch", "1", "--shard", "3/4"]),
            "at most 2 shards",
        ),
        (
            vec!["report".into(), "--budgets".into(), "0".into()],
            "positive gradient-evaluation counts",
        ),
        (
            vec![
                "train".into(),
                "classifier".into(),
                "--lr".into(),
                "-1".into(),
            ],
            "--lr = -1: expected a positive number",
        ),
        // combinations the samplers cannot run
        (
            s(&["--sampler", "mala", "--prior", "joint"]),
            "needs log-density values",
        ),
        (
            s(&["--prior", "x-dae", "--sampler", "mh"]),
            "needs log-density values",
        ),
        (
            s(&["--sampler", "reverse-diffusion", "--prior", "joint"]),
            "the reverse-diffusion sampler with the joint prior: it anneals the score prior's noise level",
        ),
        (
            s(&["--sampler", "probability-flow", "--prior", "gaussian"]),
            "the probability-flow sampler with the gaussian prior",
        ),
        (
            s(&["--preset", "ppgn-score", "--autotune"]),
            "--autotune with reverse-diffusion",
        ),
        (
            vec![
                "models".into(),
                "score-draws".into(),
                "--config".into(),
                p("mala.toml"),
            ],
            "drawing the score prior alone with mala",
        ),
        (
            vec!["models".into(), "score-draws".into(), "--draws".into(), "0".into()],
            "draws = 0: expected at least 1",
        ),
        // malformed and truncated files
        (s(&["--config", &p("bad.toml")]), "not valid TOML"),
        (
            s(&["--config", &p("badtype.toml")]),
            "invalid type: string \"x\"",
        ),
        (
            s(&["--config", &p("unknown.toml")]),
            "unknown setting \"bogus\"",
        ),
        (s(&["--config", &p("nan.toml")]), "eps1 = NaN"),
        (
            s(&["--config", &p("no-candidates.toml")]),
            "start_candidates = 0: expected at least 1",
        ),
        (
            s(&["--config", &p("candidates.toml")]),
            "use it with the flow prior",
        ),
        (
            s(&[
                "--preset",
                "exact-mala",
                "--config",
                &p("candidates.toml"),
                "--init",
                "test:3",
            ]),
            "start_candidates = 8: expected 1 when the chains start from an image",
        ),
        (s(&["--config", &p("missing.toml")]), "missing.toml"),
        (s(&["--models", &p("truncated-models")]), "may be truncated"),
        (
            vec!["eval".into(), p("broken-run")],
            "not a readable .npy file",
        ),
        (vec!["eval".into(), p("empty-run")], "samples.npy"),
        (
            vec!["onnx".into(), "check".into(), p("not.onnx")],
            "not an ONNX model",
        ),
        (
            vec![
                "inpaint".into(),
                "--image".into(),
                "test:0".into(),
                "--mask".into(),
                p("notpng.png"),
                "--class".into(),
                "1".into(),
            ],
            "not a PNG",
        ),
        // restoration: the operator, the image, the mask, the noise
        (
            s_restore(&["--operator", "smear:2"]),
            "blur:SIGMA, down:K or noise",
        ),
        (
            s_restore(&["--operator", "down:3"]),
            "a divisor of both sides",
        ),
        (
            s_restore(&["--image", &p("images-small.npy")]),
            "what the generator makes",
        ),
        (
            s_restore(&["--operator", &format!("mask:{}", p("mask-small.png"))]),
            "28x28",
        ),
        (
            s_restore(&["--noise-std", "-0.1"]),
            "a standard deviation of 0 or more",
        ),
        (
            s_restore(&["--draw-error", "by-value", "--models", &p("untabled-models")]),
            "--draw-error by-value with fashion: its generator's error by value is not on a card",
        ),
        (
            s_restore(&["--models", &p("bad-table-models")]),
            "expected bins of at least 2 ascending finite quantiles",
        ),
        (s_restore(&["--tau", "0"]), "a noise level or a tau above 0"),
        (s_restore(&["--tau", "-0.1"]), "0 or more"),
        (
            s_restore(&["--tau", "wide"]),
            "or a .npy file of one per pixel",
        ),
        (
            s_restore(&["--tau", &p("images-small.npy")]),
            "one value or one per pixel (784)",
        ),
        (
            s_restore(&["--resume"]),
            "--resume is a flag of ppgn sample",
        ),
        (
            s_restore(&["--eval", "2", "--samplers", "nuts-ish"]),
            "unknown preset",
        ),
        (
            s_restore(&["--eval", "0"]),
            "a number of test images (1 or more), test:A-B or val:A-B",
        ),
        (
            s_restore(&["--preset", "paper-inpaint", "--operator", "down:2"]),
            "a mask (mask:WxH@X,Y or mask:FILE.png) for --preset paper-inpaint",
        ),
        (
            s_restore(&["--class", "dress"]),
            "or preset paper-inpaint, the paper's inpainting",
        ),
        (
            s_restore(&["--preset", "paper-inpaint", "--image", &p("images-28.npy")]),
            "only the data set's images (test:N, val:N) have a label",
        ),
        // wrong shapes
        (
            vec![
                "inpaint".into(),
                "--image".into(),
                "test:0".into(),
                "--mask".into(),
                "99x99@0,0".into(),
                "--class".into(),
                "1".into(),
            ],
            "a patch inside the 28x28 image",
        ),
        // missing models
        (
            s(&["--models", &p("no-such-folder")]),
            "classifier.safetensors: missing",
        ),
        // existing output folders and runs to resume that do not exist
        (
            vec![
                "sample".into(),
                "--steps".into(),
                "2".into(),
                "--out".into(),
                p("existing"),
            ],
            "exists: choose another --out or pass --force",
        ),
        (s(&["--resume"]), "no interrupted run"),
        // --init files, and what a pair does not bring
        (
            s(&["--init", &format!("codes:{}", p("codes-narrow.npy"))]),
            "[rows, 256] float32 codes",
        ),
        (
            s(&["--init", &format!("codes:{}", p("codes-nan.npy"))]),
            "hold a NaN",
        ),
        (
            s(&[
                "--init",
                &format!("codes:{}", p("codes-few.npy")),
                "--chains",
                "2",
                "--class",
                "1,2",
            ]),
            "one row for every chain, or a row per chain (at least 4)",
        ),
        (
            s(&["--init", &format!("images:{}", p("images-small.npy"))]),
            "[rows, 1, 28, 28] float32 images",
        ),
        (s(&["--init", "codes:"]), "codes:FILE.npy"),
        (
            s(&[
                "--generator",
                "dcgan-faces",
                "--classifier",
                "efficientnet-lite0",
                "--init",
                "test:3",
            ]),
            "needs a data set of real images (test:N, val:N), which dcgan-faces does not have",
        ),
        (
            s(&[
                "--generator",
                "dcgan-faces",
                "--classifier",
                "efficientnet-lite0",
                "--class",
                "all",
            ]),
            "at most 100 classes for `all`",
        ),
        (
            vec!["eval".into(), p("rgb-run")],
            "for other images give --evaluator FILE.toml and --real IMAGES",
        ),
        (
            vec![
                "eval".into(),
                p("rgb-run"),
                "--evaluator".into(),
                "efficientnet-lite0".into(),
            ],
            "--real IMAGES",
        ),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for (args, needle) in &cases {
        let mut all: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
        let writes = !matches!(all[0], "eval" | "onnx" | "models" | "train" | "report");
        if writes && !all.contains(&"--out") {
            all.extend(["--out", o]);
        }
        if matches!(all[0], "sample" | "inpaint" | "restore") {
            all.push("-q");
        }
        let r = ppgn(&all);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{all:?} succeeded");
        assert!(err.contains(needle), "{all:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{all:?}: {err}");
        assert!(!Path::new(o).exists(), "{all:?} wrote {o}");
        assert!(
            !d.join(".out.partial").exists(),
            "{all:?} left a partial run"
        );
    }
    // the existing folder is untouched
    assert_eq!(std::fs::read_dir(d.join("existing")).unwrap().count(), 0);
}
