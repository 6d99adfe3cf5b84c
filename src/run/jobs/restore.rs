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

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::Distribution;
use serde::Serialize;

use crate::data::image::hwc_to_chw;
use crate::density::observation::Operator;
use crate::error::{Error, Result};
use crate::run::config::preset::SamplerConfig;
use crate::run::config::restore::{degradations, Asked};
use crate::run::config::spec::Networks;
use crate::run::drive::init::Starts;
use crate::run::drive::progress::{drive_to_end, Progress};
use crate::run::output::folder::RunFolder;
use crate::run::pairs::pair::{Condition, Pair, Restoring};

/// The damage and how it is sampled.
#[derive(Debug, Clone)]
pub struct Damage {
    /// The operator's steps (`crate::run::config::restore::parse`).
    pub operator: Vec<Asked>,
    /// The observation's noise `s`, in the image's [0, 1] units.
    pub noise_std: f64,
    /// The generator's own error `tau` (per pixel, [0, 1] units) [default:
    /// the pair's, `Pair::generator_error`].
    pub tau: Option<f64>,
}

impl Damage {
    /// `tau` as asked, else `pair`'s generator's; refused when neither
    /// has one, and when the likelihood would have no spread at all.
    pub fn tau(&self, pair: &dyn Pair) -> Result<f64> {
        let tau = match self.tau.or_else(|| pair.generator_error()) {
            Some(t) if t.is_finite() && t >= 0.0 => t,
            Some(t) => {
                return Err(Error::setting(
                    "tau",
                    format!("{t}"),
                    "the generator's error per pixel: 0 or more, in the image's [0, 1] units",
                ))
            }
            None => {
                return Err(Error::unsupported(
                    format!(
                        "restoring with {}: its generator's own error is not on a card",
                        pair.names().0
                    ),
                    "give --tau, the RMSE of the generator's best reconstructions of real images (0 if it draws them exactly)",
                ))
            }
        };
        if tau == 0.0 && self.noise_std == 0.0 {
            return Err(Error::setting(
                "noise-std",
                "0 with tau 0",
                "a noise level or a tau above 0 (a likelihood of no spread has no posterior to sample)",
            ));
        }
        Ok(tau)
    }
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
    let image = pixels(pair)?;
    let (h, w, c) = image;
    let k = truths.dim(0)?;
    if truths.dims() != [k, h, w, c] || k == 0 || chains == 0 {
        return Err(Error::shape(
            "the images to restore",
            format!("[k, {h}, {w}, {c}], what the generator makes, and chains"),
            format!("{:?} with {chains} chains an image", truths.dims()),
        ));
    }
    let tau = damage.tau(pair)?;
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
        variance: damage.noise_std.powi(2) + tau.powi(2),
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
        // the sum over steps of the chains' mean acceptance
        acceptance: out.accept_sum / cfg.steps.max(1) as f64,
    })
}

/// The shape of `pair`'s images, refused when they are not pixels in
/// [0, 1] (an observation of them would not be an image).
fn pixels(pair: &dyn Pair) -> Result<(usize, usize, usize)> {
    pair.pixels().ok_or_else(|| {
        Error::unsupported(
            format!(
                "restoring with {}: its generator's images are not pixels in [0, 1]",
                pair.names().0
            ),
            "restore with the shipped stack or a generator with an output_range",
        )
    })
}

