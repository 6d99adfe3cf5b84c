//! ONNX import against PyTorch: the networks `scripts/onnx_fixtures.py`
//! exported (every imported op between them), their outputs and the
//! autograd input gradients PyTorch computed in float64 from the same
//! float32 weights. ppgn's engine must match them in f64 to rounding, in
//! f32 to a stated bound, and its reference interpreter must agree.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use ppgn::data::npy::{read_f32, read_f64};
use ppgn::models::onnx::{self, to_engine, to_onnx};
use ppgn::nn::fast::{reference, Workspace};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

/// Relative error: `max |a - b| / max |b|`.
fn rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    d / b.iter().map(|v| v.abs()).fold(1e-30, f64::max)
}

struct Fixture {
    x: Vec<f64>,
    y: Vec<f64>,
    w: Vec<f64>,
    g: Vec<f64>,
    n: usize,
}

fn fixture(name: &str) -> Fixture {
    let (xs, x) = read_f32(&dir().join(format!("{name}_x.npy"))).unwrap();
    let f = |k: &str| read_f64(&dir().join(format!("{name}_{k}.npy"))).unwrap().1;
    Fixture {
        x: x.into_iter().map(f64::from).collect(),
        y: f("y"),
        w: f("w"),
        g: f("g"),
        n: xs[0],
    }
}

/// The output and the input gradient of `sum(w * y)` by the engine, in
/// ONNX order.
fn engine<T: ppgn::nn::fast::real::Real + Default>(
    m: &onnx::Imported<T>,
    f: &Fixture,
) -> (Vec<f64>, Vec<f64>) {
    let cast = |v: &[f64]| -> Vec<T> { v.iter().map(|&a| T::from(a).unwrap()).collect() };
    let back = |v: &[T]| -> Vec<f64> { v.iter().map(|a| a.to_f64().unwrap()).collect() };
    let mut ws = Workspace::default();
    let x = cast(&to_engine(&m.input.1, &f.x));
    let y = back(m.net.forward(&x, f.n, &mut ws).unwrap());
    let w = cast(&to_engine(&m.output.1, &f.w));
    let mut gx = Vec::new();
    m.net.backward(&w, &mut ws, &mut gx).unwrap();
    (to_onnx(&m.output.1, &y), to_onnx(&m.input.1, &back(&gx)))
}

const NETWORKS: [&str; 9] = [
    "classifier",
    "elementwise",
    "elementwise13",
    "dcgan",
    "upsampler",
    "shapes",
    "upsample9",
    "handmade",
    "gelu20",
];

/// The f64 bound on the relative error of the outputs: rounding, except
/// for the classifier, whose file holds float32 constants where PyTorch's
/// float64 reference computes with exact ones (HardSigmoid's 1/6 and
/// GELU's square root of 2 are float32 attributes and exporter constants).
fn f64_bound(name: &str) -> f64 {
    if name == "classifier" {
        1e-8
    } else {
        1e-12
    }
}

