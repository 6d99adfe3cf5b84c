//! A run folder: built in a hidden sibling folder (`.NAME.partial`) and
//! renamed into place in one step when the run is done, so a failed run
//! leaves nothing under its name and an interrupted one leaves only its
//! hidden folder (with the checkpoint that `--resume` reads). Every file in
//! it is written atomically (temporary file, fsync, rename); the image
//! files every run writes (grids, the filmstrip of each chain over time,
//! the GIF, `.npy` arrays, the manifest) are made here.

use std::path::{Path, PathBuf};

use crate::data::image::{encode_png, grid, save_gif_channels, save_grid};
use crate::data::npy;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

/// Snapshots across a filmstrip at most.
pub const FILMSTRIP_FRAMES: usize = 12;

/// Which of `k` snapshots a filmstrip shows: all of them, or
/// [`FILMSTRIP_FRAMES`] evenly spaced from the first to the last.
pub fn filmstrip_picks(k: usize) -> Vec<usize> {
    if k <= FILMSTRIP_FRAMES {
        (0..k).collect()
    } else {
        (0..FILMSTRIP_FRAMES)
            .map(|j| j * (k - 1) / (FILMSTRIP_FRAMES - 1))
            .collect()
    }
}

/// A run folder being built.
#[derive(Debug)]
pub struct RunFolder {
    out: PathBuf,
    tmp: PathBuf,
    /// The factor every image of the PNG grids is enlarged by (`--scale`);
    /// `None`: the smallest that makes a cell 96 pixels tall.
    scale: Option<usize>,
}

/// Per-image shape `(height, width, channels)`.
pub type Hwc = (usize, usize, usize);

impl RunFolder {
    /// The first free `runs/sample-NNN`.
    pub fn next_free() -> PathBuf {
        (1..10_000)
            .map(|i| PathBuf::from(format!("runs/sample-{i:03}")))
            .find(|p| !p.exists())
            .unwrap_or_else(|| PathBuf::from("runs/sample"))
    }

    /// The hidden sibling folder a run is built in before it is renamed to `out`.
    pub fn partial_path(out: &Path) -> PathBuf {
        let name = out
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.with_file_name(format!(".{name}.partial"))
    }

    /// Refuses `out` if it exists and `force` is not set, or if an
    /// interrupted run waits in its hidden folder and neither `resume` nor
    /// `force` is set. Checked before any expensive work.
    pub fn check(out: &Path, force: bool, resume: bool) -> Result<()> {
        if out.exists() && !force {
            return Err(Error::unsupported(
                format!("run folder {} exists", out.display()),
                "choose another --out or pass --force to replace it",
            ));
        }
        let tmp = Self::partial_path(out);
        if tmp.exists() && !resume && !force {
            return Err(Error::unsupported(
                format!("an interrupted run is in {}", tmp.display()),
                "add --resume to finish it, or --force to start over",
            ));
        }
        if resume && !tmp.exists() {
            return Err(Error::unsupported(
                format!("no interrupted run in {}", tmp.display()),
                "--resume needs the --out folder of an interrupted run",
            ));
        }
        Ok(())
    }

    /// Opens the hidden folder of `out`: a fresh empty one, or (with
    /// `resume`) the interrupted run's, kept as it is.
    pub fn open(out: &Path, force: bool, resume: bool) -> Result<Self> {
        Self::check(out, force, resume)?;
        let tmp = Self::partial_path(out);
        if !resume {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(Self {
            out: out.to_path_buf(),
            tmp,
            scale: None,
        })
    }

    /// Draws the PNG grids with each image enlarged `scale` times (`None`:
    /// the default, [`crate::data::image::default_scale`]).
    pub fn with_scale(mut self, scale: Option<usize>) -> Self {
        self.scale = scale;
        self
    }

    fn scale_for(&self, h: usize) -> usize {
        self.scale
            .unwrap_or_else(|| crate::data::image::default_scale(h))
    }

    /// Where the files go until [`RunFolder::finish`].
    pub fn staging(&self) -> &Path {
        &self.tmp
    }

    /// The final folder.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// `name` in the staging folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    /// Writes `name` atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.path(name), bytes)
    }

