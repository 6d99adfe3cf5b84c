//! Reads PyTorch checkpoints without Python: the legacy (pre-1.6, non-zip)
//! `torch.save` format and the zip format, into plain tensors by name.
//!
//! Both formats pickle the state dict with tensors as
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`,
//! the storage being a persistent id `('storage', FloatStorage, key, device,
//! numel, ...)`. They differ in where the storages live:
//!
//! - legacy: five things one after the other in one file: the pickled magic
//!   number, the protocol version and the system info, the pickled object,
//!   the pickled list of storage keys, then each storage as its element
//!   count (little-endian `i64`) followed by its raw bytes;
//! - zip: `<archive>/data.pkl` and one entry `<archive>/data/<key>` per
//!   storage.
//!
//! Tensors may be strided views of their storage (EfficientNet-Lite0's
//! convolution kernels are stored as TensorFlow's HWIO), so every tensor is
//! gathered into a contiguous one here. The pickle opcodes are interpreted
//! by candle's pickle machine; everything else is checked here, so a
//! truncated or foreign file gives an error that names it.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// The pickled magic number that opens a legacy checkpoint:
/// `PROTO 2, LONG1 10 bytes 0x1950a86a20f9469cfc6c, STOP`.
const LEGACY_MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Weights {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Every tensor of a checkpoint, by name. With `key`, the state dict is the
/// entry `key` of the pickled top-level dict (e.g. `netG_state_dict`).
/// Non-tensor entries (such as `_metadata`) are skipped.
pub fn read(path: &Path, key: Option<&str>) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.starts_with(b"PK\x03\x04") {
        read_zip(path, &bytes, key)
    } else if bytes.starts_with(&LEGACY_MAGIC) {
        read_legacy(path, &bytes, key)
    } else {
        Err(bad(
            path,
            "not a PyTorch checkpoint (neither a torch zip archive nor the legacy torch.save format)",
        ))
    }
}

/// One pickle from `r`, as an object.
fn unpickle(path: &Path, r: &mut Cursor<&[u8]>, what: &str) -> Result<Object> {
    let rest = &r.get_ref()[(r.position() as usize).min(r.get_ref().len())..];
    lengths_fit(rest).map_err(|m| bad(path, format!("cannot read the {what}: {m}")))?;
    let mut stack = Stack::empty();
    stack
        .read_loop(r)
        .and_then(|_| stack.finalize())
        .map_err(|e| bad(path, format!("cannot read the {what} ({e}); the file is truncated or not a PyTorch checkpoint")))
}

/// Checks that every length a pickle's opcodes announce (strings, bytes,
/// long integers) fits in the bytes left, up to its STOP: candle's pickle
/// machine allocates what a length says before reading it (`cargo fuzz run
/// torch` found a 78-byte file asking for 2.3 GB). Opcodes it does not
/// know end the scan; the machine then reports them.
fn lengths_fit(b: &[u8]) -> std::result::Result<(), String> {
    let mut at = 0usize;
    let int = |at: usize, n: usize| -> Option<u64> {
        let bytes = b.get(at..at + n)?;
        Some(bytes.iter().rev().fold(0u64, |v, &x| (v << 8) | x as u64))
    };
    let line = |at: usize| b[at..].iter().position(|&c| c == b'\n').map(|i| at + i + 1);
    while let Some(&op) = b.get(at) {
        at += 1;
        let (fixed, prefix) = match op {
            b'.' => return Ok(()),
            0x80 | b'K' | b'h' | b'q' | 0x82 => (1, 0),
            b'M' | 0x83 => (2, 0),
            b'J' | b'j' | b'r' | 0x84 => (4, 0),
            b'G' | 0x95 => (8, 0),
            0x8a | b'C' | b'U' | 0x8c => (0, 1),
            0x8b | b'X' | b'B' | b'T' => (0, 4),
            0x8d | 0x8e | 0x96 => (0, 8),
            b'I' | b'L' | b'F' | b'S' | b'V' | b'g' | b'p' | b'P' | b'c' | b'i' => {
                let Some(end) = line(at) else { return Ok(()) };
                at = match op {
                    b'c' | b'i' => match line(end) {
                        Some(e) => e,
                        None => return Ok(()),
                    },
                    _ => end,
                };
                continue;
            }
            b'('
            | b'0'
            | b'1'
            | b'2'
            | b'N'
            | b'R'
            | b'a'
            | b'b'
            | b'd'
            | b'}'
            | b'e'
            | b'l'
            | b']'
            | b'o'
            | b's'
            | b'u'
            | b't'
            | b')'
            | b'Q'
            | 0x81
            | 0x85..=0x89
            | 0x8f..=0x94
            | 0x97
            | 0x98 => (0, 0),
            _ => return Ok(()),
        };
        let Some(len) = int(at, prefix.max(fixed).max(1)).filter(|_| prefix > 0) else {
            at += fixed;
            continue;
        };
        at += prefix;
        if len > (b.len() - at.min(b.len())) as u64 {
            return Err(format!(
                "a pickled value of {len} bytes at byte {at}, past the end of the file (truncated or damaged)"
            ));
        }
        at += len as usize;
    }
    Ok(())
}

/// The legacy format's protocol version and system info: version 1001,
/// written on a little-endian machine.
fn legacy_header(path: &Path, r: &mut Cursor<&[u8]>) -> Result<()> {
    match unpickle(path, r, "protocol version")? {
        Object::Int(1001) => {}
        other => {
            return Err(bad(
                path,
                format!("unsupported legacy protocol {other:?}, expected 1001"),
            ))
        }
    }
    let sys_info = unpickle(path, r, "system info")?;
    if let Object::Dict(items) = &sys_info {
        let little = items.iter().any(|(k, v)| {
            *k == Object::Unicode("little_endian".into()) && *v == Object::Bool(true)
        });
        if !little {
            return Err(bad(
                path,
                "written on a big-endian machine, which is not supported",
            ));
        }
    }
    Ok(())
}

fn read_legacy(path: &Path, bytes: &[u8], key: Option<&str>) -> Result<HashMap<String, Tensor>> {
    let mut r = Cursor::new(bytes);
    r.set_position(15);
    legacy_header(path, &mut r)?;
    let object = unpickle(path, &mut r, "state dict")?;
    let keys = match unpickle(path, &mut r, "list of storages")? {
        Object::List(keys) => keys
            .into_iter()
            .map(|k| match k {
                Object::Unicode(s) => Ok(s),
                other => Err(bad(path, format!("storage key {other:?} is not a string"))),
            })
            .collect::<Result<Vec<_>>>()?,
        other => {
            return Err(bad(
                path,
                format!("expected the list of storage keys, found {other:?}"),
            ))
        }
    };
    let infos = tensor_infos(path, select(path, object, key)?)?;
    // Storages follow in the order of `keys`, each as numel then the bytes;
    // its element size comes from the tensors that use it.
    let elem: HashMap<&str, DType> = infos
        .iter()
        .map(|t| (t.storage.as_str(), t.dtype))
        .collect();
    let mut storages: HashMap<String, (DType, Vec<u8>)> = HashMap::new();
    for k in &keys {
        let mut n = [0u8; 8];
        r.read_exact(&mut n)
            .map_err(|_| bad(path, format!("truncated before storage {k}")))?;
        let numel = i64::from_le_bytes(n);
        let dtype = *elem.get(k.as_str()).unwrap_or(&DType::F32);
        let len = usize::try_from(numel)
            .ok()
            .and_then(|n| n.checked_mul(dtype.size_in_bytes()))
            .ok_or_else(|| bad(path, format!("storage {k} has an impossible size {numel}")))?;
        let start = r.position() as usize;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| {
                bad(
                    path,
                    format!(
                    "truncated: storage {k} needs {len} bytes at offset {start}, the file has {}",
                    bytes.len()
                ),
                )
            })?;
        storages.insert(k.clone(), (dtype, bytes[start..end].to_vec()));
        r.set_position(end as u64);
    }
    build(path, infos, |k| {
        storages
            .get(k)
            .map(|(_, b)| b.clone())
            .ok_or_else(|| bad(path, format!("storage {k} is missing")))
    })
}

