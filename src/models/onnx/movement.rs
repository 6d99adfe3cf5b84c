//! ONNX nodes that move the network's values: reshapes, flattens,
//! squeezes, transposes, broadcasts, slices, splits and concatenation,
//! lowered to engine slices, concatenations and gathers (or nothing, when
//! the engine holds both sides alike).

use crate::nn::fast::real::Real;
use crate::nn::fast::Op;

use super::graph::{sample_axis, Dyn, Graph, Inputs, Value};
use super::proto::NodeProto;
use super::shape;
use super::tensor::{axis, broadcast_dims, broadcast_index, Attrs, Fail, Tensor};

/// Integers from constant input `i` or, in older opsets, attribute `name`.
fn ints_of(ins: &Inputs, i: usize, at: &Attrs, name: &str) -> Result<Option<Vec<i64>>, Fail> {
    Ok(match ins.optional(i)? {
        Some(t) => Some(t.ints()),
        None => at.ints(name),
    })
}

/// The outputs of `node` if it is one of this module's ops.
pub fn lower<T: Real>(
    g: &mut Graph<T>,
    node: &NodeProto,
    ins: &Inputs,
    opset: i64,
) -> Result<Option<Vec<Value>>, Fail> {
    let at = Attrs(node);
    let op = node.op_type.as_str();
    let one = |d: Dyn| Ok(Some(vec![Value::Dyn(d)]));
    if let Some(d) = reshaped(g, op, &at, ins)? {
        return one(d);
    }
    match op {
        "Transpose" => one(transpose(g, ins.dynamic(0)?, at.ints("perm"))?),
        "Expand" => {
            let x = ins.dynamic(0)?;
            let want: Vec<usize> = ins
                .constant(1)?
                .ints()
                .iter()
                .map(|&d| d.max(0) as usize)
                .collect();
            let mut full = vec![1];
            full.extend(&x.dims);
            let dims = broadcast_dims(&full, &want)?;
            if dims.len() != full.len() || (dims[0] != 1 && dims[0] != g.batch) {
                return Err("an Expand along the batch axis".into());
            }
            one(expand(g, x, dims[1..].to_vec())?)
        }
        "Slice" => {
            let x = ins.dynamic(0)?;
            let mut full = vec![g.batch];
            full.extend(&x.dims);
            let (starts, ends) = (
                ints_of(ins, 1, &at, "starts")?,
                ints_of(ins, 2, &at, "ends")?,
            );
            let (starts, ends) = (
                starts.ok_or("Slice without starts")?,
                ends.ok_or("Slice without ends")?,
            );
            let axes = ints_of(ins, 3, &at, "axes")?;
            let steps = ins.optional(4)?.map(Tensor::ints);
            let ranges =
                shape::slice_ranges(&full, &starts, &ends, axes.as_deref(), steps.as_deref())?;
            if ranges[0]
                != (shape::Range {
                    start: 0,
                    step: 1,
                    count: g.batch,
                })
            {
                return Err("a Slice along the batch axis".into());
            }
            one(slice(g, x, &ranges[1..])?)
        }
        "Gather" => one(gather(
            g,
            ins.dynamic(0)?,
            ins.constant(1)?,
            at.int("axis", 0),
        )?),
        "Split" => split(g, ins, &at, opset, node.output.len()).map(Some),
        "Concat" => {
            let x = ins.dynamic(0)?;
            let ax = sample_axis(at.int("axis", 0), x)?;
            let parts: Vec<&Dyn> = (0..ins.0.len())
                .map(|i| ins.dynamic(i))
                .collect::<Result<_, _>>()?;
            concat(g, &parts, ax).map(Some)
        }
        _ => Ok(None),
    }
}

