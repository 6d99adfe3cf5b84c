//! A sampling job on a pretrained pair we did not train (`dcgan-faces` +
//! `efficientnet-lite0`, or `dgn-fc6` + `alexnet`): same samplers and
//! presets as the Fashion-MNIST runs; the run folder holds grid.png (final
//! images, one row per class), start.png (the unconditioned images G(z0)
//! of the same seeds), chains.png (each chain over time), samples.npy
//! (float32 N x 3 x side x side in [0, 1]), labels.npy and manifest.json
//! (settings, weights' SHA-256, per-chain p(y|x) and the classifier's
//! top-1 class, the fraction of chains whose top-1 class is the requested
//! one, per class). These runs do not resume.

use std::collections::BTreeMap;

use candle_core::Tensor;

use super::chains::ChainsOutput;
use super::folder::RunFolder;
use super::preset::SamplerConfig;
use super::pretrained::PlugPair;
use super::progress::{drive_to_end, Progress};
use super::spec::{Networks, Request, RunOutput, SampleSpec};
use crate::error::{Error, Result};
use crate::models::caffe::{CaffeNetConfig, DgnConfig};
use crate::models::plug::{ClassifierSide, GeneratorSide};
use crate::models::pretrained;
use crate::nn::Func;

/// Runs `spec` on its pretrained pair.
pub fn sample(spec: &SampleSpec, progress: &mut dyn Progress) -> Result<RunOutput> {
    let cfg = &spec.settings;
    let pair = match &spec.networks {
        Networks::Plug {
            generator,
            classifier,
            models,
        } => {
            let home = pretrained::home();
            let models = crate::models::fashion::resolve_dir(models.as_deref());
            PlugPair::compose(
                GeneratorSide::named(generator, &home)?,
                ClassifierSide::named(classifier, &home, &models)?,
            )?
        }
        Networks::Caffe { weights } => {
            PlugPair::caffe(weights, DgnConfig::fc6(), CaffeNetConfig::caffenet())?
        }
        Networks::Fashion { .. } => {
            return Err(Error::unsupported(
                "the Fashion-MNIST stack in the pretrained job",
                "run it through run::sample",
            ))
        }
    };
    let (per_chain, pipeline) = match &spec.request {
        Request::Classes(names) => {
            let classes: Vec<usize> = match names.as_slice() {
                [all] if all == "all" && pair.num_classes <= 100 => (0..pair.num_classes).collect(),
                _ => names
                    .iter()
                    .map(|s| pair.parse_class(s))
                    .collect::<Result<_>>()?,
            };
            let per_chain: Vec<usize> = classes
                .iter()
                .flat_map(|&c| std::iter::repeat_n(c, spec.chains))
                .collect();
            let pipeline = pair.pipeline(&per_chain, cfg)?;
            (per_chain, pipeline)
        }
        // one unit of a classifier's layer; the chains' labels are 0
        Request::Neuron { layer, neuron } => (
            vec![0; spec.chains],
            pair.unit_pipeline(layer, *neuron, cfg)?,
        ),
    };
    let n = per_chain.len();
    let z0 = pair.initial_codes(n, spec.seed)?;
    // --autotune: a pilot from the same starts chooses the settings
    let build = |c: &SamplerConfig| match &spec.request {
        Request::Classes(_) => pair.pipeline(&per_chain, c),
        Request::Neuron { layer, neuron } => pair.unit_pipeline(layer, *neuron, c),
    };
    let (spec, tuned) = super::autotune::apply(spec, &build, &z0)?;
    let pipeline = match &tuned {
        Some(_) => build(&spec.settings)?,
        None => pipeline,
    };
    let (spec, cfg) = (spec.as_ref(), &spec.settings);
    let folder = RunFolder::open(&spec.out, spec.force, false)?.with_scale(spec.scale);
    let job = Job {
        spec,
        pair: &pair,
        pipeline: &pipeline,
        per_chain: &per_chain,
        tuned: tuned.as_ref(),
    };
    let ((verdict, wall_s), dir) = folder.fill(|f| job.run(&z0, f, progress))?;
    let verdict = super::autotune::annotate(verdict, tuned.as_ref());
    Ok(RunOutput {
        dir,
        chains: n,
        steps: cfg.steps,
        preset: cfg.preset.clone(),
        wall_s,
        verdict,
    })
}

/// One pretrained run's networks and chains.
struct Job<'a> {
    spec: &'a SampleSpec,
    pair: &'a PlugPair,
    pipeline: &'a super::chains::Pipeline,
    per_chain: &'a [usize],
    /// What `--autotune` tried and chose.
    tuned: Option<&'a serde_json::Value>,
}

