//! A float32 `.npy` array written row block by row block, so a run of many
//! chains never holds all its samples: the header (NumPy's format 1.0) is
//! written first with the final shape, blocks are appended and synced, and
//! a resumed run reopens the file cut back to the rows its checkpoint
//! counted. The file lives in a run's staging folder and becomes visible
//! only when the whole folder is renamed into place.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// NumPy's format-1.0 header of a C-order float32 array of `shape`,
/// padded with spaces so the data starts at a multiple of 64 bytes.
pub fn f32_header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // magic (6) + version (2) + length (2) + dict + '\n'
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    out
}

/// A float32 array of `rows` rows of `row_len` values being written.
#[derive(Debug)]
pub struct F32Rows {
    path: PathBuf,
    file: File,
    row_len: usize,
    rows: usize,
    written: usize,
}

impl F32Rows {
    /// A new file for an array of `shape` (rows first), no rows yet.
    pub fn create(path: &Path, shape: &[usize]) -> Result<Self> {
        Self::open(path, shape, None)
    }

    /// The file of an interrupted run, cut back to its first `done` rows
    /// (rows written after the last checkpoint are written again).
    pub fn reopen(path: &Path, shape: &[usize], done: usize) -> Result<Self> {
        Self::open(path, shape, Some(done))
    }

    fn open(path: &Path, shape: &[usize], done: Option<usize>) -> Result<Self> {
        let io = |e| Error::io(path, e);
        let header = f32_header(shape);
        let row_len: usize = shape[1..].iter().product();
        let rows = shape.first().copied().unwrap_or(0);
        let file = match done {
            None => {
                let mut f = File::create(path).map_err(io)?;
                f.write_all(&header).map_err(io)?;
                f
            }
            Some(done) => {
                let mut f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(io)?;
                let mut head = vec![0u8; header.len()];
                let end = (header.len() + done * row_len * 4) as u64;
                let len = f.metadata().map_err(io)?.len();
                if f.read_exact(&mut head).is_err() || head != header || len < end {
                    return Err(Error::data(
                        path,
                        format!(
                            "does not hold the {done} rows of shape {shape:?} the checkpoint counted; \
                             start over with --force"
                        ),
                    ));
                }
                f.set_len(end).map_err(io)?;
                f.seek(SeekFrom::End(0)).map_err(io)?;
                f
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            file,
            row_len,
            rows,
            written: done.unwrap_or(0),
        })
    }

    /// Appends whole rows and syncs them to disk.
    pub fn append(&mut self, values: &[f32]) -> Result<()> {
        let n = values.len() / self.row_len.max(1);
        if values.len() != n * self.row_len || self.written + n > self.rows {
            return Err(Error::shape(
                format!("rows for {}", self.path.display()),
                format!(
                    "whole rows of {} values, at most {} rows in all",
                    self.row_len, self.rows
                ),
                format!("{} values after {} rows", values.len(), self.written),
            ));
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.file
            .write_all(&bytes)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, e))?;
        self.written += n;
        Ok(())
    }

    /// Appends the rows of another float32 `.npy` file whose rows have
    /// this array's row shape (a shard's samples), streamed.
    pub fn append_file(&mut self, src: &Path) -> Result<usize> {
        let io = |e| Error::io(src, e);
        let mut f = File::open(src).map_err(io)?;
        let bad = |m: String| Error::data(src, m);
        let len = f.metadata().map_err(io)?.len();
        let head =
            super::npy::read_head(&mut f, len).map_err(|m| bad(format!("not a .npy file: {m}")))?;
        let npy =
            npyz::NpyFile::new(&head[..]).map_err(|e| bad(format!("not a .npy file: {e}")))?;
        let r = BufReader::new(f);
        let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        if npy.dtype().descr() != "'<f4'" || npy.order() != npyz::Order::C || shape.is_empty() {
            return Err(bad("expected a C-order float32 array".into()));
        }
        let row_len: usize = shape[1..].iter().product();
        if row_len != self.row_len {
            return Err(bad(format!(
                "rows of {row_len} values, expected {}",
                self.row_len
            )));
        }
        let n = shape[0];
        if self.written + n > self.rows {
            return Err(bad(format!(
                "{n} more rows than the {} left",
                self.rows - self.written
            )));
        }
        // the reader stands at the data; copy exactly its bytes
        let want = (n * row_len * 4) as u64;
        let copied = std::io::copy(&mut r.take(want), &mut self.file).map_err(io)?;
        if copied != want {
            return Err(bad(format!(
                "holds {copied} data bytes, its shape needs {want} (truncated?)"
            )));
        }
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))?;
        self.written += n;
        Ok(n)
    }

    /// Checks that every row was written.
    pub fn finish(self) -> Result<()> {
        if self.written != self.rows {
            return Err(Error::data(
                &self.path,
                format!("{} of {} rows written", self.written, self.rows),
            ));
        }
        Ok(())
    }
}

/// A C-order float32 `.npy` file read a block of rows at a time.
#[derive(Debug)]
pub struct F32RowsReader {
    path: PathBuf,
    file: File,
    data_start: u64,
    /// The array's shape, rows first.
    pub shape: Vec<usize>,
    row_len: usize,
}

impl F32RowsReader {
    /// Opens `path`, checking its header and that it holds all its rows.
    pub fn open(path: &Path) -> Result<Self> {
        let bad = |m: String| Error::data(path, format!("not a readable .npy file: {m}"));
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let head = super::npy::read_head(&mut file, len).map_err(bad)?;
        let data_start = head.len() as u64;
        let npy = npyz::NpyFile::new(&head[..]).map_err(|e| bad(e.to_string()))?;
        if npy.dtype().descr() != "'<f4'" || npy.order() != npyz::Order::C {
            return Err(Error::data(
                path,
                format!(
                    "holds dtype {}, expected a C-order <f4 array",
                    npy.dtype().descr()
                ),
            ));
        }
        let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        let row_len: usize = shape.iter().skip(1).product();
        let need = shape
            .iter()
            .try_fold(4u64, |a, &d| a.checked_mul(d as u64))
            .and_then(|b| b.checked_add(data_start));
        if shape.is_empty() || need != Some(len) {
            return Err(Error::data(
                path,
                format!("shape {shape:?} does not match the file's {len} bytes (truncated?)"),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            data_start,
            shape,
            row_len,
        })
    }

    /// Rows `range`, `row_len` values each.
    pub fn read(&mut self, range: std::ops::Range<usize>) -> Result<Vec<f32>> {
        let at = self.data_start + (range.start * self.row_len * 4) as u64;
        let mut bytes = vec![0u8; range.len() * self.row_len * 4];
        self.file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}
