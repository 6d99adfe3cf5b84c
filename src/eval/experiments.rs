//! The experiments behind `ppgn report`: the samplers side by side at equal
//! gradient budgets (Xu et al. Table 2, PPGN Table S3), and the studies of
//! the PPGN supplement's figures (eps1 sweep S23, eps3 sweep S15, the
//! generator's robustness to noise in `h` S16, chain mixing S13). Each
//! returns numbers (serialisable, for results.json and the claims) and the
//! images to show.

use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Module, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::data::fashion_mnist::Dataset;
use crate::error::{Error, Result};
use crate::eval::ms_ssim::ms_ssim;
use crate::eval::report::{classes_more_diverse, features_and_probs, score, Scores};
use crate::eval::scores::accuracy;
use crate::models::fashion::{Discriminator, Stack};
use crate::run::config::preset::SamplerConfig;
use crate::run::drive::chains::{fashion_starts, ChainsOutput, Outcome, Pipeline};
use crate::run::drive::driver::run_chains;
use crate::run::pairs::fashion::Condition;
use crate::run::Progress;
use crate::train::realness::mean_log_real;

/// What scoring needs besides the images: the evaluator's features of the
/// real training images (the Frechet reference) and the realness judge.
pub struct Yardsticks<'a> {
    pub reference: &'a crate::eval::report::Reference,
    pub judge: Option<&'a Discriminator>,
}

/// `per_class` images of every class drawn (seeded) from a dataset split,
/// with their labels: the real baseline row, and the real starts of chains.
pub fn real_per_class(
    data: &Dataset,
    classes: &[usize],
    per_class: usize,
    seed: u64,
) -> Result<(Tensor, Vec<usize>, Vec<usize>)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut idx = Vec::new();
    let mut labels = Vec::new();
    for &c in classes {
        let mut own: Vec<usize> = (0..data.len())
            .filter(|&i| data.labels[i] as usize == c)
            .collect();
        if own.len() < per_class {
            return Err(Error::setting(
                "images per class",
                per_class,
                format!("at most the {} images of class {c}", own.len()),
            ));
        }
        own.shuffle(&mut rng);
        idx.extend_from_slice(&own[..per_class]);
        labels.extend(std::iter::repeat_n(c, per_class));
    }
    Ok((data.images_tensor(&idx, &Device::Cpu)?, labels, idx))
}

/// Scores of images at one point of a run (cheap: no Frechet distance).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub grad_evals: usize,
    pub evaluator_accuracy: f64,
    pub mean_log_real: Option<f64>,
    /// Mean `p(y | x)` of the classifier the chains condition on.
    pub mean_condition: f64,
}

fn checkpoint(
    stack: &Stack,
    y: &Yardsticks,
    images: &Tensor,
    labels: &[usize],
    grad_evals: usize,
    condition: &[f64],
) -> Result<Checkpoint> {
    let (_, p) = features_and_probs(stack.evaluator()?, images)?;
    Ok(Checkpoint {
        grad_evals,
        evaluator_accuracy: accuracy(&p, labels),
        mean_log_real: y.judge.map(|d| mean_log_real(d, images)).transpose()?,
        mean_condition: condition.iter().sum::<f64>() / condition.len().max(1) as f64,
    })
}

/// One sampler of the comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SamplerRow {
    pub label: String,
    pub config: SamplerConfig,
    pub grad_evals_per_chain: usize,
    pub mean_accept: f64,
    pub divergences: usize,
    /// Cheap scores along the run (every quarter of the budget).
    pub along: Vec<Checkpoint>,
    /// Full scores of the final samples.
    pub scores: Scores,
    pub classes_more_diverse: usize,
    pub mean_ms_ssim: f64,
    #[serde(skip)]
    pub wall_s: f64,
    #[serde(skip)]
    pub images: Option<Tensor>,
}

/// Mean of a per-class map.
pub fn mean_over_classes(m: &std::collections::BTreeMap<usize, f64>) -> f64 {
    m.values().sum::<f64>() / m.len().max(1) as f64
}

/// Reports the steps of one phase to `progress`.
pub fn phase<T>(
    progress: &mut dyn Progress,
    what: &str,
    total: usize,
    f: impl FnOnce(&mut dyn FnMut(usize)) -> Result<T>,
) -> Result<T> {
    progress.begin(what, total);
    let r = f(&mut |t| progress.tick(t));
    progress.end();
    r
}

