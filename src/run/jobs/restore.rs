//! Restoration: the posterior of an image given a damaged observation of
//! it, `y = A(x) + noise`, sampled through a generator's code
//! (`crate::density::observation`). The first paper's inpainting ("Plug &
//! Play Generative Networks" (supplementary), S10) is the case `A` = a
//! mask; any operator of `crate::run::config::restore` and any pair whose
//! generator draws pixels in [0, 1] work, with every sampler.
//!
//! Each image gets its own chains; the draws are their decoded images at
//! the records of the run's second half (the first half is burn-in, and
//! where the step adapts, adaptation). What a draw says of the true image
//! includes the error the generator cannot draw, so before the spread and
//! the quantiles are taken every draw gets `N(0, tau^2)` noise per pixel
//! (seeded); the mean is of the draws themselves.

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::Distribution;

use crate::density::observation::Operator;
use crate::error::{Error, Result};
use crate::run::config::preset::SamplerConfig;
use crate::run::config::restore::{degradations, Asked};
use crate::run::drive::init::Starts;
use crate::run::drive::progress::{drive_to_end, Progress};
use crate::run::pairs::pair::{Condition, Pair, Restoring};

/// The damage and how it is sampled.
#[derive(Debug, Clone)]
pub struct Damage {
    /// The operator's steps (`crate::run::config::restore::parse`).
    pub operator: Vec<Asked>,
    /// The observation's noise `s`, in the image's [0, 1] units.
    pub noise_std: f64,
    /// The generator's own error `tau` (per pixel, [0, 1] units).
    pub tau: f64,
}

/// The draws of a restoration of `k` images.
pub struct Restored {
    /// The images' shape `(h, w, c)` and the observations'.
    pub image: (usize, usize, usize),
    pub observation: (usize, usize, usize),
    /// `[k, oh, ow, oc]` flat: what the chains were conditioned on.
    pub observed: Vec<f32>,
    /// `[k, draws, h, w, c]` flat.
    pub draws: Vec<f32>,
    pub draws_per_image: usize,
    pub grad_evals: usize,
    /// Mean acceptance over steps and chains.
    pub acceptance: f64,
}

/// Samples the posterior of each of `truths` (`[k, h, w, c]`, pixels in
/// [0, 1] at the generator's size) under `damage`, `chains` chains an
/// image, all in one batch.
pub fn restore(
    pair: &dyn Pair,
    truths: &Tensor,
    damage: &Damage,
    (cfg, chains, record_every, seed): (&SamplerConfig, usize, usize, u64),
    progress: &mut dyn Progress,
) -> Result<Restored> {
    let image = pair.pixels().ok_or_else(|| {
        Error::unsupported(
            format!(
                "restoring with {}: its generator's images are not pixels in [0, 1]",
                pair.names().0
            ),
            "restore with the shipped stack or a generator with an output_range",
        )
    })?;
    let (h, w, c) = image;
    let k = truths.dim(0)?;
    if truths.dims() != [k, h, w, c] || k == 0 || chains == 0 {
        return Err(Error::shape(
            "the images to restore",
            format!("[k, {h}, {w}, {c}], what the generator makes, and chains"),
            format!("{:?} with {chains} chains an image", truths.dims()),
        ));
    }
    let operator = Operator::new(degradations(&damage.operator, (h, w), seed)?, image)?;
    let observed = observe(&operator, truths, damage.noise_std, seed)?;
    let n = k * chains;
    let rows: Vec<u32> = (0..n).map(|i| (i / chains) as u32).collect();
    let (oh, ow, oc) = operator.output();
    let per_chain = Tensor::from_vec(observed.clone(), (k, oh, ow, oc), &Device::Cpu)?
        .index_select(&Tensor::new(rows, &Device::Cpu)?, 0)?;
    let condition = Condition::Restore(Restoring {
        observed: per_chain,
        operator: operator.clone(),
        variance: damage.noise_std.powi(2) + damage.tau.powi(2),
    });
    let pipeline = pair.pipeline(cfg, &condition)?;
    cfg.kernel()?.check(&pipeline.target)?;
    let init = crate::run::config::spec::Init::Random;
    let start = Starts::new(&init, pair, cfg, seed, None, n)?.of(cfg, 0..n)?;
    let every = record_every.max(1);
    let out = drive_to_end("restore", &pipeline, cfg, &start, seed, every, progress)?;
    let kept: Vec<&Tensor> = out
        .snapshots
        .iter()
        .enumerate()
        .filter(|(j, _)| (j * every).min(cfg.steps) * 2 > cfg.steps)
        .map(|(_, s)| s)
        .collect();
    let per = h * w * c;
    let snaps: Vec<Vec<f32>> = kept
        .iter()
        .map(|t| Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?))
        .collect::<Result<_>>()?;
    // [k, chains * records, h, w, c]: image i's draws are its chains'
    let mut draws = Vec::with_capacity(n * snaps.len() * per);
    for i in 0..k {
        for ch in 0..chains {
            for s in &snaps {
                let j = i * chains + ch;
                draws.extend_from_slice(&s[j * per..(j + 1) * per]);
            }
        }
    }
    Ok(Restored {
        image,
        observation: operator.output(),
        observed: observed.iter().map(|&v| v as f32).collect(),
        draws,
        draws_per_image: chains * snaps.len(),
        grad_evals: out.grad_evals,
        acceptance: out.accept_sum / (cfg.steps.max(1) * n) as f64,
    })
}

