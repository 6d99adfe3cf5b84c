//! A run's chains in batches ([`super::shard::Plan`]): each
//! batch runs all its steps, its final images are appended to
//! `samples.npy` on disk, and only small per-chain numbers (the condition
//! value at every record, acceptances, the evaluator's class) and the
//! images of the shown chains (the grid and the GIF) stay in memory.
//!
//! The checkpoint (`checkpoint.safetensors` in the staging folder, one
//! file written atomically) holds what the finished batches left and the
//! state of the batch under way; it is written at a batch's first record,
//! then at most every `super::chains::CHECKPOINT_SECONDS` (and at a change
//! of the settings or an interruption), and after every batch, so
//! `--resume` after a kill at any moment continues to the bits of an
//! uninterrupted run: `samples.npy` is cut back to the rows the checkpoint
//! counted.

use std::collections::HashMap;
use std::ops::Range;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::chains::{ChainsOutput, Outcome, Pipeline, Streams, CHECKPOINT};
use super::progress::{drive, Progress};
use super::shard::Plan;
use crate::data::image::{chw_to_hwc, hwc_to_chw};
use crate::data::npy_stream::F32Rows;
use crate::error::{Error, Result};
use crate::models::weights::{load_tensors_with_note, save_tensors_with_note};
use crate::run::config::preset::SamplerConfig;
use crate::run::output::folder::RunFolder;

/// Chains shown in the grid and the GIF per row (class) at most.
pub const SHOWN_PER_ROW: usize = 16;

pub use crate::run::output::folder::Hwc;

/// Values of one image.
fn size((h, w, c): Hwc) -> usize {
    h * w * c
}

/// What the finished batches of a shard left, chain by chain (rows in
/// chain order from the shard's first chain).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Done {
    pub batches: usize,
    pub chains: usize,
    /// The condition value of every chain at every record (checkpoints of
    /// earlier versions call it `probability`).
    #[serde(alias = "probability")]
    pub condition_value: Vec<Vec<f64>>,
    pub accepted: Vec<usize>,
    pub divergences: Vec<usize>,
    /// Each chain's tree depths and leaves summed over steps (NUTS).
    #[serde(default)]
    pub tree_depth: Vec<usize>,
    #[serde(default)]
    pub leaves: Vec<usize>,
    /// The evaluator's class of every final image (none when the pair
    /// has no evaluator).
    pub evaluator_class: Vec<Option<u32>>,
    /// Gradient evaluations per chain (the same in every batch).
    pub grad_evals: usize,
    /// Sum over steps and chains of the acceptance probability.
    pub accept_sum: f64,
    pub wall_s: f64,
    /// The step each batch adapted to, when adapting.
    pub adapted_steps: Vec<f64>,
    /// Changes of the settings made while the batches ran (`crate::run::config::steer`;
    /// each batch after it replays them).
    #[serde(default)]
    pub changes: Vec<crate::run::config::steer::Change>,
}

/// The images of the shown chains (global ids `ids`): their final images
/// and their snapshots at every record.
#[derive(Debug, Clone, Default)]
pub struct Shown {
    pub ids: Vec<usize>,
    /// The images' shape.
    pub hwc: Hwc,
    /// Images of the shown chains finished so far, `[h, w, c]` each.
    pub finals: Vec<f32>,
    /// Per record, the images of the shown chains finished so far.
    pub snapshots: Vec<Vec<f32>>,
}

impl Shown {
    /// `grid.png` (the final images, each labelled), `start.png` (the
    /// first record's, the chains' starts), `chains.gif`, `chains.png`
    /// (the filmstrip) and `shown.npy` (`[records, k, c, h, w]`, what
    /// `ppgn merge` redraws them from), `cols` chains per row.
    pub fn write(&self, folder: &RunFolder, labels: &[String], cols: usize) -> Result<()> {
        let (k, hwc) = (self.ids.len(), self.hwc);
        folder.labelled_grid("grid.png", &self.finals, k, hwc, cols, labels)?;
        if let Some(first) = self.snapshots.first() {
            folder.grid("start.png", first, k, hwc, cols)?;
        }
        folder.gif("chains.gif", &self.snapshots, k, hwc, cols)?;
        folder.filmstrip("chains.png", &self.snapshots, k, hwc)?;
        let chw: Vec<f32> = self
            .snapshots
            .iter()
            .flat_map(|s| hwc_to_chw(s, k, hwc))
            .collect();
        folder.npy_f32(
            "shown.npy",
            &[self.snapshots.len(), k, hwc.2, hwc.0, hwc.1],
            &chw,
        )
    }

