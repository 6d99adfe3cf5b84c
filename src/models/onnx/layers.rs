//! ONNX nodes with weights or windows, lowered to engine ops: the
//! convolutions, fully connected layers and pooling of [`super::conv`],
//! means, normalisations, PReLU, padding and resizing.

use crate::nn::fast::kernels::{Act, SparseRows};
use crate::nn::fast::pointwise::Pointwise;
use crate::nn::fast::real::Real;
use crate::nn::fast::several::Binary;
use crate::nn::fast::window::Window;
use crate::nn::fast::Op;

use super::conv::{conv, conv_transpose, fully_connected, pool};
use super::graph::{real, sample_axis, Dyn, Graph, Inputs, Value};
use super::proto::NodeProto;
use super::tensor::{axis, Attrs, Fail, Tensor};

/// The outputs of `node` if it is one of this module's ops.
pub fn lower<T: Real>(
    g: &mut Graph<T>,
    node: &NodeProto,
    ins: &Inputs,
    opset: i64,
) -> Result<Option<Vec<Value>>, Fail> {
    let at = Attrs(node);
    if node.output.iter().skip(1).any(|o| !o.is_empty())
        && matches!(node.op_type.as_str(), "MaxPool" | "BatchNormalization")
    {
        return Err(format!(
            "{} with more than one output (indices or statistics)",
            node.op_type
        ));
    }
    let v = match node.op_type.as_str() {
        "Conv" => conv(g, ins, &at)?,
        "ConvTranspose" => conv_transpose(g, ins, &at)?,
        "Gemm" | "MatMul" => fully_connected(g, ins, &at, node.op_type == "MatMul")?,
        "MaxPool" | "AveragePool" => pool(g, ins.dynamic(0)?, &at, node.op_type == "MaxPool")?,
        "GlobalAveragePool" => mean(g, ins.dynamic(0)?, true)?,
        "ReduceMean" => reduce_mean(g, ins, &at, opset)?,
        "BatchNormalization" => {
            let x = ins.dynamic(0)?;
            let c = |i| -> Result<&Tensor, Fail> { ins.constant(i) };
            let eps = at.float("epsilon", 1e-5);
            let (s, b, m, v) = (c(1)?, c(2)?, c(3)?, c(4)?);
            if [b.len(), m.len(), v.len()] != [s.len(); 3] {
                return Err("scale, bias, mean and variance of different lengths".into());
            }
            let scale: Vec<f64> = (0..s.len())
                .map(|i| s.data[i] / (v.data[i] + eps).sqrt())
                .collect();
            let shift = (0..s.len())
                .map(|i| b.data[i] - m.data[i] * scale[i])
                .collect();
            channels(x, s.len(), "BatchNormalization")?;
            g.affine(x, scale, shift)?
        }
        "InstanceNormalization" => instance_norm(g, ins, at.float("epsilon", 1e-5))?,
        "PRelu" => prelu(g, ins.dynamic(0)?, ins.constant(1)?)?,
        "LRN" => {
            let x = ins.dynamic(0)?;
            let size = at.int("size", 0).max(0) as usize;
            let op = Op::Lrn {
                size,
                alpha: at.float("alpha", 1e-4),
                beta: at.float("beta", 0.75),
                k: at.float("bias", 1.0),
            };
            g.unary(op, x)?
        }
        "Pad" => pad(g, ins, &at, opset)?,
        "Resize" | "Upsample" => resize(g, ins, &at, opset, node.op_type == "Upsample")?,
        _ => return Ok(None),
    };
    Ok(Some(vec![Value::Dyn(v)]))
}

/// Checks that `x` has `c` channels.
fn channels(x: &Dyn, c: usize, what: &str) -> Result<(), Fail> {
    if x.dims.first() == Some(&c) {
        Ok(())
    } else {
        Err(format!(
            "{what} has {c} channels, its input dimensions [batch, {:?}]",
            x.dims
        ))
    }
}

/// The mean over all pixels of each channel, keeping the pixel axes as 1.
fn mean<T: Real>(g: &mut Graph<T>, x: &Dyn, keep: bool) -> Result<Dyn, Fail> {
    let c = *x.dims.first().ok_or("a mean over the pixels of a scalar")?;
    let dims = if keep {
        std::iter::once(c)
            .chain(x.dims[1..].iter().map(|_| 1))
            .collect()
    } else {
        vec![c]
    };
    g.push(Op::MeanPool, vec![x.slot], dims)
}

