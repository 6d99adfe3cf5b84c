//! Networks brought as ONNX files, imported into the sampling engine: the
//! graph becomes one [`Net`] (forward and input gradient for every op), with
//! no Python and no ONNX runtime at run time.
//!
//! The file is decoded with `prost` from message types declared in
//! [`proto`] (no generated code, no `protoc`, no build script). Constant
//! subgraphs, which exporters emit for shape arithmetic, are evaluated at
//! load ([`fold`]); every other node is lowered to engine ops
//! ([`lower`], [`layers`]) in the engine's NHWC layout: ONNX `[n, c, h,
//! w]` is the engine's `(h, w, c)` per sample, `[n, f]` is `(1, 1, f)`,
//! and ops that reorder values (a channel-major flatten, a transpose)
//! become gathers. Batch normalisation, per-channel scales and the
//! activations after a convolution are folded into it.

pub mod conv;
pub mod fold;
pub mod graph;
pub mod layers;
pub mod lower;
pub mod movement;
pub mod proto;
pub mod shape;
pub mod tensor;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use prost::Message;

use crate::error::{Error, Result};
use crate::nn::fast::real::Real;
use crate::nn::fast::Net;

use graph::{Dyn, Graph, Value};
use tensor::Tensor;

/// Files larger than this are refused before reading (protobuf's own
/// limit; larger models keep their weights as external data).
pub const MAX_BYTES: u64 = 2 << 30;

/// An imported network and what the file says about it.
#[derive(Debug, Clone)]
pub struct Imported<T> {
    pub net: Net<T>,
    /// The input's name and ONNX dimensions without the batch.
    pub input: (String, Vec<usize>),
    /// The output's name and ONNX dimensions without the batch.
    pub output: (String, Vec<usize>),
    /// The batch size the export fixed (1 when it left it open).
    pub batch: usize,
    pub opset: i64,
    /// How many nodes of each op type the file has.
    pub op_counts: BTreeMap<String, usize>,
}

/// Every op type the importer reads (on the network's data or folded on
/// constants).
pub fn supported() -> Vec<&'static str> {
    let mut all: Vec<&str> = lower::LOWERED.iter().chain(fold::FOLDED).copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Imports the ONNX file at `path`; `input` and `output` name the values
/// to use (by default the only ones).
pub fn load<T: Real>(
    path: &Path,
    input: Option<&str>,
    output: Option<&str>,
) -> Result<Imported<T>> {
    let bad = |message: String| Error::Data {
        path: path.to_path_buf(),
        message,
    };
    let size = std::fs::metadata(path)
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    if size > MAX_BYTES {
        return Err(bad(format!(
            "{size} bytes: larger than the {MAX_BYTES} an ONNX file can hold in one piece"
        )));
    }
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_bytes(&bytes, input, output).map_err(bad)
}

/// Imports an ONNX model from its bytes; errors are one line naming the
/// node and what would be right.
pub fn from_bytes<T: Real>(
    bytes: &[u8],
    input: Option<&str>,
    output: Option<&str>,
) -> std::result::Result<Imported<T>, String> {
    let model = proto::ModelProto::decode(bytes)
        .map_err(|e| format!("not an ONNX model (the protobuf does not decode: {e})"))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or("an ONNX model without a graph")?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or("the model names no ONNX opset")?;
    unknown_ops(graph)?;
    let mut values: HashMap<String, Value> = HashMap::new();
    for t in &graph.initializer {
        values.insert(t.name.clone(), Value::Const(Tensor::from_proto(t)?));
    }
    let (in_name, batch, in_dims) = choose_input(graph, &values, input)?;
    let mut readers: HashMap<String, usize> = HashMap::new();
    for name in graph.node.iter().flat_map(|n| &n.input) {
        *readers.entry(name.clone()).or_default() += 1;
    }
    let outputs: HashSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let mut g = Graph::<T>::new(&in_dims, (batch, opset), readers, outputs)?;
    g.name(&in_name, 0);
    values.insert(
        in_name.clone(),
        Value::Dyn(Dyn {
            slot: 0,
            dims: in_dims.clone(),
        }),
    );
    let mut op_counts = BTreeMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        *op_counts.entry(node.op_type.clone()).or_insert(0) += 1;
        let label = if node.name.is_empty() {
            format!("#{i}")
        } else {
            node.name.clone()
        };
        run_node(&mut g, node, &mut values, opset)
            .map_err(|e| format!("node {label} ({}): {e}", node.op_type))?;
    }
    let out_name = match output {
        Some(o) => o.to_string(),
        None => match graph.output.as_slice() {
            [one] => one.name.clone(),
            many => {
                let names: Vec<&str> = many.iter().map(|o| o.name.as_str()).collect();
                return Err(format!(
                    "the model has outputs {names:?}: say which (`output` in the sidecar)"
                ));
            }
        },
    };
    let out = match values.get(&out_name) {
        Some(Value::Dyn(d)) => d.clone(),
        Some(Value::Const(_)) => {
            return Err(format!("output {out_name:?} does not depend on the input"))
        }
        None => return Err(format!("no value named {out_name:?} (the output)")),
    };
    let net = finish(g, out.slot)?;
    Ok(Imported {
        net,
        input: (in_name, in_dims),
        output: (out_name, out.dims),
        batch,
        opset,
        op_counts,
    })
}

