//! The files of a finished run, on any pair: the grids and the GIF of the
//! shown chains, `labels.npy`, `kept.npy` (`--keep-above`), inpainting's
//! `inpaint.png`, and the one manifest schema (`manifest.json`: every
//! parameter, the networks' hashes, per-chain statistics, the evaluator's
//! agreement per class).

use candle_core::Tensor;

use super::folder::RunFolder;
use crate::data::npy_stream::F32RowsReader;
use crate::density::condition::Neuron;
use crate::error::{Error, Result};
use crate::run::config::preset::SamplerKind;
use crate::run::config::spec::{Request, SampleSpec};
use crate::run::drive::batched::{shown_chains, Done, Shown, SHOWN_PER_ROW};
use crate::run::drive::shard::Plan;
use crate::run::pairs::pair::Pair;

/// The real image and mask of an inpainting job.
pub struct Hole {
    /// `[1, h, w, c]` in the pair's decoded space.
    pub real: Tensor,
    /// `[1, h, w, c]`, 1 on the pixels to fill.
    pub mask: Tensor,
    pub describe: serde_json::Value,
}

impl Hole {
    /// The hole `spec` asks for: a test image of the pair's data set or
    /// an image file, and the mask at the generator's size.
    pub fn of(spec: &SampleSpec, pair: &dyn Pair) -> Result<Option<Hole>> {
        let Some(p) = &spec.inpaint else {
            return Ok(None);
        };
        let Some(shape) = pair.pixels() else {
            return Err(Error::unsupported(
                format!(
                    "inpainting with {}: its generator's images are not pixels in [0, 1]",
                    pair.names().0
                ),
                "inpaint with the shipped stack or a generator with an output_range",
            ));
        };
        let (real, label) = match &p.file {
            Some(f) => (real_file(f, shape)?, None),
            None => {
                let (r, l) = pair.real_image(p.image)?;
                (r, Some(l))
            }
        };
        let mask = p.mask_for(spec.seed, shape)?;
        Ok(Some(Hole {
            real,
            mask,
            describe: serde_json::json!({
                "image": p.image_name(), "true_class": label,
                "mask": p.mask_spec, "context_weight": p.context_weight,
            }),
        }))
    }
}

/// One real image from a file (a PNG or a `.npy` of one image), as
/// `[1, h, w, c]` of the generator's shape `shape`.
fn real_file(path: &std::path::Path, shape: (usize, usize, usize)) -> Result<Tensor> {
    let imgs = crate::data::images::read(path)?;
    if imgs.n != 1 || imgs.hwc != shape {
        return Err(Error::shape(
            format!("the image to inpaint, {}", path.display()),
            format!(
                "one {}x{}x{} image, the generator's",
                shape.0, shape.1, shape.2
            ),
            format!("{} of {}x{}x{}", imgs.n, imgs.hwc.0, imgs.hwc.1, imgs.hwc.2),
        ));
    }
    Ok(Tensor::from_vec(
        imgs.values,
        (1, shape.0, shape.1, shape.2),
        &candle_core::Device::Cpu,
    )?)
}

/// `LAYER:UNIT[@X,Y]` as the user wrote it.
pub fn neuron_name(layer: &str, n: &Neuron) -> String {
    match n.at {
        Some((y, x)) => format!("{layer}:{}@{x},{y}", n.unit),
        None => format!("{layer}:{}", n.unit),
    }
}

/// `inpaint.png` (one row: the original, the masked input, then every
/// fill shown) and `inpaint.json`.
pub fn write_inpaint(folder: &RunFolder, pair: &dyn Pair, h: &Hole, seen: &Shown) -> Result<()> {
    let n = seen.ids.len();
    let known = h.mask.affine(-1.0, 1.0)?;
    let both = Tensor::cat(&[h.real.clone(), (&h.real * known)?], 0)?;
    let mut v: Vec<f32> = pair.display(&both)?.flatten_all()?.to_vec1()?;
    v.extend_from_slice(&seen.finals);
    folder.grid("inpaint.png", &v, n + 2, seen.hwc, n + 2)?;
    folder.json("inpaint.json", &h.describe)
}

/// What the files of a finished run are made from.
pub struct Outputs<'a> {
    pub spec: &'a SampleSpec,
    pub pair: &'a dyn Pair,
    pub per_chain: &'a [usize],
    pub plan: Plan,
    /// What `--autotune` tried and chose.
    pub tuned: Option<&'a serde_json::Value>,
}

