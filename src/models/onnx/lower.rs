//! ONNX nodes on values computed from the input, lowered to engine ops:
//! activations, elementwise arithmetic with broadcasting, and the ops that
//! move data (reshapes, transposes, slices, concatenation). The ops with
//! weights or windows are in [`super::layers`].

use crate::nn::fast::kernels::Act;
use crate::nn::fast::pointwise::Pointwise;
use crate::nn::fast::real::Real;
use crate::nn::fast::several::Binary;
use crate::nn::fast::Op;

use super::graph::{sample_axis, Dyn, Graph, Inputs, Value};
use super::layers;
use super::movement::{self, expand};
use super::proto::NodeProto;
use super::shape;
use super::tensor::{broadcast_dims, Attrs, Fail, Tensor};

/// The op types lowered onto the engine (besides those folded on
/// constants, `super::fold::FOLDED`).
pub const LOWERED: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Conv",
    "ConvTranspose",
    "Div",
    "Dropout",
    "Elu",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Gather",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "InstanceNormalization",
    "LeakyRelu",
    "LogSoftmax",
    "LRN",
    "MatMul",
    "MaxPool",
    "Mul",
    "Neg",
    "PRelu",
    "Pad",
    "Pow",
    "ReduceMean",
    "Relu",
    "Reshape",
    "Resize",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Upsample",
];

/// The outputs of `node` (at opset `opset`) on `ins`, of which at least
/// one is computed from the network's input.
pub fn lower<T: Real>(
    g: &mut Graph<T>,
    node: &NodeProto,
    ins: &Inputs,
    opset: i64,
) -> Result<Vec<Value>, Fail> {
    let at = Attrs(node);
    let one = |d: Dyn| Ok(vec![Value::Dyn(d)]);
    let op = node.op_type.as_str();
    if let Some(r) = layers::lower(g, node, ins, opset)? {
        return Ok(r);
    }
    if let Some(r) = movement::lower(g, node, ins, opset)? {
        return Ok(r);
    }
    if let Some(v) = activation(g, op, &at, ins)? {
        return one(v);
    }
    if let Some(v) = softmax(g, op, &at, ins)? {
        return one(v);
    }
    match op {
        "Identity" | "Dropout" => Ok(vec![ins.value(0)?.clone()]),
        "Cast" => match at.int("to", 1) {
            1 | 10 | 11 | 16 => Ok(vec![ins.value(0)?.clone()]),
            to => Err(format!(
                "a cast of the network's data to element type {to} (not a float) has no gradient"
            )),
        },
        "Shape" => {
            let x = ins.dynamic(0)?;
            let mut full = vec![g.batch];
            full.extend(&x.dims);
            let t = Tensor::new(full.clone(), vec![0.0; full.iter().product()], false);
            let mut probe = node.clone();
            probe.input.truncate(1);
            Ok(vec![Value::Const(super::fold::eval(&probe, &[Some(&t)])?)])
        }
        "Add" | "Sub" | "Mul" | "Div" => one(elementwise(g, op, ins.value(0)?, ins.value(1)?)?),
        "Sum" => {
            let mut acc = ins.value(0)?.clone();
            for i in 1..ins.0.len() {
                acc = Value::Dyn(elementwise(g, "Add", &acc, ins.value(i)?)?);
            }
            Ok(vec![acc])
        }
        _ => Err(unsupported(op)),
    }
}

/// The message for an op type ppgn does not import.
pub fn unsupported(op: &str) -> Fail {
    let mut all: Vec<&str> = LOWERED.iter().chain(super::fold::FOLDED).copied().collect();
    all.sort_unstable();
    all.dedup();
    format!(
        "ppgn does not import {op} on the network's data; it imports {}",
        all.join(", ")
    )
}

