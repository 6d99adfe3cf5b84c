//! Training loops. [`run`] owns what every network's training shares: the
//! epoch/batch order, seeded randomness, Adam, the progress bar, resumable
//! checkpoints and the final weights + card. Each network supplies a
//! [`Task`]: its variables, its optimisers, one step, and its evaluation.
//!
//! Reproducibility: the batch order of epoch `e` is drawn from
//! `ChaCha8(seed, e)` and the noise/dropout of step `s` from
//! `ChaCha8(seed, s)`, so a run resumed from a checkpoint at step `s` takes
//! exactly the steps an uninterrupted run would have taken.

mod checkpoint;
pub mod classifier;
pub mod code_prior;
pub mod code_score;
pub mod dae;
pub mod flow_temperature;
pub mod gan;
pub mod job;
pub mod realness;
pub mod reconstruction;
pub mod robust;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::fashion_mnist::Dataset;
use crate::error::{Error, Result};
use crate::models::card::{sha256_file, Card};
use crate::models::weights::{save_tensors, varmap_tensors};
use crate::nn::adam::Adam;
use crate::run::drive::progress::Progress;
use checkpoint::{ckpt_paths, load_checkpoint, save_checkpoint, CheckpointMeta};

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// Where `<name>.safetensors`, `<name>.json` and the checkpoint go.
    pub out_dir: PathBuf,
    /// Where the networks this one is trained against are read from.
    pub models_dir: PathBuf,
    /// Save a checkpoint every this many steps (and at the end of each epoch).
    pub checkpoint_every: u64,
    /// Stop after this many steps in all (a quick run); the card says so.
    pub max_steps: Option<u64>,
    /// Stop after this step as if killed, keeping the checkpoint for a later
    /// run to resume (training in sittings); `run` then returns `Ok(None)`.
    pub stop_at: Option<u64>,
    /// Ignore an existing checkpoint and start over.
    pub restart: bool,
    /// The network's size where it has one to choose (`--size`): the
    /// generator's channels, the score prior's width and blocks.
    pub size: Option<Vec<usize>>,
    /// The command line, recorded in the card.
    pub command: String,
    /// Noise and adversarial images in training (image classifiers only).
    pub robust: robust::Robust,
    /// How the priors on codes train (`--whiten`, `--zero-init`).
    pub codes: code_prior::CodeTraining,
}

impl TrainOptions {
    /// Checks the options before any data or network loads.
    pub fn check(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::setting("--batch-size", 0, "at least 1"));
        }
        if self.checkpoint_every == 0 {
            return Err(Error::setting("--checkpoint-every", 0, "at least 1"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::setting("--lr", self.lr, "a positive number"));
        }
        Ok(())
    }
}

/// One network's training, driven by [`run`].
pub trait Task {
    fn name(&self) -> &'static str;
    /// The trained variables, each map with a checkpoint prefix.
    fn varmaps(&self) -> Vec<(&'static str, &VarMap)>;
    /// The optimisers, in a fixed order.
    fn optimizers(&mut self) -> Vec<&mut Adam>;
    fn optimizers_ref(&self) -> Vec<&Adam>;
    /// One optimisation step on the training images `idx`; returns named losses.
    fn step(&mut self, idx: &[usize], rng: &mut ChaCha8Rng) -> Result<Vec<(&'static str, f64)>>;
    /// Measurements for the card after training.
    fn evaluate(&self) -> Result<BTreeMap<String, f64>>;
    /// The architecture config written into the card.
    fn config_json(&self) -> serde_json::Value;
    /// The weights to ship (defaults to the first var map, unprefixed).
    fn weights(&self) -> HashMap<String, Tensor> {
        varmap_tensors(self.varmaps()[0].1, "")
    }
    /// Extra networks saved beside this one (e.g. `D` with `G`): name, config, weights.
    fn companions(&self) -> Vec<(&'static str, serde_json::Value, HashMap<String, Tensor>)> {
        Vec::new()
    }
    /// Shipped networks this one was trained against, by name -> file path.
    fn depends_on(&self) -> Vec<(String, PathBuf)> {
        Vec::new()
    }
    /// Step-to-step state beyond weights (e.g. the GAN pause heuristic).
    fn state_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn load_state_json(&mut self, _v: &serde_json::Value) {}
    /// Number of training examples.
    fn train_len(&self) -> usize;
}

fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (0x9E37_79B9_7F4A_7C15u64.wrapping_mul(epoch as u64 + 1)));
    idx.shuffle(&mut rng);
    idx
}

fn step_rng(seed: u64, step: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(step + 1);
    rng
}

