//! `ppgn restore --eval N`: how calibrated a restoration is, per sampler,
//! on N test images that no network was trained on. For each sampler the
//! restoration job runs on the same images, damage and seed; the table
//! reports the posterior mean's PSNR and SSIM against the true image, the
//! fraction of true pixels inside their 90% (5%-95%) interval (over all
//! pixels, and over those the observation does not see, a mask's hole),
//! the intervals' mean width and the gradient evaluations spent per image.
//!
//! The samplers and how many draws each gets are fixed here, before any
//! run: every sampler records `R = min(steps / 2, 20)` draws a chain
//! spread over the second half of its steps and runs `ceil(100 / R)`
//! chains an image, so that each image has at least 100 draws.

use std::path::Path;

use serde::Serialize;

use super::mixing::Trace;
use super::ms_ssim::ssim;
use crate::data::npy::read_f32;
use crate::error::{Error, Result};
use crate::run::config::preset::{preset, SamplerConfig, SamplerKind};
use crate::run::config::restore::Asked;
use crate::run::drive::progress::Progress;
use crate::run::jobs::restore::{check_paper, job, PaperInpaint, RestoreSpec, PAPER_INPAINT};
use crate::sampler::schedule::Schedule;

/// The samplers `--eval` compares unless told otherwise; with a mask,
/// the paper's inpainting too ([`samplers_for`]).
pub const SAMPLERS: &str = "map,mala-approx,exact-mala,exact-hmc,exact-nuts";

/// [`SAMPLERS`], with `paper-inpaint` after `mala-approx` when `operator`
/// is a mask (the only damage the paper's inpainting takes).
pub fn samplers_for(operator: &[Asked]) -> Vec<String> {
    let mut names: Vec<String> = SAMPLERS.split(',').map(String::from).collect();
    if check_paper(operator).is_ok() {
        names.insert(2, PAPER_INPAINT.into());
    }
    names
}

/// A sampler of the table by name: `map` (MAP on exact-mala's target and
/// starts, the step normalised by the mean |gradient| and decaying
/// linearly from 0.1 to 0.001, as DGN-AM's learning rate decays),
/// `mala-approx` (the `ppgn` preset: the paper's inpainting sampler and
/// prior, on the likelihood), `paper-inpaint` (the same sampler on the
/// paper's inpainting target, `crate::run::jobs::restore::PAPER_INPAINT`),
/// or a preset's name; each with eps2 = 1 (the likelihood as it is).
pub fn sampler(name: &str) -> Result<SamplerConfig> {
    let mut cfg = match name {
        "map" => {
            let mut c = preset("exact-mala")?;
            c.sampler = SamplerKind::Map;
            c.adapt = None;
            c.normalise = true;
            c.step = Schedule::Linear {
                start: 0.1,
                end: 0.001,
                steps: c.steps,
            };
            c.preset = "map".into();
            c
        }
        "mala-approx" => preset("ppgn")?,
        // the sampler of `ppgn inpaint`; `calibrate` adds its class term,
        // clamp and context term
        PAPER_INPAINT => preset("ppgn")?,
        other => preset(other)?,
    };
    cfg.eps2 = 1.0;
    Ok(cfg)
}

/// Draws a chain and chains an image for `steps` steps: `(record_every,
/// chains)` by the rule of the module's header.
pub fn draws(steps: usize) -> (usize, usize) {
    let r = (steps / 2).clamp(1, 20);
    ((steps / 2 / r).max(1), 100usize.div_ceil(r))
}

/// One sampler's row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub sampler: String,
    pub images: usize,
    pub draws_per_image: usize,
    pub grad_evals_per_image: f64,
    pub psnr: f64,
    pub ssim: f64,
    pub coverage: f64,
    pub coverage_unseen: Option<f64>,
    pub width: f64,
    pub acceptance: f64,
    /// The mean over images of the minimum over the coordinates of the
    /// chains' ESS in the second half, per gradient evaluation of the
    /// image's chains (`super::mixing`).
    pub min_ess_per_grad: Option<f64>,
}

