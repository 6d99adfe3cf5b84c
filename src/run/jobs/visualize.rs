//! Pixel-space generation with EfficientNet-Lite0 alone (PPGN-x with
//! hand-designed priors, "Plug & Play Generative Networks"
//! (supplementary), S7): the chains move an image (or its decorrelated
//! Fourier coefficients) with `eps1 * (L2 + total variation + blur prior)
//! + eps2 * condition`, the condition seeing a jittered copy. Conditions:
//! any of the 1000 classes, or a hidden unit (layer, channel, spatial
//! position); several chains per condition from different random starts
//! show a unit's facets (the multifaceted feature visualisation of Figs.
//! S19-S20). `ppgn visualize` is [`visualize`] behind flags.

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::imagenet;
use crate::density::backend::Backend;
use crate::density::condition::{
    class_probability, unit_activation, ClassGradient, NetCondition, Neuron, Objective,
};
use crate::density::image::{fourier_decoder, jittered, BlurPrior, PixelL2, TotalVariation};
use crate::density::{Sum, Term};
use crate::error::{Error, Result};
use crate::models::efficientnet_lite::EfficientNetLite0;
use crate::models::plug::{is_sidecar, ClassifierSide};
use crate::models::pretrained;
use crate::nn::fast::{reference, Net};
use crate::nn::{identity, Func};
use crate::run::config::preset::{Choice, Engine, PriorKind, SamplerConfig, SamplerKind};
use crate::run::config::spec::{Request, RunOutput};
use crate::run::drive::chains::{Measure, Pipeline};
use crate::run::drive::progress::{drive_to_end, Progress};
use crate::run::output::folder::RunFolder;
use crate::sampler::schedule::Schedule;
use crate::sampler::ChainRngs;

/// What the chains move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Param {
    /// The pixels themselves, clipped to [0, 1].
    Pixel,
    /// Scaled cosine-basis coefficients through a sigmoid (decorrelated).
    Fourier,
}

impl Choice for Param {
    const ALL: &'static [Self] = &[Self::Pixel, Self::Fourier];
    const WHAT: &'static str = "parameterisation";
}

/// A visualisation job.
#[derive(Debug, Clone)]
pub struct VisualizeSpec {
    /// ImageNet classes by name or index, or a unit `LAYER:CHANNEL[@X,Y]`
    /// of EfficientNet (layers stem, block0..block15, head).
    pub request: Request,
    /// Chains per condition.
    pub chains: usize,
    /// `efficientnet-lite0` (built in, any `side`), or FILE.toml: an ONNX
    /// classifier's sidecar (docs/onnx.md; its own image size).
    pub classifier: String,
    pub param: Param,
    /// Image side (224 is EfficientNet's).
    pub side: usize,
    pub steps: usize,
    /// Step size normalised by the mean |gradient| [default: 0.2 for
    /// fourier, 0.005 for pixel].
    pub step: Option<f64>,
    pub eps1: f64,
    pub eps3: f64,
    pub l2: f64,
    pub tv: f64,
    pub blur: f64,
    pub blur_sigma: f64,
    pub jitter: usize,
    pub gradient: ClassGradient,
    pub engine: Engine,
    pub seed: u64,
    pub record_every: usize,
    pub out: PathBuf,
    pub force: bool,
    pub command: String,
}

impl VisualizeSpec {
    /// The step size in force.
    pub fn step_size(&self) -> f64 {
        self.step.unwrap_or(match self.param {
            Param::Fourier => 0.2,
            Param::Pixel => 0.005,
        })
    }

