//! Constant tensors (weights, `Constant` nodes, and the shape arithmetic
//! exporters emit, folded at load), a node's attributes, and the
//! evaluation of nodes whose inputs are all constant.

use super::proto::{AttributeProto, NodeProto, TensorProto};

/// A constant: its dimensions and its values (integers are held exactly as
/// `f64` up to 2^53, far beyond any shape).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub dims: Vec<usize>,
    pub data: Vec<f64>,
    /// Whether its element type is an integer or boolean type.
    pub int: bool,
}

/// Why a node cannot be imported (the caller adds where).
pub type Fail = String;

/// The most values a constant, or one sample of a value, may hold (2^28:
/// 1 GiB of float32), so that a damaged or hostile file cannot ask for
/// more memory than a machine has.
pub const MAX_VALUES: usize = 1 << 28;

/// The number of values of `dims`, or why it is too many.
pub fn count(dims: &[usize]) -> Result<usize, Fail> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_VALUES)
        .ok_or_else(|| format!("dimensions {dims:?} hold more than {MAX_VALUES} values"))
}

impl Tensor {
    pub fn new(dims: Vec<usize>, data: Vec<f64>, int: bool) -> Self {
        Self { dims, data, int }
    }

    pub fn scalar(v: f64, int: bool) -> Self {
        Self::new(Vec::new(), vec![v], int)
    }

    /// A tensor from its protobuf, or why not.
    pub fn from_proto(t: &TensorProto) -> Result<Self, Fail> {
        if t.data_location == 1 {
            return Err(format!(
                "tensor {:?} keeps its values in another file (ONNX external data); \
                 export the model into one file (models under 2 GB fit)",
                t.name
            ));
        }
        let dims = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("tensor {:?}: dimension {d}", t.name)))
            .collect::<Result<Vec<_>, _>>()?;
        let count = count(&dims).map_err(|e| format!("tensor {:?}: {e}", t.name))?;
        let raw = &t.raw_data;
        let (data, int): (Vec<f64>, bool) = match t.data_type {
            1 if raw.is_empty() => (t.float_data.iter().map(|&v| v as f64).collect(), false),
            1 => (
                le(raw, 4, |b| f32::from_le_bytes(b.try_into().unwrap()) as f64),
                false,
            ),
            11 if raw.is_empty() => (t.double_data.clone(), false),
            11 => (
                le(raw, 8, |b| f64::from_le_bytes(b.try_into().unwrap())),
                false,
            ),
            7 if raw.is_empty() => (t.int64_data.iter().map(|&v| v as f64).collect(), true),
            7 => (
                le(raw, 8, |b| i64::from_le_bytes(b.try_into().unwrap()) as f64),
                true,
            ),
            6 | 9 | 2 | 3 | 5 | 4 if raw.is_empty() => {
                (t.int32_data.iter().map(|&v| v as f64).collect(), true)
            }
            6 => (
                le(raw, 4, |b| i32::from_le_bytes(b.try_into().unwrap()) as f64),
                true,
            ),
            9 | 2 => (raw.iter().map(|&b| b as f64).collect(), true),
            3 => (raw.iter().map(|&b| b as i8 as f64).collect(), true),
            other => {
                return Err(format!(
                    "tensor {:?} has element type {other} ({}); ppgn reads float32, float64, \
                     int64, int32, int8, uint8 and bool tensors (export in float32)",
                    t.name,
                    type_name(other)
                ))
            }
        };
        if data.len() != count {
            return Err(format!(
                "tensor {:?}: dimensions {dims:?} need {count} values, the file holds {}",
                t.name,
                data.len()
            ));
        }
        Ok(Self::new(dims, data, int))
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The values as integers (shapes, axes, pads).
    pub fn ints(&self) -> Vec<i64> {
        self.data.iter().map(|&v| v as i64).collect()
    }

    /// The single value of a one-value tensor.
    pub fn single(&self) -> Result<f64, Fail> {
        match self.data.as_slice() {
            [v] => Ok(*v),
            _ => Err(format!(
                "expected one value, got dimensions {:?}",
                self.dims
            )),
        }
    }

    /// The values read in row-major order at the coordinates of `dims`
    /// (numpy broadcasting: this tensor's dimensions right-aligned, each 1
    /// or equal).
    pub fn broadcast_to(&self, dims: &[usize]) -> Result<Vec<f64>, Fail> {
        if self.data.len() != self.dims.iter().product::<usize>() {
            return Err(format!(
                "a tensor of dimensions {:?} holds {} values",
                self.dims,
                self.data.len()
            ));
        }
        let index = broadcast_index(&self.dims, dims)?;
        Ok(index.into_iter().map(|i| self.data[i]).collect())
    }
}