fn read_zip(path: &Path, bytes: &[u8], key: Option<&str>) -> Result<HashMap<String, Tensor>> {
    let zerr = |e: zip::result::ZipError| {
        bad(
            path,
            format!("broken zip archive ({e}); the file is truncated or corrupt"),
        )
    };
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(zerr)?;
    let pkl = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.to_string()))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| {
            bad(
                path,
                "a zip archive without data.pkl: not a PyTorch checkpoint",
            )
        })?;
    let dir = pkl.trim_end_matches("data.pkl").to_string();
    let mut data = Vec::new();
    zip.by_name(&pkl)
        .map_err(zerr)?
        .read_to_end(&mut data)
        .map_err(|e| bad(path, format!("cannot read {pkl}: {e}")))?;
    let object = unpickle(path, &mut Cursor::new(&data[..]), "state dict")?;
    let infos = tensor_infos(path, select(path, object, key)?)?;
    build(path, infos, |k| {
        let name = format!("{dir}data/{k}");
        let mut v = Vec::new();
        zip.by_name(&name)
            .map_err(zerr)?
            .read_to_end(&mut v)
            .map_err(|e| bad(path, format!("cannot read {name}: {e}")))?;
        Ok(v)
    })
}

/// The state dict: the top object, or its entry `key`.
fn select(path: &Path, object: Object, key: Option<&str>) -> Result<Vec<(Object, Object)>> {
    let Object::Dict(items) = object else {
        return Err(bad(path, "the pickled object is not a dict of tensors"));
    };
    let Some(key) = key else { return Ok(items) };
    let mut names = Vec::new();
    for (k, v) in items {
        if let Object::Unicode(s) = &k {
            if s == key {
                return match v {
                    Object::Dict(d) => Ok(d),
                    _ => Err(bad(path, format!("entry {key:?} is not a dict of tensors"))),
                };
            }
            names.push(s.clone());
        }
    }
    Err(bad(
        path,
        format!("has no entry {key:?}; its entries are {}", names.join(", ")),
    ))
}