    /// Checks what can be checked before EfficientNet is loaded.
    pub fn validate(&self) -> Result<()> {
        if self.chains == 0 || self.steps == 0 || self.record_every == 0 {
            return Err(Error::setting(
                "chains, steps and record_every",
                format!("{}, {}, {}", self.chains, self.steps, self.record_every),
                "at least 1 each",
            ));
        }
        if !(32..=1024).contains(&self.side) {
            return Err(Error::setting(
                "side",
                self.side,
                "32 to 1024 pixels (EfficientNet needs at least 32; it was trained at 224)",
            ));
        }
        for (name, v) in [
            ("step", self.step_size()),
            ("eps1", self.eps1),
            ("eps3", self.eps3),
            ("l2", self.l2),
            ("tv", self.tv),
            ("blur", self.blur),
            ("blur_sigma", self.blur_sigma),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::setting(name, v, "a finite non-negative number"));
            }
        }
        RunFolder::check(&self.out, self.force, false)
    }

    /// The sampler settings: MALA-approx with the normalised step.
    fn settings(&self) -> Result<SamplerConfig> {
        Ok(SamplerConfig {
            preset: "visualize".into(),
            sampler: SamplerKind::MalaApprox,
            prior: PriorKind::None,
            eps1: self.eps1,
            eps2: 1.0,
            eps3: self.eps3,
            steps: self.steps,
            step: Schedule::Constant {
                value: self.step_size(),
            },
            normalise: true,
            clip: (self.param == Param::Pixel).then_some((0.0, 1.0)),
            gradient: self.gradient,
            ..crate::run::config::preset::preset("ppgn")?
        })
    }
}

/// The classifier and the functions every condition is built from.
struct Parts {
    /// The classifier on `side x side` RGB images in [0, 1], with its
    /// layers as taps.
    net: Net<f32>,
    side: usize,
    class_names: Vec<String>,
    provenance: serde_json::Value,
    decode: Func,
    logits: Func,
    /// What the engine's network reads: the decoded image, jittered (the
    /// same shifts as the reference path's, from the same stream).
    seen_decode: Func,
}

impl Parts {
    fn load(spec: &VisualizeSpec) -> Result<Self> {
        let home = pretrained::home();
        let (net, side, class_names, provenance) = if is_sidecar(&spec.classifier) {
            let c = ClassifierSide::named(&spec.classifier, &home, std::path::Path::new(""))?;
            let (_, h, w) = c.image;
            if h != w {
                return Err(Error::unsupported(
                    format!("a classifier that reads {h} x {w} images"),
                    "visualize makes square images; use a classifier with a square input",
                ));
            }
            (c.reading((h, w, 3))?, h, c.class_names, c.provenance)
        } else if spec.classifier == "efficientnet-lite0" {
            let eff = pretrained::efficientnet_lite0(&home, DType::F32)?;
            let norm = crate::nn::fast::build::net(
                (spec.side, spec.side, 3),
                vec![EfficientNetLite0::normalise_op()],
            )?;
            let names = imagenet::class_names()
                .into_iter()
                .map(String::from)
                .collect();
            let p = &pretrained::EFFICIENTNET_LITE0;
            let provenance = serde_json::json!({"name": p.name, "sha256": p.file_sha256});
            (
                norm.then(eff.compile(spec.side)?)?,
                spec.side,
                names,
                provenance,
            )
        } else {
            return Err(Error::unknown(
                "classifier for visualize",
                &spec.classifier,
                &["efficientnet-lite0", "FILE.toml (a sidecar, docs/onnx.md)"],
            ));
        };
        let decode: Func = match spec.param {
            Param::Pixel => identity(),
            Param::Fourier => fourier_decoder(side, 1.0),
        };
        let logits = reference::func(net.clone())?;
        let (d, j) = (
            decode.clone(),
            jittered(identity(), spec.jitter, spec.seed ^ 0x7177),
        );
        let seen_decode: Func = Arc::new(move |p: &Tensor| j(&d(p)?));
        Ok(Self {
            net,
            side,
            class_names,
            provenance,
            decode,
            logits,
            seen_decode,
        })
    }

    /// The class condition on `per_chain` and its measure `p(y | x)`.
    fn class(&self, spec: &VisualizeSpec, per_chain: &[usize]) -> Result<(Box<dyn Term>, Measure)> {
        let backend = Backend::new(Arc::new(self.net.clone()), spec.engine)?;
        let term = NetCondition::class(backend, per_chain.to_vec(), spec.gradient, 1.0, None)?
            .with_decode(self.seen_decode.clone())?;
        let (logits, classes) = (self.logits.clone(), per_chain.to_vec());
        let measure: Measure = Box::new(move |x: &Tensor| class_probability(&logits(x)?, &classes));
        Ok((Box::new(term), measure))
    }

