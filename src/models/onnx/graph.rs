//! The engine graph an ONNX model becomes, built node by node: values are
//! constants (folded at load) or tape slots holding one sample in NHWC
//! order; activations and per-channel affine maps are fused into the
//! convolution before them when nothing else reads its output.

use std::collections::{HashMap, HashSet};

use crate::nn::fast::kernels::Act;
use crate::nn::fast::pointwise::Pointwise;
use crate::nn::fast::real::Real;
use crate::nn::fast::{Op, Shape};

use super::shape::{engine_order, engine_shape};
use super::tensor::{axis, Fail, Tensor};

/// A value of the model.
#[derive(Debug, Clone)]
pub enum Value {
    Const(Tensor),
    Dyn(Dyn),
}

/// A value computed from the input: its tape slot and its ONNX dimensions
/// without the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Dyn {
    pub slot: usize,
    pub dims: Vec<usize>,
}

impl Dyn {
    /// `[c, h, w]` of an image value, or why it is not one.
    pub fn image(&self) -> Result<(usize, usize, usize), Fail> {
        match *self.dims {
            [c, h, w] => Ok((c, h, w)),
            _ => Err(format!(
                "expects images [batch, channels, height, width], got [batch, {:?}]",
                self.dims
            )),
        }
    }
}

/// The graph under construction.
pub struct Graph<T> {
    pub ops: Vec<Op<T>>,
    pub inputs: Vec<Vec<usize>>,
    pub shapes: Vec<Shape>,
    /// The batch size the export fixed (shape arithmetic uses it).
    pub batch: usize,
    /// The model's opset (defaults changed between opsets).
    pub opset: i64,
    /// How many nodes not yet lowered read each value, by name, and the
    /// model's outputs.
    readers: HashMap<String, usize>,
    outputs: HashSet<String>,
    /// The value names held by each slot (aliases share a slot).
    names: HashMap<usize, Vec<String>>,
    /// Node names by the slot holding their output (the taps).
    pub taps: Vec<(String, usize)>,
    /// The slot whose op the last node changed in place (a fusion).
    pub fused: Option<usize>,
    /// Zero padding ops by the slot they write: the value padded and the
    /// pixels added (top, left, bottom, right), for a convolution after
    /// them to take into its window instead.
    pads: HashMap<usize, (Dyn, [usize; 4])>,
}

/// A number as `T`.
pub fn real<T: Real>(v: f64) -> T {
    T::from(v).unwrap_or_else(T::nan)
}

impl<T: Real> Graph<T> {
    pub fn new(
        input: &[usize],
        (batch, opset): (usize, i64),
        readers: HashMap<String, usize>,
        outputs: HashSet<String>,
    ) -> Result<Self, Fail> {
        Ok(Self {
            ops: Vec::new(),
            inputs: Vec::new(),
            shapes: vec![engine_shape(input)?],
            batch,
            opset,
            readers,
            outputs,
            names: HashMap::new(),
            taps: Vec::new(),
            fused: None,
            pads: HashMap::new(),
        })
    }

    /// Records that a node has read the values `names` (once each time
    /// named): what is left to read them decides whether an op may still
    /// be changed in place.
    pub fn consumed(&mut self, names: &[String]) {
        for n in names {
            if let Some(r) = self.readers.get_mut(n) {
                *r = r.saturating_sub(1);
            }
        }
    }

    /// Records that the value `name` is held in `slot`.
    pub fn name(&mut self, name: &str, slot: usize) {
        self.names.entry(slot).or_default().push(name.to_string());
    }

    /// Appends `op` reading `ins`; its output has ONNX dimensions `dims`.
    pub fn push(&mut self, op: Op<T>, ins: Vec<usize>, dims: Vec<usize>) -> Result<Dyn, Fail> {
        super::tensor::count(&dims)?;
        let in_shapes: Vec<Shape> = ins.iter().map(|&s| self.shapes[s]).collect();
        let s = op.out_shape(&in_shapes)?;
        let want = engine_shape(&dims)?;
        if s != want {
            return Err(format!(
                "gives {s:?}, where the model's dimensions {dims:?} say {want:?}"
            ));
        }
        self.ops.push(op);
        self.inputs.push(ins);
        self.shapes.push(s);
        Ok(Dyn {
            slot: self.ops.len(),
            dims,
        })
    }