    /// `name` as pretty JSON with a final newline.
    pub fn json(&self, name: &str, value: &serde_json::Value) -> Result<()> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| Error::data(self.path(name), e.to_string()))?;
        self.write(name, format!("{text}\n").as_bytes())
    }

    /// `name` as a float32 `.npy` array of `shape`.
    pub fn npy_f32(&self, name: &str, shape: &[usize], values: &[f32]) -> Result<()> {
        npy::write_f32(&self.path(name), shape, values)
    }

    /// `name` as an int64 `.npy` array of `shape`.
    pub fn npy_i64(&self, name: &str, shape: &[usize], values: &[i64]) -> Result<()> {
        npy::write_i64(&self.path(name), shape, values)
    }

    /// `name` as a PNG grid of `n` images `[n, h, w, c]`, `cols` per row.
    /// Each image is enlarged by the folder's scale.
    pub fn grid(&self, name: &str, images: &[f32], n: usize, hwc: Hwc, cols: usize) -> Result<()> {
        let s = self.scale_for(hwc.0);
        let big = crate::data::image::upscale(images, n, hwc, s);
        save_grid(
            &self.path(name),
            &big,
            n,
            (hwc.0 * s, hwc.1 * s, hwc.2),
            cols,
        )
    }

    /// `name` as a PNG grid of images, each with a label.
    pub fn labelled_grid(
        &self,
        name: &str,
        images: &[f32],
        n: usize,
        hwc: Hwc,
        cols: usize,
        labels: &[String],
    ) -> Result<()> {
        let s = self.scale_for(hwc.0);
        let (px, gw, gh) = crate::data::image::labelled_grid(images, n, hwc, cols, labels, s)?;
        self.write(name, &encode_png(&px, gw, gh, hwc.2)?)
    }

    /// `name` as a PNG with one row per chain: at most
    /// [`FILMSTRIP_FRAMES`] of the `snapshots` (each `[n, h, w, c]`),
    /// evenly spaced from the first to the last.
    pub fn filmstrip(&self, name: &str, snapshots: &[Vec<f32>], n: usize, hwc: Hwc) -> Result<()> {
        let picks = filmstrip_picks(snapshots.len());
        let per = hwc.0 * hwc.1 * hwc.2;
        let strip: Vec<f32> = (0..n)
            .flat_map(|c| {
                picks
                    .iter()
                    .flat_map(move |&j| snapshots[j][c * per..(c + 1) * per].iter().copied())
            })
            .collect();
        self.grid(name, &strip, n * picks.len(), hwc, picks.len().max(1))
    }

    /// `name` as a looping GIF of grids, one frame per snapshot (each
    /// `[n, h, w, c]`), `cols` images per row.
    pub fn gif(
        &self,
        name: &str,
        snapshots: &[Vec<f32>],
        n: usize,
        hwc: Hwc,
        cols: usize,
    ) -> Result<()> {
        let frames: Vec<Vec<u8>> = snapshots
            .iter()
            .map(|s| grid(s, n, hwc, cols, 2).map(|g| g.0))
            .collect::<Result<_>>()?;
        let Some(first) = snapshots.first() else {
            return Ok(());
        };
        let (_, fw, fh) = grid(first, n, hwc, cols, 2)?;
        save_gif_channels(&self.path(name), &frames, (fw, fh, hwc.2), 20)
    }

    /// Removes `name` from the staging folder if it is there.
    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.path(name));
    }

    /// Renames the staging folder to the final one (replacing it), and
    /// returns the final path.
    pub fn finish(self) -> Result<PathBuf> {
        if self.out.exists() {
            std::fs::remove_dir_all(&self.out).map_err(|e| Error::io(&self.out, e))?;
        }
        if let Some(parent) = self.out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::rename(&self.tmp, &self.out).map_err(|e| Error::io(&self.out, e))?;
        Ok(self.out)
    }

    /// Fills the folder with `fill` and renames it into place; if `fill`
    /// fails, the staging folder is removed (a failed run leaves nothing).
    pub fn fill<T>(self, fill: impl FnOnce(&RunFolder) -> Result<T>) -> Result<(T, PathBuf)> {
        match fill(&self) {
            Ok(v) => Ok((v, self.finish()?)),
            Err(e) => {
                self.discard();
                Err(e)
            }
        }
    }

    /// Removes the staging folder (a failed fresh run leaves nothing).
    pub fn discard(self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}