    /// The unit condition and its measure, the unit's activation.
    fn unit(
        &self,
        spec: &VisualizeSpec,
        layer_name: &str,
        unit: Neuron,
    ) -> Result<(Box<dyn Term>, Measure)> {
        let net = self.net.upto(layer_name, false)?;
        let features = reference::func(net.clone())?;
        let backend = Backend::new(Arc::new(net), spec.engine)?;
        let term = NetCondition::new(backend, Objective::Unit(unit), 1.0, None)
            .map_err(|e| match e {
                Error::NoSuchUnit { neuron, shape, .. } => Error::NoSuchUnit {
                    neuron,
                    layer: layer_name.to_string(),
                    shape,
                },
                e => e,
            })?
            .with_decode(self.seen_decode.clone())?;
        let measure: Measure = Box::new(move |x: &Tensor| unit_activation(&features(x)?, unit));
        Ok((Box::new(term), measure))
    }

    /// The hand-designed priors that are switched on, weighted by eps1.
    fn priors(&self, spec: &VisualizeSpec) -> Vec<(f64, Box<dyn Term>)> {
        let decode = || self.decode.clone();
        let mut priors: Vec<(f64, Box<dyn Term>)> = Vec::new();
        if spec.l2 > 0.0 {
            priors.push((spec.eps1 * spec.l2, Box::new(PixelL2 { decode: decode() })));
        }
        if spec.tv > 0.0 {
            let tv = TotalVariation { decode: decode() };
            priors.push((spec.eps1 * spec.tv, Box::new(tv)));
        }
        if spec.blur > 0.0 {
            let blur = BlurPrior {
                decode: decode(),
                sigma: spec.blur_sigma,
            };
            priors.push((spec.eps1 * spec.blur, Box::new(blur)));
        }
        priors
    }
}

/// Starts: mid-grey plus a little noise in pixels, or small coefficients.
fn start(spec: &VisualizeSpec, side: usize, n: usize) -> Result<Tensor> {
    let zeros = Tensor::zeros((n, side, side, 3), DType::F32, &Device::Cpu)?;
    let noise = ChainRngs::new(spec.seed ^ 0x5eed, n).normal_like(&zeros)?;
    Ok(match spec.param {
        Param::Pixel => ((noise * 0.05)? + 0.5)?.clamp(0.0, 1.0)?,
        Param::Fourier => (noise * 0.1)?,
    })
}

/// Runs the job `spec` describes; a failed or interrupted run leaves nothing.
pub fn visualize(spec: &VisualizeSpec, progress: &mut dyn Progress) -> Result<RunOutput> {
    spec.validate()?;
    let parts = Parts::load(spec)?;
    let imagenet = parts.class_names.len() == 1000 && parts.class_names[0] == "tench";
    let what = if imagenet { "ImageNet class" } else { "class" };
    let (classes, neuron) = match &spec.request {
        Request::Classes(names) => (
            names
                .iter()
                .map(|s| imagenet::parse_class_in(s, &parts.class_names, what))
                .collect::<Result<Vec<_>>>()?,
            None,
        ),
        Request::Neuron { layer, neuron } => (Vec::new(), Some((layer.clone(), *neuron))),
    };
    let n = classes.len().max(1) * spec.chains;
    let per_chain: Vec<usize> = classes
        .iter()
        .flat_map(|&c| std::iter::repeat_n(c, spec.chains))
        .collect();
    let folder = RunFolder::open(&spec.out, spec.force, false)?;
    let job = Job {
        spec,
        parts: &parts,
        per_chain: &per_chain,
        neuron: neuron.as_ref(),
        n,
    };
    let ((verdict, wall_s), dir) = folder.fill(|f| job.run(f, progress))?;
    Ok(RunOutput {
        dir,
        chains: n,
        steps: spec.steps,
        preset: "visualize".into(),
        wall_s,
        verdict,
    })
}

