//! `docs/results.md`: the report's numbers as tables, and each claim of the
//! papers checked against them with the criterion spelled out.

use std::fmt::Write;

use serde::Serialize;

use super::report::Scores;
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
    /// One table per gradient budget.
    pub budgets: Vec<BudgetTable>,
    /// PPGN's step multiplier at the first budget (how the preset was tuned).
    pub step_study: Vec<SamplerRow>,
    pub eps1_sweep: Vec<ChainStudy>,
    pub eps3_sweep: Vec<ChainStudy>,
    pub noise_mean_activation: f64,
    pub noise: Vec<NoisePoint>,
    pub mixing: Vec<ChainStudy>,
    pub tsne: TsneInfo,
    pub claims: Vec<Claim>,
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

#[derive(Debug, Clone, Serialize)]
pub struct Claim {
    pub source: String,
    pub claim: String,
    pub criterion: String,
    pub measured: String,
    pub supported: bool,
}

fn row<'a>(t: &'a BudgetTable, label: &str) -> Option<&'a SamplerRow> {
    t.rows.iter().find(|r| r.label == label)
}

fn log_real(r: &SamplerRow) -> f64 {
    r.scores.mean_log_real.unwrap_or(f64::NAN)
}

/// Labels of the compared samplers (the report's rows, in order).
pub const MAP_CLIP: &str = "MAP + clip (DGN-AM)";
pub const MAP: &str = "MAP, no clip";
pub const MALA: &str = "MALA";
pub const MALA_CLIP: &str = "MALA + clip";
pub const HMC: &str = "HMC";
pub const PPGN: &str = "PPGN (joint prior)";
pub const DGN_CHAIN: &str = "DGN-AM chain (Gaussian prior)";

fn claim(source: &str, text: &str, criterion: &str, measured: String, ok: bool) -> Claim {
    Claim {
        source: source.into(),
        claim: text.into(),
        criterion: criterion.into(),
        measured,
        supported: ok,
    }
}