/// `A x + s * N(0, I)` of each image of `truths`, the noise seeded.
fn observe(a: &Operator, truths: &Tensor, s: f64, seed: u64) -> Result<Vec<f64>> {
    let x: Vec<f64> = truths.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x0b5e_7e4d);
    let normal = rand_distr::StandardNormal;
    Ok(a.apply(&x)
        .into_iter()
        .map(|v| {
            let e: f64 = normal.sample(&mut rng);
            v + s * e
        })
        .collect())
}

/// Per-pixel summaries of a restoration, each `[k, h, w, c]` flat.
pub struct Summary {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub q05: Vec<f32>,
    pub q95: Vec<f32>,
}

/// The mean of each image's draws, and the spread and the 5% and 95%
/// quantiles of the draws with `N(0, tau^2)` added to every pixel (the
/// generator's own error; seeded), per pixel.
pub fn summarise(r: &Restored, tau: f64, seed: u64) -> Summary {
    let per = r.image.0 * r.image.1 * r.image.2;
    let (d, k) = (
        r.draws_per_image,
        r.draws.len() / (per * r.draws_per_image).max(1),
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x7a0_0015e);
    let normal = rand_distr::StandardNormal;
    let mut s = Summary {
        mean: Vec::with_capacity(k * per),
        std: Vec::with_capacity(k * per),
        q05: Vec::with_capacity(k * per),
        q95: Vec::with_capacity(k * per),
    };
    let mut column = vec![0f64; d];
    for i in 0..k {
        for p in 0..per {
            let mut clean = 0.0;
            for (j, v) in column.iter_mut().enumerate() {
                let x = r.draws[(i * d + j) * per + p] as f64;
                clean += x;
                let e: f64 = normal.sample(&mut rng);
                *v = x + tau * e;
            }
            let m = column.iter().sum::<f64>() / d as f64;
            let var = column.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (d.max(2) - 1) as f64;
            column.sort_by(f64::total_cmp);
            s.mean.push((clean / d as f64) as f32);
            s.std.push(var.sqrt() as f32);
            s.q05.push(quantile(&column, 0.05) as f32);
            s.q95.push(quantile(&column, 0.95) as f32);
        }
    }
    s
}

/// The `q` quantile of sorted values, linearly interpolated (numpy's
/// default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}