    /// Appends a one-input `op` on `x` keeping its dimensions.
    pub fn unary(&mut self, op: Op<T>, x: &Dyn) -> Result<Dyn, Fail> {
        self.push(op, vec![x.slot], x.dims.clone())
    }

    /// The op that computes slot `x`, if only one node reads it and it is
    /// not an output of the model (so it may be changed in place).
    fn sole_producer(&mut self, x: &Dyn) -> Option<&mut Op<T>> {
        let names = self.names.get(&x.slot)?;
        let readers: usize = names
            .iter()
            .map(|n| self.readers.get(n).copied().unwrap_or(0))
            .sum();
        // one node reads it (the one being lowered), and no op of that
        // node's lowering reads it already
        let read = self.inputs.iter().flatten().any(|&s| s == x.slot);
        if x.slot == 0 || readers != 1 || read || names.iter().any(|n| self.outputs.contains(n)) {
            return None;
        }
        self.ops.get_mut(x.slot - 1)
    }

    /// Zero-pads image `x` by `[top, left, bottom, right]` pixels.
    pub fn pad(&mut self, x: &Dyn, [t, l, b, r]: [usize; 4]) -> Result<Dyn, Fail> {
        let (c, h, w) = x.image()?;
        let op = crate::nn::fast::build::pad((h, w), (t, b, l, r));
        let y = self.push(op, vec![x.slot], vec![c, h + t + b, w + l + r])?;
        self.pads.insert(y.slot, (x.clone(), [t, l, b, r]));
        Ok(y)
    }

    /// The value a convolution should read for `x`, and the zero padding
    /// to add to its window: the unpadded value when `x` is a zero padding
    /// nothing else reads (the padding op is then left unread and pruned).
    pub fn unpad(&mut self, x: &Dyn) -> (Dyn, [usize; 4]) {
        if self.sole_producer(x).is_some() {
            if let Some((src, p)) = self.pads.get(&x.slot) {
                return (src.clone(), *p);
            }
        }
        (x.clone(), [0; 4])
    }

    /// `act` on `x`: fused into the convolution before when it can be,
    /// else the pointwise function `alone`.
    pub fn act(&mut self, x: &Dyn, act: Act, alone: Pointwise) -> Result<Dyn, Fail> {
        if let Some(
            Op::Conv { act: a, .. }
            | Op::ConvTranspose { act: a, .. }
            | Op::Depthwise { act: a, .. },
        ) = self.sole_producer(x)
        {
            // an activation after another: Clip(0, 6) after a ReLU is ReLU6
            let composed = match (*a, act) {
                (Act::Identity, new) => Some(new),
                (Act::Relu, Act::Relu6) | (Act::Relu6, Act::Relu) => Some(Act::Relu6),
                (Act::Relu, Act::Relu) => Some(Act::Relu),
                _ => None,
            };
            if let Some(c) = composed {
                *a = c;
                self.fused = Some(x.slot);
                return Ok(x.clone());
            }
        }
        self.unary(Op::Pointwise(alone), x)
    }

    /// `x * scale + shift` with one number per channel (`scale.len()` the
    /// channel count) or one per value in ONNX order; per channel, folded
    /// into the convolution or affine map before when it can be.
    pub fn affine(&mut self, x: &Dyn, scale: Vec<f64>, shift: Vec<f64>) -> Result<Dyn, Fail> {
        let c = engine_shape(&x.dims)?.2;
        if scale.len() == c && fold_affine(self.sole_producer(x), &scale, &shift) {
            self.fused = Some(x.slot);
            return Ok(x.clone());
        }
        let (scale, shift) = if scale.len() == c {
            (scale, shift)
        } else {
            let order = engine_order(&x.dims);
            let mut a = vec![0.0; scale.len()];
            let mut b = vec![0.0; shift.len()];
            for (i, &e) in order.iter().enumerate() {
                a[e] = scale[i];
                b[e] = shift[i];
            }
            (a, b)
        };
        let op = Op::Affine {
            scale: scale.into_iter().map(real).collect(),
            shift: shift.into_iter().map(real).collect(),
        };
        self.unary(op, x)
    }

