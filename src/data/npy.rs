//! `.npy` files (NumPy's array format) through the `npyz` crate: float32,
//! float64 and int64 arrays, written atomically, read with errors that say what is
//! wrong with a file (not an `.npy`, another dtype, truncated).

use std::path::Path;

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

/// The bytes of a C-order `.npy` file of `data` shaped `shape`.
fn to_bytes<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
    shape: &[usize],
    data: &[T],
) -> std::io::Result<Vec<u8>> {
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut out = Vec::new();
    use npyz::WriterBuilder;
    let mut w = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(&shape)
        .writer(&mut out)
        .begin_nd()?;
    w.extend(data.iter().copied())?;
    w.finish()?;
    Ok(out)
}

fn write<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[usize],
    data: &[T],
) -> Result<()> {
    if shape.iter().product::<usize>() != data.len() {
        return Err(Error::shape(
            format!("array for {}", path.display()),
            format!(
                "{} values (shape {shape:?})",
                shape.iter().product::<usize>()
            ),
            data.len(),
        ));
    }
    let bytes = to_bytes(shape, data).map_err(|e| Error::io(path, e))?;
    write_atomic(path, &bytes)
}

pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    write(path, shape, data)
}

pub fn write_f64(path: &Path, shape: &[usize], data: &[f64]) -> Result<()> {
    write(path, shape, data)
}

pub fn write_i64(path: &Path, shape: &[usize], data: &[i64]) -> Result<()> {
    write(path, shape, data)
}

/// Where the data of a `.npy` file of `len` bytes starts, from its first
/// 12 bytes (`pre`: the magic, the version and the header's length), or
/// what is wrong: checked before a reader allocates the header, so that a
/// damaged length cannot ask for more memory than the file holds (`cargo
/// fuzz run npy` found a version-3 length of 3 GB in a 135-byte file).
pub fn data_start(pre: &[u8], len: u64) -> std::result::Result<u64, String> {
    if pre.len() < 10 || &pre[..6] != b"\x93NUMPY" {
        return Err("no .npy magic".into());
    }
    let start = match pre[6] {
        1 => 10 + u16::from_le_bytes([pre[8], pre[9]]) as u64,
        2 | 3 if pre.len() >= 12 => {
            12 + u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as u64
        }
        2 | 3 => return Err("shorter than a header".into()),
        v => return Err(format!("format version {v}")),
    };
    if start > len {
        return Err(format!(
            "a header of {start} bytes in a file of {len} (truncated?)"
        ));
    }
    Ok(start)
}

/// Reads a C-order array of `T` (`want` names its dtype for the message).
fn read<T: npyz::Deserialize>(path: &Path, want: &str) -> Result<(Vec<usize>, Vec<T>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |m: String| Error::data(path, format!("not a readable .npy file: {m}"));
    data_start(&bytes[..bytes.len().min(12)], bytes.len() as u64).map_err(bad)?;
    let file = npyz::NpyFile::new(&bytes[..]).map_err(|e| bad(e.to_string()))?;
    if file.order() != npyz::Order::C {
        return Err(bad("Fortran order is not supported".into()));
    }
    let dtype = file.dtype();
    let shape: Vec<usize> = file.shape().iter().map(|&d| d as usize).collect();
    let header = file.header().clone();
    let body = file.into_inner().len();
    // check the size before reading, so that a damaged header cannot ask
    // for more memory than the file holds
    let wrong_dtype = || {
        Error::data(
            path,
            format!("holds dtype {}, expected {want}", dtype.descr()),
        )
    };
    let item = match &dtype {
        npyz::DType::Plain(t) => t.num_bytes().ok_or_else(wrong_dtype)?,
        _ => return Err(wrong_dtype()),
    };
    let need = shape.iter().try_fold(item, |a, &d| a.checked_mul(d));
    if need != Some(body) {
        let need = need.map_or("more than any file can hold".into(), |b| format!("{b}"));
        return Err(Error::data(
            path,
            format!("shape {shape:?} needs {need} data bytes, file has {body} (truncated?)"),
        ));
    }
    let data = npyz::NpyFile::with_header(header, &bytes[bytes.len() - body..])
        .data::<T>()
        .map_err(|_| wrong_dtype())?
        .collect::<std::io::Result<Vec<T>>>()
        .map_err(|e| bad(e.to_string()))?;
    Ok((shape, data))
}

/// Reads a float32 array.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    read(path, "<f4")
}

/// Reads a float64 array.
pub fn read_f64(path: &Path) -> Result<(Vec<usize>, Vec<f64>)> {
    read(path, "<f8")
}

/// Reads a float32 or float64 array as float64, and whether it was
/// float64.
pub fn read_float(path: &Path) -> Result<(Vec<usize>, Vec<f64>, bool)> {
    match read_f64(path) {
        Ok((s, v)) => Ok((s, v, true)),
        Err(Error::Data { message, .. }) if message.contains("holds dtype") => {
            let (s, v) = read_f32(path)?;
            Ok((s, v.into_iter().map(f64::from).collect(), false))
        }
        Err(e) => Err(e),
    }
}

/// Reads an int64 array.
pub fn read_i64(path: &Path) -> Result<(Vec<usize>, Vec<i64>)> {
    read(path, "<i8")
}