/// The papers' claims, checked on the measurements.
pub fn claims(r: &Report) -> Vec<Claim> {
    let mut out = Vec::new();
    let (Some(short), Some(long)) = (r.budgets.first(), r.budgets.last()) else {
        return out;
    };
    let (bs, bl) = (short.grad_evals, long.grad_evals);
    let xu = "Xu et al.";
    if let (Some(mc), Some(m)) = (row(short, MAP_CLIP), row(long, MAP)) {
        let ok = m.scores.evaluator_accuracy >= mc.scores.evaluator_accuracy - 0.05
            && log_real(m) >= log_real(mc) - 0.5;
        out.push(claim(
            xu,
            "Clipping is unnecessary if MAP runs for many more iterations",
            &format!("MAP without clipping at {bl} gradient evaluations reaches evaluator accuracy within 0.05 and mean log p(real) within 0.5 nat of MAP with clipping at {bs}"),
            format!(
                "accuracy {:.3} vs {:.3}; log p(real) {:.3} vs {:.3}",
                m.scores.evaluator_accuracy, mc.scores.evaluator_accuracy, log_real(m), log_real(mc)
            ),
            ok,
        ));
    }
    if let (Some(mc), Some(ma), Some(h)) = (row(long, MAP_CLIP), row(long, MALA), row(long, HMC)) {
        let ok = [ma, h]
            .iter()
            .all(|x| log_real(x) >= log_real(mc) - 0.5 && x.scores.evaluator_accuracy >= 0.5);
        out.push(claim(
            xu,
            "MALA and HMC give realistic images without clipping",
            &format!("at {bl} gradient evaluations, MALA's and HMC's mean log p(real) is within 0.5 nat of MAP with clipping, and the evaluator recognises at least half of their samples"),
            format!(
                "log p(real) MALA {:.3}, HMC {:.3}, MAP+clip {:.3}; accuracy MALA {:.3}, HMC {:.3}",
                log_real(ma), log_real(h), log_real(mc), ma.scores.evaluator_accuracy, h.scores.evaluator_accuracy
            ),
            ok,
        ));
    }
    if let (Some(mcs), Some(mal)) = (row(short, MALA_CLIP), row(long, MALA)) {
        let ok = mcs.scores.evaluator_accuracy >= mal.scores.evaluator_accuracy;
        out.push(claim(
            xu,
            "MALA with clipping needs far fewer iterations",
            &format!("MALA with clipping at {bs} gradient evaluations is at least as recognisable (evaluator accuracy) as MALA without clipping at {bl}"),
            format!(
                "{:.3} at {bs} vs {:.3} at {bl}",
                mcs.scores.evaluator_accuracy, mal.scores.evaluator_accuracy
            ),
            ok,
        ));
    }
    let order = [MALA_CLIP, MAP_CLIP, HMC, MALA];
    let vals: Vec<Option<f64>> = order.iter().map(|l| row(long, l).map(log_real)).collect();
    if vals.iter().all(Option::is_some) {
        let v: Vec<f64> = vals.into_iter().flatten().collect();
        let ok = v.windows(2).all(|w| w[0] > w[1]);
        out.push(claim(
            xu,
            "Table 2 ordering of mean log p(real): MALA + clip > MAP + clip > HMC > MALA",
            &format!("the same strict order at {bl} gradient evaluations"),
            order
                .iter()
                .zip(&v)
                .map(|(l, x)| format!("{l} {x:.3}"))
                .collect::<Vec<_>>()
                .join(", "),
            ok,
        ));
    }
    if let (Some(ma), Some(h), Some(mc), Some(m)) = (
        row(long, MALA),
        row(long, HMC),
        row(long, MAP_CLIP),
        row(long, MAP),
    ) {
        let map_best = mc.mean_ms_ssim.min(m.mean_ms_ssim);
        let ok = ma.mean_ms_ssim < map_best && h.mean_ms_ssim < map_best;
        out.push(claim(
            xu,
            "MCMC generates more content-diverse images than MAP",
            &format!("within-class MS-SSIM (lower is more diverse) of MALA and HMC below both MAP rows at {bl}"),
            format!(
                "MALA {:.3}, HMC {:.3}, MAP+clip {:.3}, MAP {:.3}",
                ma.mean_ms_ssim, h.mean_ms_ssim, mc.mean_ms_ssim, m.mean_ms_ssim
            ),
            ok,
        ));
    }
    let nguyen = "Nguyen et al.";
    if let Some(p) = row(short, PPGN) {
        let ok = p.scores.evaluator_accuracy < r.real.evaluator_accuracy
            && p.mean_ms_ssim > r.real_mean_ms_ssim;
        out.push(claim(
            &format!("{nguyen} Table S3"),
            "PPGN samples are less recognisable and less diverse than real images",
            &format!("at {bs}: evaluator accuracy below real and within-class MS-SSIM above real"),
            format!(
                "accuracy {:.3} vs real {:.3}; MS-SSIM {:.3} vs real {:.3}",
                p.scores.evaluator_accuracy,
                r.real.evaluator_accuracy,
                p.mean_ms_ssim,
                r.real_mean_ms_ssim
            ),
            ok,
        ));
    }
    if let (Some(p), Some(d)) = (row(short, PPGN), row(short, DGN_CHAIN)) {
        let ok = p.scores.frechet_distance < d.scores.frechet_distance;
        out.push(claim(
            &format!("{nguyen} Sec. 3.5"),
            "The joint prior E(G(h)) - h gives better samples than DGN-AM's Gaussian prior",
            &format!("lower Frechet distance at {bs}"),
            format!(
                "FD {:.2} vs {:.2} (accuracy {:.3} vs {:.3})",
                p.scores.frechet_distance,
                d.scores.frechet_distance,
                p.scores.evaluator_accuracy,
                d.scores.evaluator_accuracy
            ),
            ok,
        ));
    }
    let by = |v: &[ChainStudy], x: f64| v.iter().find(|s| s.value == x).cloned();
    if let (Some(zero), Some(def)) = (by(&r.eps1_sweep, 0.0), by(&r.eps1_sweep, 1e-5)) {
        let top = r
            .eps1_sweep
            .iter()
            .max_by(|a, b| a.value.total_cmp(&b.value))
            .cloned()
            .expect("sweep has points");
        out.push(claim(
            &format!("{nguyen} Fig. S23"),
            "Without the prior (eps1 = 0) the chain barely mixes; a small eps1 mixes more",
            "within-chain MS-SSIM of the second half lower at eps1 = 1e-5 than at 0",
            format!(
                "{:.3} at 1e-5 vs {:.3} at 0",
                def.within_chain_ms_ssim, zero.within_chain_ms_ssim
            ),
            def.within_chain_ms_ssim < zero.within_chain_ms_ssim,
        ));
        out.push(claim(
            &format!("{nguyen} Fig. S23"),
            "Too large an eps1 overwrites the class gradient (generic images)",
            &format!(
                "evaluator accuracy at eps1 = {} below that at 1e-5",
                top.value
            ),
            format!("{:.3} vs {:.3}", top.final_accuracy, def.final_accuracy),
            top.final_accuracy < def.final_accuracy,
        ));
    }
    if let Some(tiny) = r.eps3_sweep.iter().find(|s| s.value < 1e-10) {
        let larger: Vec<&ChainStudy> = r.eps3_sweep.iter().filter(|s| s.value >= 1e-10).collect();
        let ok = larger
            .iter()
            .all(|s| s.final_accuracy <= tiny.final_accuracy);
        out.push(claim(
            &format!("{nguyen} Fig. S15"),
            "Samples are better with a tiny amount of noise than with larger noise",
            "evaluator accuracy at eps3 = 1e-17 at least that of every larger eps3",
            larger
                .iter()
                .map(|s| format!("{:.3} at {}", s.final_accuracy, s.value))
                .chain([format!("{:.3} at 1e-17", tiny.final_accuracy)])
                .collect::<Vec<_>>()
                .join(", "),
            ok,
        ));
    }
    let at = |f: f64| r.noise.iter().find(|p| (p.fraction - f).abs() < 1e-9);
    if let (Some(n0), Some(n20)) = (at(0.0), at(0.2)) {
        out.push(claim(
            &format!("{nguyen} Fig. S16"),
            "G is robust to Gaussian noise in h up to 20% of the mean activation",
            "evaluator accuracy on G(h + noise) at 20% within 0.05 of no noise",
            format!(
                "{:.3} at 20% vs {:.3} at 0% (pixel MSE to G(h) {:.4})",
                n20.evaluator_accuracy, n0.evaluator_accuracy, n20.mse_to_clean
            ),
            n20.evaluator_accuracy >= n0.evaluator_accuracy - 0.05,
        ));
    }
    let mix = |l: &str| r.mixing.iter().find(|s| s.label == l);
    if let (Some(p), Some(d)) = (mix(PPGN), mix(DGN_CHAIN)) {
        out.push(claim(
            &format!("{nguyen} Fig. S13"),
            "The Noiseless Joint PPGN-h chain mixes faster than DGN-AM's from the same start",
            "within-chain MS-SSIM of the second half lower for PPGN",
            format!(
                "PPGN {:.3} vs DGN-AM {:.3}",
                p.within_chain_ms_ssim, d.within_chain_ms_ssim
            ),
            p.within_chain_ms_ssim < d.within_chain_ms_ssim,
        ));
    }
    out
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.3}"))
}