/// `A x + s * N(0, I)` of each image of `truths`, the noise seeded, on
/// the values the operator observes (not a mask's hidden pixels, which
/// stay 0).
fn observe(a: &Operator, truths: &Tensor, s: f64, seed: u64) -> Result<Vec<f64>> {
    let x: Vec<f64> = truths.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    let (h, w, c) = a.input();
    let seen = a.apply(&vec![1.0; h * w * c]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x0b5e_7e4d);
    let normal = rand_distr::StandardNormal;
    Ok(a.apply(&x)
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let e: f64 = normal.sample(&mut rng);
            match seen[i % seen.len()] != 0.0 {
                true => v + s * e,
                false => v,
            }
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

/// Which true images a restoration damages.
#[derive(Debug, Clone, PartialEq)]
pub enum Truths {
    /// Test images of the pair's data set, `test:N` or `test:A-B` (both
    /// ends included).
    Test(std::ops::RangeInclusive<usize>),
    /// Images from a file (`crate::data::images::read`: a `.npy` of
    /// `[n, c, h, w]` in [0, 1], a PNG, or a folder of PNGs).
    File(PathBuf),
}

impl Truths {
    /// `test:N`, `test:A-B`, or a file's path.
    pub fn parse(s: &str) -> Result<Self> {
        let Some(t) = s.strip_prefix("test:") else {
            return Ok(Truths::File(s.into()));
        };
        let bad = || {
            Error::setting(
                "image",
                format!("{s:?}"),
                "test:N, test:A-B (A <= B) or a file",
            )
        };
        let (a, b) = t.split_once('-').unwrap_or((t, t));
        match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
            (Ok(a), Ok(b)) if a <= b => Ok(Truths::Test(a..=b)),
            _ => Err(bad()),
        }
    }

    /// The images `[k, h, w, c]` at the pair's image size `image`.
    pub fn load(&self, pair: &dyn Pair, image: (usize, usize, usize)) -> Result<Tensor> {
        match self {
            Truths::Test(r) => {
                let rows: Vec<Tensor> = r
                    .clone()
                    .map(|i| Ok(pair.real_image(i)?.0))
                    .collect::<Result<_>>()?;
                Ok(Tensor::cat(&rows, 0)?)
            }
            Truths::File(p) => {
                let im = crate::data::images::read(p)?;
                if im.hwc != image {
                    return Err(Error::shape(
                        format!("the images in {}", p.display()),
                        format!("{image:?} (h, w, c), what the generator makes"),
                        format!("{:?}", im.hwc),
                    ));
                }
                Ok(Tensor::from_vec(
                    im.values,
                    (im.n, image.0, image.1, image.2),
                    &Device::Cpu,
                )?)
            }
        }
    }
}

/// A restoration job: what `ppgn restore` asks for.
#[derive(Debug, Clone)]
pub struct RestoreSpec {
    pub networks: Networks,
    /// Fashion-MNIST folder (for `test:N` on the shipped stack).
    pub data_dir: Option<PathBuf>,
    pub truths: Truths,
    pub damage: Damage,
    pub settings: SamplerConfig,
    /// Chains per image.
    pub chains: usize,
    /// Record a draw every this many steps (those of the second half are
    /// the draws).
    pub record_every: usize,
    pub seed: u64,
    pub out: PathBuf,
    pub force: bool,
    /// Enlarge each image of `restore.png` this many times.
    pub scale: Option<usize>,
    /// The command line, for the manifest.
    pub command: String,
}

/// How well a restoration of known images did, per image.
#[derive(Debug, Clone, Serialize)]
pub struct Scores {
    /// PSNR of the draws' mean against the true image, dB (peak 1).
    pub psnr: f64,
    /// The fraction of true pixels inside their 5%-95% interval.
    pub coverage: f64,
    /// The same over the pixels the observation does not see (`A^T A 1 =
    /// 0`: a mask's hidden pixels), when there are any.
    pub coverage_unseen: Option<f64>,
    /// The intervals' mean width.
    pub width: f64,
}

/// The scores of each of the `k` images of `truth` (`[k, h, w, c]` flat)
/// against `s`; `unseen` marks the pixels of one image the observation
/// does not see.
pub fn score(truth: &[f32], s: &Summary, unseen: &[bool]) -> Vec<Scores> {
    let per = unseen.len().max(1);
    (0..truth.len() / per)
        .map(|i| {
            let at = |v: &[f32]| v[i * per..(i + 1) * per].to_vec();
            let (t, m, lo, hi) = (at(truth), at(&s.mean), at(&s.q05), at(&s.q95));
            let mse = t
                .iter()
                .zip(&m)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>()
                / per as f64;
            let inside: Vec<bool> = (0..per).map(|p| lo[p] <= t[p] && t[p] <= hi[p]).collect();
            let frac = |keep: &dyn Fn(usize) -> bool| {
                let n = (0..per).filter(|&p| keep(p)).count();
                (n > 0)
                    .then(|| (0..per).filter(|&p| keep(p) && inside[p]).count() as f64 / n as f64)
            };
            Scores {
                psnr: -10.0 * mse.max(1e-12).log10(),
                coverage: frac(&|_| true).unwrap_or(0.0),
                coverage_unseen: frac(&|p| unseen[p]),
                width: (0..per).map(|p| (hi[p] - lo[p]) as f64).sum::<f64>() / per as f64,
            }
        })
        .collect()
}

/// Runs `spec`: loads the pair and the images, restores them, and writes
/// the run folder (`truth.npy`, `observed.npy`, `mean.npy`, `std.npy`,
/// `q05.npy`, `q95.npy`, `samples.npy`, `restore.png`, `manifest.json`);
/// returns the summary line.
pub fn job(spec: &RestoreSpec, progress: &mut dyn Progress) -> Result<String> {
    RunFolder::check(&spec.out, spec.force, false)?;
    let pair = crate::run::pairs::load::pair(&spec.networks, spec.data_dir.as_deref())?;
    let image = pixels(&*pair)?;
    let tau = spec.damage.tau(&*pair)?;
    let truths = spec.truths.load(&*pair, image)?;
    let cfg = &spec.settings;
    let run = (cfg, spec.chains, spec.record_every, spec.seed);
    let r = restore(&*pair, &truths, &spec.damage, run, progress)?;
    let s = summarise(&r, tau, spec.seed);
    let truth: Vec<f32> = truths.flatten_all()?.to_vec1()?;
    let operator = Operator::new(
        degradations(&spec.damage.operator, (image.0, image.1), spec.seed)?,
        image,
    )?;
    let ones = vec![1.0; image.0 * image.1 * image.2];
    let unseen: Vec<bool> = operator
        .adjoint(&operator.apply(&ones))
        .iter()
        .map(|&v| v == 0.0)
        .collect();
    let scores = score(&truth, &s, &unseen);
    let folder = RunFolder::open(&spec.out, spec.force, false)?.with_scale(spec.scale);
    write(&folder, &r, &s, &truth)?;
    let mean = |f: &dyn Fn(&Scores) -> f64| scores.iter().map(f).sum::<f64>() / scores.len() as f64;
    let manifest = serde_json::json!({
        "command": spec.command,
        "networks": spec.networks,
        "images": format!("{:?}", spec.truths),
        "operator": format!("{:?}", spec.damage.operator),
        "noise_std": spec.damage.noise_std,
        "tau": tau,
        "sampler": cfg,
        "chains_per_image": spec.chains,
        "draws_per_image": r.draws_per_image,
        "grad_evals_per_chain": r.grad_evals,
        "acceptance": r.acceptance,
        "seed": spec.seed,
        "per_image": scores,
        "mean_psnr": mean(&|s| s.psnr),
        "mean_coverage": mean(&|s| s.coverage),
        "models": pair.models(),
    });
    folder.json("manifest.json", &manifest)?;
    let dir = folder.finish()?;
    Ok(format!(
        "{} images restored, {} draws each: mean PSNR {:.2} dB, 90% intervals cover {:.3} of true pixels (acceptance {:.3}); wrote {}",
        scores.len(),
        r.draws_per_image,
        mean(&|s| s.psnr),
        mean(&|s| s.coverage),
        r.acceptance,
        dir.display()
    ))
}

/// The arrays (`[k, c, h, w]`; draws `[k, d, c, h, w]`) and `restore.png`:
/// a row per image of the truth, the observation (blown up to the image's
/// size), the mean, the spread (x4), the 5% and 95% images and the first
/// draws.
fn write(folder: &RunFolder, r: &Restored, s: &Summary, truth: &[f32]) -> Result<()> {
    let (h, w, c) = r.image;
    let (oh, ow, oc) = r.observation;
    let per = h * w * c;
    let k = truth.len() / per;
    let chw = |v: &[f32], n: usize| hwc_to_chw(v, n, r.image);
    folder.npy_f32("truth.npy", &[k, c, h, w], &chw(truth, k))?;
    let observed = hwc_to_chw(&r.observed, k, r.observation);
    folder.npy_f32("observed.npy", &[k, oc, oh, ow], &observed)?;
    for (name, v) in [
        ("mean", &s.mean),
        ("std", &s.std),
        ("q05", &s.q05),
        ("q95", &s.q95),
    ] {
        folder.npy_f32(&format!("{name}.npy"), &[k, c, h, w], &chw(v, k))?;
    }
    let d = r.draws_per_image;
    folder.npy_f32("samples.npy", &[k, d, c, h, w], &chw(&r.draws, k * d))?;
    let shown = d.min(4);
    let mut rows = Vec::new();
    for i in 0..k {
        let at = |v: &[f32]| v[i * per..(i + 1) * per].to_vec();
        rows.extend(at(truth));
        rows.extend(blown_up(
            &r.observed[i * oh * ow * oc..(i + 1) * oh * ow * oc],
            r.observation,
            r.image,
        ));
        rows.extend(at(&s.mean));
        rows.extend(at(&s.std).iter().map(|v| (4.0 * v).min(1.0)));
        rows.extend(at(&s.q05));
        rows.extend(at(&s.q95));
        rows.extend_from_slice(&r.draws[i * d * per..(i * d + shown) * per]);
    }
    let cols = 6 + shown;
    let clamped: Vec<f32> = rows.iter().map(|v| v.clamp(0.0, 1.0)).collect();
    folder.grid("restore.png", &clamped, k * cols, r.image, cols)
}

/// An observation `(oh, ow, oc)` shown at the image's size by repeating
/// each value over its block (channels: the image's, the observation's
/// repeated when it has one).
fn blown_up(
    y: &[f32],
    (oh, ow, oc): (usize, usize, usize),
    (h, w, c): (usize, usize, usize),
) -> Vec<f32> {
    let mut x = Vec::with_capacity(h * w * c);
    for row in 0..h {
        for col in 0..w {
            for ch in 0..c {
                let (r, q) = (row * oh / h, col * ow / w);
                x.push(y[(r * ow + q) * oc + ch.min(oc - 1)]);
            }
        }
    }
    x
}
