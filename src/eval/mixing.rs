//! How well a restoration's chains mix: the effective sample size of the
//! chains' positions (the coordinates the sampler moves: the flow's base
//! point for the exact presets) over the second half of the steps, per
//! image from its chains, its minimum over the coordinates, per gradient
//! evaluation of the whole run (warm-up included). Stan's estimator
//! (`crate::sampler::diagnostics::ess`, split chains). A run whose images
//! are driven one after the other (the paper's inpainting) has its drives'
//! chains stacked as if they were one batch.

use candle_core::DType;

use crate::run::config::steer::Change;
use crate::run::drive::driver::Record;
use crate::run::drive::progress::Progress;
use crate::sampler::diagnostics::ess;

/// A [`Progress`] that keeps the chains' positions after every step past
/// `from`, and passes everything on to `inner`.
pub struct Trace<'a> {
    pub inner: &'a mut dyn Progress,
    pub from: usize,
    /// Per drive (each `begin`), per kept step, the positions `[n * dim]`.
    pub drives: Vec<Vec<Vec<f32>>>,
    pub failed: Option<String>,
}

impl<'a> Trace<'a> {
    pub fn new(inner: &'a mut dyn Progress, from: usize) -> Self {
        Trace {
            inner,
            from,
            drives: Vec::new(),
            failed: None,
        }
    }

    /// Per kept step, the positions of every drive's chains side by side;
    /// `None` when the drives kept different numbers of steps.
    pub fn stacked(&self) -> Option<Vec<Vec<f32>>> {
        let t = self.drives.first().map_or(0, Vec::len);
        if self.drives.iter().any(|d| d.len() != t) {
            return None;
        }
        Some(
            (0..t)
                .map(|s| {
                    self.drives
                        .iter()
                        .flat_map(|d| d[s].iter().copied())
                        .collect()
                })
                .collect(),
        )
    }

    /// The minimum over coordinates of each image's ESS, its `chains`
    /// chains being rows `i * chains..(i + 1) * chains`; `None` with fewer
    /// than 4 kept steps.
    pub fn min_ess(&self, images: usize, chains: usize) -> Option<Vec<f64>> {
        let rows = self.stacked()?;
        let t = rows.len();
        let n = images * chains;
        if t < 4 || n == 0 {
            return None;
        }
        let dim = rows[0].len() / n;
        let per_image = (0..images)
            .map(|i| {
                (0..dim)
                    .map(|d| {
                        let draws: Vec<Vec<f64>> = (0..chains)
                            .map(|c| {
                                let j = i * chains + c;
                                rows.iter().map(|r| r[j * dim + d] as f64).collect()
                            })
                            .collect();
                        ess(&draws)
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        Some(per_image)
    }
}

impl Progress for Trace<'_> {
    fn begin(&mut self, what: &str, total: usize) {
        self.drives.push(Vec::new());
        self.inner.begin(what, total)
    }
    fn update(&mut self, step: usize, mean: f64, accept: f64) {
        self.inner.update(step, mean, accept)
    }
    fn record(&mut self, r: &Record) -> Vec<Change> {
        if self.drives.is_empty() {
            self.drives.push(Vec::new());
        }
        if r.step > self.from && self.failed.is_none() {
            let flat = r
                .position
                .to_dtype(DType::F32)
                .and_then(|p| p.flatten_all())
                .and_then(|p| p.to_vec1::<f32>());
            match flat {
                Ok(v) => self.drives.last_mut().expect("pushed above").push(v),
                Err(e) => self.failed = Some(e.to_string()),
            }
        }
        self.inner.record(r)
    }
    fn note(&mut self, line: &str) {
        self.inner.note(line)
    }
    fn end(&mut self) {
        self.inner.end()
    }
    fn should_stop(&self) -> bool {
        self.inner.should_stop()
    }
}
