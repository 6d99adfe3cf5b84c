//! A whole sampling job, from a [`SampleSpec`] to a run folder: the
//! networks are loaded, the chains run (resumably, on the Fashion-MNIST
//! stack), and the folder gets `grid.png`, `chains.png`, `chains.gif`,
//! `samples.npy`, `labels.npy`, `manifest.json` (and `inpaint.png`,
//! `kept.npy` where asked). `ppgn sample` and `ppgn inpaint` are this
//! function behind flags.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Module, Tensor};

use super::chains::{random_starts, ChainsOutput, Outcome, Pipeline};
use super::fashion::{validate, Condition};
use super::folder::RunFolder;
use super::preset::PriorKind;
use super::progress::{drive, Progress};
use super::spec::{Init, Networks, Request, RunOutput, SampleSpec};
use crate::data::fashion_mnist::{self, parse_class, Split, CLASS_NAMES};
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
fn start_codes(spec: &SampleSpec, s: &Stack, n: usize, hole: Option<&Hole>) -> Result<Tensor> {
    let prior = spec.settings.prior;
    if prior == PriorKind::XDae {
        return match spec.init {
            Init::Random => random_images(n, spec.seed),
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
        (Init::Random, None) => return random_starts(prior, n, s.classifier.cfg.h_dim, spec.seed),
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
fn random_images(n: usize, seed: u64) -> Result<Tensor> {
    let z = Tensor::zeros((n, 28, 28, 1), candle_core::DType::F32, &Device::Cpu)?;
    let noise = crate::sampler::ChainRngs::new(seed ^ 0x5eed, n).normal_like(&z)?;
    Ok((noise * 0.2)?.affine(1.0, 0.5)?.clamp(0.0, 1.0)?)
}

fn fashion(
    spec: &SampleSpec,
    models: Option<&std::path::Path>,
    progress: &mut dyn Progress,
) -> Result<RunOutput> {
    let cfg = &spec.settings;
    let dir = stack::resolve_dir(models);
    let s = Stack::load(&dir, DType::F32, &Device::Cpu)?;
    // refuse what the machine cannot hold before building any chain
    super::estimate::fashion(spec, &s, false)?.check()?;
    let per_chain = fashion_classes(spec)?;
    let hole = hole(spec)?;
    let n = match spec.request {
        Request::Neuron { .. } => spec.chains,
        Request::Classes(_) => per_chain.len(),
    };
    let condition = match (&spec.request, &hole) {
        (Request::Neuron { layer, neuron }, _) => Condition::Neuron {
            layer: layer.clone(),
            neuron: *neuron,
        },
        (_, Some(h)) => Condition::Inpaint {
            classes: per_chain.clone(),
            real: h.real.clone(),
            mask: h.mask.clone(),
            weight: spec.inpaint.as_ref().map_or(1.0, |p| p.context_weight),
        },
        (_, None) => Condition::Classes(per_chain.clone()),
    };
    let h0 = start_codes(spec, &s, n, hole.as_ref())?;
    let neuron_spec = match &spec.request {
        Request::Neuron { layer, neuron } => Some(neuron_name(layer, neuron)),
        Request::Classes(_) => None,
    };
    validate(&s, cfg, &condition)?;
    let build = |c: &super::preset::SamplerConfig| Pipeline::fashion(&s, c, &condition);
    let (spec, tuned) = super::autotune::apply(spec, &build, &h0)?;
    let (spec, cfg) = (spec.as_ref(), &spec.settings);
    let pipeline = build(cfg)?;
    let request = request(spec, &per_chain, neuron_spec.as_deref(), hole.as_ref());
    let folder = RunFolder::open(&spec.out, spec.force, spec.resume)?;
    let result = run_resumable(spec, &pipeline, &h0, &request, &folder, progress);
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            // a fresh run that failed leaves nothing behind; an interrupted
            // one (or one being resumed) keeps its checkpoint
            if !spec.resume && !matches!(e, Error::Interrupted { .. }) {
                folder.discard();
            }
            return Err(e);
        }
    };
    let outputs = FashionOutputs {
        spec,
        stack: &s,
        models: &dir,
        per_chain: &per_chain,
        neuron: neuron_spec,
        backend: pipeline.backend,
        tuned: tuned.as_ref(),
    };
    let verdict = super::autotune::annotate(outputs.write(&folder, &result)?, tuned.as_ref());
    if let Some(h) = &hole {
        write_inpaint(&folder, h, &result.images)?;
    }
    folder.remove(super::chains::CHECKPOINT);
    Ok(RunOutput {
        dir: folder.finish()?,
        chains: n,
        steps: cfg.steps,
        preset: cfg.preset.clone(),
        wall_s: result.wall_s,
        verdict,
    })
}

/// What a checkpoint must match to be resumed: the settings and the
/// condition.
fn request(
    spec: &SampleSpec,
    per_chain: &[usize],
    neuron: Option<&str>,
    hole: Option<&Hole>,
) -> serde_json::Value {
    serde_json::json!({
        "sampler": &spec.settings, "classes": per_chain, "neuron": neuron, "seed": spec.seed,
        "init": spec.init.name(), "inpaint": hole.map(|h| &h.describe),
        "record_every": spec.record_every,
    })
}

/// `LAYER:UNIT[@X,Y]` as the user wrote it.
fn neuron_name(layer: &str, n: &crate::density::condition::Neuron) -> String {
    match n.at {
        Some((y, x)) => format!("{layer}:{}@{x},{y}", n.unit),
        None => format!("{layer}:{}", n.unit),
    }
}

/// The chains to the end, from the checkpoint in `folder` when resuming;
/// an interrupt saves the grid so far and returns [`Error::Interrupted`].
fn run_resumable(
    spec: &SampleSpec,
    pipeline: &Pipeline,
    h0: &Tensor,
    request: &serde_json::Value,
    folder: &RunFolder,
    progress: &mut dyn Progress,
) -> Result<ChainsOutput> {
    let cfg = &spec.settings;
    let resume = if spec.resume {
        Some(ChainsOutput::load_checkpoint(
            folder.staging(),
            request,
            &pipeline.decode,
        )?)
    } else {
        None
    };
    let outcome = drive(
        "sample",
        pipeline,
        cfg,
        h0,
        spec.seed,
        spec.record_every,
        resume,
        progress,
        |o| o.save_checkpoint(folder.staging(), request),
    )?;
    match outcome {
        Outcome::Finished(r) => Ok(r),
        Outcome::Interrupted(r) => {
            let n = r.images.dim(0)?;
            let images: Vec<f32> = r.images.flatten_all()?.to_vec1()?;
            folder.grid("grid.png", &images, n, (28, 28, 1), spec.chains)?;
            Err(Error::Interrupted {
                step: r.step,
                steps: cfg.steps,
                then: format!(
                    "the run so far is in {}; rerun the same command with --resume to finish it",
                    folder.staging().display()
                ),
            })
        }
    }
}

/// `inpaint.png` (one row: the original, the masked input, then every
/// fill) and `inpaint.json`.
fn write_inpaint(folder: &RunFolder, h: &Hole, fills: &Tensor) -> Result<()> {
    let n = fills.dim(0)?;
    let known = h.mask.affine(-1.0, 1.0)?;
    let row = Tensor::cat(&[h.real.clone(), (&h.real * known)?, fills.clone()], 0)?;
    let v: Vec<f32> = row.flatten_all()?.to_vec1()?;
    folder.grid("inpaint.png", &v, n + 2, (28, 28, 1), n + 2)?;
    folder.json("inpaint.json", &h.describe)
}

/// What the files of a finished Fashion-MNIST run are made from.
struct FashionOutputs<'a> {
    spec: &'a SampleSpec,
    stack: &'a Stack,
    models: &'a std::path::Path,
    per_chain: &'a [usize],
    neuron: Option<String>,
    backend: super::preset::Engine,
    /// What `--autotune` tried and chose.
    tuned: Option<&'a serde_json::Value>,
}

