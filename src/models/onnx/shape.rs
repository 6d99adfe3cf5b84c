//! The shape rules of ONNX's data-movement ops (Reshape, Squeeze,
//! Unsqueeze, Transpose, Slice), as row-major index maps that serve both
//! constants (folded at load) and the network's values (an engine
//! `Gather` in NHWC order).

use super::tensor::{axis, Fail};

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Calls `f(i, coord)` for each row-major position `i` of `dims`.
fn for_each_coord(dims: &[usize], mut f: impl FnMut(usize, &[usize])) {
    let total: usize = dims.iter().product();
    let mut coord = vec![0usize; dims.len()];
    for i in 0..total {
        f(i, &coord);
        for d in (0..dims.len()).rev() {
            coord[d] += 1;
            if coord[d] < dims[d] {
                break;
            }
            coord[d] = 0;
        }
    }
}

/// The dimensions `Reshape` gives `dims` for the `target` (0 copies the
/// input's dimension unless `allowzero`, one -1 takes what is left).
pub fn reshape(dims: &[usize], target: &[i64], allowzero: bool) -> Result<Vec<usize>, Fail> {
    let total: usize = dims.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        out.push(match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                1
            }
            0 if !allowzero => *dims.get(i).ok_or_else(|| {
                format!("reshape target {target:?}: 0 at {i} past the input's rank")
            })?,
            t if t >= 0 => t as usize,
            _ => return Err(format!("reshape target {target:?} is not a shape")),
        });
    }
    let known = super::tensor::count(&out)?;
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {dims:?} to {target:?}"));
        }
        out[i] = total / known;
    }
    if out.iter().product::<usize>() != total {
        return Err(format!(
            "cannot reshape {dims:?} ({total} values) to {target:?}"
        ));
    }
    Ok(out)
}

/// `Squeeze`: drop `axes` (all dimensions of size 1 when none are given).
pub fn squeeze(dims: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>, Fail> {
    let drop: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&a| axis(a, dims.len()))
            .collect::<Result<_, _>>()?,
        None => (0..dims.len()).filter(|&i| dims[i] == 1).collect(),
    };
    if let Some(&a) = drop.iter().find(|&&a| dims[a] != 1) {
        return Err(format!(
            "cannot squeeze axis {a} of {dims:?}: its size is not 1"
        ));
    }
    Ok((0..dims.len())
        .filter(|i| !drop.contains(i))
        .map(|i| dims[i])
        .collect())
}

/// `Unsqueeze`: insert dimensions of size 1 at `axes` of the output.
pub fn unsqueeze(dims: &[usize], axes: &[i64]) -> Result<Vec<usize>, Fail> {
    let r = dims.len() + axes.len();
    let at: Vec<usize> = axes.iter().map(|&a| axis(a, r)).collect::<Result<_, _>>()?;
    let mut rest = dims.iter();
    Ok((0..r)
        .map(|i| {
            if at.contains(&i) {
                1
            } else {
                *rest.next().unwrap_or(&1)
            }
        })
        .collect())
}

/// `Transpose` by `perm`: the output dimensions, and for each output
/// position the input position it reads.
pub fn transpose(dims: &[usize], perm: &[usize]) -> Result<(Vec<usize>, Vec<usize>), Fail> {
    let mut sorted = perm.to_vec();
    sorted.sort_unstable();
    if sorted != (0..dims.len()).collect::<Vec<_>>() {
        return Err(format!(
            "{perm:?} is not a permutation of the axes of {dims:?}"
        ));
    }
    let out: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let st = strides(dims);
    let mut index = Vec::with_capacity(dims.iter().product());
    for_each_coord(&out, |_, c| {
        index.push(c.iter().zip(perm).map(|(&v, &p)| v * st[p]).sum());
    });
    Ok((out, index))
}

/// One axis of a `Slice`: the first position, the step and how many.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub start: usize,
    pub step: i64,
    pub count: usize,
}

/// `Slice`'s ranges for each axis of `dims` (whole axes where not
/// sliced), with ONNX's clamping of out-of-range starts and ends.
pub fn slice_ranges(
    dims: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Vec<Range>, Fail> {
    let mut out: Vec<Range> = dims
        .iter()
        .map(|&d| Range {
            start: 0,
            step: 1,
            count: d,
        })
        .collect();
    let axes: Vec<i64> = axes.map_or_else(|| (0..starts.len() as i64).collect(), <[i64]>::to_vec);
    if starts.len() != ends.len() || axes.len() != starts.len() {
        return Err("slice: starts, ends and axes differ in length".into());
    }
    for (k, &a) in axes.iter().enumerate() {
        let ax = axis(a, dims.len())?;
        let d = dims[ax] as i64;
        let step = steps.map_or(1, |s| s.get(k).copied().unwrap_or(1));
        if step == 0 {
            return Err("slice: a step of 0".into());
        }
        // in i128: starts, ends and steps may be near the ends of i64
        let (d, step) = (d as i128, step as i128);
        let norm = |v: i64| if v < 0 { v as i128 + d } else { v as i128 };
        let (lo, hi) = if step > 0 { (0, d) } else { (-1, d - 1) };
        let start = norm(starts[k]).clamp(lo, hi);
        let end = norm(ends[k]).clamp(lo, hi);
        let count = if step > 0 {
            (end - start + step - 1).max(0) / step
        } else {
            (start - end - step - 1).max(0) / -step
        };
        let step = step as i64;
        out[ax] = Range {
            start: start.max(0) as usize,
            step,
            count: count as usize,
        };
    }
    Ok(out)
}

/// The output dimensions of `ranges` over `dims`, and for each output
/// position the input position it reads.
pub fn slice(dims: &[usize], ranges: &[Range]) -> (Vec<usize>, Vec<usize>) {
    let out: Vec<usize> = ranges.iter().map(|r| r.count).collect();
    let st = strides(dims);
    let mut index = Vec::with_capacity(out.iter().product());
    for_each_coord(&out, |_, c| {
        index.push(
            c.iter()
                .zip(ranges)
                .zip(&st)
                .map(|((&v, r), &s)| (r.start as i64 + v as i64 * r.step) as usize * s)
                .sum(),
        );
    });
    (out, index)
}

/// The row-major positions of `dims` in the engine's NHWC order for one
/// sample: axis 0 is the channel and goes last, the others keep their
/// order (`[c, h, w]` -> `(h, w, c)`, `[c, l]` -> `(1, l, c)`, `[f]` ->
/// `(1, 1, f)`).
pub fn engine_order(dims: &[usize]) -> Vec<usize> {
    let total: usize = dims.iter().product();
    let Some((&c, rest)) = dims.split_first() else {
        return vec![0; total];
    };
    let inner: usize = rest.iter().product();
    (0..total).map(|i| (i % inner) * c + i / inner).collect()
}

/// The engine shape `(h, w, c)` of one sample of per-sample dimensions
/// `dims`, or why the engine cannot hold it.
pub fn engine_shape(dims: &[usize]) -> Result<(usize, usize, usize), Fail> {
    match *dims {
        [] => Ok((1, 1, 1)),
        [f] => Ok((1, 1, f)),
        [c, l] => Ok((1, l, c)),
        [c, h, w] => Ok((h, w, c)),
        _ => Err(format!(
            "a value of dimensions [batch, {}]: ppgn's engine holds up to 4 dimensions (NCHW)",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