impl Outputs<'_> {
    /// Writes the images, arrays and manifest (`samples.npy` is already
    /// on disk); returns the verdict line.
    pub fn write(&self, folder: &RunFolder, done: &Done, seen: &Shown) -> Result<String> {
        let chains = self.plan.shard_chains();
        let n = chains.len();
        let cols = self.spec.chains.min(SHOWN_PER_ROW);
        let last = done.condition_value.last().cloned().unwrap_or_default();
        let labels: Vec<String> = seen
            .ids
            .iter()
            .map(|&i| format!("{:.2}", last[i - chains.start]))
            .collect();
        seen.write(folder, &labels, cols)?;
        if let Some(th) = self.spec.keep_above {
            self.keep(folder, &last, th, cols)?;
        }
        // -1: conditioned on a neuron, not a class
        let labels: Vec<i64> = chains
            .clone()
            .map(|i| self.per_chain.get(i).map_or(-1, |&c| c as i64))
            .collect();
        folder.npy_i64("labels.npy", &[n], &labels)?;
        let manifest = self.manifest(done);
        let per_class = &manifest["evaluator_accuracy_per_class"];
        folder.json("manifest.json", &manifest)?;
        let mean = last.iter().sum::<f64>() / n as f64;
        let agree: Vec<f64> = per_class
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_f64()).collect())
            .unwrap_or_default();
        Ok(if agree.is_empty() {
            format!("mean activation {mean:.3}")
        } else {
            format!(
                "mean p(class) {mean:.3}, evaluator agrees on {:.0}%",
                100.0 * agree.iter().sum::<f64>() / agree.len() as f64
            )
        })
    }

    /// S11: `kept.npy`, every final sample the condition network is sure
    /// of (read back from `samples.npy` a block at a time), and `kept.png`,
    /// the first rows of them.
    fn keep(&self, folder: &RunFolder, last: &[f64], th: f64, cols: usize) -> Result<()> {
        let (h, w, c) = self.pair.image();
        let per = h * w * c;
        let mut samples = F32RowsReader::open(&folder.path("samples.npy"))?;
        let keep: Vec<usize> = (0..last.len()).filter(|&i| last[i] >= th).collect();
        let mut kept = Vec::with_capacity(keep.len() * per);
        for first in (0..last.len()).step_by(1000) {
            let rows = first..(first + 1000).min(last.len());
            let mine: Vec<usize> = keep.iter().copied().filter(|i| rows.contains(i)).collect();
            if mine.is_empty() {
                continue;
            }
            let images = samples.read(rows)?;
            for i in mine {
                kept.extend_from_slice(&images[(i - first) * per..(i - first + 1) * per]);
            }
        }
        folder.npy_f32("kept.npy", &[keep.len(), c, h, w], &kept)?;
        let shown = keep.len().min(cols * 10);
        if shown > 0 {
            let hwc = crate::data::image::chw_to_hwc(&kept[..shown * per], shown, (h, w, c));
            folder.grid("kept.png", &hwc, shown, (h, w, c), cols)?;
        }
        Ok(())
    }

    fn manifest(&self, done: &Done) -> serde_json::Value {
        let spec = self.spec;
        let first = self.plan.shard_chains().start;
        let names = self.pair.class_names();
        let steps = spec.settings.with_changes(&done.changes).last_step().max(1) as f64;
        let nuts = spec.settings.sampler == SamplerKind::Nuts;
        let per_step = |v: &[usize], i: usize| v.get(i).map_or(0.0, |&d| d as f64);
        // the rounds of batched passes of the steps (less the first
        // evaluation and the start candidates')
        let rounds = done
            .grad_evals
            .saturating_sub(1 + spec.settings.start_evals())
            .max(1) as f64;
        let chains: Vec<serde_json::Value> = (0..done.chains)
            .map(|i| {
                let class = self.per_chain.get(first + i);
                serde_json::json!({
                    "chain": first + i,
                    "class": class,
                    "class_name": class.map(|&c| &names[c]),
                    "condition_value": done.condition_value.iter().map(|p| p[i]).collect::<Vec<_>>(),
                    "final_condition_value": done.condition_value.last().map(|p| p[i]),
                    "evaluator_class": done.evaluator_class[i],
                    "accept_rate": done.accepted[i] as f64 / steps,
                    "divergences": done.divergences[i],
                    // NUTS's trees: the mean depth of this chain's, and the
                    // share of the batched passes' rows it used (the rest
                    // it waited for the longest tree)
                    "mean_tree_depth": nuts.then(|| per_step(&done.tree_depth, i) / steps),
                    "lockstep_rows_used": nuts.then(|| per_step(&done.leaves, i) / rounds),
                })
            })
            .collect();
        let neuron = match &spec.request {
            Request::Neuron { layer, neuron } => Some(neuron_name(layer, neuron)),
            Request::Classes(_) => None,
        };
        let (generator, classifier) = self.pair.names();
        serde_json::json!({
            "command": spec.command,
            "seed": spec.seed,
            "init": spec.init.name(),
            "neuron": neuron,
            "chains_per_class": spec.chains,
            "record_every": spec.record_every,
            "sampler": spec.settings.with_changes(&done.changes),
            "space": spec.settings.prior.space(),
            "backend": spec.settings.engine,
            "autotune": self.tuned,
            "generator": generator,
            "classifier": classifier,
            "models": self.pair.models(),
            "evaluator": self.pair.evaluator(),
            "image": self.pair.image(),
            "batch": self.plan.batch,
            "shard": self.plan.shard,
            "chains_total": self.plan.chains,
            "shown_chains": shown_chains(self.plan.shard_chains(), spec.chains, SHOWN_PER_ROW),
            "grad_evals_per_chain": done.grad_evals,
            "adapted_step": done.adapted_steps.first(),
            "adapted_steps": done.adapted_steps,
            "steps": spec.settings.steps,
            "wall_time_s": done.wall_s,
            "diagnostics": crate::run::drive::merge::diagnostics(&chains),
            "evaluator_accuracy_per_class": crate::run::drive::merge::evaluator_accuracy(&chains),
            "chains": chains,
        })
    }
}
