//! `ppgn visualize`: pixel-space generation with EfficientNet-Lite0 alone
//! (PPGN-x with hand-designed priors, "Plug & Play Generative Networks" (supplementary), S7):
//! the chains move an image (or its decorrelated Fourier coefficients)
//! with `eps1 * (L2 + total variation + blur prior) + eps2 * condition`,
//! the condition seeing a jittered copy. Conditions: any of the 1000
//! classes, or a hidden unit (layer, channel, spatial position); several
//! chains per condition from different random starts show a unit's facets
//! (the multifaceted feature visualisation of Figs. S19-S20).

use std::path::PathBuf;

use clap::Args;

use super::progress::Bar;
use ppgn::density::condition::{ClassGradient, Neuron};
use ppgn::run::config::preset::Engine;
use ppgn::run::config::spec::Request;
use ppgn::run::jobs::visualize::{visualize, Param, VisualizeSpec};
use ppgn::run::output::folder::RunFolder;

#[derive(Args, Debug)]
#[command(
    after_help = "Writes grid.png (one row per condition), start.png, chains.png, samples.npy \
(float32 N x 3 x side x side in [0, 1]), labels.npy (class, or -1 for a neuron), manifest.json. \
EfficientNet-Lite0 must be installed: `ppgn models fetch`."
)]
pub struct VisualizeArgs {
    /// ImageNet class(es) by name or index, comma-separated.
    #[arg(long, default_value = "goldfish")]
    pub class: String,
    /// efficientnet-lite0, or FILE.toml: an ONNX classifier's sidecar (its image size).
    #[arg(long, default_value = "efficientnet-lite0")]
    pub classifier: String,
    /// A hidden unit instead: LAYER:CHANNEL[@X,Y], layers stem, block0..block15,
    /// head, or an imported classifier's ONNX node names (the centre without @).
    #[arg(long)]
    pub neuron: Option<String>,
    /// Chains per condition (different random starts: different facets).
    #[arg(long, default_value_t = 4)]
    pub chains: usize,
    #[arg(long, value_parser = super::choice::<Param>(), default_value = "fourier")]
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
    /// Which class gradient: logit (DGN-AM), softmax or log-softmax.
    #[arg(long, value_parser = super::choice::<ClassGradient>(), default_value = "logit")]
    pub gradient: ClassGradient,
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
    let request = match &a.neuron {
        Some(n) => {
            let (layer, neuron) = Neuron::parse(n, "stem, block0..block15, head")?;
            Request::Neuron { layer, neuron }
        }
        None => Request::classes(&a.class),
    };
    let spec = VisualizeSpec {
        request,
        chains: a.chains,
        classifier: a.classifier.clone(),
        param: a.param,
        side: a.side,
        steps: a.steps,
        step: a.step,
        eps1: a.eps1,
        eps3: a.eps3,
        l2: a.l2,
        tv: a.tv,
        blur: a.blur,
        blur_sigma: a.blur_sigma,
        jitter: a.jitter,
        gradient: a.gradient,
        engine: a.engine,
        seed: a.seed,
        record_every: a.record_every,
        out: a.out.clone().unwrap_or_else(RunFolder::next_free),
        force: a.force,
        command: super::command_line(),
    };
    let out = visualize(&spec, &mut Bar::new(a.quiet, None))?;
    println!("{out}");
    Ok(())
}
