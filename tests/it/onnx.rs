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

const NETWORKS: [&str; 5] = [
    "classifier",
    "elementwise",
    "elementwise13",
    "dcgan",
    "upsampler",
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
/// resnet18, mobilenet_v3_small and efficientnet_b0 is imported, and every
/// imported op is in some fixture network.
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
    let mut used = BTreeSet::new();
    for name in NETWORKS {
        let m = onnx::load::<f32>(&dir().join(format!("{name}.onnx")), None, None).unwrap();
        used.extend(m.op_counts.keys().cloned());
    }
    let untested: Vec<&&str> = supported.iter().filter(|op| !used.contains(**op)).collect();
    println!("imported ops no fixture network uses: {untested:?}");
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
        ("truncated", good[..good.len() / 2].to_vec(), "not an ONNX model"),
        ("not protobuf", b"hello, this is not a model".to_vec(), "not an ONNX model"),
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
            "does not import Celu",
        ),
        (
            "custom domain",
            edited(|m| m.graph.as_mut().unwrap().node[1].domain = "com.example".into()),
            "domain \"com.example\"",
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
            "float16 weights",
            edited(|m| m.graph.as_mut().unwrap().initializer[0].data_type = 10),
            "float16",
        ),
        (
            "no opset",
            edited(|m| m.opset_import.clear()),
            "opset",
        ),
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
    // the node is named
    let e = import_error(&edited(|m| m.graph.as_mut().unwrap().node[1].op_type = "Celu".into()));
    assert!(e.starts_with("node "), "{e}");
    // asking for an input or output the model does not have
    let e = onnx::from_bytes::<f32>(&good, Some("image"), None).unwrap_err();
    assert!(e.contains("no input named \"image\"") && e.contains("\"x\""), "{e}");
    let e = onnx::from_bytes::<f32>(&good, None, Some("logits")).unwrap_err();
    assert!(e.contains("no value named \"logits\""), "{e}");
}