impl FashionOutputs<'_> {
    /// Writes the images, arrays and manifest; returns the verdict line.
    fn write(&self, folder: &RunFolder, r: &ChainsOutput) -> Result<String> {
        let n = r.images.dim(0)?;
        let cols = self.spec.chains;
        let images: Vec<f32> = r.images.flatten_all()?.to_vec1()?;
        let last = r.probability.last().cloned().unwrap_or_default();
        let labels: Vec<String> = last.iter().map(|v| format!("{v:.2}")).collect();
        folder.labelled_grid("grid.png", &images, n, (28, 28), cols, &labels)?;
        let snapshots: Vec<Vec<f32>> = r
            .snapshots
            .iter()
            .map(|t| t.flatten_all().and_then(|t| t.to_vec1()))
            .collect::<candle_core::Result<_>>()?;
        folder.gif("chains.gif", &snapshots, n, (28, 28, 1), cols)?;
        folder.filmstrip("chains.png", &snapshots, n, (28, 28, 1))?;
        folder.npy_f32("samples.npy", &[n, 1, 28, 28], &images)?;
        if let Some(th) = self.spec.keep_above {
            // S11: keep only the samples the condition network is sure of
            let keep: Vec<usize> = (0..n).filter(|&i| last[i] >= th).collect();
            let kept: Vec<f32> = keep
                .iter()
                .flat_map(|&i| images[i * 784..(i + 1) * 784].iter().copied())
                .collect();
            folder.npy_f32("kept.npy", &[keep.len(), 1, 28, 28], &kept)?;
            if !keep.is_empty() {
                folder.grid("kept.png", &kept, keep.len(), (28, 28, 1), cols)?;
            }
        }
        // -1: conditioned on a neuron, not a class
        let labels: Vec<i64> = (0..n)
            .map(|i| self.per_chain.get(i).map_or(-1, |&c| c as i64))
            .collect();
        folder.npy_i64("labels.npy", &[n], &labels)?;
        let eval_pred: Vec<u32> = self
            .stack
            .evaluator
            .forward(&r.images)?
            .argmax(1)?
            .to_vec1()?;
        let per_class = self.evaluator_accuracy(&eval_pred);
        folder.json("manifest.json", &self.manifest(r, &eval_pred, &per_class))?;
        let mean = last.iter().sum::<f64>() / n as f64;
        Ok(if per_class.is_empty() {
            format!("mean activation {mean:.3}")
        } else {
            format!(
                "mean p(class) {mean:.3}, evaluator agrees on {:.0}%",
                100.0 * per_class.values().sum::<f64>() / per_class.len() as f64
            )
        })
    }

    /// The evaluator's accuracy per requested class.
    fn evaluator_accuracy(&self, eval_pred: &[u32]) -> BTreeMap<String, f64> {
        let mut per_class = BTreeMap::new();
        let mut seen: Vec<usize> = self.per_chain.to_vec();
        seen.dedup();
        for c in seen {
            let idx: Vec<usize> = (0..self.per_chain.len())
                .filter(|&i| self.per_chain[i] == c)
                .collect();
            let ok = idx.iter().filter(|&&i| eval_pred[i] as usize == c).count();
            per_class.insert(CLASS_NAMES[c].to_string(), ok as f64 / idx.len() as f64);
        }
        per_class
    }

    fn manifest(
        &self,
        r: &ChainsOutput,
        eval_pred: &[u32],
        per_class: &BTreeMap<String, f64>,
    ) -> serde_json::Value {
        let spec = self.spec;
        let chains: Vec<serde_json::Value> = (0..eval_pred.len())
            .map(|i| {
                serde_json::json!({
                    "class": self.per_chain.get(i),
                    "class_name": self.per_chain.get(i).map(|&c| CLASS_NAMES[c]),
                    "condition_value": r.probability.iter().map(|p| p[i]).collect::<Vec<_>>(),
                    "final_condition_value": r.probability.last().map(|p| p[i]),
                    "evaluator_class": eval_pred[i],
                    "accept_rate": r.accepted[i] as f64 / spec.settings.steps.max(1) as f64,
                    "divergences": r.divergences[i],
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
            "sampler": spec.settings,
            "space": spec.settings.prior.space(),
            "backend": self.backend,
            "autotune": self.tuned,
            "models": {"folder": self.models.display().to_string(), "sha256": hashes},
            "grad_evals_per_chain": r.grad_evals,
            "adapted_step": r.adapt.as_ref().map(|da| da.final_step()),
            "steps": r.step,
            "wall_time_s": r.wall_s,
            "evaluator_accuracy_per_class": per_class,
            "chains": chains,
        })
    }
}