    /// `x` read as dimensions `dims` (same values in ONNX order): nothing
    /// when the engine holds both alike, else a reshape or a gather.
    pub fn relayout(&mut self, x: &Dyn, dims: Vec<usize>) -> Result<Dyn, Fail> {
        let n: usize = x.dims.iter().product();
        if dims.iter().product::<usize>() != n {
            return Err(format!("cannot read {:?} as {dims:?}", x.dims));
        }
        self.gather(x, dims, &(0..n).collect::<Vec<_>>())
    }

    /// The value of dimensions `dims` whose ONNX position `i` is `x`'s
    /// position `map[i]`.
    pub fn gather(&mut self, x: &Dyn, dims: Vec<usize>, map: &[usize]) -> Result<Dyn, Fail> {
        let (from, to) = (engine_order(&x.dims), engine_order(&dims));
        let mut index = vec![0; map.len()];
        for (i, &m) in map.iter().enumerate() {
            index[to[i]] = from[m];
        }
        let same = index.len() == from.len() && index.iter().enumerate().all(|(i, &v)| i == v);
        let shape = engine_shape(&dims)?;
        if same && shape == self.shapes[x.slot] {
            return Ok(Dyn { slot: x.slot, dims });
        }
        let op = if same {
            Op::Reshape(shape)
        } else {
            Op::Gather { index, out: shape }
        };
        self.push(op, vec![x.slot], dims)
    }
}

/// Folds the per-channel `x * scale + shift` into `op` (a convolution
/// without activation, or an affine map); whether it did.
fn fold_affine<T: Real>(op: Option<&mut Op<T>>, scale: &[f64], shift: &[f64]) -> bool {
    let c = scale.len();
    let (weights, bias) = match op {
        Some(Op::Conv {
            weight,
            bias,
            act: Act::Identity,
            ..
        })
        | Some(Op::ConvTranspose {
            weight,
            bias,
            act: Act::Identity,
            ..
        }) => (weight, bias),
        Some(Op::Depthwise {
            taps,
            bias,
            act: Act::Identity,
            ..
        }) => (taps, bias),
        Some(Op::Affine { scale: a, shift: b }) if a.len() == c => (a, b),
        _ => return false,
    };
    if bias.len() != c {
        return false;
    }
    for (i, w) in weights.iter_mut().enumerate() {
        *w = *w * real::<T>(scale[i % c]);
    }
    for (j, b) in bias.iter_mut().enumerate() {
        *b = *b * real::<T>(scale[j]) + real::<T>(shift[j]);
    }
    true
}

/// The inputs of a node: constants, values, or absent (optional inputs).
pub struct Inputs<'a>(pub Vec<Option<&'a Value>>);

impl<'a> Inputs<'a> {
    pub fn value(&self, i: usize) -> Result<&'a Value, Fail> {
        self.0
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| format!("input {i} is missing"))
    }

    /// Input `i`, which must be computed from the network's input.
    pub fn dynamic(&self, i: usize) -> Result<&'a Dyn, Fail> {
        match self.value(i)? {
            Value::Dyn(d) => Ok(d),
            Value::Const(_) => Err(format!(
                "input {i} is a constant where ppgn expects the network's data"
            )),
        }
    }

    /// Input `i`, which must be a constant (a weight, a shape).
    pub fn constant(&self, i: usize) -> Result<&'a Tensor, Fail> {
        match self.value(i)? {
            Value::Const(t) => Ok(t),
            Value::Dyn(_) => Err(format!(
                "input {i} is computed from the network's input; ppgn needs it constant (a weight or a shape)"
            )),
        }
    }

    /// Optional constant input `i` (absent or named "").
    pub fn optional(&self, i: usize) -> Result<Option<&'a Tensor>, Fail> {
        match self.0.get(i).copied().flatten() {
            None => Ok(None),
            Some(_) => self.constant(i).map(Some),
        }
    }
}

/// The per-sample axis of full-rank axis `a` of `x` (the batch axis is
/// not the network's to change).
pub fn sample_axis(a: i64, x: &Dyn) -> Result<usize, Fail> {
    match axis(a, x.dims.len() + 1)? {
        0 => Err("the op works along the batch axis; ppgn runs each sample alone".into()),
        k => Ok(k - 1),
    }
}
