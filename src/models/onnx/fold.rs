//! Nodes whose inputs are all constant, evaluated at load: the shape
//! arithmetic exporters emit around `Pad`, `Reshape` and `Expand` (PyTorch's
//! `F.pad` becomes a dozen such nodes), folded to the constants the
//! network's ops read.

use super::proto::NodeProto;
use super::shape;
use super::tensor::{axis, broadcast_dims, broadcast_index, Attrs, Fail, Tensor};

/// The op types this module evaluates on constants.
pub const FOLDED: &[&str] = &[
    "Add",
    "Cast",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Div",
    "Equal",
    "Expand",
    "Flatten",
    "Gather",
    "Identity",
    "Mul",
    "Neg",
    "Range",
    "Reshape",
    "Shape",
    "Slice",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Transpose",
    "Unsqueeze",
    "Where",
];

/// The outputs of `node` on constant `inputs` (`None` for an absent
/// optional input), or why it cannot be evaluated.
pub fn eval(node: &NodeProto, inputs: &[Option<&Tensor>]) -> Result<Tensor, Fail> {
    let at = Attrs(node);
    let arg = |i: usize| input(inputs, i);
    let ints = |i: usize| -> Result<Vec<i64>, Fail> { Ok(arg(i)?.ints()) };
    match node.op_type.as_str() {
        "Constant" => constant(&at),
        "Identity" => Ok(arg(0)?.clone()),
        "Cast" => {
            let to = at.int("to", 1);
            let int = !matches!(to, 1 | 10 | 11 | 16);
            let x = arg(0)?;
            let data = x
                .data
                .iter()
                .map(|&v| if int { v.trunc() } else { v })
                .collect();
            Ok(Tensor::new(x.dims.clone(), data, int))
        }
        "Shape" => {
            let d = &arg(0)?.dims;
            let r = d.len() as i64;
            let clip = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (s, e) = (clip(at.int("start", 0)), clip(at.int("end", r)));
            let v: Vec<f64> = d[s..e.max(s)].iter().map(|&x| x as f64).collect();
            Ok(Tensor::new(vec![v.len()], v, true))
        }
        "ConstantOfShape" => {
            let dims: Vec<usize> = ints(0)?.iter().map(|&d| d.max(0) as usize).collect();
            super::tensor::count(&dims)?;
            let value = match at.tensor("value") {
                Some(t) => t?,
                None => Tensor::scalar(0.0, false),
            };
            let n = dims.iter().product();
            Ok(Tensor::new(dims, vec![value.single()?; n], value.int))
        }
        "Add" | "Sub" | "Mul" | "Div" | "Equal" | "Where" | "Neg" | "Sqrt" => {
            arithmetic(node, inputs)
        }
        "Concat" => concat(inputs, at.int("axis", 0)),
        "Gather" => gather(arg(0)?, arg(1)?, at.int("axis", 0)),
        "Range" => {
            let (s, l, d) = (arg(0)?.single()?, arg(1)?.single()?, arg(2)?.single()?);
            let n = ((l - s) / d).ceil().max(0.0);
            if !n.is_finite() || n > super::tensor::MAX_VALUES as f64 {
                return Err(format!("Range({s}, {l}, {d}) has no end within reach"));
            }
            let n = n as usize;
            let v: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
            Ok(Tensor::new(vec![n], v, arg(0)?.int))
        }
        _ => movement(node, &at, inputs),
    }
}

/// Constant input `i`, or why it is missing.
fn input<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Result<&'a Tensor, Fail> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| format!("input {i} is missing"))
}

