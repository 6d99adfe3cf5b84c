//! A whole sampling job on any pair, from a [`SampleSpec`] to a run
//! folder: the pair is loaded (`crate::run::pairs::load`), what it cannot do is
//! refused (`crate::run::pairs::pair::refuse_missing`), the chains run in batches with
//! checkpoints (`crate::run::drive::batched`: `--batch`, `--shard`, `--resume`), and
//! the folder gets `grid.png`, `start.png`, `chains.png`, `chains.gif`,
//! `samples.npy`, `labels.npy`, `manifest.json` (and `inpaint.png`,
//! `kept.npy` where asked; `crate::run::output::outputs`). `ppgn sample`, `ppgn
//! inpaint` and `ppgn serve`'s runs are this function behind flags.

use std::ops::Range;
use std::sync::Arc;

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::run::config::preset::SamplerConfig;
use crate::run::config::spec::{Init, Request, RunOutput, SampleSpec, STORED};
use crate::run::drive::batched::{shown_chains, Batches, SHOWN_PER_ROW};
use crate::run::drive::chains::Pipeline;
use crate::run::drive::init::Starts;
use crate::run::drive::progress::Progress;
use crate::run::drive::shard::Plan;
use crate::run::output::folder::RunFolder;
use crate::run::output::outputs::{write_inpaint, Hole, Outputs};
use crate::run::pairs::pair::{refuse_missing, Condition, Pair, Part};

/// Runs the job `spec` describes, reporting to `progress`. An interrupted
/// run keeps its checkpoint for `spec.resume`; any other failure leaves
/// nothing behind.
pub fn sample(spec: &SampleSpec, progress: &mut dyn Progress) -> Result<RunOutput> {
    spec.validate()?;
    let pair = crate::run::pairs::load::pair(&spec.networks, spec.data_dir.as_deref())?;
    run(spec, pair, progress)
}

/// What the flags of `spec` need of a pair.
fn needs(spec: &SampleSpec) -> Vec<(Part, &'static str)> {
    let mut needs = Vec::new();
    match spec.init {
        Init::Test(_) => needs.extend([
            (Part::Data, "--init test:N"),
            (Part::Encoder, "--init test:N"),
        ]),
        Init::Images(_) => needs.push((Part::Encoder, "--init images:FILE")),
        _ => {}
    }
    if spec.inpaint.as_ref().is_some_and(|p| p.file.is_none()) {
        needs.push((Part::Data, "inpainting a test:N image"));
    }
    needs
}

/// [`sample`] on a loaded pair.
pub fn run(
    spec: &SampleSpec,
    pair: Arc<dyn Pair>,
    progress: &mut dyn Progress,
) -> Result<RunOutput> {
    refuse_missing(&*pair, &needs(spec))?;
    let per_chain = classes(spec, &*pair)?;
    let hole = Hole::of(spec, &*pair)?;
    let plan = plan(spec, &*pair, &per_chain)?;
    let condition = |chains: &[usize]| condition(spec, &per_chain, hole.as_ref(), chains);
    // the kernel can run on the target, before anything is written
    spec.settings
        .kernel()?
        .check(&pair.pipeline(&spec.settings, &condition(&[0]))?.target)?;
    let holes = hole.as_ref().map(|h| (&h.real, &h.mask));
    let starts = Starts::new(
        &spec.init,
        &*pair,
        &spec.settings,
        spec.seed,
        holes,
        plan.chains,
    )?;
    let original = spec;
    let (spec, tuned) = autotuned(spec, &*pair, &plan, &starts, &condition)?;
    let (spec, cfg) = (spec.as_ref(), &spec.settings);
    let request = request(spec, &plan, &per_chain, hole.as_ref());
    let folder = RunFolder::open(&spec.out, spec.force, spec.resume)?.with_scale(spec.scale);
    if !spec.resume {
        folder.json(STORED, &serde_json::to_value(original).expect("serialises"))?;
    }
    let display = |x: &Tensor| pair.display(x);
    let batches = Batches {
        plan,
        cfg,
        seed: spec.seed,
        record_every: spec.record_every,
        request: &request,
        folder: &folder,
        hwc: pair.image(),
        display: &display,
    };
    let shown = shown_chains(plan.shard_chains(), spec.chains, SHOWN_PER_ROW);
    let mut make = |chains: Range<usize>| -> Result<(Pipeline, Tensor)> {
        let pipeline = steerable(&pair, cfg, condition(&chains.clone().collect::<Vec<_>>()))?;
        Ok((pipeline, starts.of(cfg, chains)?))
    };
    let evaluate = |x: &Tensor| pair.evaluate(x);
    let (done, seen) = match batches.run(spec.resume, &shown, &mut make, &evaluate, progress) {
        Ok(r) => r,
        Err(e) => return Err(failed(spec, folder, e)),
    };
    let outputs = Outputs {
        spec,
        pair: &*pair,
        per_chain: &per_chain,
        plan,
        tuned: tuned.as_ref(),
    };
    let verdict = super::autotune::annotate(outputs.write(&folder, &done, &seen)?, tuned.as_ref());
    if let Some(h) = &hole {
        write_inpaint(&folder, &*pair, h, &seen)?;
    }
    folder.remove(crate::run::drive::chains::CHECKPOINT);
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

/// `spec` with what `--autotune` chooses, when it asks for it: the pilot
/// runs on a share of the whole run's chains, whichever the shard, in
/// batches no larger than the run's.
fn autotuned<'a>(
    spec: &'a SampleSpec,
    pair: &dyn Pair,
    plan: &Plan,
    starts: &Starts,
    condition: &dyn Fn(&[usize]) -> Condition,
) -> Result<(std::borrow::Cow<'a, SampleSpec>, Option<serde_json::Value>)> {
    let build = |c: &SamplerConfig, chains: &[usize]| pair.pipeline(c, &condition(chains));
    let starts_of = |chains: &[usize]| -> Result<Tensor> {
        let rows = chains
            .iter()
            .map(|&i| starts.of(&spec.settings, i..i + 1))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&rows, 0)?)
    };
    let run = super::autotune::Run {
        chains: 0..plan.chains,
        starts: &starts_of,
        batch: plan.batch,
    };
    super::autotune::apply(spec, &build, &run)
}