/// Every op type of the graph that ppgn does not import, with how many
/// nodes use it and the first of them, in one line before any work (a file
/// that needs several ops is refused once, not once per op).
fn unknown_ops(graph: &proto::GraphProto) -> std::result::Result<(), String> {
    let known: HashSet<&str> = supported().into_iter().collect();
    // (domain-qualified type) -> (count, first node)
    let mut unknown: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        let standard = node.domain.is_empty() || node.domain == "ai.onnx";
        if standard && known.contains(node.op_type.as_str()) {
            continue;
        }
        let op = if standard {
            node.op_type.clone()
        } else {
            format!("{} of domain {:?}", node.op_type, node.domain)
        };
        let label = if node.name.is_empty() {
            format!("#{i}")
        } else {
            node.name.clone()
        };
        unknown.entry(op).or_insert((0, label)).0 += 1;
    }
    if unknown.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = unknown
        .iter()
        .map(|(op, (n, first))| {
            let nodes = if *n == 1 { "node" } else { "nodes" };
            format!("{op} ({n} {nodes}, first {first})")
        })
        .collect();
    Err(format!(
        "{} op type(s) ppgn does not import: {}; it imports the standard ONNX ops {}",
        list.len(),
        list.join(", "),
        supported().join(", ")
    ))
}