/// The activations and pointwise functions; `None` for other ops.
fn activation<T: Real>(
    g: &mut Graph<T>,
    op: &str,
    at: &Attrs,
    ins: &Inputs,
) -> Result<Option<Dyn>, Fail> {
    let fused = |g: &mut Graph<T>, act, alone| -> Result<Option<Dyn>, Fail> {
        Ok(Some(g.act(ins.dynamic(0)?, act, alone)?))
    };
    let alone = |g: &mut Graph<T>, f| -> Result<Option<Dyn>, Fail> {
        Ok(Some(g.unary(Op::Pointwise(f), ins.dynamic(0)?)?))
    };
    match op {
        "Relu" => fused(g, Act::Relu, Pointwise::Relu),
        "Sigmoid" => fused(g, Act::Sigmoid, Pointwise::Sigmoid),
        "Tanh" => fused(g, Act::Tanh, Pointwise::Tanh),
        "LeakyRelu" => {
            let a = at.float("alpha", 0.01);
            fused(g, Act::Leaky(a), Pointwise::Leaky(a))
        }
        "Clip" => {
            let bound = |i: usize, name: &str, d: f64| -> Result<f64, Fail> {
                match ins.optional(i)? {
                    Some(t) => t.single(),
                    None => Ok(at.float(name, d)),
                }
            };
            let (lo, hi) = (
                bound(1, "min", f64::NEG_INFINITY)?,
                bound(2, "max", f64::INFINITY)?,
            );
            if (lo, hi) == (0.0, 6.0) {
                fused(g, Act::Relu6, Pointwise::Clip { lo, hi })
            } else {
                alone(g, Pointwise::Clip { lo, hi })
            }
        }
        "HardSigmoid" => alone(
            g,
            Pointwise::HardSigmoid {
                alpha: at.float("alpha", 0.2),
                beta: at.float("beta", 0.5),
            },
        ),
        "HardSwish" => alone(g, Pointwise::HardSwish),
        "Elu" => alone(g, Pointwise::Elu(at.float("alpha", 1.0))),
        "Gelu" if at.string("approximate", "none") == "none" => alone(g, Pointwise::Gelu),
        "Gelu" => Err("Gelu with approximate = \"tanh\": ppgn computes the exact form only".into()),
        "Erf" => alone(g, Pointwise::Erf),
        "Sqrt" => alone(g, Pointwise::Sqrt),
        "Exp" => alone(g, Pointwise::Exp),
        "Neg" => {
            let x = ins.dynamic(0)?;
            let c = shape::engine_shape(&x.dims)?.2;
            Ok(Some(g.affine(x, vec![-1.0; c], vec![0.0; c])?))
        }
        "Pow" => {
            let p = ins
                .constant(1)?
                .single()
                .map_err(|e| format!("Pow by a tensor: {e}"))?;
            alone(g, Pointwise::Pow(p))
        }
        _ => Ok(None),
    }
}

/// `Softmax` and `LogSoftmax` (over channels, or an axis along which all
/// others are 1); `None` for other ops.
fn softmax<T: Real>(
    g: &mut Graph<T>,
    op: &str,
    at: &Attrs,
    ins: &Inputs,
) -> Result<Option<Dyn>, Fail> {
    match op {
        "Softmax" | "LogSoftmax" => {
            let x = ins.dynamic(0)?;
            let default = if g.opset >= 13 { -1 } else { 1 };
            let ax = sample_axis(at.int("axis", default), x)?;
            // over channels, or over an axis along which all others are 1
            let alone = x.dims.iter().enumerate().all(|(i, &d)| i == ax || d == 1);
            if !(ax == 0 && g.opset >= 13 || alone) {
                return Err(format!(
                    "{op} along axis {} of [batch, {:?}]: ppgn takes it over the channels of each pixel",
                    ax + 1,
                    x.dims
                ));
            }
            let total = x.dims.iter().product();
            let y = if ax == 0 {
                x.clone()
            } else {
                g.relayout(x, vec![total])?
            };
            let y = g.unary(
                Op::Softmax {
                    log: op == "LogSoftmax",
                },
                &y,
            )?;
            Ok(Some(g.relayout(&y, x.dims.clone())?))
        }
        _ => Ok(None),
    }
}

