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
