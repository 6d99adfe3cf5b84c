//! `ppgn sample`, `ppgn merge` and `ppgn presets`.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use super::progress::Bar;
use ppgn::density::condition::{ClassGradient, Neuron};
use ppgn::run::config::preset::{Engine, PriorKind, SamplerConfig, SamplerKind};
use ppgn::run::config::settings::{self, Overrides};
use ppgn::run::config::spec::{Init, Inpaint, Networks, Request, SampleSpec};
use ppgn::run::drive::shard::Shard;
use ppgn::run::output::folder::RunFolder;

#[derive(Args, Debug)]
#[command(
    allow_negative_numbers = true,
    after_help = "Example: ppgn sample --class sneaker --chains 8\n\
Outputs in the run folder: grid.png (final samples, one row per class), start.png (the chains' \
starts), chains.png and chains.gif (each chain over time), samples.npy (float32 N x C x H x W \
in [0, 1]; 1 x 28 x 28 for the shipped stack), labels.npy (int64), manifest.json (every \
parameter, seed, model hashes, per-chain statistics, evaluator accuracy)."
)]
pub struct SampleArgs {
    /// Class(es) to condition on, by index or name, comma-separated, or
    /// `all` [default: sneaker].
    #[arg(long)]
    pub class: Option<String>,
    /// Condition on a hidden neuron instead of a class: LAYER:UNIT[@X,Y] (X the
    /// column, Y the row; the layer's centre without @), layers h1 ([7, 7, 64]),
    /// h (fc6), logits; on a plug-and-play pair the classifier's (ONNX node names).
    #[arg(long)]
    pub neuron: Option<String>,
    /// Also save every final sample whose condition value is at least this (S11 keeps p >= 0.97).
    #[arg(long)]
    pub keep_above: Option<f64>,
    /// Chains per class.
    #[arg(long, default_value_t = 8)]
    pub chains: usize,
    /// Named setting from the papers (see `ppgn presets`) [default: ppgn;
    /// faces for a plug-and-play pair (dcgan-faces or a sidecar)].
    #[arg(long)]
    pub preset: Option<String>,
    /// The generator: `fashion` (the shipped stack's G), `dcgan-faces`
    /// (pretrained, `ppgn models fetch`), `dgn-fc6` (the papers' G, with
    /// --weights), or FILE.toml: an ONNX generator's sidecar (docs/onnx.md).
    #[arg(long, default_value = "fashion")]
    pub generator: String,
    /// The condition network: `fashion` (the shipped stack's classifier),
    /// `efficientnet-lite0` (ImageNet, pretrained; classes by name or index),
    /// `alexnet` (CaffeNet, with --generator dgn-fc6 and --weights), or
    /// FILE.toml: an ONNX classifier's sidecar (docs/onnx.md). With --generator
    /// fashion any classifier of 28x28 images guides the shipped generator and its priors.
    #[arg(long, default_value = "fashion")]
    pub classifier: String,
    /// Folder of the papers' converted Caffe weights (dgn-fc6.safetensors,
    /// alexnet.safetensors) for --generator dgn-fc6 --classifier alexnet.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Choose the step (and eps1) by a short pilot, or --adapt for MH samplers.
    #[arg(long)]
    pub autotune: bool,
    /// A TOML file of sampler settings (any fields of `ppgn presets`' output,
    /// e.g. `eps1 = 1e-4` or `[step] kind = "constant"` `value = 0.2`):
    /// the preset's values, then the file's, then the flags'.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override the preset's sampler.
    #[arg(long, value_parser = super::choice::<SamplerKind>())]
    pub sampler: Option<SamplerKind>,
    /// Override the preset's prior on h.
    #[arg(long, value_parser = super::choice::<PriorKind>())]
    pub prior: Option<PriorKind>,
    /// Weight of the prior term (eq. 13).
    #[arg(long)]
    pub eps1: Option<f64>,
    /// Weight of the condition term.
    #[arg(long)]
    pub eps2: Option<f64>,
    /// Noise std of MALA-approx.
    #[arg(long)]
    pub eps3: Option<f64>,
    #[arg(long)]
    pub steps: Option<usize>,
    /// Constant step size (learning rate, tau or leapfrog step) instead of the preset's schedule.
    #[arg(long)]
    pub step: Option<f64>,
    /// Tune the step size by dual averaging toward this mean acceptance
    /// (e.g. 0.574 for MALA, 0.8 for HMC) during the first half of the steps.
    #[arg(long)]
    pub adapt: Option<f64>,
    /// What computes the gradients: `fast` (our sampling engine) or
    /// `reference` (candle's autograd); they agree to float rounding.
    #[arg(long, value_parser = super::choice::<Engine>())]
    pub engine: Option<Engine>,
    /// HMC: leapfrog steps per iteration.
    #[arg(long)]
    pub leapfrog_steps: Option<usize>,
    /// Standard deviation of the Gaussian prior on h.
    #[arg(long)]
    pub prior_sigma: Option<f64>,
    /// MAP: L2 decay on h.
    #[arg(long)]
    pub decay: Option<f64>,
    /// Which class gradient: logit, softmax or log-softmax (Table S2).
    #[arg(long, value_parser = super::choice::<ClassGradient>())]
    pub gradient: Option<ClassGradient>,
    /// Clip h to LO,HI after each step, or `none`.
    #[arg(long)]
    pub clip: Option<String>,
    /// Where chains start: `random` (prior draws), `test:INDEX` (the code of a test
    /// image; pairs with an encoder), `codes:FILE.npy` (rows [n, code] in the space the
    /// chains move, one per chain or one for all), `images:FILE.npy` (their codes;
    /// float32 [n, c, h, w] in [0, 1], pairs with an encoder).
    #[arg(long, default_value = "random")]
    pub init: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run folder [default: a new folder under runs/].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing run folder (or an interrupted one).
    #[arg(long)]
    pub force: bool,
    /// Continue an interrupted run (Ctrl-C, a kill, a run of `ppgn serve`) in --out to the
    /// same result, with the settings and changes it was started with (read from the folder).
    #[arg(long)]
    pub resume: bool,
    /// Stop as if interrupted after this many steps (a multiple of --record-every; for tests).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
    /// Record probabilities and snapshots every this many steps.
    #[arg(long, default_value_t = 10)]
    pub record_every: usize,
    /// Model folder [default: $PPGN_MODELS or models/fashion-mnist].
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Fashion-MNIST folder (for --init test:N).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the estimated memory, disk and time of the request and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Chains per batch: batches run one after another and stream their samples to disk
    /// [default: as many as fit in 200 MB for this network].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Run the K-th of N contiguous blocks of batches (K from 1); the same --batch in every
    /// shard gives the unsharded run's bits; `ppgn merge` joins the folders.
    #[arg(long, value_name = "K/N", default_value = "1/1")]
    pub shard: Shard,
    /// Enlarge each image of the PNG grids N times [default: the smallest N making a cell 96 px].
    #[arg(long)]
    pub scale: Option<usize>,
}