fn reduce_mean<T: Real>(
    g: &mut Graph<T>,
    ins: &Inputs,
    at: &Attrs,
    opset: i64,
) -> Result<Dyn, Fail> {
    let x = ins.dynamic(0)?;
    let axes = if opset >= 18 {
        ins.optional(1)?.map(Tensor::ints)
    } else {
        at.ints("axes")
    };
    let keep = at.int("keepdims", 1) != 0;
    let r = x.dims.len();
    let mut inner: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|&a| sample_axis(a, x))
            .collect::<Result<_, _>>()?,
        _ if at.int("noop_with_empty_axes", 0) != 0 => return Ok(x.clone()),
        _ => return Err("ReduceMean over every axis, the batch's too".into()),
    };
    inner.sort_unstable();
    if r >= 2 && inner == (1..r).collect::<Vec<_>>() {
        return mean(g, x, keep);
    }
    if inner == [0] {
        // over channels: a 1x1 convolution to one channel
        let (hh, ww, c) = super::shape::engine_shape(&x.dims)?;
        let window = Window::symmetric(hh, ww, c, 1, 1, 0);
        let op = Op::Conv {
            window,
            weight: vec![real(1.0 / c as f64); c],
            bias: vec![T::zero()],
            act: Act::Identity,
        };
        let mut dims = x.dims.clone();
        dims[0] = 1;
        let y = g.push(op, vec![x.slot], dims.clone())?;
        return if keep {
            Ok(y)
        } else {
            g.relayout(&y, dims[1..].to_vec())
        };
    }
    Err(format!(
        "ReduceMean over axes {:?} of [batch, {:?}]: ppgn takes the pixel axes or the channels",
        inner.iter().map(|a| a + 1).collect::<Vec<_>>(),
        x.dims
    ))
}

/// `(x - mean) / sqrt(var + eps) * scale + bias` per image and channel,
/// from ops with exact gradients.
fn instance_norm<T: Real>(g: &mut Graph<T>, ins: &Inputs, eps: f64) -> Result<Dyn, Fail> {
    let x = ins.dynamic(0)?;
    let (scale, bias) = (ins.constant(1)?, ins.constant(2)?);
    let c = scale.len();
    channels(x, c, "InstanceNormalization")?;
    let m = mean(g, x, true)?;
    let d = g.push(
        Op::Binary(Binary::Sub),
        vec![x.slot, m.slot],
        x.dims.clone(),
    )?;
    let sq = g.push(
        Op::Binary(Binary::Mul),
        vec![d.slot, d.slot],
        x.dims.clone(),
    )?;
    let v = mean(g, &sq, true)?;
    let v = g.affine(&v, vec![1.0; c], vec![eps; c])?;
    let sd = g.unary(Op::Pointwise(Pointwise::Sqrt), &v)?;
    let y = g.push(
        Op::Binary(Binary::Div),
        vec![d.slot, sd.slot],
        x.dims.clone(),
    )?;
    g.affine(&y, scale.data.clone(), bias.data.clone())
}

/// `max(x, 0) + slope * min(x, 0)` as `relu(x) - slope * relu(-x)`.
fn prelu<T: Real>(g: &mut Graph<T>, x: &Dyn, slope: &Tensor) -> Result<Dyn, Fail> {
    let full = Tensor::new(slope.dims.clone(), slope.data.clone(), false).broadcast_to(&x.dims)?;
    let c = *x.dims.first().unwrap_or(&1);
    let inner = full.len() / c.max(1);
    let per_channel = full
        .chunks(inner.max(1))
        .all(|b| b.iter().all(|&v| v == b[0]));
    let neg: Vec<f64> = if per_channel {
        full.chunks(inner.max(1)).map(|b| -b[0]).collect()
    } else {
        full.iter().map(|v| -v).collect()
    };
    let n = neg.len();
    let ec = super::shape::engine_shape(&x.dims)?.2;
    let p = g.unary(Op::Pointwise(Pointwise::Relu), x)?;
    let flipped = g.affine(x, vec![-1.0; ec], vec![0.0; ec])?;
    let q = g.unary(Op::Pointwise(Pointwise::Relu), &flipped)?;
    let r = g.affine(&q, neg, vec![0.0; n])?;
    g.push(
        Op::Binary(Binary::Add),
        vec![p.slot, r.slot],
        x.dims.clone(),
    )
}

fn pad<T: Real>(g: &mut Graph<T>, ins: &Inputs, at: &Attrs, opset: i64) -> Result<Dyn, Fail> {
    let x = ins.dynamic(0)?;
    if at.string("mode", "constant") != "constant" {
        return Err(format!(
            "Pad in mode {}: ppgn pads with zeros",
            at.string("mode", "constant")
        ));
    }
    let (pads, value) = if opset >= 11 {
        let v = ins.optional(2)?.map_or(Ok(0.0), Tensor::single)?;
        (ins.constant(1)?.ints(), v)
    } else {
        (at.ints("pads").unwrap_or_default(), at.float("value", 0.0))
    };
    let r = x.dims.len() + 1;
    let mut full = vec![0i64; 2 * r];
    match ins.optional(3)? {
        Some(axes) => {
            for (k, &a) in axes.ints().iter().enumerate() {
                let ax = axis(a, r)?;
                full[ax] = pads[k];
                full[ax + r] = pads[k + axes.len()];
            }
        }
        None if pads.len() == 2 * r => full = pads,
        None => return Err(format!("{} pads for a tensor of rank {r}", pads.len())),
    }
    if value != 0.0
        || full.iter().any(|&p| p < 0)
        || full[0] != 0
        || full[1] != 0
        || full[r] != 0
        || full[r + 1] != 0
    {
        return Err(format!(
            "pads {full:?} with value {value}: ppgn pads rows and columns with zeros"
        ));
    }
    let u = |i: usize| full[i] as usize;
    g.pad(x, [u(2), u(3), u(2 + r), u(3 + r)])
}

