//! A whole sampling job, from a [`SampleSpec`] to a run folder: the
//! networks are loaded, the chains run (resumably, on the Fashion-MNIST
//! stack), and the folder gets `grid.png`, `chains.png`, `chains.gif`,
//! `samples.npy`, `labels.npy`, `manifest.json` (and `inpaint.png`,
//! `kept.npy` where asked). `ppgn sample` and `ppgn inpaint` are this
//! function behind flags.

use std::collections::BTreeMap;
use std::ops::Range;

use candle_core::{DType, Device, Module, Tensor};

use super::batched::{shown_chains, Batches, Done, Shown, SHOWN_PER_ROW};
use super::chains::{random_starts_of, Pipeline, Streams};
use super::fashion::{validate, Condition};
use super::folder::RunFolder;
use super::preset::PriorKind;
use super::progress::Progress;
use super::shard::Plan;
use super::spec::{Init, Networks, Request, RunOutput, SampleSpec, STORED};
use crate::data::fashion_mnist::{self, parse_class, Split, CLASS_NAMES};
use crate::data::npy_stream::F32RowsReader;
use crate::error::{Error, Result};
use crate::models::fashion::{self as stack, Stack};

/// Runs the job `spec` describes, reporting to `progress`. An interrupted
/// Fashion-MNIST run keeps its checkpoint for `spec.resume`; any other
/// failure leaves nothing behind.
pub fn sample(spec: &SampleSpec, progress: &mut dyn Progress) -> Result<RunOutput> {
    spec.validate()?;
    match &spec.networks {
        Networks::Fashion { models } => fashion(spec, models.as_deref(), progress),
        _ => super::sample_pretrained::sample(spec, progress),
    }
}

/// The classes of `request` on the Fashion-MNIST stack, one per chain.
fn fashion_classes(spec: &SampleSpec) -> Result<Vec<usize>> {
    let names = match &spec.request {
        Request::Neuron { .. } => return Ok(Vec::new()),
        Request::Classes(names) => names,
    };
    let classes: Vec<usize> = if names.len() == 1 && names[0] == "all" {
        (0..CLASS_NAMES.len()).collect()
    } else {
        names
            .iter()
            .map(|s| parse_class(s))
            .collect::<Result<_>>()?
    };
    Ok(classes
        .iter()
        .flat_map(|&c| std::iter::repeat_n(c, spec.chains))
        .collect())
}

/// The test image and mask of an inpainting job.
struct Hole {
    real: Tensor,
    mask: Tensor,
    describe: serde_json::Value,
}

fn hole(spec: &SampleSpec) -> Result<Option<Hole>> {
    let Some(p) = &spec.inpaint else {
        return Ok(None);
    };
    let test = fashion_mnist::load(
        &fashion_mnist::resolve_dir(spec.data_dir.as_deref()),
        Split::Test,
    )?;
    if p.image >= test.len() {
        return Err(Error::setting(
            "image",
            format!("test:{}", p.image),
            format!("an image of the test set, 0..{}", test.len()),
        ));
    }
    Ok(Some(Hole {
        real: test.images_tensor(&[p.image], &Device::Cpu)?,
        mask: p.mask_tensor()?,
        describe: serde_json::json!({
            "image": format!("test:{}", p.image), "true_class": test.labels[p.image],
            "mask": p.mask_spec, "context_weight": p.context_weight,
        }),
    }))
}

/// Where the chains start: random codes, a test image's code, or (for
/// inpainting from random) the code of the image with its hole blacked out;
/// with the flow prior, base points (`N(0, I)` draws, or `T^-1` of those
/// codes before their ReLU); for PPGN-x (`--prior x-dae`, whose chains are images) random images or
/// the test image itself.
fn start_codes(
    spec: &SampleSpec,
    s: &Stack,
    chains: Range<usize>,
    hole: Option<&Hole>,
) -> Result<Tensor> {
    let prior = spec.settings.prior;
    let k = spec.settings.start_candidates;
    if k > 1 && (spec.init != Init::Random || hole.is_some()) {
        return Err(Error::setting(
            "start_candidates",
            k,
            "1 when the chains start from an image (--init test:N, inpainting): only random starts are draws of the prior to resample",
        ));
    }
    let n = chains.len();
    let streams = Streams {
        seed: spec.seed,
        first: chains.start,
    };
    if prior == PriorKind::XDae {
        return match spec.init {
            Init::Random => random_images(streams, n),
            Init::Test(i) => test_image(spec, i)?
                .repeat((n, 1, 1, 1))
                .map_err(Into::into),
        };
    }
    let image = match (spec.init, hole) {
        (Init::Random, Some(h)) => {
            let known = h.mask.affine(-1.0, 1.0)?;
            (&h.real * known)?
        }
        (Init::Random, None) => return random_starts_of(prior, streams, n, s.classifier.cfg.h_dim),
        (Init::Test(i), _) => test_image(spec, i)?,
    };
    let image = image.repeat((n, 1, 1, 1))?;
    match (prior, &s.code_prior) {
        // the base point of the image's code: z = T^-1(u)
        (PriorKind::Flow, Some(flow)) => {
            Ok(flow.inverse(&s.classifier.encode_pre_relu(&image)?)?.0)
        }
        _ => Ok(s.classifier.encode(&image)?),
    }
}