/// The pipeline of `condition` whose target can be rebuilt for other
/// weights (`crate::run::config::steer`: `ppgn serve`'s sliders), on every pair.
fn steerable(pair: &Arc<dyn Pair>, cfg: &SamplerConfig, condition: Condition) -> Result<Pipeline> {
    let mut pipeline = pair.pipeline(cfg, &condition)?;
    let p = pair.clone();
    pipeline.retarget = Some(Box::new(move |cfg| Ok(p.pipeline(cfg, &condition)?.target)));
    Ok(pipeline)
}

/// The classes of `spec`'s request on `pair`, one per chain (none for a
/// neuron).
fn classes(spec: &SampleSpec, pair: &dyn Pair) -> Result<Vec<usize>> {
    let names = match &spec.request {
        Request::Neuron { .. } => return Ok(Vec::new()),
        Request::Classes(names) => names,
    };
    let count = pair.class_names().len();
    let classes: Vec<usize> = match names.as_slice() {
        [all] if all == "all" && count <= ALL_AT_MOST => (0..count).collect(),
        [all] if all == "all" => {
            return Err(Error::setting(
                "class",
                format!("all ({count} classes of {})", pair.names().1),
                format!(
                "at most {ALL_AT_MOST} classes for `all`; name the classes, separated by commas"
            ),
            ))
        }
        _ => names
            .iter()
            .map(|s| pair.parse_class(s))
            .collect::<Result<_>>()?,
    };
    Ok(classes
        .iter()
        .flat_map(|&c| std::iter::repeat_n(c, spec.chains))
        .collect())
}

/// The most classes `--class all` expands to.
const ALL_AT_MOST: usize = 100;

/// The run's batches and this shard's share, after refusing what the
/// machine cannot hold (before building any chain).
fn plan(spec: &SampleSpec, pair: &dyn Pair, per_chain: &[usize]) -> Result<Plan> {
    let n = match spec.request {
        Request::Neuron { .. } => spec.chains,
        Request::Classes(_) => per_chain.len(),
    };
    let estimate = crate::run::drive::estimate::of(spec, pair, n, false)?;
    estimate.check()?;
    Plan::new(n, spec.batch.unwrap_or(estimate.batch), spec.shard)
}

/// What a failed run leaves and says: a fresh run that failed leaves
/// nothing behind; an interrupted one (or one being resumed) keeps its
/// checkpoint; on a full disk the last checkpoint is kept and the message
/// says to free space and resume.
fn failed(spec: &SampleSpec, folder: RunFolder, e: Error) -> Error {
    let checkpoint = folder.staging().join(crate::run::drive::chains::CHECKPOINT);
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
    chains: &[usize],
) -> Condition {
    let classes = || chains.iter().map(|&i| per_chain[i]).collect();
    match (&spec.request, hole) {
        (Request::Neuron { layer, neuron }, _) => Condition::Neuron {
            layer: layer.clone(),
            neuron: *neuron,
        },
        (_, Some(h)) => Condition::Inpaint {
            classes: classes(),
            real: h.real.clone(),
            mask: h.mask.clone(),
            weight: spec.inpaint.as_ref().map_or(1.0, |p| p.context_weight),
        },
        (_, None) => Condition::Classes(classes()),
    }
}

/// What a checkpoint must match to be resumed: the settings and the
/// condition.
fn request(
    spec: &SampleSpec,
    plan: &Plan,
    per_chain: &[usize],
    hole: Option<&Hole>,
) -> serde_json::Value {
    let neuron = match &spec.request {
        Request::Neuron { layer, neuron } => {
            Some(crate::run::output::outputs::neuron_name(layer, neuron))
        }
        Request::Classes(_) => None,
    };
    serde_json::json!({
        "sampler": &spec.settings, "classes": per_chain, "neuron": neuron, "seed": spec.seed,
        "init": spec.init.name(), "inpaint": hole.map(|h| &h.describe),
        "record_every": spec.record_every, "batch": plan.batch, "shard": plan.shard,
    })
}