fn resize<T: Real>(
    g: &mut Graph<T>,
    ins: &Inputs,
    at: &Attrs,
    opset: i64,
    upsample: bool,
) -> Result<Dyn, Fail> {
    let x = ins.dynamic(0)?;
    let (c, h, w) = x.image()?;
    let modern = !upsample && opset >= 11;
    let scales = match (upsample, opset) {
        (true, o) if o < 9 => at.floats("scales"),
        (_, o) if o >= 11 && !upsample => ins
            .optional(2)?
            .filter(|t| !t.is_empty())
            .map(|t| t.data.clone()),
        _ => ins.optional(1)?.map(|t| t.data.clone()),
    };
    let sizes = if modern {
        ins.optional(3)?.filter(|t| !t.is_empty()).map(Tensor::ints)
    } else {
        None
    };
    let (ho, wo, sy, sx) = match (&sizes, &scales) {
        (Some(s), _) if s.len() == 4 => (
            s[2] as usize,
            s[3] as usize,
            s[2] as f64 / h as f64,
            s[3] as f64 / w as f64,
        ),
        (None, Some(s)) if s.len() == 4 => (
            (h as f64 * s[2]).floor() as usize,
            (w as f64 * s[3]).floor() as usize,
            s[2],
            s[3],
        ),
        _ => return Err("Resize without four scales or sizes".into()),
    };
    super::tensor::count(&[c, ho, wo])?;
    if scales
        .as_ref()
        .is_some_and(|s| s.len() == 4 && (s[0] != 1.0 || s[1] != 1.0))
        || ho == 0
        || wo == 0
    {
        return Err(format!(
            "a resize to {ho}x{wo} that scales the batch or the channels"
        ));
    }
    let mode = at.string("mode", "nearest");
    let ctm = if modern {
        at.string("coordinate_transformation_mode", "half_pixel")
    } else {
        "asymmetric".into()
    };
    let nearest = if modern {
        at.string("nearest_mode", "round_prefer_floor")
    } else {
        "floor".into()
    };
    let modes = (mode.as_str(), ctm.as_str(), nearest.as_str());
    let op = Op::Resample {
        rh: resize_rows(modes, h, ho, sy)?,
        rw: resize_rows(modes, w, wo, sx)?,
    };
    g.push(op, vec![x.slot], vec![c, ho, wo])
}

/// The `[out, n]` resampling matrix of one axis for `Resize`'s `mode`,
/// coordinate transformation and nearest mode.
fn resize_rows<T: Real>(
    (mode, ctm, nearest): (&str, &str, &str),
    n: usize,
    out: usize,
    scale: f64,
) -> Result<SparseRows<T>, Fail> {
    (0..out)
        .map(|i| {
            let x = source(ctm, i, n, out, scale)?;
            Ok(match mode {
                "nearest" => {
                    let j = nearest_index(nearest, x)?.clamp(0, n as i64 - 1);
                    vec![(j as usize, T::one())]
                }
                "linear" | "bilinear" => {
                    let x = x.clamp(0.0, (n - 1) as f64);
                    let i0 = x.floor() as usize;
                    let i1 = (i0 + 1).min(n - 1);
                    let f = x - i0 as f64;
                    if i1 == i0 {
                        vec![(i0, T::one())]
                    } else {
                        vec![(i0, real(1.0 - f)), (i1, real(f))]
                    }
                }
                m => return Err(format!("Resize in mode {m}: ppgn takes nearest and linear")),
            })
        })
        .collect()
}

/// The input coordinate of output pixel `i` (ONNX
/// `coordinate_transformation_mode`).
fn source(ctm: &str, i: usize, n: usize, out: usize, scale: f64) -> Result<f64, Fail> {
    let i = i as f64;
    Ok(match ctm {
        "half_pixel" => (i + 0.5) / scale - 0.5,
        "pytorch_half_pixel" if out > 1 => (i + 0.5) / scale - 0.5,
        "pytorch_half_pixel" => 0.0,
        "align_corners" if out > 1 => i * (n - 1) as f64 / (out - 1) as f64,
        "align_corners" => 0.0,
        "asymmetric" => i / scale,
        "tf_half_pixel_for_nn" => (i + 0.5) / scale,
        m => return Err(format!("Resize with coordinate_transformation_mode {m}")),
    })
}

fn nearest_index(mode: &str, x: f64) -> Result<i64, Fail> {
    let half = (x - x.floor() - 0.5).abs() < 1e-9;
    Ok(match mode {
        "round_prefer_floor" if half => x.floor(),
        "round_prefer_ceil" if half => x.ceil(),
        "round_prefer_floor" | "round_prefer_ceil" => x.round(),
        "floor" => x.floor(),
        "ceil" => x.ceil(),
        m => return Err(format!("Resize with nearest_mode {m}")),
    } as i64)
}
