//! `ppgn sample` and `ppgn presets`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::{DType, Device, Module, Tensor};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use ppgn::data::fashion_mnist::{self, parse_class, Split, CLASS_NAMES};
use ppgn::data::image::{encode_png, grid, labelled_grid, save_gif, save_grid};
use ppgn::data::npy;
use ppgn::density::condition::ClassGradient;
use ppgn::density::condition::Neuron;
use ppgn::density::image::clamp_known;
use ppgn::models::fashion::{self as stack, Stack};
use ppgn::run::chains::{run_chains, ChainsOutput, Condition, Outcome};
use ppgn::run::preset::{preset, Engine, PriorKind, SamplerConfig, SamplerKind, PRESETS};
use ppgn::run::settings::{self, Overrides};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Args, Debug)]
#[command(
    allow_negative_numbers = true,
    after_help = "Example: ppgn sample --class sneaker --chains 8\n\
Outputs in the run folder: grid.png (final samples, one row per class), chains.png \
(each chain over time), samples.npy (float32 N x 1 x 28 x 28 in [0, 1]), labels.npy (int64), \
manifest.json (every parameter, seed, model hashes, per-chain statistics, evaluator accuracy)."
)]
pub struct SampleArgs {
    /// Class(es) to condition on, by index or name, comma-separated, or `all`.
    #[arg(long, default_value = "sneaker")]
    pub class: String,
    /// Condition on a hidden neuron instead of a class: LAYER:UNIT[@X,Y] (X the
    /// column, Y the row; the layer's centre without @), layers
    /// h1 ([7, 7, 64], a channel at a position), h (fc6, 256 units), logits.
    #[arg(long)]
    pub neuron: Option<String>,
    /// Also save every final sample whose condition value is at least this (S11 keeps p >= 0.97).
    #[arg(long)]
    pub keep_above: Option<f64>,
    /// Chains per class.
    #[arg(long, default_value_t = 8)]
    pub chains: usize,
    /// Named setting from the papers (see `ppgn presets`) [default: ppgn;
    /// faces with --generator dcgan-faces].
    #[arg(long)]
    pub preset: Option<String>,
    /// The generator: `fashion` (the shipped stack's G), `dcgan-faces`
    /// (pretrained, `ppgn models fetch`) or `dgn-fc6` (the papers' G, with
    /// --weights).
    #[arg(long, default_value = "fashion")]
    pub generator: String,
    /// The condition network: `fashion` (the shipped stack's classifier),
    /// `efficientnet-lite0` (ImageNet, pretrained; classes by name or index)
    /// or `alexnet` (CaffeNet, with --generator dgn-fc6 and --weights).
    #[arg(long, default_value = "fashion")]
    pub classifier: String,
    /// Folder of the papers' converted Caffe weights (dgn-fc6.safetensors,
    /// alexnet.safetensors) for --generator dgn-fc6 --classifier alexnet.
    #[arg(long)]
    pub weights: Option<PathBuf>,
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
    #[arg(long, value_parser = ["logit", "softmax", "log-softmax"])]
    pub gradient: Option<String>,
    /// Clip h to LO,HI after each step, or `none`.
    #[arg(long)]
    pub clip: Option<String>,
    /// Start from `random` codes or from the code of a test image, `test:INDEX`.
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
    /// Continue an interrupted run (Ctrl-C) of the same command to the same result.
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
}

pub fn presets() -> anyhow::Result<()> {
    for (name, what) in PRESETS {
        let cfg = preset(name)?;
        println!("{name}\n  {what}\n  {}", serde_json::to_string(&cfg)?);
    }
    Ok(())
}

fn classes(spec: &str) -> anyhow::Result<Vec<usize>> {
    if spec.trim() == "all" {
        return Ok((0..CLASS_NAMES.len()).collect());
    }
    spec.split(',').map(|s| Ok(parse_class(s)?)).collect()
}

pub fn run(a: SampleArgs) -> anyhow::Result<()> {
    run_with(a, None)
}

/// What `ppgn inpaint` adds to a sampling run.
pub struct InpaintSpec {
    /// The real image `[1, 28, 28, 1]` and the mask `[1, 28, 28, 1]` (1 = fill).
    pub real: Tensor,
    pub mask: Tensor,
    pub context_weight: f64,
    /// For the manifest: which image and mask.
    pub describe: serde_json::Value,
}

