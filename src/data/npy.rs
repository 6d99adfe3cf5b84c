//! `.npy` output (NumPy format 1.0): little-endian float32 or int64 arrays.

use crate::error::Result;
use crate::fsutil::write_atomic;

fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // magic (6) + version (2) + length (2) + header, padded with spaces to a
    // multiple of 64 and ended by a newline
    let total = 10 + h.len() + 1;
    h.push_str(&" ".repeat((64 - total % 64) % 64));
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out
}

pub fn f32_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let mut out = header("<f4", shape);
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

pub fn i64_bytes(shape: &[usize], data: &[i64]) -> Vec<u8> {
    let mut out = header("<i8", shape);
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

pub fn write_f32(path: &std::path::Path, shape: &[usize], data: &[f32]) -> Result<()> {
    write_atomic(path, &f32_bytes(shape, data))
}

pub fn write_i64(path: &std::path::Path, shape: &[usize], data: &[i64]) -> Result<()> {
    write_atomic(path, &i64_bytes(shape, data))
}

/// Parses a `.npy` header: the dtype descriptor, the shape, and where the data starts.
fn parse_header(bytes: &[u8], path: &std::path::Path) -> Result<(String, Vec<usize>, usize)> {
    let bad = |m: &str| crate::Error::data(path, format!("not a readable .npy file: {m}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("missing the \\x93NUMPY magic"));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(&format!("format version {v}"))),
    };
    let h = bytes
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header"))?;
    if h.contains("'fortran_order': True") {
        return Err(bad("Fortran order is not supported"));
    }
    let field = |key: &str| -> Option<&str> {
        let i = h.find(key)? + key.len();
        Some(&h[i..])
    };
    let descr = field("'descr': '")
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| bad("no descr"))?
        .to_string();
    let shape_txt = field("'shape': (")
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let shape = shape_txt
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<usize>().map_err(|_| bad("bad shape")))
        .collect::<Result<Vec<_>>>()?;
    Ok((descr, shape, start + len))
}

fn read_typed<const N: usize>(
    path: &std::path::Path,
    want: &str,
) -> Result<(Vec<usize>, Vec<[u8; N]>)> {
    let bytes = std::fs::read(path).map_err(|e| crate::Error::io(path, e))?;
    let (descr, shape, off) = parse_header(&bytes, path)?;
    if descr != want {
        return Err(crate::Error::data(
            path,
            format!("holds dtype {descr}, expected {want}"),
        ));
    }
    let n: usize = shape.iter().product();
    let body = &bytes[off..];
    if body.len() != n * N {
        return Err(crate::Error::data(
            path,
            format!(
                "shape {shape:?} needs {} data bytes, file has {} (truncated?)",
                n * N,
                body.len()
            ),
        ));
    }
    Ok((
        shape,
        body.chunks_exact(N)
            .map(|c| c.try_into().unwrap())
            .collect(),
    ))
}

/// Reads a little-endian float32 array.
pub fn read_f32(path: &std::path::Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let (s, v) = read_typed::<4>(path, "<f4")?;
    Ok((s, v.into_iter().map(f32::from_le_bytes).collect()))
}

/// Reads a little-endian int64 array.
pub fn read_i64(path: &std::path::Path) -> Result<(Vec<usize>, Vec<i64>)> {
    let (s, v) = read_typed::<8>(path, "<i8")?;
    Ok((s, v.into_iter().map(i64::from_le_bytes).collect()))
}