/// Runs chains to the end without interruption.
pub(super) fn run_to_end(
    stack: &Stack,
    cfg: &SamplerConfig,
    condition: &Condition,
    h0: &Tensor,
    seed: u64,
    record_every: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<ChainsOutput> {
    let never = AtomicBool::new(false);
    match run_chains(
        &Pipeline::fashion(stack, cfg, condition)?,
        cfg,
        h0,
        seed,
        record_every,
        None,
        &never,
        |r| {
            if r.recorded {
                progress(r.step);
            }
            Vec::new()
        },
        |_| Ok(()),
    )? {
        Outcome::Finished(o) => Ok(o),
        Outcome::Interrupted(o) => Err(Error::Interrupted {
            step: o.step,
            steps: cfg.steps,
            then: "the report keeps nothing of an interrupted run".into(),
        }),
    }
}

/// One sampler at `budget` gradient evaluations per chain, `per_class`
/// chains for every class from random codes, scored against `real` (the
/// baseline scores of real images of the same count).
#[allow(clippy::too_many_arguments)]
pub fn compare_one(
    stack: &Stack,
    y: &Yardsticks,
    label: &str,
    cfg: &SamplerConfig,
    per_class: usize,
    budget: usize,
    seed: u64,
    real: &Scores,
    progress: &mut dyn FnMut(usize),
) -> Result<SamplerRow> {
    let cfg = cfg.with_grad_budget(budget)?;
    let labels: Vec<usize> = (0..10)
        .flat_map(|c| std::iter::repeat_n(c, per_class))
        .collect();
    let n = labels.len();
    // every sampler starts from the same codes
    let h0 = fashion_starts(stack, &cfg, seed.into(), n)?;
    let condition = Condition::Classes(labels.clone());
    // score at every quarter of the budget, whatever a step costs
    let record_every = (budget / 4 / cfg.grads_per_step()).max(1);
    let out = run_to_end(stack, &cfg, &condition, &h0, seed, record_every, progress)?;
    let gps = cfg.grads_per_step();
    let mut along = Vec::new();
    for (k, snap) in out.snapshots.iter().enumerate().skip(1) {
        let step = (k * record_every).min(cfg.steps);
        along.push(checkpoint(
            stack,
            y,
            snap,
            &labels,
            step * gps,
            &out.condition_value[k],
        )?);
    }
    let scores = score(
        stack.evaluator()?,
        y.judge,
        &out.images,
        &labels,
        y.reference,
    )?;
    Ok(SamplerRow {
        label: label.to_string(),
        grad_evals_per_chain: out.grad_evals,
        mean_accept: out.accept_sum / cfg.steps.max(1) as f64,
        divergences: out.divergences.iter().sum(),
        along,
        classes_more_diverse: classes_more_diverse(&scores, real),
        mean_ms_ssim: mean_over_classes(&scores.ms_ssim_per_class),
        scores,
        config: cfg,
        wall_s: out.wall_s,
        images: Some(out.images),
    })
}

/// Chains from the codes of real images, all with the same setting: what a
/// sweep point (S23, S15) or a mixing comparison (S13) measures.
#[derive(Debug, Clone, Serialize)]
pub struct ChainStudy {
    pub label: String,
    pub value: f64,
    /// Evaluator accuracy (target class) of the final images.
    pub final_accuracy: f64,
    /// Evaluator accuracy over the snapshots of the second half of the chains.
    pub late_accuracy: f64,
    /// Mean `p(y | x)` of the conditioning classifier at the end.
    pub final_condition: f64,
    /// Mean MS-SSIM between a chain's snapshots `record_every` steps apart
    /// (second half): how much a chain still changes per interval (lower = moves more).
    pub consecutive_ms_ssim: f64,
    /// Mean MS-SSIM between all pairs of a chain's second-half snapshots:
    /// how many different images one chain visits (lower = mixes more).
    pub within_chain_ms_ssim: f64,
    /// Mean MS-SSIM between each chain's final image and its real start.
    pub start_ms_ssim: f64,
    #[serde(skip)]
    pub filmstrip: Vec<Tensor>,
}

fn pixels(t: &Tensor) -> Result<Vec<Vec<f64>>> {
    Ok(t.flatten_from(1)?.to_dtype(DType::F64)?.to_vec2::<f64>()?)
}

/// Runs `cfg` for `steps` from the codes of `starts` (real images) toward
/// `targets` and measures quality and mixing from the snapshots.
#[allow(clippy::too_many_arguments)]
pub fn chain_study(
    stack: &Stack,
    label: &str,
    value: f64,
    cfg: &SamplerConfig,
    starts: &Tensor,
    targets: &[usize],
    record_every: usize,
    seed: u64,
    progress: &mut dyn FnMut(usize),
) -> Result<ChainStudy> {
    let h0 = stack.classifier.encode(starts)?;
    let condition = Condition::Classes(targets.to_vec());
    let out = run_to_end(stack, cfg, &condition, &h0, seed, record_every, progress)?;
    let k = out.snapshots.len();
    let late: Vec<Vec<Vec<f64>>> = out.snapshots[k / 2..]
        .iter()
        .map(pixels)
        .collect::<Result<_>>()?;
    let n = targets.len();
    let (mut cons, mut ncons, mut pairs, mut npairs) = (0.0, 0usize, 0.0, 0usize);
    for c in 0..n {
        for a in 0..late.len() {
            if a + 1 < late.len() {
                cons += ms_ssim(&late[a][c], &late[a + 1][c]);
                ncons += 1;
            }
            for b in a + 1..late.len() {
                pairs += ms_ssim(&late[a][c], &late[b][c]);
                npairs += 1;
            }
        }
    }
    let mut late_ok = 0.0;
    for snap in &out.snapshots[k / 2..] {
        let (_, p) = features_and_probs(stack.evaluator()?, snap)?;
        late_ok += accuracy(&p, targets);
    }
    let (_, p) = features_and_probs(stack.evaluator()?, &out.images)?;
    let start_px = pixels(starts)?;
    let final_px = pixels(&out.images)?;
    let start_ms_ssim = (0..n)
        .map(|c| ms_ssim(&start_px[c], &final_px[c]))
        .sum::<f64>()
        / n as f64;
    let last = out.condition_value.last().cloned().unwrap_or_default();
    Ok(ChainStudy {
        label: label.to_string(),
        value,
        final_accuracy: accuracy(&p, targets),
        late_accuracy: late_ok / (k - k / 2) as f64,
        final_condition: last.iter().sum::<f64>() / n as f64,
        consecutive_ms_ssim: cons / ncons.max(1) as f64,
        within_chain_ms_ssim: pairs / npairs.max(1) as f64,
        start_ms_ssim,
        filmstrip: out.snapshots,
    })
}

/// Fig. S16: `G(h + N(0, sigma^2))` for codes `h` of real images, sigma a
/// fraction of the mean activation of `h`.
#[derive(Debug, Clone, Serialize)]
pub struct NoisePoint {
    pub fraction: f64,
    pub sigma: f64,
    pub evaluator_accuracy: f64,
    /// Mean squared pixel difference to `G(h)` without noise.
    pub mse_to_clean: f64,
    /// Mean squared pixel difference to the real image.
    pub mse_to_real: f64,
    #[serde(skip)]
    pub images: Option<Tensor>,
}

pub fn noise_robustness(
    stack: &Stack,
    real: &Tensor,
    labels: &[usize],
    fractions: &[f64],
    seed: u64,
) -> Result<(f64, Vec<NoisePoint>)> {
    let h = stack.classifier.encode(real)?;
    let mean_act = h.mean_all()?.to_scalar::<f32>()? as f64;
    let clean = stack.generator.forward(&h)?;
    let mut rngs = crate::sampler::ChainRngs::new(seed, h.dim(0)?);
    let mut out = Vec::new();
    for &f in fractions {
        let sigma = f * mean_act;
        let noisy = (&h + (rngs.normal_like(&h)? * sigma)?)?;
        let x = stack.generator.forward(&noisy)?;
        let (_, p) = features_and_probs(stack.evaluator()?, &x)?;
        let mse = |a: &Tensor| -> Result<f64> {
            Ok((&x - a)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64)
        };
        out.push(NoisePoint {
            fraction: f,
            sigma,
            evaluator_accuracy: accuracy(&p, labels),
            mse_to_clean: mse(&clean)?,
            mse_to_real: mse(real)?,
            images: Some(x),
        });
    }
    Ok((mean_act, out))
}
