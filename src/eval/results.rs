//! `docs/results.md`: the report's numbers as tables, and each claim of the
//! papers checked against them with the criterion spelled out.

use std::fmt::Write;

use serde::Serialize;

use super::experiments::mean_over_classes;
use super::report::{classes_more_diverse, Scores};
use crate::data::fashion_mnist::CLASS_NAMES;
use crate::eval::experiments::{ChainStudy, NoisePoint, SamplerRow};

/// Everything `ppgn report` measured (results.json holds it, less the images).
#[derive(Debug, Serialize)]
pub struct Report {
    pub command: String,
    pub seed: u64,
    pub per_class: usize,
    pub study_chains: usize,
    pub study_steps: usize,
    pub real: Scores,
    pub real_mean_ms_ssim: f64,
    /// Evaluator accuracy on the whole test set (the evaluator's card).
    pub real_full_accuracy: f64,
    /// The same real test images reconstructed, `G(E(x))`: what the
    /// generator draws from real codes, the floor of every sampler on it.
    pub reconstructed: Scores,
    /// One table per gradient budget.
    pub budgets: Vec<BudgetTable>,
    /// The priors on the code drawn alone, beside `G(E(x))`.
    pub priors: crate::eval::priors::PriorsAlone,
    pub eps1_sweep: Vec<ChainStudy>,
    pub eps3_sweep: Vec<ChainStudy>,
    pub noise_mean_activation: f64,
    pub noise: Vec<NoisePoint>,
    pub mixing: Vec<ChainStudy>,
    pub tsne: TsneInfo,
    /// The generator candidates compared (Fig. S8), when the report was
    /// given a generator study.
    pub generators: Option<crate::eval::generators::Comparison>,
    pub claims: Vec<Claim>,
    /// The exact samplers against their bar (`claims::exact_bar`).
    pub bar: Vec<BarCheck>,
}

#[derive(Debug, Serialize)]
pub struct BudgetTable {
    pub grad_evals: usize,
    pub rows: Vec<SamplerRow>,
}

#[derive(Debug, Serialize)]
pub struct TsneInfo {
    pub class: String,
    pub chains: usize,
    pub steps: usize,
    pub threshold: f64,
    pub kept: usize,
    pub shown: usize,
}

/// The bar the exact flow-prior samplers were built to meet: the evaluator
/// recognises at least this share of their samples,
pub const RECOGNISED_BAR: f64 = 0.85;
/// their within-class MS-SSIM is at most real images' plus this, and their
/// Frechet distance is below PPGN's (joint prior) at the same budget.
pub const MS_SSIM_MARGIN: f64 = 0.05;

/// One row measured against the exact samplers' bar.
#[derive(Debug, Clone, Serialize)]
pub struct BarCheck {
    pub label: String,
    /// `None` for a row without sampling (G(E(x))).
    pub grad_evals: Option<usize>,
    pub recognised: f64,
    pub recognised_ok: bool,
    pub ms_ssim: f64,
    pub ms_ssim_ok: bool,
    pub frechet_distance: f64,
    /// PPGN's (joint prior) at the same budget, and whether the row's is
    /// below it; `None` for a row without sampling.
    pub ppgn_frechet_distance: Option<f64>,
    pub frechet_ok: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Claim {
    pub source: String,
    pub claim: String,
    pub criterion: String,
    pub measured: String,
    pub supported: bool,
}

pub(crate) fn row<'a>(t: &'a BudgetTable, label: &str) -> Option<&'a SamplerRow> {
    t.rows.iter().find(|r| r.label == label)
}

/// Labels of the compared samplers (the report's rows, in order).
pub const MAP_CLIP: &str = "MAP + clip (DGN-AM)";
pub const MAP: &str = "MAP, no clip";
pub const MALA: &str = "MALA";
pub const MALA_CLIP: &str = "MALA + clip";
pub const HMC: &str = "HMC";
pub const PPGN: &str = "PPGN (joint prior)";
pub const DGN_CHAIN: &str = "DGN-AM chain (Gaussian prior)";
pub const EXACT_MALA: &str = "MALA, flow prior (exact)";
pub const EXACT_HMC: &str = "HMC, flow prior (exact)";
pub const PPGN_FLOW: &str = "PPGN, flow prior";
pub const PPGN_SCORE: &str = "Reverse diffusion, score prior";
pub const PPGN_SCORE_LANGEVIN: &str = "Annealed Langevin, score prior";
pub const PPGN_X: &str = "PPGN-x (pixel DAE prior)";

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.3}"))
}

