//! The chains of a restoration and their draws: the observation made
//! from the true images, the target, and the decoded images of the second
//! half's records.

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::Distribution;

use crate::density::observation::{variances, Operator};
use crate::error::{Error, Result};
use crate::models::generator_error::ErrorByValue;
use crate::run::config::preset::SamplerConfig;
use crate::run::config::restore::{degradations, Asked};
use crate::run::config::spec::Init;
use crate::run::drive::init::Starts;
use crate::run::drive::progress::{drive_to_end, Progress};
use crate::run::pairs::pair::{Condition, Pair, Restoring};

use super::chains::{kept, Chains};
use super::paper::Inpainting;

/// The damage and how it is sampled.
#[derive(Debug, Clone)]
pub struct Damage {
    /// The operator's steps (`crate::run::config::restore::parse`).
    pub operator: Vec<Asked>,
    /// The observation's noise `s`, in the image's [0, 1] units.
    pub noise_std: f64,
    /// The generator's own error `tau` ([0, 1] units): one number, or one
    /// per pixel of the generator's images (flat HWC) [default: the
    /// pair's, `Pair::generator_error`].
    pub tau: Option<Vec<f64>>,
    /// The error added to each draw before the quantiles are taken
    /// [default: [`DrawError::DEFAULT`]].
    pub draw_error: Option<DrawError>,
}

/// Which error of the generator a restoration adds to its draws before it
/// takes their spread and quantiles (`--draw-error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrawError {
    /// `N(0, tau^2)` at every pixel, `tau` the likelihood's.
    Gaussian,
    /// The generator's error given the value it draws, from its card
    /// (`crate::models::generator_error`).
    ByValue,
}

impl DrawError {
    /// What a restoration adds when not told.
    pub const DEFAULT: DrawError = DrawError::Gaussian;

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "gaussian" => Ok(DrawError::Gaussian),
            "by-value" => Ok(DrawError::ByValue),
            _ => Err(Error::unknown("draw error", s, &["gaussian", "by-value"])),
        }
    }
}

/// The error a restoration adds to each drawn pixel (`DrawError`).
#[derive(Debug, Clone)]
pub enum DrawNoise {
    /// `N(0, tau^2)`, one `tau` or one per pixel.
    Gaussian(Vec<f64>),
    ByValue(ErrorByValue),
}

impl DrawNoise {
    /// `x` (pixel `p` of an image, flat HWC) with the error added, drawn
    /// from `rng`.
    pub fn add(&self, x: f64, p: usize, rng: &mut impl rand::Rng) -> f64 {
        match self {
            DrawNoise::Gaussian(tau) => {
                let e: f64 = rand_distr::StandardNormal.sample(rng);
                x + tau[p % tau.len()] * e
            }
            DrawNoise::ByValue(t) => x + t.error(x, rng.random::<f64>()),
        }
    }

    pub fn kind(&self) -> DrawError {
        match self {
            DrawNoise::Gaussian(_) => DrawError::Gaussian,
            DrawNoise::ByValue(_) => DrawError::ByValue,
        }
    }
}

impl Damage {
    /// `tau` as asked, else `pair`'s generator's; refused when neither
    /// has one. Its length and values are checked with the operator
    /// (`observation::variances`).
    pub fn tau(&self, pair: &dyn Pair) -> Result<Vec<f64>> {
        self.tau
            .clone()
            .or_else(|| pair.generator_error())
            .ok_or_else(|| {
                Error::unsupported(
                    format!(
                        "restoring with {}: its generator's own error is not on a card",
                        pair.names().0
                    ),
                    "give --tau, the RMSE of the generator's best reconstructions of real images (0 if it draws them exactly)",
                )
            })
    }

    /// The error to add to the draws: as asked, else [`DrawError::DEFAULT`];
    /// `tau` is [`Damage::tau`]'s, and `by-value` needs `pair`'s
    /// generator's table.
    pub fn draw_noise(&self, pair: &dyn Pair, tau: &[f64]) -> Result<DrawNoise> {
        match self.draw_error.unwrap_or(DrawError::DEFAULT) {
            DrawError::Gaussian => Ok(DrawNoise::Gaussian(tau.to_vec())),
            DrawError::ByValue => pair.generator_error_by_value().map(DrawNoise::ByValue).ok_or_else(|| {
                Error::unsupported(
                    format!(
                        "--draw-error by-value with {}: its generator's error by value is not on a card",
                        pair.names().0
                    ),
                    "give --draw-error gaussian (N(0, tau^2)), or record the table with `ppgn models check --record-tau`",
                )
            }),
        }
    }
}

