//! The priors on the code drawn alone (`eps2 = 0`: no condition), beside
//! the generator's floor `G(E(x))` of as many test images: how close a
//! prior's own draws come to what the generator can draw at all. Frechet
//! distances shrink with the number of images, so both sides have the
//! same count.

use std::fmt::Write;

use candle_core::Module;
use serde::Serialize;

use super::experiments::{compare_one, phase, real_per_class, SamplerRow, Yardsticks};
use super::report::{score, Scores};
use crate::data::fashion_mnist::Dataset;
use crate::error::Result;
use crate::models::fashion::Stack;
use crate::run::config::preset::{preset, SamplerConfig};
use crate::run::Progress;

/// A prior's draws are held to this multiple of `G(E(x))`'s Frechet
/// distance (the bar of the issue that asked for the score prior).
pub const FRECHET_BAR: f64 = 1.5;

/// What the priors' section measured.
#[derive(Debug, Clone, Serialize)]
pub struct PriorsAlone {
    /// Draws of each prior, and test images reconstructed.
    pub draws: usize,
    /// `G(E(x))` of `draws` test images, as many of every class.
    pub reconstructed: Scores,
    pub rows: Vec<SamplerRow>,
}

/// Each prior the stack has, drawn alone, with its budget per draw: the
/// score prior by reverse diffusion down its whole ladder, the flow by its
/// own transport of one base draw (one MALA step at `eps2 = 0` from a base
/// draw keeps a draw of the base).
fn priors(stack: &Stack) -> Result<Vec<(&'static str, SamplerConfig, usize)>> {
    let mut v = Vec::new();
    if stack.code_score.is_some() {
        let cfg = SamplerConfig {
            eps2: 0.0,
            ..preset("ppgn-score")?
        };
        let budget = cfg.steps;
        v.push(("score prior (reverse diffusion, eps2 = 0)", cfg, budget));
    }
    if stack.code_prior.is_some() {
        let cfg = SamplerConfig {
            eps2: 0.0,
            start_candidates: 1,
            ..preset("exact-mala")?
        };
        v.push(("flow prior (exact-mala, eps2 = 0, one step)", cfg, 2));
    }
    Ok(v)
}

/// Draws `draws` codes of every prior the stack has (rounded down to a
/// multiple of 10, as many of every class label; the labels mean nothing
/// at `eps2 = 0`) and scores them beside `G(E(x))` of as many test images.
pub fn measure(
    stack: &Stack,
    y: &Yardsticks,
    test: &Dataset,
    draws: usize,
    seed: u64,
    progress: &mut dyn Progress,
) -> Result<PriorsAlone> {
    let per_class = (draws / 10).max(1);
    let classes: Vec<usize> = (0..10).collect();
    let (x, labels, _) = real_per_class(test, &classes, per_class, seed)?;
    let recon = stack
        .generator
        .forward(&stack.classifier.forward_all(&x)?.h)?;
    let reconstructed = score(stack.evaluator()?, y.judge, &recon, &labels, y.reference)?;
    let mut rows = Vec::new();
    for (label, cfg, budget) in priors(stack)? {
        let steps = cfg.with_grad_budget(budget)?.steps;
        let mut r = phase(progress, label, steps, |p| {
            compare_one(
                stack,
                y,
                label,
                &cfg,
                per_class,
                budget,
                seed,
                &reconstructed,
                p,
            )
        })?;
        r.images = None;
        rows.push(r);
    }
    Ok(PriorsAlone {
        draws: per_class * 10,
        reconstructed,
        rows,
    })
}

/// The section of docs/results.md.
pub fn markdown(p: &PriorsAlone) -> String {
    let mut m = String::new();
    let w = &mut m;
    let floor = p.reconstructed.frechet_distance;
    let _ = writeln!(
        w,
        "## The priors alone\n\n{} draws of each prior on the code with no condition (`--eps2 0`), decoded by G, beside \
         G(E(x)) of {} test images ({} of every class): the generator's floor. The bar: a Frechet distance at most {FRECHET_BAR} \
         times the floor's. The class column means nothing at eps2 = 0 beyond the spread of classes drawn.\n",
        p.draws,
        p.draws,
        p.draws / 10
    );
    let _ = writeln!(w, "| draws | gradient evaluations per draw | evaluator acc. | FD | FD / floor | meets the bar | MS-SSIM |");
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---|---:|");
    let ms = |s: &Scores| {
        s.ms_ssim_per_class.values().sum::<f64>() / s.ms_ssim_per_class.len().max(1) as f64
    };
    let _ = writeln!(
        w,
        "| G(E(x)) of the test images | - | {:.3} | {floor:.2} | 1.00 | - | {:.3} |",
        p.reconstructed.evaluator_accuracy,
        ms(&p.reconstructed)
    );
    for r in &p.rows {
        let ratio = r.scores.frechet_distance / floor;
        let _ = writeln!(
            w,
            "| {} | {} | {:.3} | {:.2} | {ratio:.2} | {} | {:.3} |",
            r.label,
            r.grad_evals_per_chain,
            r.scores.evaluator_accuracy,
            r.scores.frechet_distance,
            if ratio <= FRECHET_BAR { "yes" } else { "no" },
            r.mean_ms_ssim
        );
    }
    let _ = writeln!(w);
    m
}