fn slug(label: &str) -> String {
    let mut s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    s.trim_matches('-').to_string()
}

/// File name of a sampler's grid at a budget, relative to the docs folder.
pub fn grid_name(label: &str, budget: usize) -> String {
    format!("results/{}-{budget}.png", slug(label))
}

/// The Markdown text of docs/results.md.
pub fn render(r: &Report, timing: &[(String, usize, f64)]) -> String {
    let mut m = String::new();
    let w = &mut m;
    render_header(w, r);
    for t in &r.budgets {
        render_budget(w, r, t);
    }
    render_bar(w, r);
    w.push_str(&crate::eval::priors::markdown(&r.priors));
    let _ = writeln!(
        w,
        "## How the presets' values were chosen\n\nEvery preset tuned on Fashion-MNIST has its candidate values and its rule \
written in `src/run/config/tuning.rs`; `ppgn presets choose` runs the candidates and applies the rule on the validation split \
(the last 5,000 training images) with the guiding classifier, never the evaluator, and `docs/tuning.md` holds its latest output. \
No number of this page chose a setting.\n"
    );
    if let Some(g) = &r.generators {
        render_generators(w, g);
    }
    render_study(w, r, "eps1 sweep (Fig. S23)", "(eps2, eps3) = (1, 1e-17); rows of the image: two chains per setting, in the table's order.", &r.eps1_sweep, "results/eps1-sweep.png");
    render_study(
        w,
        r,
        "eps3 sweep (Fig. S15)",
        "(eps1, eps2) = (1e-5, 1); rows of the image: two chains per setting.",
        &r.eps3_sweep,
        "results/eps3-sweep.png",
    );
    render_study(
        w,
        r,
        "Mixing from the same start (Fig. S13)",
        "Same starts and targets for every model; rows of the image: two chains per model.",
        &r.mixing,
        "results/mixing.png",
    );
    render_noise(w, r);
    render_tsne_claims_cost(w, r, timing);
    m
}

fn render_header(w: &mut String, r: &Report) {
    let _ = writeln!(w, "# Results on Fashion-MNIST\n");
    let _ = writeln!(
        w,
        "Written by `{}` (seed {}); every number below comes from that run and a rerun with the same \
command and seed reproduces them (timings aside). Scores use the evaluator, a network never used for \
sampling; Frechet distances are in its 128-unit feature space to the 60k training images; MS-SSIM is \
within class over 200 random pairs (3 scales, `src/eval/ms_ssim.rs`); log p(real) is the separately \
trained realness judge (`models/fashion-mnist/realness.card.json`). Each sampler runs {} chains per class \
from the same random codes; the real row is {} random test images per class.\n",
        r.command, r.seed, r.per_class, r.per_class
    );
}

/// The generator study: Fig. S8's loss ablation and the longer and wider
/// runs, chosen by the guiding classifier on the validation split.
fn render_generators(w: &mut String, g: &crate::eval::generators::Comparison) {
    let _ = writeln!(
        w,
        "## The generator (Fig. S8's loss ablation)\n\nGenerators trained by `scripts/generator-study.sh` \
on the first 55,000 training images against the shipped classifier, each with the losses, width and \
length shown. The Frechet distance of the reconstructions `G(E(x))` to the images `x` in the guiding \
classifier's spatial features `h1` averaged over positions, on the validation split (the last 5,000 \
training images), chooses; the evaluator's columns (test images, Frechet distance to the training \
images in its features) were computed after the choice. L_h1 is the image-space feature loss, L_h the \
code loss (S8's \"code layer\"). The distance in the code `h` does not choose, because L_h minimises \
it by construction: the study first chose by it, and its winners (the L_h rows) draw a speckle that \
S8 describes and the evaluator's column shows; the rule moved to `h1` after those numbers were seen. \
The shipped generator is a row too; it trained on all 60,000 training images, the validation split \
included, so its validation distances flatter it. The study stops when the runs tried (`scripts/generator-study.sh` \
says which) have not halved the shipped generator's distance: then the best by the rule ships.\n"
    );
    let _ = writeln!(w, "{}", crate::eval::generators::markdown(g));
}