/// `tau` as one number for a manifest: itself, or the root mean square of
/// one per pixel.
pub fn tau_rms(tau: &[f64]) -> f64 {
    match tau {
        [t] => *t,
        _ => (tau.iter().map(|t| t * t).sum::<f64>() / tau.len().max(1) as f64).sqrt(),
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
/// image, all in one batch; with `paper`, the first paper's inpainting
/// instead (`super::paper`, an image at a time).
pub fn restore(
    pair: &dyn Pair,
    truths: &Tensor,
    damage: &Damage,
    paper: Option<&Inpainting>,
    run: (&SamplerConfig, usize, usize, u64),
    progress: &mut dyn Progress,
) -> Result<Restored> {
    let (cfg, chains, record_every, seed) = run;
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
    let variance = variances(&operator, damage.noise_std, &tau)?;
    let observed = observe(&operator, truths, damage.noise_std, seed)?;
    let every = record_every.max(1);
    let runs = match paper {
        Some(p) => super::paper::chains(
            pair,
            &operator,
            &observed,
            p,
            (cfg, chains, every, seed),
            progress,
        )?,
        None => {
            let (oh, ow, oc) = operator.output();
            let posterior = Restoring {
                observed: Tensor::from_vec(observed.clone(), (k, oh, ow, oc), &Device::Cpu)?,
                operator: operator.clone(),
                variance,
            };
            vec![posterior_chains(
                pair,
                posterior,
                (cfg, chains, every, seed),
                progress,
            )?]
        }
    };
    let per = h * w * c;
    let records = runs[0].snaps.len();
    let per_run = k / runs.len();
    // [k, chains * records, h, w, c]: image i's draws are its chains'
    let mut draws = Vec::with_capacity(k * chains * records * per);
    for i in 0..k {
        let run = &runs[i / per_run];
        for ch in 0..chains {
            let j = (i % per_run) * chains + ch;
            for s in &run.snaps {
                draws.extend_from_slice(&s[j * per..(j + 1) * per]);
            }
        }
    }
    let sweeps = (runs.len() * cfg.steps.max(1)) as f64;
    Ok(Restored {
        image,
        observation: operator.output(),
        observed: observed.iter().map(|&v| v as f32).collect(),
        draws,
        draws_per_image: chains * records,
        grad_evals: runs[0].grad_evals,
        // the sum over steps of the chains' mean acceptance, per run
        acceptance: runs.iter().map(|r| r.accept_sum).sum::<f64>() / sweeps,
    })
}

/// The posterior's chains of every image in one batch: `chains` a row of
/// `r.observed` (`[k, oh, ow, oc]`).
fn posterior_chains(
    pair: &dyn Pair,
    mut r: Restoring,
    (cfg, chains, every, seed): (&SamplerConfig, usize, usize, u64),
    progress: &mut dyn Progress,
) -> Result<Chains> {
    let n = r.observed.dim(0)? * chains;
    let rows: Vec<u32> = (0..n).map(|i| (i / chains) as u32).collect();
    r.observed = r
        .observed
        .index_select(&Tensor::new(rows, &Device::Cpu)?, 0)?;
    let pipeline = pair.pipeline(cfg, &Condition::Restore(r))?;
    cfg.kernel()?.check(&pipeline.target)?;
    let start = Starts::new(&Init::Random, pair, cfg, seed, None, n)?.of(cfg, 0..n)?;
    let out = drive_to_end("restore", &pipeline, cfg, &start, seed, every, progress)?;
    kept(out, cfg.steps, every)
}

/// The shape of `pair`'s images, refused when they are not pixels in
/// [0, 1] (an observation of them would not be an image).
pub(super) fn pixels(pair: &dyn Pair) -> Result<(usize, usize, usize)> {
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