/// `a op b` with numpy broadcasting, at least one computed from the input.
fn elementwise<T: Real>(g: &mut Graph<T>, op: &str, a: &Value, b: &Value) -> Result<Dyn, Fail> {
    match (a, b) {
        (Value::Dyn(x), Value::Const(c)) => {
            let (scale, shift) = constant_affine(x, c, |v| match op {
                "Add" => (1.0, v),
                "Sub" => (1.0, -v),
                "Mul" => (v, 0.0),
                _ => (1.0 / v, 0.0),
            })?;
            g.affine(x, scale, shift)
        }
        (Value::Const(c), Value::Dyn(x)) if op == "Div" => {
            let r = g.unary(Op::Pointwise(Pointwise::Pow(-1.0)), x)?;
            elementwise(g, "Mul", &Value::Dyn(r), &Value::Const(c.clone()))
        }
        (Value::Const(c), Value::Dyn(x)) => {
            let (scale, shift) = constant_affine(x, c, |v| match op {
                "Add" => (1.0, v),
                "Sub" => (-1.0, v),
                _ => (v, 0.0),
            })?;
            g.affine(x, scale, shift)
        }
        (Value::Dyn(x), Value::Dyn(y)) => {
            let f = match op {
                "Add" => Binary::Add,
                "Sub" => Binary::Sub,
                "Mul" => Binary::Mul,
                _ => Binary::Div,
            };
            let dims = broadcast_dims(&x.dims, &y.dims)?;
            let commutes = matches!(f, Binary::Add | Binary::Mul);
            let (x, y) = if commutes && x.dims != dims && y.dims == dims {
                (y, x)
            } else {
                (x, y)
            };
            let x = expand(g, x, dims.clone())?;
            let y = if native_broadcast(&y.dims, &dims) {
                y.clone()
            } else {
                expand(g, y, dims.clone())?
            };
            g.push(Op::Binary(f), vec![x.slot, y.slot], dims)
        }
        _ => Err("elementwise op of two constants reached the engine".into()),
    }
}

/// Whether a value of dimensions `small` broadcasts to `dims` as the
/// engine's `Binary` reads a second value: the same, per channel, or one.
fn native_broadcast(small: &[usize], dims: &[usize]) -> bool {
    let n: usize = small.iter().product();
    let aligned = dims.len() >= small.len() && {
        let lead = dims.len() - small.len();
        small
            .iter()
            .enumerate()
            .all(|(i, &d)| d == 1 || (lead + i == 0 && d == dims[0]))
    };
    small == dims || n == 1 || (aligned && dims.first() == Some(&n))
}

/// The per-channel or per-value affine map `f(c)` of a constant `c` that
/// broadcasts over `x` (a constant per sample must not vary over the batch).
fn constant_affine(
    x: &Dyn,
    c: &Tensor,
    f: impl Fn(f64) -> (f64, f64),
) -> Result<(Vec<f64>, Vec<f64>), Fail> {
    let r = x.dims.len() + 1;
    let mut cd = c.dims.clone();
    if cd.len() == r {
        if cd[0] != 1 {
            return Err(format!(
                "a constant of dimensions {:?} varies over the batch",
                c.dims
            ));
        }
        cd.remove(0);
    }
    if cd.len() > x.dims.len() || broadcast_dims(&cd, &x.dims)? != x.dims {
        return Err(format!(
            "a constant of dimensions {:?} does not broadcast to {:?}",
            c.dims, x.dims
        ));
    }
    let values = Tensor::new(cd.clone(), c.data.clone(), c.int).broadcast_to(&x.dims)?;
    let channels = x.dims.first().copied().unwrap_or(1);
    let inner = values.len() / channels.max(1);
    let per_channel = values
        .chunks(inner.max(1))
        .all(|b| b.iter().all(|&v| v == b[0]));
    let chosen: Vec<f64> = if per_channel && !x.dims.is_empty() {
        values.chunks(inner.max(1)).map(|b| b[0]).collect()
    } else {
        values
    };
    Ok(chosen.into_iter().map(f).unzip())
}