/// Test image `i`, `[1, 28, 28, 1]`.
fn test_image(spec: &SampleSpec, i: usize) -> Result<Tensor> {
    let test = fashion_mnist::load(
        &fashion_mnist::resolve_dir(spec.data_dir.as_deref()),
        Split::Test,
    )?;
    if i >= test.len() {
        return Err(Error::setting(
            "init",
            format!("test:{i}"),
            format!("an image of the test set, 0..{}", test.len()),
        ));
    }
    test.images_tensor(&[i], &Device::Cpu)
}

/// PPGN-x's random starts: mid-grey with `N(0, 0.2^2)` noise per pixel,
/// clipped to [0, 1] (seeded apart from the chains' own streams).
fn random_images(streams: Streams, n: usize) -> Result<Tensor> {
    let z = Tensor::zeros((n, 28, 28, 1), candle_core::DType::F32, &Device::Cpu)?;
    let noise = crate::sampler::ChainRngs::from_chain(streams.seed ^ 0x5eed, streams.first, n)
        .normal_like(&z)?;
    Ok((noise * 0.2)?.affine(1.0, 0.5)?.clamp(0.0, 1.0)?)
}

fn fashion(
    spec: &SampleSpec,
    models: Option<&std::path::Path>,
    progress: &mut dyn Progress,
) -> Result<RunOutput> {
    let dir = stack::resolve_dir(models);
    let s = std::sync::Arc::new(Stack::load(&dir, DType::F32, &Device::Cpu)?);
    let per_chain = fashion_classes(spec)?;
    let hole = hole(spec)?;
    let plan = plan(spec, &s, &per_chain)?;
    let condition = |chains: Range<usize>| condition(spec, &per_chain, hole.as_ref(), chains);
    validate(&s, &spec.settings, &condition(0..1))?;
    // --autotune's pilot runs on the run's first batch, whichever the shard
    let first = plan.batch_chains(0);
    let build =
        |c: &super::preset::SamplerConfig| Pipeline::fashion(&s, c, &condition(first.clone()));
    let h0 = start_codes(spec, &s, first.clone(), hole.as_ref())?;
    let original = spec;
    let (spec, tuned) = super::autotune::apply(spec, &build, &h0)?;
    let (spec, cfg) = (spec.as_ref(), &spec.settings);
    let backend = build(cfg)?.backend;
    let neuron_spec = match &spec.request {
        Request::Neuron { layer, neuron } => Some(neuron_name(layer, neuron)),
        Request::Classes(_) => None,
    };
    let request = request(
        spec,
        &plan,
        &per_chain,
        neuron_spec.as_deref(),
        hole.as_ref(),
    );
    let folder = RunFolder::open(&spec.out, spec.force, spec.resume)?.with_scale(spec.scale);
    if !spec.resume {
        folder.json(STORED, &serde_json::to_value(original).expect("serialises"))?;
    }
    let batches = Batches {
        plan,
        cfg,
        seed: spec.seed,
        record_every: spec.record_every,
        request: &request,
        folder: &folder,
    };
    let shown = shown_chains(plan.shard_chains(), spec.chains, SHOWN_PER_ROW);
    let mut make = |chains: Range<usize>| -> Result<(Pipeline, Tensor)> {
        let pipeline = Pipeline::steerable(&s, cfg, &condition(chains.clone()))?;
        Ok((pipeline, start_codes(spec, &s, chains, hole.as_ref())?))
    };
    let evaluate =
        |x: &Tensor| -> Result<Vec<u32>> { Ok(s.evaluator.forward(x)?.argmax(1)?.to_vec1()?) };
    let (done, seen) = match batches.run(spec.resume, &shown, &mut make, &evaluate, progress) {
        Ok(r) => r,
        Err(e) => return Err(failed(spec, folder, e)),
    };
    let outputs = FashionOutputs {
        spec,
        stack: &s,
        models: &dir,
        per_chain: &per_chain,
        plan,
        neuron: neuron_spec,
        backend,
        tuned: tuned.as_ref(),
    };
    let verdict = super::autotune::annotate(outputs.write(&folder, &done, &seen)?, tuned.as_ref());
    if let Some(h) = &hole {
        write_inpaint(&folder, h, &seen)?;
    }
    folder.remove(super::chains::CHECKPOINT);
    folder.remove(STORED);
    Ok(RunOutput {
        dir: folder.finish()?,
        chains: plan.shard_chains().len(),
        steps: cfg.steps,
        preset: cfg.preset.clone(),
        wall_s: done.wall_s,
        verdict,
    })
}