/// `Flatten`, `Reshape`, `Squeeze` and `Unsqueeze`: the same values as
/// other dimensions; `None` for other ops.
fn reshaped<T: Real>(
    g: &mut Graph<T>,
    op: &str,
    at: &Attrs,
    ins: &Inputs,
) -> Result<Option<Dyn>, Fail> {
    let one = |d: Dyn| Ok(Some(d));
    match op {
        "Flatten" => {
            let x = ins.dynamic(0)?;
            // axis in [-r, r] of the rank-r tensor; negative counts from r
            let (r, a) = ((x.dims.len() + 1) as i64, at.int("axis", 1));
            if (if a < 0 { a + r } else { a }) != 1 {
                return Err("Flatten at an axis other than 1 mixes samples".into());
            }
            one(g.relayout(x, vec![x.dims.iter().product()])?)
        }
        "Reshape" => {
            let x = ins.dynamic(0)?;
            let mut full = vec![g.batch];
            full.extend(&x.dims);
            let dims =
                shape::reshape(&full, &ins.constant(1)?.ints(), at.int("allowzero", 0) != 0)?;
            if dims.first() != Some(&g.batch) {
                return Err(format!(
                    "a reshape to {dims:?} mixes samples (the batch is {})",
                    g.batch
                ));
            }
            one(g.relayout(x, dims[1..].to_vec())?)
        }
        "Squeeze" | "Unsqueeze" => {
            let x = ins.dynamic(0)?;
            let axes = ints_of(ins, 1, at, "axes")?;
            // the axes of one sample (the batch axis is not to be touched)
            let r = x.dims.len()
                + 1
                + if op == "Unsqueeze" {
                    axes.as_ref().map_or(0, Vec::len)
                } else {
                    0
                };
            let inner = match &axes {
                Some(a) => Some(
                    a.iter()
                        .map(|&a| match axis(a, r)? {
                            0 => Err(format!("{op} of the batch axis")),
                            k => Ok(k as i64 - 1),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                None => None,
            };
            let dims = if op == "Squeeze" {
                shape::squeeze(&x.dims, inner.as_deref())?
            } else {
                shape::unsqueeze(&x.dims, &inner.ok_or("Unsqueeze without axes")?)?
            };
            one(g.relayout(x, dims)?)
        }
        _ => Ok(None),
    }
}

/// `Transpose` by `perm` (over all axes; the batch's stays first).
fn transpose<T: Real>(g: &mut Graph<T>, x: &Dyn, perm: Option<Vec<i64>>) -> Result<Dyn, Fail> {
    let r = x.dims.len() + 1;
    let perm: Vec<usize> = match perm {
        Some(p) => p.iter().map(|&a| axis(a, r)).collect::<Result<_, _>>()?,
        None => (0..r).rev().collect(),
    };
    if perm.first() != Some(&0) {
        return Err(format!("a transpose {perm:?} that moves the batch axis"));
    }
    let inner: Vec<usize> = perm[1..].iter().map(|&p| p.saturating_sub(1)).collect();
    let (dims, map) = shape::transpose(&x.dims, &inner)?;
    g.gather(x, dims, &map)
}

/// `Gather` of the network's data at constant `indices` along `axis`
/// (`x[:, 0]` in PyTorch).
fn gather<T: Real>(g: &mut Graph<T>, x: &Dyn, indices: &Tensor, a: i64) -> Result<Dyn, Fail> {
    let ax = sample_axis(a, x)?;
    let d = x.dims[ax];
    let outer: usize = x.dims[..ax].iter().product();
    let inner: usize = x.dims[ax + 1..].iter().product();
    let mut dims = x.dims[..ax].to_vec();
    dims.extend(&indices.dims);
    dims.extend(&x.dims[ax + 1..]);
    let mut map = Vec::with_capacity(outer * indices.len() * inner);
    for o in 0..outer {
        for &i in &indices.ints() {
            let i = if i < 0 { i + d as i64 } else { i };
            if !(0..d as i64).contains(&i) {
                return Err(format!("Gather index {i} outside an axis of {d}"));
            }
            map.extend((0..inner).map(|k| (o * d + i as usize) * inner + k));
        }
    }
    g.gather(x, dims, &map)
}

/// `x` broadcast to `dims` (a gather that repeats values).
pub fn expand<T: Real>(g: &mut Graph<T>, x: &Dyn, dims: Vec<usize>) -> Result<Dyn, Fail> {
    if x.dims == dims {
        return Ok(x.clone());
    }
    let map = broadcast_index(&x.dims, &dims)?;
    g.gather(x, dims, &map)
}

/// A slice of `x` by per-sample `ranges`: a box (the engine's `Slice`)
/// when the steps are 1, else a gather.
fn slice<T: Real>(g: &mut Graph<T>, x: &Dyn, ranges: &[shape::Range]) -> Result<Dyn, Fail> {
    let (dims, map) = shape::slice(&x.dims, ranges);
    if ranges.iter().all(|r| r.step == 1) && !dims.is_empty() {
        let mut at = [0; 3];
        at[..ranges.len()]
            .iter_mut()
            .zip(ranges)
            .for_each(|(a, r)| *a = r.start);
        // engine (h, w, c) from ONNX [c, h, w] / [c, l] / [f]
        let at = match ranges.len() {
            1 => (0, 0, at[0]),
            2 => (0, at[1], at[0]),
            _ => (at[1], at[2], at[0]),
        };
        let out = shape::engine_shape(&dims)?;
        return g.push(Op::Slice { at, out }, vec![x.slot], dims);
    }
    g.gather(x, dims, &map)
}

/// `Split` along an axis into `count` parts.
fn split<T: Real>(
    g: &mut Graph<T>,
    ins: &Inputs,
    at: &Attrs,
    opset: i64,
    count: usize,
) -> Result<Vec<Value>, Fail> {
    let x = ins.dynamic(0)?;
    let ax = sample_axis(at.int("axis", 0), x)?;
    let d = x.dims[ax];
    let sizes: Vec<usize> = match ints_of(ins, 1, at, "split")? {
        Some(s) => s.iter().map(|&v| v.max(0) as usize).collect(),
        None => {
            let parts = if opset >= 18 {
                at.int("num_outputs", count as i64) as usize
            } else {
                count
            };
            let each = d.div_ceil(parts.max(1));
            (0..parts)
                .map(|i| each.min(d.saturating_sub(i * each)))
                .collect()
        }
    };
    if sizes.iter().sum::<usize>() != d || sizes.len() != count {
        return Err(format!("Split of {d} into {sizes:?} for {count} outputs"));
    }
    let mut start = 0;
    let mut out = Vec::new();
    for s in sizes {
        let mut ranges: Vec<shape::Range> = x
            .dims
            .iter()
            .map(|&n| shape::Range {
                start: 0,
                step: 1,
                count: n,
            })
            .collect();
        ranges[ax] = shape::Range {
            start,
            step: 1,
            count: s,
        };
        out.push(Value::Dyn(slice(g, x, &ranges)?));
        start += s;
    }
    Ok(out)
}

/// `Concat` of values along per-sample axis `ax`: the engine's channel
/// concatenation, between transposes when the axis is not the channels.
fn concat<T: Real>(g: &mut Graph<T>, parts: &[&Dyn], ax: usize) -> Result<Vec<Value>, Fail> {
    let r = parts[0].dims.len();
    // move axis `ax` to the front (the channels), concatenate, move it back
    let mut perm: Vec<usize> = vec![ax];
    perm.extend((0..r).filter(|&i| i != ax));
    let mut moved = Vec::new();
    for p in parts {
        if p.dims.len() != r {
            return Err(format!(
                "Concat of dimensions {:?} and {:?}",
                parts[0].dims, p.dims
            ));
        }
        let (dims, map) = shape::transpose(&p.dims, &perm)?;
        moved.push(g.gather(p, dims, &map)?);
    }
    let mut dims = moved[0].dims.clone();
    dims[0] = moved.iter().map(|m| m.dims[0]).sum();
    let slots = moved.iter().map(|m| m.slot).collect();
    let joined = if moved.len() == 1 {
        moved[0].clone()
    } else {
        g.push(Op::Concat, slots, dims)?
    };
    let mut back = vec![0; r];
    for (i, &p) in perm.iter().enumerate() {
        back[p] = i;
    }
    let (dims, map) = shape::transpose(&joined.dims, &back)?;
    Ok(vec![Value::Dyn(g.gather(&joined, dims, &map)?)])
}