/// The best row at the first budget (by evaluator accuracy among rows
/// whose within-class MS-SSIM is at most real + 0.05) against issue 5's bar.
pub fn best_sampler(r: &Report) -> Option<&SamplerRow> {
    r.budgets.first()?.rows.iter().max_by(|a, b| {
        let ok = |x: &SamplerRow| x.mean_ms_ssim <= r.real_mean_ms_ssim + 0.05;
        (ok(a), a.scores.evaluator_accuracy)
            .partial_cmp(&(ok(b), b.scores.evaluator_accuracy))
            .unwrap_or(std::cmp::Ordering::Equal)
    })
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
    for t in &r.budgets {
        let _ = writeln!(
            w,
            "## Samplers at {} gradient evaluations per chain (Table 2 and Table S3 analogues)\n",
            t.grad_evals
        );
        let _ = writeln!(w, "| sampler | steps | accept | evaluator acc. | evaluator score | FD | MS-SSIM | classes more diverse | log p(real) |");
        let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|");
        let _ = writeln!(
            w,
            "| real test images | - | - | {:.3} | {:.2} | {:.2} | {:.3} | {} | {} |",
            r.real.evaluator_accuracy,
            r.real.evaluator_score,
            r.real.frechet_distance,
            r.real_mean_ms_ssim,
            r.real.ms_ssim_per_class.len(),
            opt(r.real.mean_log_real)
        );
        for s in &t.rows {
            let _ = writeln!(
                w,
                "| {} | {} | {:.2} | {:.3} | {:.2} | {:.2} | {:.3} | {} | {} |",
                s.label,
                s.config.steps,
                s.mean_accept,
                s.scores.evaluator_accuracy,
                s.scores.evaluator_score,
                s.scores.frechet_distance,
                s.mean_ms_ssim,
                s.classes_more_diverse,
                opt(s.scores.mean_log_real)
            );
        }
        let _ = writeln!(w, "\nAccept is the mean Metropolis-Hastings acceptance probability (1 for the kernels without a test). Evaluator accuracy along the run:\n");
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
    if let Some(b) = best_sampler(r) {
        let acc_ok = b.scores.evaluator_accuracy >= r.real.evaluator_accuracy
            && b.scores.evaluator_accuracy >= r.real_full_accuracy;
        let ms_ok = b.mean_ms_ssim <= r.real_mean_ms_ssim + 0.05;
        let _ = writeln!(
            w,
            "**Best sampler** at {} gradient evaluations: {} with evaluator accuracy {:.3} (real: {:.3} on the images above, {:.3} on the whole test set: {}) and MS-SSIM {:.3} (real {:.3} + 0.05: {}).\n",
            r.budgets[0].grad_evals,
            b.label,
            b.scores.evaluator_accuracy,
            r.real.evaluator_accuracy,
            r.real_full_accuracy,
            if acc_ok { "at least real" } else { "below real" },
            b.mean_ms_ssim,
            r.real_mean_ms_ssim,
            if ms_ok { "within" } else { "above" }
        );
    }
    let _ = writeln!(
        w,
        "## PPGN's step multiplier (how the `ppgn` preset's 0.2 was chosen)\n"
    );
    let _ = writeln!(
        w,
        "| step | evaluator acc. | FD | MS-SSIM | log p(real) |\n|---|---|---|---|---|"
    );
    for s in &r.step_study {
        let _ = writeln!(
            w,
            "| {} | {:.3} | {:.2} | {:.3} | {} |",
            s.config.step.at(0),
            s.scores.evaluator_accuracy,
            s.scores.frechet_distance,
            s.mean_ms_ssim,
            opt(s.scores.mean_log_real)
        );
    }
    let _ = writeln!(
        w,
        "\nThe `ppgn` preset uses 0.2: the step trades recognisability (evaluator accuracy) against diversity (MS-SSIM); compare both with the real row above.\n"
    );
    let study = |w: &mut String, title: &str, what: &str, v: &[ChainStudy], png: &str| {
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
    };
    study(w, "eps1 sweep (Fig. S23)", "(eps2, eps3) = (1, 1e-17); rows of the image: two chains per setting, in the table's order.", &r.eps1_sweep, "results/eps1-sweep.png");
    study(
        w,
        "eps3 sweep (Fig. S15)",
        "(eps1, eps2) = (1e-5, 1); rows of the image: two chains per setting.",
        &r.eps3_sweep,
        "results/eps3-sweep.png",
    );
    study(
        w,
        "Mixing from the same start (Fig. S13)",
        "Same starts and targets for every model; rows of the image: two chains per model.",
        &r.mixing,
        "results/mixing.png",
    );
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
            if c.supported { "yes" } else { "no" }
        );
    }
    let _ = writeln!(w, "\n## Cost\n\nWall time of this run (varies between runs and machines; not part of the reproducible numbers).\n");
    let _ = writeln!(w, "| sampler | budget | wall s |\n|---|---|---|");
    for (l, b, s) in timing {
        let _ = writeln!(w, "| {l} | {b} | {s:.1} |");
    }
    m
}