/// The run's batches and this shard's share, after refusing what the
/// machine cannot hold (before building any chain).
fn plan(spec: &SampleSpec, s: &Stack, per_chain: &[usize]) -> Result<Plan> {
    let n = match spec.request {
        Request::Neuron { .. } => spec.chains,
        Request::Classes(_) => per_chain.len(),
    };
    let estimate = super::estimate::fashion(spec, s, false)?;
    estimate.check()?;
    Plan::new(n, spec.batch.unwrap_or(estimate.batch), spec.shard)
}

/// What a failed run leaves and says: a fresh run that failed leaves
/// nothing behind; an interrupted one (or one being resumed) keeps its
/// checkpoint; on a full disk the last checkpoint is kept and the message
/// says to free space and resume.
fn failed(spec: &SampleSpec, folder: RunFolder, e: Error) -> Error {
    let checkpoint = folder.staging().join(super::chains::CHECKPOINT);
    if e.is_disk_full() && checkpoint.exists() {
        return Error::unsupported(
            format!("the disk is full ({e})"),
            format!(
                "the last checkpoint is kept in {}; free space and rerun the same command with --resume",
                folder.staging().display()
            ),
        );
    }
    if !spec.resume && !matches!(e, Error::Interrupted { .. }) {
        folder.discard();
    }
    if e.is_disk_full() {
        return Error::unsupported(
            format!("the disk is full ({e})"),
            "nothing was kept; free space and run the command again",
        );
    }
    e
}

/// The condition of chains `chains` (global ids) of the request.
fn condition(
    spec: &SampleSpec,
    per_chain: &[usize],
    hole: Option<&Hole>,
    chains: Range<usize>,
) -> Condition {
    match (&spec.request, hole) {
        (Request::Neuron { layer, neuron }, _) => Condition::Neuron {
            layer: layer.clone(),
            neuron: *neuron,
        },
        (_, Some(h)) => Condition::Inpaint {
            classes: per_chain[chains].to_vec(),
            real: h.real.clone(),
            mask: h.mask.clone(),
            weight: spec.inpaint.as_ref().map_or(1.0, |p| p.context_weight),
        },
        (_, None) => Condition::Classes(per_chain[chains].to_vec()),
    }
}

/// What a checkpoint must match to be resumed: the settings and the
/// condition.
fn request(
    spec: &SampleSpec,
    plan: &Plan,
    per_chain: &[usize],
    neuron: Option<&str>,
    hole: Option<&Hole>,
) -> serde_json::Value {
    serde_json::json!({
        "sampler": &spec.settings, "classes": per_chain, "neuron": neuron, "seed": spec.seed,
        "init": spec.init.name(), "inpaint": hole.map(|h| &h.describe),
        "record_every": spec.record_every, "batch": plan.batch, "shard": plan.shard,
    })
}

/// `LAYER:UNIT[@X,Y]` as the user wrote it.
fn neuron_name(layer: &str, n: &crate::density::condition::Neuron) -> String {
    match n.at {
        Some((y, x)) => format!("{layer}:{}@{x},{y}", n.unit),
        None => format!("{layer}:{}", n.unit),
    }
}