/// The input to use: its name, the batch size the export fixed, and its
/// dimensions without the batch.
fn choose_input(
    graph: &proto::GraphProto,
    values: &HashMap<String, Value>,
    want: Option<&str>,
) -> std::result::Result<(String, usize, Vec<usize>), String> {
    let real: Vec<&proto::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !values.contains_key(&i.name))
        .collect();
    let chosen = match (want, real.as_slice()) {
        (Some(w), _) => real.iter().find(|i| i.name == w).copied().ok_or_else(|| {
            let names: Vec<&str> = real.iter().map(|i| i.name.as_str()).collect();
            format!("no input named {w:?}; the model's inputs are {names:?}")
        })?,
        (None, [one]) => *one,
        (None, many) => {
            let names: Vec<&str> = many.iter().map(|i| i.name.as_str()).collect();
            return Err(format!(
                "the model has inputs {names:?}: say which (`input` in the sidecar)"
            ));
        }
    };
    let dims = chosen
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .ok_or_else(|| format!("input {:?} has no tensor shape", chosen.name))?;
    let mut out = Vec::new();
    for (k, d) in dims.dim.iter().enumerate() {
        match (k, d.dim_value) {
            (0, v) => out.push(v.filter(|&v| v > 0).unwrap_or(1) as usize),
            (_, Some(v)) if v > 0 => out.push(v as usize),
            _ => {
                return Err(format!(
                    "input {:?}: dimension {k} is not fixed; export with a fixed image size (only the batch may vary)",
                    chosen.name
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(format!(
            "input {:?} is a scalar; ppgn needs [batch, ...]",
            chosen.name
        ));
    }
    // refused before anything is allocated for them (Shape folds a
    // probe of the whole batch)
    tensor::count(&out).map_err(|e| format!("input {:?}: {e}", chosen.name))?;
    let batch = out.remove(0);
    Ok((chosen.name.clone(), batch, out))
}

/// Evaluates (on constants) or lowers (on the network's data) one node and
/// names its outputs.
fn run_node<T: Real>(
    g: &mut Graph<T>,
    node: &proto::NodeProto,
    values: &mut HashMap<String, Value>,
    opset: i64,
) -> std::result::Result<(), String> {
    let mut ins = Vec::with_capacity(node.input.len());
    for name in &node.input {
        if name.is_empty() {
            ins.push(None);
            continue;
        }
        ins.push(Some(values.get(name).ok_or_else(|| {
            format!("reads {name:?}, which no earlier node, initializer or input defines (a graph out of order, a cycle, or a missing initializer)")
        })?));
    }
    let all_const = ins.iter().flatten().all(|v| matches!(v, Value::Const(_)));
    let before = g.ops.len();
    g.fused = None;
    let outs: Vec<Value> = if all_const {
        let consts: Vec<Option<&Tensor>> = ins
            .iter()
            .map(|v| match v {
                Some(Value::Const(t)) => Some(t),
                _ => None,
            })
            .collect();
        vec![Value::Const(fold::eval(node, &consts)?)]
    } else {
        lower::lower(g, node, &graph::Inputs(ins), opset)?
    };
    let tap = if node.name.is_empty() {
        node.output.first().cloned().unwrap_or_default()
    } else {
        node.name.clone()
    };
    for (name, v) in node.output.iter().zip(outs) {
        if let Value::Dyn(d) = &v {
            g.name(name, d.slot);
            if d.slot > before || g.fused == Some(d.slot) {
                g.taps.retain(|(_, s)| *s != d.slot);
                g.taps.push((tap.clone(), d.slot));
            }
        }
        values.insert(name.clone(), v);
    }
    g.consumed(&node.input);
    Ok(())
}

/// The engine network ending at slot `out`, with the node names as taps:
/// only the ops the output depends on (a fusion can leave an op unread).
fn finish<T: Real>(g: Graph<T>, out: usize) -> std::result::Result<Net<T>, String> {
    let mut needed = vec![false; out + 1];
    needed[out] = true;
    for i in (0..out).rev() {
        if needed[i + 1] {
            g.inputs[i].iter().for_each(|&s| needed[s] = true);
        }
    }
    // new slot of each kept slot
    let mut slot = vec![usize::MAX; out + 1];
    slot[0] = 0;
    let (mut ops, mut inputs) = (Vec::new(), Vec::new());
    for i in (0..out).filter(|&i| needed[i + 1]) {
        ops.push(g.ops[i].clone());
        inputs.push(g.inputs[i].iter().map(|&s| slot[s]).collect());
        slot[i + 1] = ops.len();
    }
    let mut net = Net::graph(g.shapes[0], ops, inputs).map_err(|e| e.to_string())?;
    let mut seen = HashSet::new();
    for (name, s) in g.taps.into_iter().rev() {
        if s <= out && needed[s] && seen.insert(name.clone()) {
            net = net
                .with_tap(&name, Some(slot[s]))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(net)
}

/// Per-sample values of ONNX dimensions `dims`, `n` samples in ONNX
/// (row-major, channel-first) order, in the engine's NHWC order.
pub fn to_engine<T: Copy + Default>(dims: &[usize], x: &[T]) -> Vec<T> {
    let order = shape::engine_order(dims);
    let mut out = vec![T::default(); x.len()];
    for (xs, os) in x
        .chunks(order.len().max(1))
        .zip(out.chunks_mut(order.len().max(1)))
    {
        for (i, &e) in order.iter().enumerate() {
            os[e] = xs[i];
        }
    }
    out
}

/// The inverse of [`to_engine`].
pub fn to_onnx<T: Copy + Default>(dims: &[usize], y: &[T]) -> Vec<T> {
    let order = shape::engine_order(dims);
    let mut out = vec![T::default(); y.len()];
    for (ys, os) in y
        .chunks(order.len().max(1))
        .zip(out.chunks_mut(order.len().max(1)))
    {
        for (i, &e) in order.iter().enumerate() {
            os[i] = ys[e];
        }
    }
    out
}