/// One visualisation run's conditions.
struct Job<'a> {
    spec: &'a VisualizeSpec,
    parts: &'a Parts,
    per_chain: &'a [usize],
    neuron: Option<&'a (String, Neuron)>,
    n: usize,
}

impl Job<'_> {
    /// The chains and the files; returns the verdict and the wall time.
    fn run(&self, folder: &RunFolder, progress: &mut dyn Progress) -> Result<(String, f64)> {
        let (spec, parts) = (self.spec, self.parts);
        let (condition, measure) = match self.neuron {
            None => parts.class(spec, self.per_chain)?,
            Some((layer, unit)) => parts.unit(spec, layer, *unit)?,
        };
        let mut terms = parts.priors(spec);
        terms.push((1.0, condition));
        let cfg = spec.settings()?;
        let pipeline = Pipeline {
            target: Sum::new(terms),
            decode: parts.decode.clone(),
            measure,
            backend: spec.engine,
            retarget: None,
        };
        let start = start(spec, parts.side, self.n)?;
        let o = drive_to_end(
            "visualize",
            &pipeline,
            &cfg,
            &start,
            spec.seed,
            spec.record_every,
            progress,
        )?;
        let labels: Vec<i64> = match self.neuron {
            Some(_) => vec![-1; self.n],
            None => self.per_chain.iter().map(|&c| c as i64).collect(),
        };
        let rgb = RgbRun {
            decode: &parts.decode,
            to_rgb: &identity(),
            side: parts.side,
            cols: spec.chains,
        };
        rgb.write(folder, &o, &start, &labels)?;
        let top1: Vec<usize> = (parts.logits)(&o.images)?
            .argmax(1)?
            .to_vec1::<u32>()?
            .into_iter()
            .map(|v| v as usize)
            .collect();
        let (mut manifest, verdict) = self.manifest(&o, &top1);
        manifest["backend"] = serde_json::json!(pipeline.backend);
        folder.json("manifest.json", &manifest)?;
        Ok((verdict, o.wall_s))
    }

    fn manifest(
        &self,
        o: &crate::run::drive::chains::ChainsOutput,
        top1: &[usize],
    ) -> (serde_json::Value, String) {
        let (spec, n, per_chain) = (self.spec, self.n, self.per_chain);
        let names = &self.parts.class_names;
        let last = o.condition_value.last().cloned().unwrap_or_default();
        let chains: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!({
                    "class": per_chain.get(i), "class_name": per_chain.get(i).map(|&c| &names[c]),
                    "final_value": last.get(i), "top1": top1[i], "top1_name": names[top1[i]],
                    "value": o.condition_value.iter().map(|p| p[i]).collect::<Vec<_>>(),
                })
            })
            .collect();
        let hits = (0..per_chain.len())
            .filter(|&i| top1[i] == per_chain[i])
            .count();
        let mut classes: Vec<usize> = per_chain.to_vec();
        classes.dedup();
        let manifest = serde_json::json!({
            "command": spec.command,
            "seed": spec.seed,
            "classifier": &self.parts.provenance,
            "condition": match self.neuron {
                None => serde_json::json!({"classes": classes}),
                Some((l, u)) => serde_json::json!({"layer": l, "channel": u.unit, "at": u.at}),
            },
            "param": spec.param, "side": self.parts.side, "steps": spec.steps, "step": spec.step_size(),
            "eps1": spec.eps1, "eps3": spec.eps3, "l2": spec.l2, "tv": spec.tv, "blur": spec.blur,
            "blur_sigma": spec.blur_sigma, "jitter": spec.jitter, "gradient": spec.gradient,
            "engine": spec.engine,
            "chains_per_condition": spec.chains,
            "top1_is_requested_class": (self.neuron.is_none()).then(|| hits as f64 / n as f64),
            "wall_time_s": o.wall_s,
            "chains": chains,
        });
        let verdict = match self.neuron {
            None => format!("the classifier's top-1 class is the requested one for {hits} of {n}"),
            Some(_) => format!(
                "mean final activation {:.3}",
                last.iter().sum::<f64>() / n.max(1) as f64
            ),
        };
        (manifest, verdict)
    }
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
        o: &crate::run::drive::chains::ChainsOutput,
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