/// Trains `task` to the end (resuming from its checkpoint if one matches),
/// writes the weights and card, removes the checkpoint, and returns the card
/// (`None` when stopped early by `stop_at`). Progress and the loss lines at
/// each checkpoint go to `progress`.
pub fn run(
    task: &mut dyn Task,
    opts: &TrainOptions,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<Option<Card>> {
    let n = task.train_len();
    let steps_per_epoch = (n / opts.batch_size) as u64;
    if steps_per_epoch == 0 {
        return Err(Error::setting(
            "batch size",
            opts.batch_size,
            format!("at most the {n} training examples"),
        ));
    }
    let planned = steps_per_epoch * opts.epochs as u64;
    let total = opts.max_steps.map_or(planned, |m| m.min(planned));
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;
    let mut meta = match load_checkpoint(task, opts, device)? {
        Some(m) => {
            progress.note(&format!(
                "resuming {} from its checkpoint at step {} of {total}",
                task.name(),
                m.step
            ));
            m
        }
        None => CheckpointMeta::fresh(task.name(), opts),
    };
    progress.begin(&format!("train {}", task.name()), total as usize);
    progress.tick(meta.step as usize);
    let mut epochs = Epochs {
        opts,
        steps_per_epoch,
        total,
        started: Instant::now(),
        base_elapsed: meta.elapsed_s,
        sums: BTreeMap::new(),
    };
    let finished = epochs.train(task, &mut meta, progress);
    progress.end();
    if !finished? {
        return Ok(None);
    }
    let wall = epochs.base_elapsed + epochs.started.elapsed().as_secs_f64();
    finish(task, opts, &meta, wall, steps_per_epoch).map(Some)
}

/// The step loop's bookkeeping.
struct Epochs<'a> {
    opts: &'a TrainOptions,
    steps_per_epoch: u64,
    total: u64,
    started: Instant,
    base_elapsed: f64,
    /// Sums and counts of each loss over the current epoch.
    sums: BTreeMap<String, (f64, usize)>,
}