    /// The shown chains of a finished run folder (`ids` from its manifest).
    pub fn read(dir: &std::path::Path, ids: Vec<usize>) -> Result<Self> {
        let path = dir.join("shown.npy");
        let (shape, v) = crate::data::npy::read_f32(&path)?;
        if shape.len() != 5 || shape[1] != ids.len() {
            return Err(Error::data(
                &path,
                format!(
                    "shape {shape:?}, expected [records, {}, c, h, w]",
                    ids.len()
                ),
            ));
        }
        let hwc = (shape[3], shape[4], shape[2]);
        let per = ids.len() * size(hwc);
        let snapshots: Vec<Vec<f32>> = v
            .chunks(per.max(1))
            .map(|s| chw_to_hwc(s, ids.len(), hwc))
            .collect();
        let finals = snapshots.last().cloned().unwrap_or_default();
        Ok(Shown {
            ids,
            hwc,
            finals,
            snapshots,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Meta {
    request: serde_json::Value,
    done: Done,
    /// The batch under way, when the checkpoint was written inside one.
    current: Option<serde_json::Value>,
}

/// A shard's batches, run to the end.
pub struct Batches<'a> {
    pub plan: Plan,
    pub cfg: &'a SamplerConfig,
    pub seed: u64,
    pub record_every: usize,
    /// What a resume must match (the settings and the condition).
    pub request: &'a serde_json::Value,
    pub folder: &'a RunFolder,
    /// The shape of the images the run holds, and what maps decoded
    /// images to them (`crate::run::pairs::pair::Pair::display`).
    pub hwc: Hwc,
    pub display: &'a dyn Fn(&Tensor) -> Result<Tensor>,
}

impl Batches<'_> {
    /// Runs the batches not done yet (all, or those after the checkpoint
    /// when `resume`); `make` builds a batch's pipeline and starting
    /// points for its global chain ids, `evaluate` gives the evaluator's
    /// class of images.
    pub fn run(
        &self,
        resume: bool,
        shown: &[usize],
        make: &mut dyn FnMut(Range<usize>) -> Result<(Pipeline, Tensor)>,
        evaluate: &dyn Fn(&Tensor) -> Result<Option<Vec<u32>>>,
        progress: &mut dyn Progress,
    ) -> Result<(Done, Shown)> {
        let chains = self.plan.shard_chains();
        let path = self.folder.path("samples.npy");
        let (h, w, c) = self.hwc;
        let shape = [chains.len(), c, h, w];
        let (mut done, mut seen, mut current) = match resume {
            true => self.load(shown)?,
            false => (Done::default(), self.shown(shown), None),
        };
        let mut samples = match resume {
            true => F32Rows::reopen(&path, &shape, done.chains)?,
            false => F32Rows::create(&path, &shape)?,
        };
        let batches = self.plan.shard_batches();
        let count = batches.len();
        for (i, b) in batches.enumerate().skip(done.batches) {
            let range = self.plan.batch_chains(b);
            let (pipeline, h0) = make(range.clone())?;
            let state = match current.take() {
                Some((meta, t)) => Some(self.state(meta, &t, &pipeline)?),
                None => None,
            };
            if count > 1 {
                progress.note(&format!(
                    "batch {} of {count}: chains {}..{}",
                    i + 1,
                    range.start,
                    range.end
                ));
            }
            let streams = Streams {
                seed: self.seed,
                first: range.start,
            };
            let cfg = self.cfg.with_changes(&done.changes);
            let outcome = drive(
                "sample",
                &pipeline,
                &cfg,
                &h0,
                streams,
                self.record_every,
                state,
                progress,
                |o| self.save(&done, &seen, Some(o)),
            )?;
            let out = match outcome {
                Outcome::Finished(o) => o,
                Outcome::Interrupted(o) => return Err(self.interrupted(&o)),
            };
            let images = self.flat(&out.images)?;
            samples.append(&hwc_to_chw(&images, range.len(), self.hwc))?;
            let display = |x: &Tensor| self.flat(x);
            absorb(
                &mut done,
                &mut seen,
                &out,
                &images,
                range,
                (evaluate, &display),
            )?;
            self.save(&done, &seen, None)?;
        }
        samples.finish()?;
        Ok((done, seen))
    }

    /// Decoded images as the run holds them, flat.
    fn flat(&self, x: &Tensor) -> Result<Vec<f32>> {
        Ok((self.display)(x)?.flatten_all()?.to_vec1()?)
    }

    /// No shown chain's images yet.
    fn shown(&self, ids: &[usize]) -> Shown {
        Shown {
            ids: ids.to_vec(),
            hwc: self.hwc,
            ..Default::default()
        }
    }

    fn interrupted(&self, o: &ChainsOutput) -> Error {
        Error::Interrupted {
            step: o.step,
            steps: self.cfg.steps,
            then: format!(
                "the run so far is in {}; rerun the same command with --resume to finish it",
                self.folder.staging().display()
            ),
        }
    }

    fn state(
        &self,
        meta: serde_json::Value,
        t: &HashMap<String, Tensor>,
        pipeline: &Pipeline,
    ) -> Result<ChainsOutput> {
        let path = self.folder.staging().join(CHECKPOINT);
        ChainsOutput::from_parts(&path, meta, t, "current.", &pipeline.decode)
    }

    /// Writes the checkpoint: the finished batches, the shown chains'
    /// images, and the batch under way.
    fn save(&self, done: &Done, seen: &Shown, current: Option<&ChainsOutput>) -> Result<()> {
        let mut t = HashMap::new();
        let image = size(self.hwc);
        let k = seen.finals.len() / image;
        if k > 0 {
            t.insert(
                "shown.finals".to_string(),
                Tensor::from_slice(&seen.finals, (k, image), &Device::Cpu)?,
            );
            let all: Vec<f32> = seen.snapshots.concat();
            t.insert(
                "shown.snapshots".to_string(),
                Tensor::from_vec(all, (seen.snapshots.len(), k, image), &Device::Cpu)?,
            );
        }
        let current = match current {
            Some(o) => {
                let (meta, tensors) = o.to_parts("current.")?;
                t.extend(tensors);
                Some(meta)
            }
            None => None,
        };
        let meta = Meta {
            request: self.request.clone(),
            done: done.clone(),
            current,
        };
        let note = serde_json::to_string(&meta).expect("serialises");
        save_tensors_with_note(&self.folder.staging().join(CHECKPOINT), &t, &note)
    }

    /// The checkpoint of an interrupted run with the same request.
    #[allow(clippy::type_complexity)]
    fn load(
        &self,
        shown: &[usize],
    ) -> Result<(
        Done,
        Shown,
        Option<(serde_json::Value, HashMap<String, Tensor>)>,
    )> {
        let path = self.folder.staging().join(CHECKPOINT);
        if !path.exists() {
            return Err(Error::data(&path, "no interrupted run to resume here"));
        }
        let (text, t) = load_tensors_with_note(&path, &Device::Cpu)?;
        let meta: Meta = serde_json::from_str(&text)
            .map_err(|e| Error::data(&path, format!("unreadable checkpoint: {e}")))?;
        if &meta.request != self.request {
            return Err(Error::data(
                &path,
                "the interrupted run was started with other settings; resume it with the same \
                 command plus --resume, or pass --force to start over",
            ));
        }
        let mut seen = self.shown(shown);
        if let (Some(f), Some(s)) = (t.get("shown.finals"), t.get("shown.snapshots")) {
            seen.finals = f.flatten_all()?.to_vec1()?;
            seen.snapshots = (0..s.dim(0)?)
                .map(|r| s.get(r)?.flatten_all()?.to_vec1())
                .collect::<candle_core::Result<_>>()?;
        }
        Ok((meta.done, seen, meta.current.map(|m| (m, t))))
    }
}

/// How a finished batch's images are judged (the evaluator's class of
/// decoded images) and shown (decoded images to the run's, flat).
type Judge<'a> = (
    &'a dyn Fn(&Tensor) -> Result<Option<Vec<u32>>>,
    &'a dyn Fn(&Tensor) -> Result<Vec<f32>>,
);

/// Adds a finished batch (chains `range`, final images `images` as the
/// run holds them) to what the shard has done.
fn absorb(
    done: &mut Done,
    seen: &mut Shown,
    out: &ChainsOutput,
    images: &[f32],
    range: Range<usize>,
    (evaluate, display): Judge,
) -> Result<()> {
    let image = size(seen.hwc);
    let n = range.len();
    if done.condition_value.is_empty() {
        done.condition_value = vec![Vec::new(); out.condition_value.len()];
    }
    for (all, batch) in done.condition_value.iter_mut().zip(&out.condition_value) {
        all.extend(batch);
    }
    done.accepted.extend(&out.accepted);
    done.divergences.extend(&out.divergences);
    done.tree_depth.extend(&out.tree_depth);
    done.leaves.extend(&out.leaves);
    match evaluate(&out.images)? {
        Some(classes) => done.evaluator_class.extend(classes.into_iter().map(Some)),
        None => done.evaluator_class.extend(std::iter::repeat_n(None, n)),
    }
    done.grad_evals = out.grad_evals;
    done.accept_sum += out.accept_sum * n as f64;
    done.wall_s += out.wall_s;
    if let Some(da) = &out.adapt {
        done.adapted_steps.push(da.final_step());
    }
    done.changes.extend(out.changes.iter().cloned());
    let rows: Vec<usize> = seen
        .ids
        .iter()
        .filter(|id| range.contains(id))
        .map(|id| id - range.start)
        .collect();
    if seen.snapshots.is_empty() {
        seen.snapshots = vec![Vec::new(); out.snapshots.len()];
    }
    for (r, snap) in out.snapshots.iter().enumerate() {
        let v = display(snap)?;
        for &i in &rows {
            seen.snapshots[r].extend_from_slice(&v[i * image..(i + 1) * image]);
        }
    }
    for &i in &rows {
        seen.finals
            .extend_from_slice(&images[i * image..(i + 1) * image]);
    }
    done.batches += 1;
    done.chains += n;
    Ok(())
}

/// The chains a run shows in its grid and GIF: of every row of
/// `per_row` chains (a class), the first `max_per_row`, among `chains`.
pub fn shown_chains(chains: Range<usize>, per_row: usize, max_per_row: usize) -> Vec<usize> {
    chains
        .filter(|i| i % per_row.max(1) < max_per_row)
        .collect()
}