/// Runs `base` (its images, damage, networks, seed) once per sampler of
/// `samplers` into `base.out/NAME/`, and writes `calibration.md` and
/// `calibration.json` in `base.out`; returns the Markdown table.
pub fn calibrate(
    base: &RestoreSpec,
    samplers: &[String],
    steps: Option<usize>,
    progress: &mut dyn Progress,
) -> Result<String> {
    let configs: Vec<SamplerConfig> = samplers
        .iter()
        .map(|s| {
            if s == PAPER_INPAINT {
                check_paper(&base.damage.operator)?;
            }
            let mut c = sampler(s)?;
            c.steps = steps.unwrap_or(c.steps);
            if let Schedule::Linear { steps, .. } = &mut c.step {
                *steps = c.steps;
            }
            Ok(c)
        })
        .collect::<Result<_>>()?;
    std::fs::create_dir_all(&base.out).map_err(|e| Error::io(&base.out, e))?;
    let mut rows = Vec::new();
    for (name, cfg) in samplers.iter().zip(configs) {
        let (record_every, chains) = draws(cfg.steps);
        let spec = RestoreSpec {
            settings: cfg,
            chains,
            record_every,
            // paper-inpaint's class term: each image's label
            paper: PaperInpaint::asked(&mut Some(name.clone()), None)?,
            out: base.out.join(name),
            ..base.clone()
        };
        let mut trace = Trace::new(progress, spec.settings.steps / 2);
        job(&spec, &mut trace)?;
        if let Some(e) = trace.failed.take() {
            return Err(Error::data(&spec.out, format!("tracing the chains: {e}")));
        }
        let mut row = row(name, &spec.out)?;
        let grads = row.grad_evals_per_image;
        row.min_ess_per_grad = trace
            .min_ess(row.images, chains)
            .map(|v| v.iter().map(|e| e / grads).sum::<f64>() / v.len() as f64);
        rows.push(row);
    }
    let table = markdown(&rows, base);
    let json = serde_json::to_string_pretty(&rows).expect("rows serialise");
    crate::fsutil::write_atomic(&base.out.join("calibration.json"), json.as_bytes())?;
    crate::fsutil::write_atomic(&base.out.join("calibration.md"), table.as_bytes())?;
    Ok(table)
}

/// A sampler's row from its run folder: the manifest's scores, and the
/// SSIM of `mean.npy` against `truth.npy` (per channel, averaged).
fn row(name: &str, dir: &Path) -> Result<Row> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let m: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::data(&path, e.to_string()))?;
    let (shape, truth) = read_f32(&dir.join("truth.npy"))?;
    let (_, mean) = read_f32(&dir.join("mean.npy"))?;
    let (k, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    let plane = |v: &[f32], i: usize| -> Vec<f64> {
        v[i * h * w..(i + 1) * h * w]
            .iter()
            .map(|&x| x as f64)
            .collect()
    };
    let ssim_mean = (0..k * c)
        .map(|i| ssim(&plane(&truth, i), &plane(&mean, i), h, w))
        .sum::<f64>()
        / (k * c) as f64;
    let per = m["per_image"].as_array().cloned().unwrap_or_default();
    let avg = |key: &str| {
        let v: Vec<f64> = per.iter().filter_map(|p| p[key].as_f64()).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let num = |key: &str| m[key].as_f64().unwrap_or(f64::NAN);
    Ok(Row {
        sampler: name.into(),
        images: k,
        draws_per_image: num("draws_per_image") as usize,
        grad_evals_per_image: num("grad_evals_per_chain") * num("chains_per_image"),
        psnr: avg("psnr").unwrap_or(f64::NAN),
        ssim: ssim_mean,
        coverage: avg("coverage").unwrap_or(f64::NAN),
        coverage_unseen: avg("coverage_unseen"),
        width: avg("width").unwrap_or(f64::NAN),
        acceptance: num("acceptance"),
        min_ess_per_grad: None,
    })
}

/// The table, headed by what was restored.
pub fn markdown(rows: &[Row], base: &RestoreSpec) -> String {
    let mut out = format!(
        "Operator `{}`, noise std {}, {} images ({}), seed {}.\n\n",
        crate::run::config::restore::written(&base.damage.operator),
        base.damage.noise_std,
        rows.first().map_or(0, |r| r.images),
        base.truths,
        base.seed
    );
    out += "| sampler | draws / image | gradient evals / image | PSNR of mean (dB) | SSIM of mean | 90% coverage, all pixels | 90% coverage, unseen pixels | mean interval width | acceptance | min ESS / gradient eval |\n";
    out += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in rows {
        let unseen = r.coverage_unseen.map_or("-".into(), |v| format!("{v:.3}"));
        let ess = r
            .min_ess_per_grad
            .map_or("-".into(), |v| format!("{v:.2e}"));
        out += &format!(
            "| {} | {} | {:.0} | {:.2} | {:.3} | {:.3} | {} | {:.3} | {:.3} | {ess} |\n",
            r.sampler,
            r.draws_per_image,
            r.grad_evals_per_image,
            r.psnr,
            r.ssim,
            r.coverage,
            unseen,
            r.width,
            r.acceptance
        );
    }
    out
}
