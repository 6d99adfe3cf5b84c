//! `ppgn visualize`: pixel-space generation with EfficientNet-Lite0 alone
//! (PPGN-x with hand-designed priors, "Plug & Play Generative Networks" (supplementary), S7):
//! the chains move an image (or its decorrelated Fourier coefficients)
//! with `eps1 * (L2 + total variation + blur prior) + eps2 * condition`,
//! the condition seeing a jittered copy. Conditions: any of the 1000
//! classes, or a hidden unit (layer, channel, spatial position); several
//! chains per condition from different random starts show a unit's facets
//! (the multifaceted feature visualisation of Figs. S19-S20).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use candle_core::{DType, Device, Tensor};
use clap::{Args, ValueEnum};

use super::run_folder::new_run_dir;
use super::run_folder::{build_in, run_to_end, write_manifest, write_rgb_files};
use ppgn::data::imagenet;
use ppgn::density::condition::Neuron;
use ppgn::density::condition::{ClassCondition, ClassGradient, NeuronCondition};
use ppgn::density::engine::{EngineCondition, Objective};
use ppgn::density::image::{fourier_decoder, jittered, BlurPrior, PixelL2, TotalVariation};
use ppgn::density::{Sum, Term};
use ppgn::models::efficientnet_lite::{self, EfficientNetLite0, Layer};
use ppgn::models::pretrained;
use ppgn::nn::{identity, Func};
use ppgn::run::chains::Pipeline;
use ppgn::run::preset::{Engine, PriorKind, SamplerConfig, SamplerKind};
use ppgn::sampler::schedule::Schedule;
use ppgn::sampler::ChainRngs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Param {
    /// The pixels themselves, clipped to [0, 1].
    Pixel,
    /// Scaled cosine-basis coefficients through a sigmoid (decorrelated).
    Fourier,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Writes grid.png (one row per condition, --chains per row), start.png, \
chains.png, samples.npy (float32 N x 3 x side x side in [0, 1]), labels.npy (class, or -1 for \
a neuron) and manifest.json (settings, weights' SHA-256, per-chain condition values, \
EfficientNet's top-1 class). EfficientNet-Lite0 must be installed: `ppgn models fetch`."
)]
pub struct VisualizeArgs {
    /// ImageNet class(es) by name or index, comma-separated.
    #[arg(long, default_value = "goldfish")]
    pub class: String,
    /// A hidden unit instead: LAYER:CHANNEL[@X,Y], layers stem, block0..block15,
    /// head (post-activation; the centre when no position is given).
    #[arg(long)]
    pub neuron: Option<String>,
    /// Chains per condition (different random starts: different facets).
    #[arg(long, default_value_t = 4)]
    pub chains: usize,
    #[arg(long, value_enum, default_value = "fourier")]
    pub param: Param,
    /// Image side (224 is EfficientNet's; smaller is faster).
    #[arg(long, default_value_t = 128)]
    pub side: usize,
    #[arg(long, default_value_t = 150)]
    pub steps: usize,
    /// Step size, normalised by the mean |gradient| (MALA-approx, eq. 13)
    /// [default: 0.2 for fourier, 0.005 for pixel (measured: 0.02 stayed at
    /// p 0.15 after 40 steps at side 64, 0.005 reached 1.0)].
    #[arg(long)]
    pub step: Option<f64>,
    /// Weight of the hand-designed priors (eps1).
    #[arg(long, default_value_t = 1.0)]
    pub eps1: f64,
    /// Noise std (eps3).
    #[arg(long, default_value_t = 0.0)]
    pub eps3: f64,
    /// L2 decay toward mid-grey, per pixel.
    #[arg(long, default_value_t = 1e-3)]
    pub l2: f64,
    /// Total variation weight.
    #[arg(long, default_value_t = 1e-2)]
    pub tv: f64,
    /// Blur prior weight (a step toward the blurred image, sigma --blur-sigma).
    #[arg(long, default_value_t = 0.0)]
    pub blur: f64,
    #[arg(long, default_value_t = 1.0)]
    pub blur_sigma: f64,
    /// Random shift (pixels) of the image the condition sees, every step.
    #[arg(long, default_value_t = 8)]
    pub jitter: usize,
    /// Which class gradient: logit (DGN-AM) or log-softmax.
    #[arg(long, value_parser = ["logit", "log-softmax"], default_value = "logit")]
    pub gradient: String,
    /// What computes EfficientNet's gradients: `fast` (the sampling
    /// engine) or `reference` (candle's autograd).
    #[arg(long, value_parser = super::choice::<Engine>(), default_value = "fast")]
    pub engine: Engine,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 20)]
    pub record_every: usize,
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub force: bool,
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(a: VisualizeArgs) -> anyhow::Result<()> {
    if a.chains == 0 || a.steps == 0 {
        bail!("--chains and --steps must be at least 1");
    }
    if !(32..=1024).contains(&a.side) {
        bail!(
            "--side {}: expected 32 to 1024 pixels (EfficientNet needs at least 32; it was trained at 224)",
            a.side
        );
    }
    let step = a.step.unwrap_or(match a.param {
        Param::Fourier => 0.2,
        Param::Pixel => 0.005,
    });
    for (flag, v) in [
        ("--step", step),
        ("--eps1", a.eps1),
        ("--eps3", a.eps3),
        ("--l2", a.l2),
        ("--tv", a.tv),
        ("--blur", a.blur),
        ("--blur-sigma", a.blur_sigma),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            bail!("{flag} must be a finite non-negative number, got {v}");
        }
    }
    let neuron = a
        .neuron
        .as_deref()
        .map(|n| Neuron::parse(n, "stem, block0..block15, head"))
        .transpose()?;
    let classes: Vec<usize> = if neuron.is_some() {
        Vec::new()
    } else {
        a.class
            .split(',')
            .map(imagenet::parse_class)
            .collect::<Result<_, _>>()?
    };
    let conditions = if neuron.is_some() { 1 } else { classes.len() };
    let n = conditions * a.chains;
    let out = a.out.clone().unwrap_or_else(new_run_dir);
    build_in(&out, a.force, |tmp| -> anyhow::Result<()> {
        let net = Arc::new(pretrained::efficientnet_lite0(
            &pretrained::home(),
            DType::F32,
        )?);
        let decode: Func = match a.param {
            Param::Pixel => identity(),
            Param::Fourier => fourier_decoder(a.side, 1.0),
        };
        let c = net.clone();
        let logits: Func = Arc::new(move |x: &Tensor| c.forward(&EfficientNetLite0::normalise(x)?));
        let seen = jittered(logits.clone(), a.jitter, a.seed ^ 0x7177);
        // what the engine's network reads: the decoded image, jittered (the
        // same shifts as `seen`'s, from the same stream)
        let seen_decode: Func = {
            let (d, j) = (
                decode.clone(),
                jittered(identity(), a.jitter, a.seed ^ 0x7177),
            );
            Arc::new(move |p: &Tensor| j(&d(p)?))
        };
        let gradient = if a.gradient == "logit" {
            ClassGradient::Logit
        } else {
            ClassGradient::LogSoftmax
        };
        let per_chain: Vec<usize> = classes
            .iter()
            .flat_map(|&c| std::iter::repeat_n(c, a.chains))
            .collect();
        let (condition, measure): (Box<dyn Term>, ppgn::run::chains::Measure) = match &neuron {
            None => {
                let cc = |logits: Func, decode: Func| ClassCondition {
                    decode,
                    logits,
                    classes: per_chain.clone(),
                    num_classes: efficientnet_lite::NUM_CLASSES,
                    gradient,
                };
                let probe = cc(logits.clone(), identity());
                let term: Box<dyn Term> = match a.engine {
                    Engine::Fast => Box::new(
                        EngineCondition::class(
                            Arc::new(engine_net(&net, a.side, None)?),
                            per_chain.clone(),
                            gradient,
                            1.0,
                            None,
                        )?
                        .with_decode(seen_decode.clone())?,
                    ),
                    Engine::Reference => Box::new(cc(seen, decode.clone())),
                };
                (term, Box::new(move |x: &Tensor| probe.probability(x)))
            }
            Some((layer_name, unit)) => {
                let layer = Layer::parse(layer_name).ok_or_else(|| {
                    anyhow::anyhow!("--neuron: unknown layer {layer_name:?}; the layers are stem, block0..block15, head")
                })?;
                if unit.unit >= layer.channels() {
                    bail!(
                        "--neuron: layer {layer_name} has {} channels, not {}",
                        layer.channels(),
                        unit.unit + 1
                    );
                }
                let c = net.clone();
                let features: Func = Arc::new(move |x: &Tensor| {
                    c.features(&EfficientNetLite0::normalise(x)?, layer)
                });
                let make = |layer: Func, decode: Func| NeuronCondition {
                    decode,
                    layer,
                    layer_name: layer_name.clone(),
                    neuron: *unit,
                };
                let term: Box<dyn Term> = match a.engine {
                    Engine::Fast => Box::new(
                        EngineCondition::new(
                            Arc::new(engine_net(&net, a.side, Some(layer))?),
                            Objective::Unit(*unit),
                            1.0,
                            None,
                        )?
                        .with_decode(seen_decode.clone())?,
                    ),
                    Engine::Reference => Box::new(make(
                        jittered(features.clone(), a.jitter, a.seed ^ 0x7177),
                        decode.clone(),
                    )),
                };
                let zeros = Tensor::zeros((1, a.side, a.side, 3), DType::F32, &Device::Cpu)?;
                make(features.clone(), identity()).validate(&zeros)?;
                let probe = make(features, identity());
                (
                    term,
                    Box::new(move |x: &Tensor| {
                        let act = probe.activation(&(probe.layer)(x)?)?;
                        Ok(act.to_dtype(DType::F64)?.to_vec1()?)
                    }),
                )
            }
        };
        let mut priors: Vec<(f64, Box<dyn Term>)> = Vec::new();
        if a.l2 > 0.0 {
            priors.push((
                a.eps1 * a.l2,
                Box::new(PixelL2 {
                    decode: decode.clone(),
                }),
            ));
        }
        if a.tv > 0.0 {
            priors.push((
                a.eps1 * a.tv,
                Box::new(TotalVariation {
                    decode: decode.clone(),
                }),
            ));
        }
        if a.blur > 0.0 {
            priors.push((
                a.eps1 * a.blur,
                Box::new(BlurPrior {
                    decode: decode.clone(),
                    sigma: a.blur_sigma,
                }),
            ));
        }
        priors.push((1.0, condition));
        let cfg = SamplerConfig {
            preset: "visualize".into(),
            sampler: SamplerKind::MalaApprox,
            prior: PriorKind::None,
            eps1: a.eps1,
            eps2: 1.0,
            eps3: a.eps3,
            steps: a.steps,
            step: Schedule::Constant { value: step },
            normalise: true,
            clip: (a.param == Param::Pixel).then_some((0.0, 1.0)),
            gradient,
            ..ppgn::run::preset::preset("ppgn")?
        };
        let pipeline = Pipeline {
            target: Sum::new(priors),
            decode: decode.clone(),
            measure,
        };
        // starts: mid-grey plus a little noise in pixels, or small coefficients
        let zeros = Tensor::zeros((n, a.side, a.side, 3), DType::F32, &Device::Cpu)?;
        let noise = ChainRngs::new(a.seed ^ 0x5eed, n).normal_like(&zeros)?;
        let start = match a.param {
            Param::Pixel => ((noise * 0.05)? + 0.5)?.clamp(0.0, 1.0)?,
            Param::Fourier => (noise * 0.1)?,
        };
        let o = run_to_end(
            &pipeline,
            &cfg,
            &start,
            a.seed,
            a.record_every,
            a.quiet,
            "visualize",
        )?;
        let labels: Vec<i64> = if neuron.is_some() {
            vec![-1; n]
        } else {
            per_chain.iter().map(|&c| c as i64).collect()
        };
        write_rgb_files(
            tmp,
            &o,
            &start,
            &decode,
            &identity(),
            a.side,
            a.chains,
            &labels,
        )?;
        let names = imagenet::class_names();
        let top1: Vec<usize> = logits(&o.images)?
            .argmax(1)?
            .to_vec1::<u32>()?
            .into_iter()
            .map(|v| v as usize)
            .collect();
        let last = o.probability.last().cloned().unwrap_or_default();
        let chains: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!({
                    "class": per_chain.get(i), "class_name": per_chain.get(i).map(|&c| names[c]),
                    "final_value": last.get(i), "top1": top1[i], "top1_name": names[top1[i]],
                    "value": o.probability.iter().map(|p| p[i]).collect::<Vec<_>>(),
                })
            })
            .collect();
        let hits = (0..per_chain.len())
            .filter(|&i| top1[i] == per_chain[i])
            .count();
        let manifest = serde_json::json!({
            "command": super::command_line(),
            "seed": a.seed,
            "classifier": {"name": pretrained::EFFICIENTNET_LITE0.name, "sha256": pretrained::EFFICIENTNET_LITE0.file_sha256},
            "condition": match &neuron {
                None => serde_json::json!({"classes": classes}),
                Some((l, u)) => serde_json::json!({"layer": l, "channel": u.unit, "at": u.at}),
            },
            "param": a.param, "side": a.side, "steps": a.steps, "step": step,
            "eps1": a.eps1, "eps3": a.eps3, "l2": a.l2, "tv": a.tv, "blur": a.blur,
            "blur_sigma": a.blur_sigma, "jitter": a.jitter, "gradient": a.gradient, "engine": a.engine,
            "chains_per_condition": a.chains,
            "top1_is_requested_class": (neuron.is_none()).then(|| hits as f64 / n as f64),
            "wall_time_s": o.wall_s,
            "chains": chains,
        });
        write_manifest(tmp, &manifest)?;
        let what = match &neuron {
            None => format!("EfficientNet's top-1 class is the requested one for {hits} of {n}"),
            Some(_) => format!(
                "mean final activation {:.3}",
                last.iter().sum::<f64>() / n.max(1) as f64
            ),
        };
        println!("{n} chains x {} steps in {:.1} s: {what}", o.step, o.wall_s);
        Ok(())
    })?;
    println!("wrote {}", out.display());
    Ok(())
}

/// EfficientNet-Lite0 on `side x side` images in [0, 1] for the sampling
/// engine: normalisation, then the logits or the features at `layer`.
fn engine_net(
    net: &EfficientNetLite0,
    side: usize,
    layer: Option<Layer>,
) -> anyhow::Result<ppgn::nn::fast::Net<f32>> {
    let body = match layer {
        None => net.compile(side)?,
        Some(l) => net.compile_features(side, l)?,
    };
    ppgn::nn::fast::build::net((side, side, 3), vec![EfficientNetLite0::normalise_op()])?
        .then(body)
        .map_err(anyhow::Error::msg)
}