impl Epochs<'_> {
    /// Steps to the end (`true`) or to `stop_at` (`false`), checkpointing
    /// every `checkpoint_every` steps and at every epoch's end.
    fn train(
        &mut self,
        task: &mut dyn Task,
        meta: &mut CheckpointMeta,
        progress: &mut dyn Progress,
    ) -> Result<bool> {
        let (opts, spe, total) = (self.opts, self.steps_per_epoch, self.total);
        let n = task.train_len();
        while meta.step < total {
            let order = epoch_order(n, opts.seed, (meta.step / spe) as usize);
            for b in (meta.step % spe) as usize..spe as usize {
                if meta.step >= total {
                    break;
                }
                let idx = &order[b * opts.batch_size..(b + 1) * opts.batch_size];
                let losses = task.step(idx, &mut step_rng(opts.seed, meta.step))?;
                self.add(task.name(), meta.step, &losses)?;
                meta.step += 1;
                progress.tick(meta.step as usize);
                let epoch_end = meta.step.is_multiple_of(spe);
                if meta.step.is_multiple_of(opts.checkpoint_every)
                    || epoch_end
                    || meta.step == total
                {
                    self.checkpoint(task, meta, epoch_end || meta.step == total)?;
                    let shown: Vec<String> =
                        losses.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
                    progress.note(&format!(
                        "step {}/{total} (epoch {:.2}) {}",
                        meta.step,
                        meta.step as f64 / spe as f64,
                        shown.join(" ")
                    ));
                }
                if opts.stop_at.is_some_and(|s| meta.step >= s) && meta.step < total {
                    self.checkpoint(task, meta, false)?;
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Adds one step's losses to the epoch's sums; a non-finite one stops
    /// the run (its last checkpoint is kept).
    fn add(&mut self, name: &str, step: u64, losses: &[(&'static str, f64)]) -> Result<()> {
        for (k, v) in losses {
            if !v.is_finite() {
                return Err(Error::Diverged(format!(
                    "training {name} diverged: loss {k} is {v} at step {step}; the last checkpoint is kept. \
                     Try a lower --lr"
                )));
            }
            let e = self.sums.entry(k.to_string()).or_insert((0.0, 0));
            e.0 += v;
            e.1 += 1;
        }
        Ok(())
    }

    /// Saves a checkpoint (closing the epoch's loss history first when
    /// `epoch_done`).
    fn checkpoint(
        &mut self,
        task: &mut dyn Task,
        meta: &mut CheckpointMeta,
        epoch_done: bool,
    ) -> Result<()> {
        if epoch_done {
            meta.history.push(
                self.sums
                    .iter()
                    .map(|(k, (s, c))| (k.clone(), s / *c as f64))
                    .collect(),
            );
            self.sums.clear();
        }
        meta.elapsed_s = self.base_elapsed + self.started.elapsed().as_secs_f64();
        meta.task_state = task.state_json();
        save_checkpoint(task, self.opts, meta)
    }
}

/// Evaluates the trained task, writes its weights and card (and its
/// companions'), and removes the checkpoint.
fn finish(
    task: &mut dyn Task,
    opts: &TrainOptions,
    meta: &CheckpointMeta,
    wall: f64,
    steps_per_epoch: u64,
) -> Result<Card> {
    let mut metrics = task.evaluate()?;
    if let Some(last) = meta.history.last() {
        for (k, v) in last {
            metrics.insert(format!("final_epoch_train_{k}"), *v);
        }
    }
    let mut depends_on = BTreeMap::new();
    for (name, path) in task.depends_on() {
        depends_on.insert(name, sha256_file(&path)?);
    }
    let make_card = |name: &str, config: serde_json::Value, wfile: &Path| -> Result<Card> {
        Ok(Card {
            network: name.to_string(),
            config,
            command: opts.command.clone(),
            seed: opts.seed,
            epochs: (meta.step as f64 / steps_per_epoch as f64).ceil() as usize,
            steps: meta.step,
            batch_size: opts.batch_size,
            learning_rate: opts.lr,
            wall_time_s: (wall * 10.0).round() / 10.0,
            metrics: metrics.clone(),
            weights: wfile
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            weights_sha256: sha256_file(wfile)?,
            depends_on: depends_on.clone(),
            measured_by: Default::default(),
            error_by_value: None,
        })
    };
    let (wpath, cpath) = crate::models::fashion::paths(&opts.out_dir, task.name());
    save_tensors(&wpath, &task.weights())?;
    let card = make_card(task.name(), task.config_json(), &wpath)?;
    card.save(&cpath)?;
    for (name, config, tensors) in task.companions() {
        let (w, c) = crate::models::fashion::paths(&opts.out_dir, name);
        save_tensors(&w, &tensors)?;
        make_card(name, config, &w)?.save(&c)?;
    }
    let (ck_w, ck_j) = ckpt_paths(&opts.out_dir, task.name());
    let _ = std::fs::remove_file(ck_w);
    let _ = std::fs::remove_file(ck_j);
    Ok(card)
}

/// Batch size for evaluation passes: small enough that the allocator
/// reuses buffers instead of mapping fresh pages for every op.
pub const EVAL_BATCH: usize = 100;

/// Training images held out as the validation split (the last ones): every
/// network trains on the others (*Generating Class-conditional Images with
/// Gradient-based Inference* judges samples with networks the sampler never
/// saw; choosing settings needs images no sampling network saw either), and
/// settings are chosen on these with the guiding classifier.
pub const VALIDATION: usize = 5000;

/// Where the validation split starts among `n` training images: the last
/// [`VALIDATION`] of them, or the last fifth of a smaller set (test data).
pub fn validation_start(n: usize) -> usize {
    n - VALIDATION.min(n / 5)
}

/// Runs `f` over `data` in batches of `batch` indices and concatenates the results.
pub fn batched<T>(
    n: usize,
    batch: usize,
    mut f: impl FnMut(&[usize]) -> Result<T>,
) -> Result<Vec<T>> {
    let idx: Vec<usize> = (0..n).collect();
    idx.chunks(batch).map(&mut f).collect()
}

/// The variables of a `VarMap` with their names.
pub fn named_vars(varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
    varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Adam over every variable of `varmap` with the options' learning rate
/// and weight decay (the one optimiser of a single-network task).
pub fn adam_for(varmap: &VarMap, opts: &TrainOptions) -> Result<Adam> {
    Ok(Adam::new(
        named_vars(varmap),
        crate::nn::adam::AdamParams {
            lr: opts.lr,
            weight_decay: opts.weight_decay,
            ..Default::default()
        },
    )?)
}

/// Keeps the datasets a task needs.
pub struct Data {
    pub train: Dataset,
    pub test: Dataset,
}

impl Data {
    /// The training and test images of the Fashion-MNIST folder `dir`.
    pub fn load(dir: &Path) -> Result<Data> {
        use crate::data::fashion_mnist::{load, Split};
        Ok(Data {
            train: load(dir, Split::Train)?,
            test: load(dir, Split::Test)?,
        })
    }
}