/// The ops that move values: Reshape, Flatten, Squeeze, Unsqueeze,
/// Transpose, Slice, Expand.
fn movement(node: &NodeProto, at: &Attrs, inputs: &[Option<&Tensor>]) -> Result<Tensor, Fail> {
    let arg = |i: usize| input(inputs, i);
    let ints = |i: usize| -> Result<Vec<i64>, Fail> { Ok(arg(i)?.ints()) };
    match node.op_type.as_str() {
        "Reshape" => {
            let x = arg(0)?;
            let dims = shape::reshape(&x.dims, &ints(1)?, at.int("allowzero", 0) != 0)?;
            Ok(Tensor::new(dims, x.data.clone(), x.int))
        }
        "Flatten" => {
            let x = arg(0)?;
            // axis in [-r, r]; negative counts from r
            let (r, a) = (x.dims.len() as i64, at.int("axis", 1));
            let a = if a < 0 { a + r } else { a };
            if !(0..=r).contains(&a) {
                return Err(format!("Flatten at axis {a} of a tensor of rank {r}"));
            }
            let a = a as usize;
            let dims = vec![x.dims[..a].iter().product(), x.dims[a..].iter().product()];
            Ok(Tensor::new(dims, x.data.clone(), x.int))
        }
        "Squeeze" | "Unsqueeze" => {
            let x = arg(0)?;
            let axes = match inputs.get(1).copied().flatten() {
                Some(t) => Some(t.ints()),
                None => at.ints("axes"),
            };
            let dims = if node.op_type == "Squeeze" {
                shape::squeeze(&x.dims, axes.as_deref())?
            } else {
                shape::unsqueeze(&x.dims, &axes.ok_or("Unsqueeze without axes")?)?
            };
            Ok(Tensor::new(dims, x.data.clone(), x.int))
        }
        "Transpose" => {
            let x = arg(0)?;
            let r = x.dims.len();
            let perm: Vec<usize> = match at.ints("perm") {
                Some(p) => p.iter().map(|&a| axis(a, r)).collect::<Result<_, _>>()?,
                None => (0..r).rev().collect(),
            };
            let (dims, index) = shape::transpose(&x.dims, &perm)?;
            Ok(gathered(x, dims, &index))
        }
        "Slice" => {
            let x = arg(0)?;
            let opt = |i: usize| inputs.get(i).copied().flatten().map(Tensor::ints);
            let ranges = shape::slice_ranges(
                &x.dims,
                &ints(1)?,
                &ints(2)?,
                opt(3).as_deref(),
                opt(4).as_deref(),
            )?;
            let (dims, index) = shape::slice(&x.dims, &ranges);
            Ok(gathered(x, dims, &index))
        }
        "Expand" => {
            let x = arg(0)?;
            let want: Vec<usize> = ints(1)?.iter().map(|&d| d.max(0) as usize).collect();
            let dims = broadcast_dims(&x.dims, &want)?;
            let index = broadcast_index(&x.dims, &dims)?;
            Ok(gathered(x, dims, &index))
        }
        other => Err(format!("{other} of constants is not evaluated at load")),
    }
}

/// The values of `x` at `index`, shaped `dims`.
fn gathered(x: &Tensor, dims: Vec<usize>, index: &[usize]) -> Tensor {
    Tensor::new(dims, index.iter().map(|&i| x.data[i]).collect(), x.int)
}

/// A `Constant` node's value (a tensor or one of the value_* attributes).
fn constant(at: &Attrs) -> Result<Tensor, Fail> {
    if let Some(t) = at.tensor("value") {
        return t;
    }
    if at.has("value_float") {
        return Ok(Tensor::scalar(at.float("value_float", 0.0), false));
    }
    if at.has("value_int") {
        return Ok(Tensor::scalar(at.int("value_int", 0) as f64, true));
    }
    if let Some(v) = at.floats("value_floats") {
        return Ok(Tensor::new(vec![v.len()], v, false));
    }
    if let Some(v) = at.ints("value_ints") {
        return Ok(Tensor::new(
            vec![v.len()],
            v.iter().map(|&x| x as f64).collect(),
            true,
        ));
    }
    Err("a Constant without a value (sparse and string constants are not read)".into())
}

