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
/// 12 bytes (`pre`: the magic, the version and the header's length), and
/// where the header's text starts; or what is wrong: checked before a reader
/// allocates the header, so that a damaged length cannot ask for more
/// memory than the file holds (`cargo fuzz run npy` found a version-3
/// length of 3 GB in a 135-byte file).
fn data_start(pre: &[u8], len: u64) -> std::result::Result<(u64, usize), String> {
    if pre.len() < 10 || &pre[..6] != b"\x93NUMPY" {
        return Err("no .npy magic".into());
    }
    let (start, text) = match pre[6] {
        1 => (10 + u16::from_le_bytes([pre[8], pre[9]]) as u64, 10),
        2 | 3 if pre.len() >= 12 => (
            12 + u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as u64,
            12,
        ),
        2 | 3 => return Err("shorter than a header".into()),
        v => return Err(format!("format version {v}")),
    };
    if start > len {
        return Err(format!(
            "a header of {start} bytes in a file of {len} (truncated?)"
        ));
    }
    Ok((start, text))
}

/// The head of a `.npy` file of `len` bytes (everything before the data),
/// read from `r`, which then stands at the data; its dictionary checked
/// by [`check_header_text`] before `npyz` parses it.
pub fn read_head(r: &mut impl std::io::Read, len: u64) -> std::result::Result<Vec<u8>, String> {
    let mut head = vec![0u8; 12];
    r.read_exact(&mut head)
        .map_err(|_| "shorter than a header".to_string())?;
    let (start, text) = data_start(&head, len)?;
    if start > 1 << 20 {
        return Err(format!(
            "a header of {start} bytes (NumPy's are under 1 MiB)"
        ));
    }
    let start = start as usize;
    if start < 12 {
        return Err("shorter than a header".into());
    }
    head.resize(start, 0);
    r.read_exact(&mut head[12..])
        .map_err(|e| format!("reading the header: {e}"))?;
    check_header_text(&head[text..])?;
    Ok(head)
}

/// NumPy's header is a Python dict literal. `npyz` parses it with a general
/// Python-literal grammar that backtracks without bound on some inputs
/// (`cargo fuzz run npy` found a header of under 200 bytes that kept it
/// busy for over 10 minutes), so only what NumPy writes gets through:
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`, each
/// key once, in any order, padded with spaces and a newline.
pub fn check_header_text(text: &[u8]) -> std::result::Result<(), String> {
    let mut p = Cursor { s: text, i: 0 };
    p.expect(b'{')?;
    let mut seen = [false; 3];
    loop {
        if p.eat(b'}') {
            break;
        }
        let key = p
            .quoted(|c| c.is_ascii_alphanumeric() || c == b'_')?
            .to_vec();
        p.expect(b':')?;
        let k = match &key[..] {
            b"descr" => {
                if p.peek() == Some(b'[') {
                    return Err("a structured dtype (only plain numbers are read)".into());
                }
                p.quoted(|c| c.is_ascii_alphanumeric() || b"<>|=".contains(&c))?;
                0
            }
            b"fortran_order" => {
                if !(p.word(b"True") || p.word(b"False")) {
                    return Err("fortran_order is not True or False".into());
                }
                1
            }
            b"shape" => {
                p.shape()?;
                2
            }
            other => {
                return Err(format!(
                    "an unknown header key {:?} (expected descr, fortran_order, shape)",
                    String::from_utf8_lossy(other)
                ))
            }
        };
        if std::mem::replace(&mut seen[k], true) {
            return Err("a header key given twice".into());
        }
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    p.skip_space();
    if p.i != text.len() {
        return Err("bytes after the header's dictionary".into());
    }
    if seen != [true; 3] {
        return Err("a header without descr, fortran_order and shape".into());
    }
    Ok(())
}

/// A position in a header's text; every method skips spaces first.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn skip_space(&mut self) {
        while self.i < self.s.len() && b" \n\t\r".contains(&self.s[self.i]) {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            return Ok(());
        }
        Err(format!(
            "the header's dictionary lacks {:?} at byte {}",
            c as char, self.i
        ))
    }
    fn word(&mut self, w: &[u8]) -> bool {
        self.skip_space();
        let hit = self.s[self.i..].starts_with(w);
        self.i += if hit { w.len() } else { 0 };
        hit
    }
    /// A string in single or double quotes, of at most 32 bytes that
    /// `ok` accepts.
    fn quoted(&mut self, ok: impl Fn(u8) -> bool) -> std::result::Result<&[u8], String> {
        let q = self.peek().filter(|c| *c == b'\'' || *c == b'"');
        let q = q.ok_or_else(|| format!("a quoted name expected at byte {}", self.i))?;
        let from = self.i + 1;
        let len = self.s[from..].iter().take_while(|&&c| ok(c)).count();
        if len > 32 || self.s.get(from + len) != Some(&q) {
            return Err(format!("a malformed name at byte {}", self.i));
        }
        self.i = from + len + 1;
        Ok(&self.s[from..from + len])
    }
    /// `(`, integers separated by commas (a trailing one allowed), `)`.
    fn shape(&mut self) -> std::result::Result<(), String> {
        self.expect(b'(')?;
        loop {
            if self.eat(b')') {
                return Ok(());
            }
            let digits = self.s[self.i..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if digits == 0 || digits > 19 {
                return Err(format!("a malformed shape at byte {}", self.i));
            }
            self.i += digits;
            self.eat(b'L');
            if !self.eat(b',') {
                return self.expect(b')');
            }
        }
    }
}

/// Reads a C-order array of `T` (`want` names its dtype for the message).
fn read<T: npyz::Deserialize>(path: &Path, want: &str) -> Result<(Vec<usize>, Vec<T>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |m: String| Error::data(path, format!("not a readable .npy file: {m}"));
    read_head(&mut &bytes[..], bytes.len() as u64).map_err(bad)?;
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