/// The row of the test images' reconstructions `G(E(x))`.
fn render_reconstructed(w: &mut String, r: &Report) {
    let g = &r.reconstructed;
    let _ = writeln!(
        w,
        "| G(E(x)) of the same test images (no sampling) | - | - | - | {:.3} | {:.2} | {:.2} | {:.3} | {} | {} |",
        g.evaluator_accuracy,
        g.evaluator_score,
        g.frechet_distance,
        mean_over_classes(&g.ms_ssim_per_class),
        classes_more_diverse(g, &r.real),
        opt(g.mean_log_real)
    );
}

/// One budget's table, accuracy along the run, and sample grids.
fn render_budget(w: &mut String, r: &Report, t: &BudgetTable) {
    let _ = writeln!(
        w,
        "## Samplers at {} gradient evaluations per chain (Table 2 and Table S3 analogues)\n",
        t.grad_evals
    );
    let _ = writeln!(w, "| sampler | steps | gradient evaluations | accept | evaluator acc. | evaluator score | FD | MS-SSIM | classes more diverse | log p(real) |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
    let _ = writeln!(
        w,
        "| real test images | - | - | - | {:.3} | {:.2} | {:.2} | {:.3} | {} | {} |",
        r.real.evaluator_accuracy,
        r.real.evaluator_score,
        r.real.frechet_distance,
        r.real_mean_ms_ssim,
        r.real.ms_ssim_per_class.len(),
        opt(r.real.mean_log_real)
    );
    render_reconstructed(w, r);
    for s in &t.rows {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {:.2} | {:.3} | {:.2} | {:.2} | {:.3} | {} | {} |",
            s.label,
            s.config.steps,
            s.grad_evals_per_chain,
            s.mean_accept,
            s.scores.evaluator_accuracy,
            s.scores.evaluator_score,
            s.scores.frechet_distance,
            s.mean_ms_ssim,
            s.classes_more_diverse,
            opt(s.scores.mean_log_real)
        );
    }
    let _ = writeln!(w, "\nGradient evaluations are those each chain spent (`results.json`): a row above the budget re-evaluated some chains (MALA with clipping evaluates a clipped proposal again). Accept is the mean Metropolis-Hastings acceptance probability (1 for the kernels without a test). Evaluator accuracy along the run:\n");
    let points: Vec<usize> = t
        .rows
        .first()
        .map_or(vec![], |s| s.along.iter().map(|c| c.grad_evals).collect());
    let _ = writeln!(
        w,
        "| sampler | {} |",
        points
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(w, "|---|{}", "---|".repeat(points.len()));
    for s in &t.rows {
        let _ = writeln!(
            w,
            "| {} | {} |",
            s.label,
            s.along
                .iter()
                .map(|c| format!("{:.3}", c.evaluator_accuracy))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    let _ = writeln!(
        w,
        "\nSamples (one row per class, {}):\n",
        CLASS_NAMES.join(", ")
    );
    for s in &t.rows {
        let _ = writeln!(
            w,
            "**{}**\n\n![{}]({})\n",
            s.label,
            s.label,
            grid_name(&s.label, t.grad_evals)
        );
    }
}

fn render_bar(w: &mut String, r: &Report) {
    if r.bar.is_empty() {
        return;
    }
    let ms_bar = r.real_mean_ms_ssim + MS_SSIM_MARGIN;
    let _ = writeln!(
        w,
        "## The exact samplers against their bar\n\nThe bar the flow-prior samplers (`exact-mala`, `exact-hmc`) \
were built to meet: the evaluator recognises at least {RECOGNISED_BAR} of their samples, their within-class \
MS-SSIM is at most real images' + {MS_SSIM_MARGIN} ({ms_bar:.3} here), and their Frechet distance is below \
PPGN's (joint prior) at the same budget. G(E(x)) of the same test images, with no sampling, is held to the \
first two for comparison: the generator's reconstructions of real codes.\n"
    );
    let _ = writeln!(
        w,
        "| row | gradient evaluations | recognised | at least {RECOGNISED_BAR} | MS-SSIM | at most {ms_bar:.3} | FD | PPGN's FD | below |\n|---|---:|---:|---|---:|---|---:|---:|---|"
    );
    for b in &r.bar {
        let _ = writeln!(
            w,
            "| {} | {} | {:.3} | {} | {:.3} | {} | {:.2} | {} | {} |",
            b.label,
            b.grad_evals.map_or("-".into(), |g| g.to_string()),
            b.recognised,
            yes_no(b.recognised_ok),
            b.ms_ssim,
            yes_no(b.ms_ssim_ok),
            b.frechet_distance,
            b.ppgn_frechet_distance
                .map_or("-".into(), |f| format!("{f:.2}")),
            b.frechet_ok.map_or("-", yes_no)
        );
    }
    let _ = writeln!(w);
}

/// One chain study's table and filmstrip.
fn render_study(w: &mut String, r: &Report, title: &str, what: &str, v: &[ChainStudy], png: &str) {
    let _ = writeln!(w, "## {title}\n");
    let _ = writeln!(
        w,
        "{} chains ({} per class, each started from the code of a real test image of the next class) run {} steps; \
the second half's snapshots measure mixing. {what}\n",
        r.study_chains * 10,
        r.study_chains,
        r.study_steps
    );
    let _ = writeln!(w, "| setting | final evaluator acc. | second-half acc. | final p(y) | MS-SSIM consecutive | MS-SSIM within chain | MS-SSIM to start |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    for s in v {
        let _ = writeln!(
            w,
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            s.label,
            s.final_accuracy,
            s.late_accuracy,
            s.final_condition,
            s.consecutive_ms_ssim,
            s.within_chain_ms_ssim,
            s.start_ms_ssim
        );
    }
    let _ = writeln!(w, "\n![{title}]({png})\n");
}

fn render_noise(w: &mut String, r: &Report) {
    let _ = writeln!(
        w,
        "## The generator's robustness to noise in h (Fig. S16)\n"
    );
    let _ = writeln!(
        w,
        "Codes of {} real test images plus N(0, sigma^2), sigma a fraction of the mean activation of h ({:.4}).\n",
        r.noise.first().and_then(|p| p.images.as_ref()).and_then(|t| t.dim(0).ok()).unwrap_or(0),
        r.noise_mean_activation
    );
    let _ = writeln!(
        w,
        "| noise | sigma | evaluator acc. | MSE to G(h) | MSE to image |\n|---|---|---|---|---|"
    );
    for p in &r.noise {
        let _ = writeln!(
            w,
            "| {:.0}% | {:.4} | {:.3} | {:.4} | {:.4} |",
            100.0 * p.fraction,
            p.sigma,
            p.evaluator_accuracy,
            p.mse_to_clean,
            p.mse_to_real
        );
    }
    let _ = writeln!(w, "\n![noise robustness](results/noise-robustness.png)\n\nColumns: the real image, then G(h + noise) at each level.\n");
}

fn render_tsne_claims_cost(w: &mut String, r: &Report, timing: &[(String, usize, f64)]) {
    let t = &r.tsne;
    let _ = writeln!(w, "## t-SNE grid of one class (Fig. S11)\n");
    let _ = writeln!(
        w,
        "{} PPGN chains of class {} for {} steps; of the {} snapshots with p(y|x) >= {}, {} random ones laid out by t-SNE of their evaluator features (`ppgn viz tsne` does the same for any run).\n\n![t-SNE](results/tsne.png)\n",
        t.chains, t.class, t.steps, t.kept, t.threshold, t.shown
    );
    let _ = writeln!(w, "## The papers' claims, checked\n");
    let _ = writeln!(
        w,
        "| source | claim | criterion | measured | supported |\n|---|---|---|---|---|"
    );
    for c in &r.claims {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} |",
            c.source,
            c.claim,
            c.criterion,
            c.measured,
            yes_no(c.supported)
        );
    }
    let _ = writeln!(w, "\n## Cost\n\nWall time of this run (varies between runs and machines; not part of the reproducible numbers); a row read from `--cache` shows the time of the run that sampled it.\n");
    let _ = writeln!(w, "| sampler | budget | wall s |\n|---|---|---|");
    for (l, b, s) in timing {
        let _ = writeln!(w, "| {l} | {b} | {s:.1} |");
    }
}