/// `inpaint.png` (one row: the original, the masked input, then every
/// fill shown) and `inpaint.json`.
fn write_inpaint(folder: &RunFolder, h: &Hole, seen: &Shown) -> Result<()> {
    let n = seen.ids.len();
    let known = h.mask.affine(-1.0, 1.0)?;
    let mut v: Vec<f32> = Tensor::cat(&[h.real.clone(), (&h.real * known)?], 0)?
        .flatten_all()?
        .to_vec1()?;
    v.extend_from_slice(&seen.finals);
    folder.grid("inpaint.png", &v, n + 2, (28, 28, 1), n + 2)?;
    folder.json("inpaint.json", &h.describe)
}

/// What the files of a finished Fashion-MNIST run are made from.
struct FashionOutputs<'a> {
    spec: &'a SampleSpec,
    stack: &'a Stack,
    models: &'a std::path::Path,
    per_chain: &'a [usize],
    plan: Plan,
    neuron: Option<String>,
    backend: super::preset::Engine,
    /// What `--autotune` tried and chose.
    tuned: Option<&'a serde_json::Value>,
}

impl FashionOutputs<'_> {
    /// Writes the images, arrays and manifest (`samples.npy` is already
    /// on disk); returns the verdict line.
    fn write(&self, folder: &RunFolder, done: &Done, seen: &Shown) -> Result<String> {
        let chains = self.plan.shard_chains();
        let n = chains.len();
        let cols = self.spec.chains.min(SHOWN_PER_ROW);
        let last = done.probability.last().cloned().unwrap_or_default();
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
        let mut samples = F32RowsReader::open(&folder.path("samples.npy"))?;
        let keep: Vec<usize> = (0..last.len()).filter(|&i| last[i] >= th).collect();
        let mut kept = Vec::with_capacity(keep.len() * 784);
        for first in (0..last.len()).step_by(1000) {
            let rows = first..(first + 1000).min(last.len());
            let mine: Vec<usize> = keep.iter().copied().filter(|i| rows.contains(i)).collect();
            if mine.is_empty() {
                continue;
            }
            let images = samples.read(rows)?;
            for i in mine {
                kept.extend_from_slice(&images[(i - first) * 784..(i - first + 1) * 784]);
            }
        }
        folder.npy_f32("kept.npy", &[keep.len(), 1, 28, 28], &kept)?;
        let shown = keep.len().min(cols * 10);
        if shown > 0 {
            folder.grid("kept.png", &kept[..shown * 784], shown, (28, 28, 1), cols)?;
        }
        Ok(())
    }

    fn manifest(&self, done: &Done) -> serde_json::Value {
        let spec = self.spec;
        let first = self.plan.shard_chains().start;
        let steps = spec.settings.with_changes(&done.changes).last_step().max(1) as f64;
        let chains: Vec<serde_json::Value> = (0..done.chains)
            .map(|i| {
                let class = self.per_chain.get(first + i);
                serde_json::json!({
                    "chain": first + i,
                    "class": class,
                    "class_name": class.map(|&c| CLASS_NAMES[c]),
                    "condition_value": done.probability.iter().map(|p| p[i]).collect::<Vec<_>>(),
                    "final_condition_value": done.probability.last().map(|p| p[i]),
                    "evaluator_class": done.evaluator_class[i],
                    "accept_rate": done.accepted[i] as f64 / steps,
                    "divergences": done.divergences[i],
                })
            })
            .collect();
        let hashes: BTreeMap<String, String> = self
            .stack
            .cards
            .iter()
            .map(|c| (c.network.clone(), c.weights_sha256.clone()))
            .collect();
        serde_json::json!({
            "command": spec.command,
            "seed": spec.seed,
            "init": spec.init.name(),
            "neuron": self.neuron,
            "chains_per_class": spec.chains,
            "record_every": spec.record_every,
            "sampler": spec.settings.with_changes(&done.changes),
            "space": spec.settings.prior.space(),
            "backend": self.backend,
            "autotune": self.tuned,
            "models": {"folder": self.models.display().to_string(), "sha256": hashes},
            "batch": self.plan.batch,
            "shard": self.plan.shard,
            "chains_total": self.plan.chains,
            "shown_chains": shown_chains(self.plan.shard_chains(), spec.chains, SHOWN_PER_ROW),
            "grad_evals_per_chain": done.grad_evals,
            "adapted_step": done.adapted_steps.first(),
            "adapted_steps": done.adapted_steps,
            "steps": spec.settings.steps,
            "wall_time_s": done.wall_s,
            "diagnostics": super::merge::diagnostics(&chains),
            "evaluator_accuracy_per_class": super::merge::evaluator_accuracy(&chains),
            "chains": chains,
        })
    }
}
