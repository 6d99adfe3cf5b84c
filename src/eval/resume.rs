//! The report's finished rows, kept between runs (`ppgn report --cache
//! DIR`). A sampler's row at one budget is written, with its grid, as soon
//! as it is scored; a later report whose networks (by their weights'
//! SHA-256), settings and sampler configuration are the same reads the row
//! instead of sampling again. A report cut short (a stopped job, a full
//! disk) so resumes where it stopped, and a rerun after a change to one
//! preset samples that preset alone.
//!
//! The key does not hold the program: a row kept by an older binary is
//! read by a newer one. Rerun without the folder (or with an empty one)
//! when the engine's arithmetic changed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::experiments::SamplerRow;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::run::config::preset::SamplerConfig;

/// What a kept row was computed from; a row is read only when every field
/// equals the current run's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowKey {
    /// (network, SHA-256 of its weights) of every network the report loads.
    pub weights: Vec<(String, String)>,
    pub per_class: usize,
    pub seed: u64,
    pub reference_images: Option<usize>,
    pub label: String,
    pub budget: usize,
    pub config: SamplerConfig,
}

/// One kept row: its key, its scores and the wall time of the run that
/// computed it.
#[derive(Serialize, Deserialize)]
struct Entry {
    key: RowKey,
    row: SamplerRow,
    wall_s: f64,
}

/// A folder of kept rows.
#[derive(Debug, Clone)]
pub struct RowCache {
    dir: PathBuf,
}

/// A label as a file name: lower-case letters and digits, runs of anything
/// else as one `-`.
fn slug(label: &str) -> String {
    let mut s = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    s.trim_matches('-').to_string()
}

impl RowCache {
    /// The folder `dir`, made if missing.
    pub fn open(dir: &Path) -> Result<RowCache> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(RowCache {
            dir: dir.to_path_buf(),
        })
    }

    fn paths(&self, key: &RowKey) -> (PathBuf, PathBuf) {
        let stem = format!("{}-{}", key.budget, slug(&key.label));
        (
            self.dir.join(format!("{stem}.json")),
            self.dir.join(format!("{stem}.png")),
        )
    }

    /// The row kept for `key`, its grid copied to `grid`; `None` when
    /// there is none, it was computed from anything else, or its files do
    /// not read (then the row is computed again and replaces them).
    pub fn get(&self, key: &RowKey, grid: &Path) -> Result<Option<SamplerRow>> {
        let (json, png) = self.paths(key);
        let (Ok(text), Ok(image)) = (std::fs::read(&json), std::fs::read(&png)) else {
            return Ok(None);
        };
        let Ok(entry) = serde_json::from_slice::<Entry>(&text) else {
            return Ok(None);
        };
        if entry.key != *key {
            return Ok(None);
        }
        write_atomic(grid, &image)?;
        let mut row = entry.row;
        row.wall_s = entry.wall_s;
        Ok(Some(row))
    }

    /// Keeps `row` (its images already dropped) and its grid `grid` for
    /// `key`: the grid first, so a kept description always has its image.
    pub fn put(&self, key: &RowKey, row: &SamplerRow, grid: &Path) -> Result<()> {
        let (json, png) = self.paths(key);
        let image = std::fs::read(grid).map_err(|e| Error::io(grid, e))?;
        write_atomic(&png, &image)?;
        let entry = serde_json::json!({"key": key, "row": row, "wall_s": row.wall_s});
        let text =
            serde_json::to_string_pretty(&entry).map_err(|e| Error::data(&json, e.to_string()))?;
        write_atomic(&json, format!("{text}\n").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::slug;

    #[test]
    fn labels_become_file_names() {
        assert_eq!(slug("MAP + clip (DGN-AM)"), "map-clip-dgn-am");
        assert_eq!(slug("PPGN, flow prior"), "ppgn-flow-prior");
    }
}
