//! Resumable checkpoints of a training run: the variables and optimiser
//! state in a safetensors file, and the step, settings and losses so far
//! beside it in JSON (`super::run` saves and resumes them).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::{Task, TrainOptions};
use crate::error::{Error, Result};
use crate::models::weights::{load_into_varmap, load_tensors, save_tensors, varmap_tensors};

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct CheckpointMeta {
    pub(super) network: String,
    pub(super) step: u64,
    pub(super) elapsed_s: f64,
    pub(super) seed: u64,
    pub(super) batch_size: usize,
    pub(super) lr: f64,
    pub(super) task_state: serde_json::Value,
    /// Each optimiser's own step count (they differ when the GAN pauses one).
    #[serde(default)]
    pub(super) optimizer_steps: Vec<u64>,
    /// Mean losses per epoch so far.
    pub(super) history: Vec<BTreeMap<String, f64>>,
}

pub(super) fn ckpt_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.ckpt.safetensors")),
        dir.join(format!("{name}.ckpt.json")),
    )
}

pub(super) fn save_checkpoint(
    task: &dyn Task,
    opts: &TrainOptions,
    meta: &mut CheckpointMeta,
) -> Result<()> {
    meta.optimizer_steps = task.optimizers_ref().iter().map(|a| a.step).collect();
    let (wpath, jpath) = ckpt_paths(&opts.out_dir, task.name());
    let mut tensors = HashMap::new();
    for (prefix, vm) in task.varmaps() {
        tensors.extend(varmap_tensors(vm, &format!("var.{prefix}.")));
    }
    for (i, adam) in task.optimizers_ref().into_iter().enumerate() {
        tensors.extend(adam.state(&format!("adam{i}.")));
    }
    save_tensors(&wpath, &tensors)?;
    let text = serde_json::to_string_pretty(meta).expect("meta serialises");
    crate::fsutil::write_atomic(&jpath, text.as_bytes())
}

pub(super) fn load_checkpoint(
    task: &mut dyn Task,
    opts: &TrainOptions,
    device: &Device,
) -> Result<Option<CheckpointMeta>> {
    let (wpath, jpath) = ckpt_paths(&opts.out_dir, task.name());
    if opts.restart || !jpath.exists() || !wpath.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&jpath).map_err(|e| Error::io(&jpath, e))?;
    let meta: CheckpointMeta = serde_json::from_str(&text).map_err(|e| {
        Error::data(
            &jpath,
            format!("unreadable checkpoint ({e}); rerun with --restart"),
        )
    })?;
    if meta.seed != opts.seed || meta.batch_size != opts.batch_size || meta.lr != opts.lr {
        return Err(Error::data(
            &jpath,
            format!(
                "checkpoint was made with seed {}, batch {}, lr {}; this run asks seed {}, batch {}, lr {}. \
                 Use the same settings to resume, or --restart to start over",
                meta.seed, meta.batch_size, meta.lr, opts.seed, opts.batch_size, opts.lr
            ),
        ));
    }
    let tensors = load_tensors(&wpath, device)?;
    for (prefix, vm) in task.varmaps() {
        load_into_varmap(vm, &tensors, &format!("var.{prefix}."), &wpath)?;
    }
    for (i, adam) in task.optimizers().into_iter().enumerate() {
        let steps = meta.optimizer_steps.get(i).copied().unwrap_or(meta.step);
        adam.load_state(&tensors, &format!("adam{i}."), steps)
            .map_err(|e| Error::data(&wpath, e.to_string()))?;
    }
    task.load_state_json(&meta.task_state);
    Ok(Some(meta))
}

impl CheckpointMeta {
    /// The state of a run that has not started.
    pub(super) fn fresh(network: &str, opts: &TrainOptions) -> Self {
        CheckpointMeta {
            network: network.into(),
            step: 0,
            elapsed_s: 0.0,
            seed: opts.seed,
            batch_size: opts.batch_size,
            lr: opts.lr,
            task_state: serde_json::Value::Null,
            optimizer_steps: Vec::new(),
            history: Vec::new(),
        }
    }
}