/// Elementwise arithmetic with numpy broadcasting.
fn arithmetic(node: &NodeProto, inputs: &[Option<&Tensor>]) -> Result<Tensor, Fail> {
    let xs: Vec<&Tensor> = inputs
        .iter()
        .map(|t| t.ok_or("an input is missing"))
        .collect::<Result<_, _>>()?;
    let arity = match node.op_type.as_str() {
        "Where" => 3,
        "Neg" | "Sqrt" => 1,
        _ => 2,
    };
    if xs.len() != arity {
        return Err(format!(
            "{} takes {arity} inputs, this one has {}",
            node.op_type,
            xs.len()
        ));
    }
    let mut dims: Vec<usize> = Vec::new();
    for x in &xs {
        dims = broadcast_dims(&dims, &x.dims)?;
    }
    let vals: Vec<Vec<f64>> = xs
        .iter()
        .map(|x| x.broadcast_to(&dims))
        .collect::<Result<_, _>>()?;
    let int = xs
        .iter()
        .skip(usize::from(node.op_type == "Where"))
        .all(|x| x.int);
    let n: usize = dims.iter().product();
    let data = (0..n)
        .map(|i| {
            let v = |k: usize| vals[k][i];
            match node.op_type.as_str() {
                "Add" => v(0) + v(1),
                "Sub" => v(0) - v(1),
                "Mul" => v(0) * v(1),
                "Div" if int => (v(0) / v(1)).trunc(),
                "Div" => v(0) / v(1),
                "Equal" => f64::from(u8::from(v(0) == v(1))),
                "Where" => {
                    if v(0) != 0.0 {
                        v(1)
                    } else {
                        v(2)
                    }
                }
                "Neg" => -v(0),
                _ => v(0).sqrt(),
            }
        })
        .collect();
    let int = int || node.op_type == "Equal";
    Ok(Tensor::new(dims, data, int))
}

/// `Concat` of constants along `axis`.
fn concat(inputs: &[Option<&Tensor>], a: i64) -> Result<Tensor, Fail> {
    let xs: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
    let first = xs.first().ok_or("Concat of nothing")?;
    let ax = axis(a, first.dims.len())?;
    let outer: usize = first.dims[..ax].iter().product();
    let mut dims = first.dims.clone();
    dims[ax] = 0;
    for x in &xs {
        if x.dims.len() != dims.len()
            || (0..dims.len()).any(|i| i != ax && x.dims[i] != first.dims[i])
        {
            return Err(format!(
                "Concat of dimensions {:?} and {:?}",
                first.dims, x.dims
            ));
        }
        dims[ax] += x.dims[ax];
    }
    let mut data = Vec::with_capacity(dims.iter().product());
    for o in 0..outer {
        for x in &xs {
            let block = x.len() / outer.max(1);
            data.extend_from_slice(&x.data[o * block..(o + 1) * block]);
        }
    }
    Ok(Tensor::new(dims, data, xs.iter().all(|x| x.int)))
}

/// `Gather` of constants: the slices of `x` along `axis` at `indices`.
fn gather(x: &Tensor, indices: &Tensor, a: i64) -> Result<Tensor, Fail> {
    let ax = axis(a, x.dims.len())?;
    let d = x.dims[ax] as i64;
    let outer: usize = x.dims[..ax].iter().product();
    let inner: usize = x.dims[ax + 1..].iter().product();
    let mut dims = x.dims[..ax].to_vec();
    dims.extend(&indices.dims);
    dims.extend(&x.dims[ax + 1..]);
    let mut data = Vec::new();
    for o in 0..outer {
        for &i in &indices.ints() {
            let i = if i < 0 { i + d } else { i };
            if !(0..d).contains(&i) {
                return Err(format!("Gather index {i} outside an axis of {d}"));
            }
            let at = (o * d as usize + i as usize) * inner;
            data.extend_from_slice(&x.data[at..at + inner]);
        }
    }
    Ok(Tensor::new(dims, data, x.int))
}