impl Job<'_> {
    /// The chains from `z0` and the files; returns the verdict and the wall time.
    fn run(
        &self,
        z0: &Tensor,
        folder: &RunFolder,
        progress: &mut dyn Progress,
    ) -> Result<(String, f64)> {
        let spec = self.spec;
        let o = drive_to_end(
            "sample",
            self.pipeline,
            &spec.settings,
            z0,
            spec.seed,
            spec.record_every,
            progress,
        )?;
        let labels: Vec<i64> = self.per_chain.iter().map(|&c| c as i64).collect();
        let rgb = RgbRun {
            decode: &self.pipeline.decode,
            to_rgb: &self.pair.to_rgb,
            side: self.pair.side,
            cols: spec.chains,
        };
        rgb.write(folder, &o, z0, &labels)?;
        let (mut manifest, top1) = manifest(spec, self.pair, &o, self.per_chain)?;
        manifest["backend"] = serde_json::json!(self.pipeline.backend);
        manifest["autotune"] = serde_json::json!(self.tuned);
        let verdict = if let Request::Neuron { layer, neuron } = &spec.request {
            // the chains' condition value is the unit's activation
            let mean = |p: Option<&Vec<f64>>| {
                p.map_or(0.0, |p| p.iter().sum::<f64>() / p.len().max(1) as f64)
            };
            manifest["neuron"] =
                serde_json::json!({"layer": layer, "unit": neuron.unit, "at": neuron.at});
            format!(
                "unit {} of layer {layer}: mean activation {:.3} -> {:.3}",
                neuron.unit,
                mean(o.probability.first()),
                mean(o.probability.last())
            )
        } else {
            let summary: Vec<String> = top1
                .iter()
                .map(|(c, f)| format!("{c} {:.0}%", 100.0 * f))
                .collect();
            format!(
                "the classifier's top-1 class is the requested one for {}",
                summary.join(", ")
            )
        };
        folder.json("manifest.json", &manifest)?;
        Ok((verdict, o.wall_s))
    }
}

/// The manifest and the fraction of chains, per class name, whose top-1
/// class is the requested one.
fn manifest(
    spec: &SampleSpec,
    pair: &PlugPair,
    o: &ChainsOutput,
    per_chain: &[usize],
) -> Result<(serde_json::Value, BTreeMap<String, f64>)> {
    let names = &pair.class_names;
    let top1 = pair.top1(&o.images)?;
    let last_p = o.probability.last().cloned().unwrap_or_default();
    let mut hits: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    let chains: Vec<serde_json::Value> = (0..per_chain.len())
        .map(|i| {
            let e = hits.entry(per_chain[i]).or_default();
            e.0 += (top1[i] == per_chain[i]) as usize;
            e.1 += 1;
            serde_json::json!({
                "class": per_chain[i], "class_name": names[per_chain[i]],
                "final_condition_value": last_p.get(i), "top1": top1[i], "top1_name": names[top1[i]],
                "accept_rate": o.accepted[i] as f64 / o.step.max(1) as f64,
                "divergences": o.divergences[i],
                "condition_value": o.probability.iter().map(|p| p[i]).collect::<Vec<_>>(),
            })
        })
        .collect();
    let top1_fraction: BTreeMap<String, f64> = hits
        .iter()
        .map(|(c, (h, t))| (names[*c].to_string(), *h as f64 / *t as f64))
        .collect();
    let manifest = serde_json::json!({
        "command": spec.command,
        "seed": spec.seed,
        "networks": &pair.provenance,
        "sampler": &spec.settings,
        "chains_per_class": spec.chains,
        "steps": o.step,
        "grad_evals_per_chain": o.grad_evals,
            "adapted_step": o.adapt.as_ref().map(|da| da.final_step()),
        "record_every": spec.record_every,
        "wall_time_s": o.wall_s,
        "top1_is_requested_class": &top1_fraction,
        "chains": chains,
    });
    Ok((manifest, top1_fraction))
}

/// The files of a run whose images are RGB: grid.png (final images, `cols`
/// per row), start.png (the decoded starting positions), chains.png (each
/// chain over time), samples.npy (`[n, 3, side, side]` in [0, 1]) and
/// labels.npy; `to_rgb` maps decoded images to RGB in [0, 1].
pub struct RgbRun<'a> {
    pub decode: &'a Func,
    pub to_rgb: &'a Func,
    pub side: usize,
    pub cols: usize,
}

impl RgbRun<'_> {
    pub fn write(
        &self,
        folder: &RunFolder,
        o: &ChainsOutput,
        start: &Tensor,
        labels: &[i64],
    ) -> Result<()> {
        let rgb = |t: &Tensor| -> Result<Vec<f32>> {
            Ok((self.to_rgb)(t)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let n = o.images.dim(0)?;
        let hwc = (self.side, self.side, 3);
        folder.grid("grid.png", &rgb(&o.images)?, n, hwc, self.cols)?;
        folder.grid(
            "start.png",
            &rgb(&(self.decode)(start)?)?,
            n,
            hwc,
            self.cols,
        )?;
        let snaps: Vec<Vec<f32>> = o.snapshots.iter().map(rgb).collect::<Result<_>>()?;
        folder.filmstrip("chains.png", &snaps, n, hwc)?;
        let nchw: Vec<f32> = (self.to_rgb)(&o.images)?
            .permute((0, 3, 1, 2))?
            .flatten_all()?
            .to_vec1::<f32>()?;
        folder.npy_f32("samples.npy", &[n, 3, self.side, self.side], &nchw)?;
        folder.npy_i64("labels.npy", &[n], labels)
    }
}