#[test]
fn imported_networks_match_pytorch_in_f64_and_f32() {
    for name in NETWORKS {
        let f = fixture(name);
        let path = dir().join(format!("{name}.onnx"));
        let m = onnx::load::<f64>(&path, None, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (y, g) = engine(&m, &f);
        let (ey, eg) = (rel(&y, &f.y), rel(&g, &f.g));
        let bound = f64_bound(name);
        assert!(
            ey < bound && eg < 10.0 * bound,
            "{name} f64: output {ey:e}, gradient {eg:e}"
        );
        let m32 = onnx::load::<f32>(&path, None, None).unwrap();
        let (y, g) = engine(&m32, &f);
        let (ey, eg) = (rel(&y, &f.y), rel(&g, &f.g));
        assert!(
            ey < 1e-5 && eg < 1e-4,
            "{name} f32: output {ey:e}, gradient {eg:e}"
        );
    }
}

/// The reference interpreter runs the imported graph through candle's
/// autograd; it agrees with PyTorch too.
#[test]
fn reference_interpreter_runs_imported_networks() {
    for name in NETWORKS {
        let f = fixture(name);
        let m = onnx::load::<f64>(&dir().join(format!("{name}.onnx")), None, None).unwrap();
        let (h, w, c) = m.net.input();
        let x =
            Tensor::from_vec(to_engine(&m.input.1, &f.x), (f.n, h, w, c), &Device::Cpu).unwrap();
        let xv = candle_core::Var::from_tensor(&x).unwrap();
        let y = reference::forward(&m.net, xv.as_tensor()).unwrap();
        let wt = Tensor::from_vec(to_engine(&m.output.1, &f.w), y.shape(), &Device::Cpu).unwrap();
        let grads = (y.clone() * wt)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g: Vec<f64> = grads
            .get(&xv)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let y: Vec<f64> = y.flatten_all().unwrap().to_vec1().unwrap();
        let (ey, eg) = (
            rel(&to_onnx(&m.output.1, &y), &f.y),
            rel(&to_onnx(&m.input.1, &g), &f.g),
        );
        let bound = f64_bound(name);
        assert!(
            ey < bound && eg < 100.0 * bound,
            "{name}: output {ey:e}, gradient {eg:e}"
        );
    }
}

/// Every op the fixture script's PyTorch emits for torchvision's vgg11,
/// resnet18, mobilenet_v3_small and efficientnet_b0 is imported, docs/onnx.md
/// lists every imported op, and every imported op is in some fixture
/// network (so held to PyTorch).
#[test]
fn imported_ops_cover_torchvision_classifiers_and_the_fixtures() {
    let text = std::fs::read_to_string(dir().join("torchvision_ops.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let supported: BTreeSet<&str> = onnx::supported().into_iter().collect();
    for (model, ops) in json["ops"].as_object().unwrap() {
        for op in ops.as_array().unwrap() {
            let op = op.as_str().unwrap();
            assert!(
                supported.contains(op),
                "{model} uses {op}, which ppgn does not import"
            );
        }
    }
    // docs/onnx.md lists every op imported
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/onnx.md"))
        .unwrap();
    let words: BTreeSet<&str> = doc.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    for op in &supported {
        assert!(words.contains(op), "docs/onnx.md does not list {op}");
    }
    let mut used = BTreeSet::new();
    for name in NETWORKS {
        let m = onnx::load::<f32>(&dir().join(format!("{name}.onnx")), None, None).unwrap();
        used.extend(m.op_counts.keys().cloned());
    }
    let untested: Vec<&&str> = supported.iter().filter(|op| !used.contains(**op)).collect();
    assert!(
        untested.is_empty(),
        "imported ops no fixture network uses: {untested:?}"
    );
}

/// A fixture model decoded, changed by `edit` and encoded again.
fn edited(edit: impl FnOnce(&mut onnx::proto::ModelProto)) -> Vec<u8> {
    use prost::Message;
    let bytes = std::fs::read(dir().join("classifier.onnx")).unwrap();
    let mut m = onnx::proto::ModelProto::decode(&bytes[..]).unwrap();
    edit(&mut m);
    m.encode_to_vec()
}

fn import_error(bytes: &[u8]) -> String {
    onnx::from_bytes::<f32>(bytes, None, None).unwrap_err()
}

/// Broken files give one line naming what is wrong (and, for a node,
/// which node), not a panic.
#[test]
fn broken_onnx_files_are_refused_with_one_clear_line() {
    let good = std::fs::read(dir().join("classifier.onnx")).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "not an ONNX model",
        ),
        (
            "not protobuf",
            b"hello, this is not a model".to_vec(),
            "not an ONNX model",
        ),
        ("empty", Vec::new(), "without a graph"),
        (
            "out of order (a cycle)",
            edited(|m| m.graph.as_mut().unwrap().node.reverse()),
            "which no earlier node",
        ),
        (
            "missing initializer",
            edited(|m| {
                m.graph.as_mut().unwrap().initializer.remove(0);
            }),
            "missing initializer",
        ),
        (
            "unsupported op",
            edited(|m| m.graph.as_mut().unwrap().node[1].op_type = "Celu".into()),
            "1 op type(s) ppgn does not import: Celu (1 node, first ",
        ),
        (
            "custom domain",
            edited(|m| m.graph.as_mut().unwrap().node[1].domain = "com.example".into()),
            "of domain \"com.example\" (1 node",
        ),
        (
            "weights that do not fit",
            edited(|m| {
                let t = &mut m.graph.as_mut().unwrap().initializer[0];
                t.dims[0] += 1;
            }),
            "need",
        ),
        (
            "weights too large for any machine",
            edited(|m| m.graph.as_mut().unwrap().initializer[0].dims = vec![1 << 20, 1 << 20]),
            "more than 268435456 values",
        ),
        (
            "float16 weights",
            edited(|m| m.graph.as_mut().unwrap().initializer[0].data_type = 10),
            "float16",
        ),
        ("no opset", edited(|m| m.opset_import.clear()), "opset"),
        (
            "an open image size",
            edited(|m| {
                let i = &mut m.graph.as_mut().unwrap().input[0];
                let t = i.r#type.as_mut().unwrap().tensor_type.as_mut().unwrap();
                t.shape.as_mut().unwrap().dim[2].dim_value = None;
            }),
            "dimension 2 is not fixed",
        ),
    ];
    for (what, bytes, want) in cases {
        let e = import_error(&bytes);
        assert!(e.contains(want) && !e.contains('\n'), "{what}: {e}");
    }
    // every unknown op type is listed at once, with its count and first node
    let e = import_error(&edited(|m| {
        let nodes = &mut m.graph.as_mut().unwrap().node;
        nodes[1].op_type = "Celu".into();
        nodes[1].name = "first_celu".into();
        nodes[2].op_type = "Celu".into();
        nodes[3].op_type = "Mish".into();
    }));
    assert!(
        e.starts_with("2 op type(s)")
            && e.contains("Celu (2 nodes, first first_celu)")
            && e.contains("Mish (1 node, first ")
            && e.contains("it imports the standard ONNX ops Add, "),
        "{e}"
    );
    // an op imported in general but not in this form still names its node
    let e = import_error(&edited(|m| {
        let n = &mut m.graph.as_mut().unwrap().node[1];
        n.op_type = "Range".into();
        n.name = "range_on_data".into();
    }));
    assert!(e.starts_with("node range_on_data (Range)"), "{e}");
    // asking for an input or output the model does not have
    let e = onnx::from_bytes::<f32>(&good, Some("image"), None).unwrap_err();
    assert!(
        e.contains("no input named \"image\"") && e.contains("\"x\""),
        "{e}"
    );
    let e = onnx::from_bytes::<f32>(&good, None, Some("logits")).unwrap_err();
    assert!(e.contains("no value named \"logits\""), "{e}");
}

/// A sidecar beside copies of the fixture networks in a fresh folder.
fn sidecar(d: &Path, file: &str, body: &str) -> PathBuf {
    for f in ["classifier.onnx", "dcgan.onnx"] {
        std::fs::copy(dir().join(f), d.join(f)).unwrap();
    }
    let p = d.join(file);
    std::fs::write(&p, body).unwrap();
    p
}

/// `ppgn onnx eval` writes PyTorch's output for the fixture's input, and
/// its `--grad-of` gradient equals central differences of two more evals;
/// `ppgn onnx check` reports every node imported and a small error.
#[test]
fn onnx_eval_and_check_commands() {
    use ppgn::data::npy::write_f64;
    let d = crate::tempdir("onnx-eval");
    let f = fixture("classifier");
    let x = d.join("x.npy");
    write_f64(&x, &[2, 3, 16, 16], &f.x).unwrap();
    let net = dir().join("classifier.onnx");
    let eval = |input: &Path, out: &Path, grad: bool| {
        let mut args = vec![
            "onnx",
            "eval",
            net.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        let g = d.join("g.npy");
        if grad {
            args.extend(["--grad-of", "3", "--grad-out", g.to_str().unwrap()]);
        }
        let o = crate::ppgn(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        read_f64(out).unwrap().1
    };
    let y = eval(&x, &d.join("y.npy"), true);
    assert!(rel(&y, &f.y) < f64_bound("classifier"), "{}", rel(&y, &f.y));
    let g = read_f64(&d.join("g.npy")).unwrap().1;
    for i in [5usize, 300, 1000] {
        let h = 1e-6;
        let mut xs = f.x.clone();
        xs[i] += h;
        write_f64(&d.join("xp.npy"), &[2, 3, 16, 16], &xs).unwrap();
        let yp = eval(&d.join("xp.npy"), &d.join("yp.npy"), false);
        xs[i] -= 2.0 * h;
        write_f64(&d.join("xm.npy"), &[2, 3, 16, 16], &xs).unwrap();
        let ym = eval(&d.join("xm.npy"), &d.join("ym.npy"), false);
        let s = i / (3 * 16 * 16); // the sample coordinate i belongs to
        let fd = (yp[s * 10 + 3] - ym[s * 10 + 3]) / (2.0 * h);
        assert!(
            (fd - g[i]).abs() < 1e-6 * g.iter().fold(1.0f64, |a, v| a.max(v.abs())),
            "coordinate {i}: {fd} vs {}",
            g[i]
        );
    }
    // a batch of the wrong shape is refused, naming the expected one
    write_f64(&d.join("bad.npy"), &[2, 3, 8, 8], &vec![0.0; 384]).unwrap();
    let o = crate::ppgn(&[
        "onnx",
        "eval",
        net.to_str().unwrap(),
        "--input",
        d.join("bad.npy").to_str().unwrap(),
        "--out",
        d.join("o.npy").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("[n, 3, 16, 16]"),
        "{err}"
    );
    // check, through a sidecar
    let side = sidecar(
        &d,
        "c.toml",
        "[network]\nonnx = \"classifier.onnx\"\nkind = \"classifier\"\n",
    );
    let o = crate::ppgn(&["onnx", "check", side.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["ops"]["Conv"], 6);
    assert!(r["fd_worst"].as_f64().unwrap() < 1e-6, "{r}");
    assert!(r["sidecar"].as_str().unwrap().contains("10 classes"), "{r}");
}

/// Wrong sidecar fields give one clear error each.
#[test]
fn broken_sidecars_are_refused_with_a_clear_error() {
    let d = crate::tempdir("onnx-sidecar");
    let cases = [
        ("[network]\nonnx = \"classifier.onnx\"\nkind = \"classifier\"\nimage = [1, 28, 28]\n", "image = Some([1, 28, 28]), the network's input is [3, 16, 16]"),
        ("[network]\nonnx = \"classifier.onnx\"\nkind = \"classifier\"\nmean = [0.5]\n", "mean has 1 values; the network reads 3 channels"),
        ("[network]\nonnx = \"classifier.onnx\"\nkind = \"classifer\"\n", "not a ppgn sidecar"),
        ("[network]\nonnx = \"classifier.onnx\"\nkind = \"classifier\"\ncolour = true\n", "unknown field `colour`"),
        ("[network]\nonnx = \"missing.onnx\"\nkind = \"classifier\"\n", "missing.onnx"),
        ("[network]\nonnx = \"classifier.onnx\"\nkind = \"classifier\"\ncode = 100\n", "`code` does not belong to a network of kind Classifier"),
        ("[network]\nonnx = \"dcgan.onnx\"\nkind = \"generator\"\n", "needs output_range"),
        ("[network]\nonnx = \"dcgan.onnx\"\nkind = \"generator\"\noutput_range = [-1.0, 1.0]\ncode = 100\n", "code = Some(100), the network's input is [16]"),
        ("[network]\nonnx = \"classifier.onnx\"\nkind = \"classifier\"\nclasses = \"names.txt\"\n", "names.txt"),
    ];
    for (i, (body, want)) in cases.into_iter().enumerate() {
        let p = sidecar(&d, &format!("s{i}.toml"), body);
        let o = crate::ppgn(&["onnx", "check", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(want) && err.trim().lines().count() == 1,
            "case {i}: {err}"
        );
    }
}

/// Sampling with a generator and a classifier both brought as ONNX files:
/// an ordinary run folder whose manifest names the files and their hashes,
/// and chains that raise the requested class's probability.
#[test]
fn sampling_with_imported_networks() {
    let d = crate::tempdir("onnx-sample");
    let g = sidecar(
        &d,
        "g.toml",
        "[network]\nonnx = \"dcgan.onnx\"\nkind = \"generator\"\noutput_range = [-1.0, 1.0]\n",
    );
    std::fs::write(
        d.join("names.txt"),
        (0..10).map(|i| format!("thing {i}\n")).collect::<String>(),
    )
    .unwrap();
    let c = sidecar(
        &d,
        "c.toml",
        "[network]\nonnx = \"classifier.onnx\"\nkind = \"classifier\"\nclasses = \"names.txt\"\n",
    );
    let out = d.join("run");
    let o = crate::ppgn_into(
        &[
            "sample",
            "--generator",
            g.to_str().unwrap(),
            "--classifier",
            c.to_str().unwrap(),
            "--class",
            "thing 7,2",
            "--chains",
            "4",
            "--steps",
            "40",
            "--seed",
            "3",
        ],
        &out,
        &["--quiet"],
    );
    let m = crate::manifest(&o, &out);
    assert_eq!(m["sampler"]["preset"], "faces");
    assert_eq!(
        m["models"]["classifier"]["sha256"].as_str().unwrap().len(),
        64
    );
    assert!(m["models"]["generator"]["onnx"]
        .as_str()
        .unwrap()
        .ends_with("dcgan.onnx"));
    let chains = m["chains"].as_array().unwrap();
    assert_eq!(chains.len(), 8);
    assert_eq!(chains[0]["class_name"], "thing 7");
    // the requested class's probability rose, on average over each
    // class's chains (the random-weight classifier is nearly flat: small
    // rises, but a gradient of the wrong sign would lower them)
    let last = chains[0]["condition_value"].as_array().unwrap().len() - 1;
    for group in chains.chunks(4) {
        let mean = |k: usize| -> f64 {
            group
                .iter()
                .map(|c| c["condition_value"][k].as_f64().unwrap())
                .sum::<f64>()
                / 4.0
        };
        assert!(
            mean(last) > mean(0),
            "{}: p(class) {} -> {}",
            group[0]["class_name"],
            mean(0),
            mean(last)
        );
    }
    let (shape, _) = read_f32(&out.join("samples.npy")).unwrap();
    assert_eq!(shape, [8, 3, 16, 16]);
}

/// `--neuron NODE:UNIT` on an imported classifier: any node's output, by
/// its ONNX name; an unknown node lists the known ones.
#[test]
fn neuron_of_an_imported_classifier() {
    let d = crate::tempdir("onnx-neuron");
    let g = sidecar(
        &d,
        "g.toml",
        "[network]\nonnx = \"dcgan.onnx\"\nkind = \"generator\"\noutput_range = [-1.0, 1.0]\n",
    );
    let c = sidecar(
        &d,
        "c.toml",
        "[network]\nonnx = \"classifier.onnx\"\nkind = \"classifier\"\n",
    );
    let out = d.join("run");
    let args = |neuron: &'static str| -> Vec<String> {
        [
            "sample",
            "--generator",
            g.to_str().unwrap(),
            "--classifier",
            c.to_str().unwrap(),
            "--neuron",
            neuron,
            "--chains",
            "3",
            "--steps",
            "30",
            "--seed",
            "2",
            "--quiet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |neuron: &'static str| {
        let a = args(neuron);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        crate::ppgn_into(&a, &out, &["--force"])
    };
    let o = run("/depthwise/depthwise.1/HardSwish:3");
    let m = crate::manifest(&o, &out);
    assert_eq!(m["neuron"], "/depthwise/depthwise.1/HardSwish:3");
    let chains = m["chains"].as_array().unwrap();
    let mean = |k: usize| {
        chains
            .iter()
            .map(|c| c["condition_value"][k].as_f64().unwrap())
            .sum::<f64>()
            / 3.0
    };
    let last = chains[0]["condition_value"].as_array().unwrap().len() - 1;
    assert!(
        mean(last) > mean(0),
        "activation {} -> {}",
        mean(0),
        mean(last)
    );
    let o = run("/nope:3");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("unknown layer") && err.contains("/stem/stem.2/Relu"),
        "{err}"
    );
}

/// `ppgn visualize --classifier FILE.toml`: pixel-space images for an
/// imported classifier, at its own image size, by class and by unit.
#[test]
fn visualize_with_an_imported_classifier() {
    let d = crate::tempdir("onnx-visualize");
    let c = sidecar(
        &d,
        "c.toml",
        "[network]\nonnx = \"classifier.onnx\"\nkind = \"classifier\"\n",
    );
    let out = d.join("run");
    let o = crate::ppgn_into(
        &[
            "visualize",
            "--classifier",
            c.to_str().unwrap(),
            "--class",
            "3",
            "--chains",
            "2",
            "--steps",
            "30",
            "--quiet",
        ],
        &out,
        &[],
    );
    let m = crate::manifest(&o, &out);
    assert_eq!(m["side"], 16);
    assert!(m["classifier"]["sha256"].is_string());
    let chains = m["chains"].as_array().unwrap();
    for ch in chains {
        let v = ch["value"].as_array().unwrap();
        assert!(
            v.last().unwrap().as_f64() > v[0].as_f64(),
            "p(class) did not rise: {v:?}"
        );
    }
    let (shape, _) = read_f32(&out.join("samples.npy")).unwrap();
    assert_eq!(shape, [2, 3, 16, 16]);
    let out2 = d.join("unit");
    let o = crate::ppgn_into(
        &[
            "visualize",
            "--classifier",
            c.to_str().unwrap(),
            "--neuron",
            "/dilated/Conv:4",
            "--chains",
            "1",
            "--steps",
            "5",
            "--quiet",
        ],
        &out2,
        &[],
    );
    let m = crate::manifest(&o, &out2);
    assert_eq!(m["condition"]["layer"], "/dilated/Conv");
}

/// A value a fuzzer likes: small, zero, negative, huge.
fn nasty(r: &mut rand_chacha::ChaCha8Rng) -> i64 {
    use rand::Rng;
    match r.random_range(0..6) {
        0 => 0,
        1 => -r.random_range(1..5),
        2 => r.random_range(1..8),
        3 => i64::MAX - r.random_range(0..3),
        4 => i64::MIN + r.random_range(0..3),
        _ => 1 << r.random_range(20..40),
    }
}

/// Seeded structural fuzzing of the importer: every fixture network with
/// random edits (an initializer's dimensions, attribute integers, an
/// input's shape, a node's inputs, truncated or flipped bytes) either
/// imports or gives an error; it never panics, and what imports runs a
/// forward and backward pass without panicking.
#[test]
fn fuzzed_onnx_files_never_panic() {
    use prost::Message;
    use rand::{Rng, SeedableRng};
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(16);
    let files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    let (mut imported, mut refused) = (0, 0);
    for k in 0..1000 {
        let bytes = std::fs::read(&files[k % files.len()]).unwrap();
        let mut m = onnx::proto::ModelProto::decode(&bytes[..]).unwrap();
        let g = m.graph.as_mut().unwrap();
        for _ in 0..r.random_range(1..4) {
            match r.random_range(0..5) {
                0 if !g.initializer.is_empty() => {
                    let i = r.random_range(0..g.initializer.len());
                    let t = &mut g.initializer[i];
                    if !t.dims.is_empty() {
                        let d = r.random_range(0..t.dims.len());
                        t.dims[d] = nasty(&mut r);
                    }
                }
                1 => {
                    let n = r.random_range(0..g.node.len());
                    for a in &mut g.node[n].attribute {
                        a.i = nasty(&mut r);
                        for v in &mut a.ints {
                            *v = nasty(&mut r);
                        }
                    }
                }
                2 => {
                    let dims = &mut g.input[0].r#type.as_mut().unwrap();
                    let shape = dims.tensor_type.as_mut().unwrap().shape.as_mut().unwrap();
                    let d = r.random_range(0..shape.dim.len());
                    shape.dim[d].dim_value = Some(nasty(&mut r));
                }
                3 => {
                    let (a, b) = (
                        r.random_range(0..g.node.len()),
                        r.random_range(0..g.node.len()),
                    );
                    if let (Some(x), false) = (
                        g.node[b].output.first().cloned(),
                        g.node[a].input.is_empty(),
                    ) {
                        g.node[a].input[0] = x;
                    }
                }
                _ => {}
            }
        }
        let mut bytes = m.encode_to_vec();
        if k % 5 == 4 {
            let at = r.random_range(0..bytes.len());
            bytes[at] ^= 1 << r.random_range(0..8);
            bytes.truncate(r.random_range(at..=bytes.len()));
        }
        let run = std::panic::catch_unwind(|| {
            let Ok(m) = onnx::from_bytes::<f32>(&bytes, None, None) else {
                return false;
            };
            let (h, w, c) = m.net.input();
            // a valid but large image would only take time
            if h * w * c > 1 << 16 {
                return true;
            }
            let x = vec![0.5f32; h * w * c];
            let mut ws = Workspace::default();
            if let Ok(y) = m.net.forward(&x, 1, &mut ws) {
                let dy = vec![1.0f32; y.len()];
                let mut dx = Vec::new();
                let _ = m.net.backward(&dy, &mut ws, &mut dx);
            }
            true
        });
        match run {
            Ok(true) => imported += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!("case {k} ({}) panicked", files[k % files.len()].display()),
        }
    }
    // the edits are neither all harmless nor all fatal
    assert!(
        imported > 10 && refused > 10,
        "{imported} imported, {refused} refused"
    );
    eprintln!("{imported} imported, {refused} refused");
}
