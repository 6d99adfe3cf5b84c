//! Reader for the IDX format of (Fashion-)MNIST, gzip-compressed or not.
//!
//! An IDX file is a 4-byte magic number `0x00 0x00 type ndim`, then `ndim`
//! big-endian u32 dimensions, then the row-major data. We only need type
//! 0x08 (unsigned byte). Every check names the file, so a truncated download
//! or a wrong file is told apart from a missing one.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// The contents of an IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads `path`; a `.gz` suffix means gzip. `expected_ndim` guards against
/// passing a label file where images are wanted and vice versa.
pub fn read_idx(path: &Path, expected_ndim: usize) -> Result<IdxArray> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| {
                Error::data(
                    path,
                    format!("not a valid gzip stream ({e}); the file is truncated or corrupt"),
                )
            })?;
        out
    } else {
        raw
    };
    parse_idx(&bytes, expected_ndim).map_err(|m| Error::data(path, m))
}

/// Parses IDX bytes; the error is a message without the path.
pub fn parse_idx(bytes: &[u8], expected_ndim: usize) -> std::result::Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!(
            "only {} bytes: too short for an IDX header",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "bad magic number {:02x}{:02x}{:02x}{:02x}: not an IDX file",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "IDX element type 0x{:02x}, expected 0x08 (unsigned byte)",
            bytes[2]
        ));
    }
    let ndim = bytes[3] as usize;
    if ndim != expected_ndim {
        return Err(format!(
            "IDX file has {ndim} dimensions, expected {expected_ndim} (magic 0x{:08x})",
            0x800 + expected_ndim
        ));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(format!(
            "truncated header: {} bytes, need {header}",
            bytes.len()
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let len = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
    let body = bytes.len() - header;
    if body != len {
        return Err(format!(
            "dimensions {dims:?} need {len} data bytes, file has {body}{}",
            if body < len { " (truncated)" } else { "" }
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Serialises an array as IDX bytes (used by tests and fixtures).
pub fn to_idx_bytes(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}