/// The numpy broadcast of two shapes, or why they do not broadcast.
pub fn broadcast_dims(a: &[usize], b: &[usize]) -> Result<Vec<usize>, Fail> {
    let r = a.len().max(b.len());
    let at = |d: &[usize], i: usize| {
        if i + d.len() >= r {
            d[i + d.len() - r]
        } else {
            1
        }
    };
    (0..r)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            _ => Err(format!("dimensions {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

/// For each row-major position of `to`, the position of `from` it reads
/// under numpy broadcasting.
pub fn broadcast_index(from: &[usize], to: &[usize]) -> Result<Vec<usize>, Fail> {
    if from.len() > to.len() || broadcast_dims(from, to)? != to {
        return Err(format!("dimensions {from:?} do not broadcast to {to:?}"));
    }
    let lead = to.len() - from.len();
    let total: usize = to.iter().product();
    let mut out = Vec::with_capacity(total);
    let mut coord = vec![0usize; to.len()];
    for _ in 0..total {
        let mut k = 0;
        for (j, &f) in from.iter().enumerate() {
            k = k * f + if f == 1 { 0 } else { coord[lead + j] };
        }
        out.push(k);
        for d in (0..to.len()).rev() {
            coord[d] += 1;
            if coord[d] < to[d] {
                break;
            }
            coord[d] = 0;
        }
    }
    Ok(out)
}

fn le(raw: &[u8], size: usize, f: impl Fn(&[u8]) -> f64) -> Vec<f64> {
    if !raw.len().is_multiple_of(size) {
        return Vec::new(); // reported as a count mismatch
    }
    raw.chunks_exact(size).map(f).collect()
}

fn type_name(t: i32) -> &'static str {
    match t {
        10 => "float16",
        16 => "bfloat16",
        8 => "string",
        12 | 13 => "unsigned integer",
        14 | 15 => "complex",
        _ => "unknown",
    }
}

/// A node's attributes by name.
pub struct Attrs<'a>(pub &'a NodeProto);

impl Attrs<'_> {
    fn get(&self, name: &str) -> Option<&AttributeProto> {
        self.0.attribute.iter().find(|a| a.name == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).map_or(default, |a| a.i)
    }

    pub fn float(&self, name: &str, default: f64) -> f64 {
        self.get(name).map_or(default, |a| a.f as f64)
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }

    pub fn floats(&self, name: &str) -> Option<Vec<f64>> {
        self.get(name)
            .map(|a| a.floats.iter().map(|&v| v as f64).collect())
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).map_or(default.to_string(), |a| {
            String::from_utf8_lossy(&a.s).into_owned()
        })
    }

    pub fn tensor(&self, name: &str) -> Option<Result<Tensor, Fail>> {
        self.get(name)
            .and_then(|a| a.t.as_ref())
            .map(Tensor::from_proto)
    }
}

/// An axis of a rank-`r` tensor, negative counting from the end.
pub fn axis(a: i64, r: usize) -> Result<usize, Fail> {
    let k = if a < 0 { a + r as i64 } else { a };
    if (0..r as i64).contains(&k) {
        Ok(k as usize)
    } else {
        Err(format!("axis {a} outside a tensor of rank {r}"))
    }
}