impl SampleArgs {
    /// The sampler settings of a run: the preset, then the --config file,
    /// then the flags, each value checked (by the library).
    pub fn settings(&self) -> anyhow::Result<SamplerConfig> {
        let default = if self.generator == "dcgan-faces" {
            "faces"
        } else {
            "ppgn"
        };
        let gradient = self.gradient.as_deref().map(|g| match g {
            "logit" => ClassGradient::Logit,
            "softmax" => ClassGradient::Softmax,
            _ => ClassGradient::LogSoftmax,
        });
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
            gradient,
            clip: self.clip.as_deref().map(settings::parse_clip).transpose()?,
        };
        let preset = self.preset.as_deref().unwrap_or(default);
        Ok(settings::resolve(preset, self.config.as_deref(), &o)?)
    }
}

/// A sampling run, or an inpainting run when `inpaint` is given.
pub fn run_with(a: SampleArgs, inpaint: Option<InpaintSpec>) -> anyhow::Result<()> {
    if a.generator != "fashion" || a.classifier != "fashion" {
        bail!("inpainting works on the Fashion-MNIST stack only");
    }
    let device = Device::Cpu;
    let cfg = a.settings()?;
    if a.chains == 0 {
        bail!("--chains must be at least 1");
    }
    let neuron = a
        .neuron
        .as_deref()
        .map(|n| Neuron::parse(n, "h1, h, logits"))
        .transpose()?;
    // classes are not used when conditioning on a neuron
    let class_list = if neuron.is_some() {
        Vec::new()
    } else {
        classes(&a.class)?
    };
    let out = match (&a.out, a.resume) {
        (Some(o), _) => o.clone(),
        (None, false) => super::run_folder::new_run_dir(),
        (None, true) => bail!("--resume needs the --out folder of the interrupted run"),
    };
    super::run_folder::refuse_existing(&out, a.force)?;
    // the run is built in a hidden sibling folder and renamed into place at the end
    let tmp = super::run_folder::partial_path(&out);
    if tmp.exists() && !a.resume && !a.force {
        bail!(
            "an interrupted run is in {}; add --resume to finish it, or --force to start over",
            tmp.display()
        );
    }
    let dir = stack::resolve_dir(a.models.as_deref());
    let s = Stack::load(&dir, DType::F32, &device)?;
    let per_chain: Vec<usize> = class_list
        .iter()
        .flat_map(|&c| std::iter::repeat_n(c, a.chains))
        .collect();
    let n = if neuron.is_some() {
        a.chains
    } else {
        per_chain.len()
    };
    let condition = match (&neuron, &inpaint) {
        (Some((layer, neuron)), _) => Condition::Neuron {
            layer: layer.clone(),
            neuron: *neuron,
        },
        (None, Some(sp)) => Condition::Inpaint {
            classes: per_chain.clone(),
            real: sp.real.repeat((n, 1, 1, 1))?,
            mask: sp.mask.clone(),
            weight: sp.context_weight,
        },
        (None, None) => Condition::Classes(per_chain.clone()),
    };
    let h_dim = s.classifier.cfg.h_dim;
    let h0 = if let (Some(sp), "random") = (&inpaint, a.init.as_str()) {
        // inpainting starts from the code of the image with its hole blacked out
        let known = sp.mask.affine(-1.0, 1.0)?;
        s.classifier
            .encode(&(&sp.real * known)?.repeat((n, 1, 1, 1))?)?
    } else if a.init == "random" {
        ppgn::run::chains::random_codes(n, h_dim, a.seed)?
    } else if let Some(i) = a.init.strip_prefix("test:") {
        let i: usize = i
            .parse()
            .with_context(|| format!("--init {}: expected test:INDEX", a.init))?;
        let test = fashion_mnist::load(
            &fashion_mnist::resolve_dir(a.data_dir.as_deref()),
            Split::Test,
        )?;
        if i >= test.len() {
            bail!("--init test:{i}: the test set has images 0..{}", test.len());
        }
        s.classifier
            .encode(&test.images_tensor(&vec![i; n], &device)?)?
    } else {
        bail!("--init {:?}: expected random or test:INDEX", a.init);
    };

    let request = serde_json::json!({
        "sampler": &cfg, "classes": &per_chain, "neuron": &a.neuron, "seed": a.seed, "init": &a.init,
        "inpaint": inpaint.as_ref().map(|sp| &sp.describe),
        "record_every": a.record_every,
    });
    ppgn::run::chains::validate(&s, &cfg, &condition, &h0)?;
    let pipeline = ppgn::run::chains::Pipeline::fashion(&s, &cfg, &condition)?;
    let resume = if a.resume {
        Some(ChainsOutput::load_checkpoint(
            &tmp,
            &request,
            &pipeline.decode,
        )?)
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
        None
    };
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    static STOP: AtomicBool = AtomicBool::new(false);
    // a second handler cannot be set in one process; the first one serves
    let _ = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst));

    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(cfg.steps as u64)
    };
    bar.set_style(ProgressStyle::with_template(
        "sample [{elapsed_precise}] {bar:30} {pos}/{len} steps, {per_sec}, {msg}",
    )?);
    let outcome = run_chains(
        &pipeline,
        &cfg,
        &h0,
        a.seed,
        a.record_every,
        resume,
        &STOP,
        |t, p, acc| {
            bar.set_position(t as u64);
            bar.set_message(format!("mean p {p:.3}, accept {acc:.2}"));
            if a.stop_after.is_some_and(|k| t >= k) {
                STOP.store(true, Ordering::SeqCst);
            }
        },
        |o| o.save_checkpoint(&tmp, &request),
    )
    .inspect_err(|_| {
        // a fresh run that failed leaves nothing behind; an interrupted one
        // being resumed keeps its checkpoint
        if !a.resume {
            let _ = std::fs::remove_dir_all(&tmp);
        }
    })?;
    bar.finish_and_clear();
    let result = match outcome {
        Outcome::Finished(r) => r,
        Outcome::Interrupted(r) => {
            let images: Vec<f32> = r.images.flatten_all()?.to_vec1()?;
            save_grid(&tmp.join("grid.png"), &images, n, (28, 28, 1), a.chains)?;
            bail!(
                "interrupted at step {} of {}; the run so far is in {}; rerun the same command with --resume to finish it",
                r.step,
                cfg.steps,
                tmp.display()
            );
        }
    };

    let mut result = result;
    if let Some(sp) = &inpaint {
        // S10: the known pixels are the real ones
        result.images = clamp_known(&result.images, &sp.real.repeat((n, 1, 1, 1))?, &sp.mask)?;
    }

    // evaluator's verdict on the final samples
    let eval_pred: Vec<u32> = s.evaluator.forward(&result.images)?.argmax(1)?.to_vec1()?;
    let mut per_class: BTreeMap<String, f64> = BTreeMap::new();
    for &c in &class_list {
        let idx: Vec<usize> = (0..n).filter(|&i| per_chain[i] == c).collect();
        let ok = idx.iter().filter(|&&i| eval_pred[i] as usize == c).count();
        per_class.insert(CLASS_NAMES[c].to_string(), ok as f64 / idx.len() as f64);
    }
    let final_p = result.probability.last().cloned().unwrap_or_default();

    // write everything into the hidden folder, then rename it into place
    write_outputs(
        &tmp, &s, &a, &cfg, &per_chain, &result, &eval_pred, &per_class, &dir,
    )?;
    if let Some(sp) = &inpaint {
        // one row: the original, the masked input, then every fill
        let known = sp.mask.affine(-1.0, 1.0)?;
        let row = Tensor::cat(
            &[sp.real.clone(), (&sp.real * known)?, result.images.clone()],
            0,
        )?;
        let v: Vec<f32> = row.flatten_all()?.to_vec1()?;
        save_grid(&tmp.join("inpaint.png"), &v, n + 2, (28, 28, 1), n + 2)?;
        ppgn::fsutil::write_atomic(
            &tmp.join("inpaint.json"),
            serde_json::to_string_pretty(&sp.describe)?.as_bytes(),
        )?;
    }
    for f in ["checkpoint.json", "checkpoint.safetensors"] {
        let _ = std::fs::remove_file(tmp.join(f));
    }
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("replacing {}", out.display()))?;
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(&tmp, &out)
        .with_context(|| format!("moving the run into {}", out.display()))?;
    let mean_value = final_p.iter().sum::<f64>() / n as f64;
    let verdict = if per_class.is_empty() {
        format!("mean activation {mean_value:.3}")
    } else {
        format!(
            "mean p(class) {mean_value:.3}, evaluator agrees on {:.0}%",
            100.0 * per_class.values().sum::<f64>() / per_class.len() as f64
        )
    };
    println!(
        "{n} chains x {} steps of {} in {:.1} s: {verdict}; wrote {}",
        cfg.steps,
        cfg.preset,
        result.wall_s,
        out.display()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn write_outputs(
    dir: &Path,
    s: &Stack,
    a: &SampleArgs,
    cfg: &ppgn::run::preset::SamplerConfig,
    per_chain: &[usize],
    r: &ChainsOutput,
    eval_pred: &[u32],
    per_class: &BTreeMap<String, f64>,
    models: &Path,
) -> anyhow::Result<()> {
    let n = r.images.dim(0)?;
    let images: Vec<f32> = r.images.flatten_all()?.to_vec1()?;
    // grid.png: final samples labelled with their condition value
    let last = r.probability.last().cloned().unwrap_or_default();
    let labels: Vec<String> = last.iter().map(|v| format!("{v:.2}")).collect();
    let (px, gw, gh) = labelled_grid(&images, n, (28, 28), a.chains, &labels)?;
    ppgn::fsutil::write_atomic(&dir.join("grid.png"), &encode_png(&px, gw, gh, 1)?)?;
    // chains.gif: the whole grid at every recorded step
    let frames: Vec<Vec<u8>> = r
        .snapshots
        .iter()
        .map(|snap| -> anyhow::Result<Vec<u8>> {
            let v: Vec<f32> = snap.flatten_all()?.to_vec1()?;
            Ok(grid(&v, n, (28, 28, 1), a.chains, 2)?.0)
        })
        .collect::<anyhow::Result<_>>()?;
    let (_, fw, fh) = grid(&images, n, (28, 28, 1), a.chains, 2)?;
    save_gif(&dir.join("chains.gif"), &frames, fw, fh, 20)?;
    // filmstrip: one row per chain, at most 12 snapshots across
    let k = r.snapshots.len();
    let picks: Vec<usize> = if k <= 12 {
        (0..k).collect()
    } else {
        (0..12).map(|j| j * (k - 1) / 11).collect()
    };
    let mut strip = Vec::with_capacity(n * picks.len() * 784);
    let snaps: Vec<Vec<f32>> = picks
        .iter()
        .map(|&j| r.snapshots[j].flatten_all().and_then(|t| t.to_vec1()))
        .collect::<candle_core::Result<_>>()?;
    for c in 0..n {
        for sn in &snaps {
            strip.extend_from_slice(&sn[c * 784..(c + 1) * 784]);
        }
    }
    save_grid(
        &dir.join("chains.png"),
        &strip,
        n * picks.len(),
        (28, 28, 1),
        picks.len(),
    )?;
    npy::write_f32(&dir.join("samples.npy"), &[n, 1, 28, 28], &images)?;
    if let Some(th) = a.keep_above {
        // S11: keep only the samples the condition network is sure of
        let last = r.probability.last().cloned().unwrap_or_default();
        let keep: Vec<usize> = (0..n).filter(|&i| last[i] >= th).collect();
        let kept: Vec<f32> = keep
            .iter()
            .flat_map(|&i| images[i * 784..(i + 1) * 784].iter().copied())
            .collect();
        npy::write_f32(&dir.join("kept.npy"), &[keep.len(), 1, 28, 28], &kept)?;
        if !keep.is_empty() {
            save_grid(
                &dir.join("kept.png"),
                &kept,
                keep.len(),
                (28, 28, 1),
                a.chains,
            )?;
        }
    }
    // -1: conditioned on a neuron, not a class
    let labels: Vec<i64> = (0..n)
        .map(|i| per_chain.get(i).map_or(-1, |&c| c as i64))
        .collect();
    npy::write_i64(&dir.join("labels.npy"), &[n], &labels)?;

    let chains: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "class": per_chain.get(i),
                "class_name": per_chain.get(i).map(|&c| CLASS_NAMES[c]),
                "condition_value": r.probability.iter().map(|p| p[i]).collect::<Vec<_>>(),
                "final_condition_value": r.probability.last().map(|p| p[i]),
                "evaluator_class": eval_pred[i],
                "accept_rate": r.accepted[i] as f64 / cfg.steps.max(1) as f64,
                "divergences": r.divergences[i],
            })
        })
        .collect();
    let hashes: BTreeMap<String, String> = s
        .cards
        .iter()
        .map(|c| (c.network.clone(), c.weights_sha256.clone()))
        .collect();
    let manifest = serde_json::json!({
        "command": super::command_line(),
        "seed": a.seed,
        "init": a.init,
        "chains_per_class": a.chains,
        "record_every": a.record_every,
        "sampler": cfg,
        "models": {"folder": models.display().to_string(), "sha256": hashes},
        "grad_evals_per_chain": r.grad_evals,
        "steps": r.step,
        "wall_time_s": r.wall_s,
        "evaluator_accuracy_per_class": per_class,
        "chains": chains,
    });
    ppgn::fsutil::write_atomic(
        &dir.join("manifest.json"),
        format!("{}\n", serde_json::to_string_pretty(&manifest)?).as_bytes(),
    )?;
    Ok(())
}