impl SampleArgs {
    /// The sampler settings of a run: the preset, then the --config file,
    /// then the flags, each value checked (by the library).
    pub fn settings(&self) -> anyhow::Result<SamplerConfig> {
        let default = Networks::named(
            &self.generator,
            &self.classifier,
            None,
            self.weights.clone(),
        )
        .map_or("ppgn", |n| n.default_preset());
        let o = Overrides {
            sampler: self.sampler,
            prior: self.prior,
            eps1: self.eps1,
            eps2: self.eps2,
            eps3: self.eps3,
            steps: self.steps,
            step: self.step,
            adapt: self.adapt,
            engine: self.engine,
            leapfrog_steps: self.leapfrog_steps,
            prior_sigma: self.prior_sigma,
            decay: self.decay,
            gradient: self.gradient,
            clip: self.clip.as_deref().map(settings::parse_clip).transpose()?,
        };
        let preset = self.preset.as_deref().unwrap_or(default);
        Ok(settings::resolve(preset, self.config.as_deref(), &o)?)
    }

    /// The job these flags ask for (`inpaint`: what `ppgn inpaint` adds);
    /// with `--resume`, the job the folder keeps.
    pub fn spec(&self, inpaint: Option<Inpaint>) -> anyhow::Result<SampleSpec> {
        let given = self.flags(inpaint)?;
        if !self.resume {
            return Ok(given);
        }
        #[derive(clap::Parser)]
        struct Bare {
            #[command(flatten)]
            a: SampleArgs,
        }
        let out = given.out.to_string_lossy().to_string();
        let bare = <Bare as clap::Parser>::try_parse_from(["", "--resume", "--out", &out])?;
        Ok(SampleSpec::resumed(given, &bare.a.flags(None)?)?)
    }

    fn flags(&self, inpaint: Option<Inpaint>) -> anyhow::Result<SampleSpec> {
        let networks = Networks::named(
            &self.generator,
            &self.classifier,
            self.models.clone(),
            self.weights.clone(),
        )?;
        let request = match &self.neuron {
            Some(n) => {
                let (layer, neuron) = Neuron::parse(n, "h1, h, logits")?;
                Request::Neuron { layer, neuron }
            }
            None => Request::classes(self.class.as_deref().unwrap_or("sneaker")),
        };
        let out = match (&self.out, self.resume) {
            (Some(o), _) => o.clone(),
            (None, false) => RunFolder::next_free(),
            (None, true) => bail!("--resume needs the --out folder of the interrupted run"),
        };
        Ok(SampleSpec {
            autotune: self.autotune,
            inpaint,
            chains: self.chains,
            init: Init::parse(&self.init)?,
            data_dir: self.data_dir.clone(),
            seed: self.seed,
            keep_above: self.keep_above,
            record_every: self.record_every,
            force: self.force,
            resume: self.resume,
            batch: self.batch,
            shard: self.shard,
            scale: self.scale,
            command: super::command_line(),
            ..SampleSpec::new(networks, request, self.settings()?, out)
        })
    }
}

pub fn run_spec(spec: &SampleSpec, quiet: bool, stop_after: Option<usize>) -> anyhow::Result<()> {
    let out = ppgn::run::sample(spec, &mut Bar::new(quiet, stop_after))?;
    println!("{out}");
    Ok(())
}

pub fn run(a: SampleArgs) -> anyhow::Result<()> {
    if a.dry_run {
        println!(
            "{}",
            ppgn::run::drive::estimate::sample_cost(&a.spec(None)?)?
        );
        return Ok(());
    }
    run_spec(&a.spec(None)?, a.quiet, a.stop_after)
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The shard folders, in any order.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The merged run folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing folder at --out.
    #[arg(long)]
    pub force: bool,
}

pub fn merge(a: MergeArgs) -> anyhow::Result<()> {
    println!(
        "{}",
        ppgn::run::drive::merge::merge(&a.runs, &a.out, a.force)?
    );
    Ok(())
}