/// Where a tensor's values are: a strided view of one storage.
struct TensorInfo {
    name: String,
    dtype: DType,
    storage: String,
    storage_numel: usize,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

fn tensor_infos(path: &Path, items: Vec<(Object, Object)>) -> Result<Vec<TensorInfo>> {
    let mut out = Vec::new();
    for (k, v) in items {
        let Object::Unicode(name) = k else { continue };
        if let Some(info) = tensor_info(path, &name, v)? {
            out.push(info);
        }
    }
    if out.is_empty() {
        return Err(bad(path, "holds no tensors"));
    }
    Ok(out)
}

/// `None` for entries that are not tensors.
fn tensor_info(path: &Path, name: &str, v: Object) -> Result<Option<TensorInfo>> {
    let Object::Reduce { callable, args } = v else {
        return Ok(None);
    };
    let (callable, args) = match (*callable, *args) {
        // nn.Parameter(tensor): unwrap the inner tensor
        (
            Object::Class {
                module_name,
                class_name,
            },
            Object::Tuple(mut a),
        ) if module_name == "torch._utils"
            && class_name == "_rebuild_parameter"
            && !a.is_empty() =>
        {
            match a.remove(0) {
                Object::Reduce { callable, args } => (*callable, *args),
                _ => return Ok(None),
            }
        }
        (c, a) => (c, a),
    };
    match &callable {
        Object::Class {
            module_name,
            class_name,
        } if module_name == "torch._utils" && class_name == "_rebuild_tensor_v2" => {}
        _ => return Ok(None),
    }
    let wrong = |what: &str| bad(path, format!("tensor {name}: malformed {what}"));
    let Object::Tuple(args) = args else {
        return Err(wrong("arguments"));
    };
    if args.len() < 4 {
        return Err(wrong("arguments"));
    }
    let usizes = |o: &Object, what: &str| -> Result<Vec<usize>> {
        match o {
            Object::Tuple(v) => v
                .iter()
                .map(|x| as_usize(x).ok_or_else(|| wrong(what)))
                .collect(),
            _ => Err(wrong(what)),
        }
    };
    let offset = as_usize(&args[1]).ok_or_else(|| wrong("offset"))?;
    let size = usizes(&args[2], "size")?;
    let stride = usizes(&args[3], "stride")?;
    if size.len() != stride.len() {
        return Err(wrong("stride"));
    }
    let Object::PersistentLoad(id) = &args[0] else {
        return Err(wrong("storage"));
    };
    let Object::Tuple(id) = id.as_ref() else {
        return Err(wrong("storage"));
    };
    if id.len() < 5 {
        return Err(wrong("storage"));
    }
    let dtype = storage_dtype(path, name, &id[1])?;
    let Object::Unicode(storage) = &id[2] else {
        return Err(wrong("storage key"));
    };
    let storage_numel = as_usize(&id[4]).ok_or_else(|| wrong("storage size"))?;
    Ok(Some(TensorInfo {
        name: name.to_string(),
        dtype,
        storage: storage.clone(),
        storage_numel,
        offset,
        size,
        stride,
    }))
}

/// The element type of a storage class (`FloatStorage`, ...).
fn storage_dtype(path: &Path, name: &str, class: &Object) -> Result<DType> {
    let Object::Class { class_name, .. } = class else {
        return Err(bad(path, format!("tensor {name}: malformed storage type")));
    };
    Ok(match class_name.as_str() {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "ByteStorage" => DType::U8,
        other => {
            return Err(bad(
                path,
                format!("tensor {name}: unsupported storage type {other}"),
            ))
        }
    })
}

fn as_usize(o: &Object) -> Option<usize> {
    match o {
        Object::Int(i) => usize::try_from(*i).ok(),
        Object::Long(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

/// Gathers every tensor's strided view into a contiguous tensor.
fn build(
    path: &Path,
    infos: Vec<TensorInfo>,
    mut storage: impl FnMut(&str) -> Result<Vec<u8>>,
) -> Result<HashMap<String, Tensor>> {
    let mut cache: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = HashMap::new();
    for t in infos {
        if !cache.contains_key(&t.storage) {
            let b = storage(&t.storage)?;
            cache.insert(t.storage.clone(), b);
        }
        let raw = &cache[&t.storage];
        let es = t.dtype.size_in_bytes();
        if raw.len() < t.storage_numel * es {
            return Err(bad(
                path,
                format!(
                    "truncated: storage {} of tensor {} has {} bytes, expected {}",
                    t.storage,
                    t.name,
                    raw.len(),
                    t.storage_numel * es
                ),
            ));
        }
        let numel: usize = t.size.iter().product();
        let last = t.offset
            + t.size
                .iter()
                .zip(&t.stride)
                .map(|(&n, &s)| n.saturating_sub(1) * s)
                .sum::<usize>();
        if numel > 0 && last >= t.storage_numel {
            return Err(bad(
                path,
                format!(
                    "tensor {} (size {:?}, stride {:?}, offset {}) reaches past its storage of {} elements",
                    t.name, t.size, t.stride, t.offset, t.storage_numel
                ),
            ));
        }
        // contiguous gather, element by element in row-major order
        let mut data = Vec::with_capacity(numel * es);
        let mut idx = vec![0usize; t.size.len()];
        for _ in 0..numel {
            let at = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
            data.extend_from_slice(&raw[at * es..(at + 1) * es]);
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < t.size[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        let tensor = Tensor::from_raw_buffer(&data, t.dtype, &t.size, &Device::Cpu)?;
        out.insert(t.name, tensor);
    }
    Ok(out)
}
