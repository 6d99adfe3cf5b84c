//! The papers' claims, each checked on the report's measurements with a
//! stated criterion (Xu et al.'s Table 2 and their statements on MAP and
//! MCMC; Nguyen et al.'s Table S3 and Figs. S11-S23).

use super::experiments::{mean_over_classes, ChainStudy, SamplerRow};
use super::report::Scores;
use super::results::{
    row, BarCheck, BudgetTable, Claim, Report, DGN_CHAIN, EXACT_HMC, EXACT_MALA, HMC, MALA,
    MALA_CLIP, MAP, MAP_CLIP, MS_SSIM_MARGIN, PPGN, RECOGNISED_BAR,
};

fn log_real(r: &SamplerRow) -> f64 {
    r.scores.mean_log_real.unwrap_or(f64::NAN)
}

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
    xu_budget_claims(short, long, &mut out);
    xu_table_claims(long, &mut out);
    ppgn_sample_claims(r, short, &mut out);
    ppgn_study_claims(r, &mut out);
    ppgn_noise_and_mixing_claims(r, &mut out);
    out
}

/// The exact flow-prior samplers at every budget, after G(E(x)) of the same
/// test images, against their bar ([`RECOGNISED_BAR`], [`MS_SSIM_MARGIN`],
/// PPGN's Frechet distance at the same budget).
pub fn exact_bar(r: &Report) -> Vec<BarCheck> {
    let ms_bar = r.real_mean_ms_ssim + MS_SSIM_MARGIN;
    let check = |label: &str, grad_evals, s: &Scores, ms: f64, ppgn: Option<f64>| BarCheck {
        label: label.into(),
        grad_evals,
        recognised: s.evaluator_accuracy,
        recognised_ok: s.evaluator_accuracy >= RECOGNISED_BAR,
        ms_ssim: ms,
        ms_ssim_ok: ms <= ms_bar,
        frechet_distance: s.frechet_distance,
        ppgn_frechet_distance: ppgn,
        frechet_ok: ppgn.map(|p| s.frechet_distance < p),
    };
    let g = &r.reconstructed;
    let mut out = vec![check(
        "G(E(x)) of the same test images",
        None,
        g,
        mean_over_classes(&g.ms_ssim_per_class),
        None,
    )];
    for t in &r.budgets {
        let ppgn = row(t, PPGN).map(|p| p.scores.frechet_distance);
        for label in [EXACT_MALA, EXACT_HMC] {
            if let Some(x) = row(t, label) {
                out.push(check(
                    label,
                    Some(t.grad_evals),
                    &x.scores,
                    x.mean_ms_ssim,
                    ppgn,
                ));
            }
        }
    }
    out
}

const XU: &str = "Xu et al.";
const NGUYEN: &str = "Nguyen et al.";

/// Xu et al.'s claims on MAP and MALA at the short and long budgets.
fn xu_budget_claims(short: &BudgetTable, long: &BudgetTable, out: &mut Vec<Claim>) {
    let (bs, bl) = (short.grad_evals, long.grad_evals);
    let xu = XU;
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
    for rows in &MCMC_ROWS {
        realistic_without_clipping(long, rows, out);
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
}

/// Xu et al.'s Table 2 ordering and the diversity of MCMC against MAP.
fn xu_table_claims(long: &BudgetTable, out: &mut Vec<Claim>) {
    let bl = long.grad_evals;
    let xu = XU;
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
    for rows in &MCMC_ROWS {
        more_diverse_than_map(long, rows, out);
    }
}

/// A MALA row and an HMC row whose claims are checked, and the prior they
/// sample under as the claims' suffix.
struct McmcRows {
    mala: &'static str,
    hmc: &'static str,
    prior: &'static str,
}

/// Xu et al.'s Gaussian prior, and the learned flow prior on which the
/// samplers are exact for a density of the data's codes.
const MCMC_ROWS: [McmcRows; 2] = [
    McmcRows {
        mala: MALA,
        hmc: HMC,
        prior: "",
    },
    McmcRows {
        mala: EXACT_MALA,
        hmc: EXACT_HMC,
        prior: " (flow prior)",
    },
];

/// "MALA and HMC give realistic images without clipping" on the rows
/// `mala` and `hmc` at the long budget.
fn realistic_without_clipping(long: &BudgetTable, rows: &McmcRows, out: &mut Vec<Claim>) {
    let (bl, mala, hmc, prior) = (long.grad_evals, rows.mala, rows.hmc, rows.prior);
    let (Some(mc), Some(ma), Some(h)) = (row(long, MAP_CLIP), row(long, mala), row(long, hmc))
    else {
        return;
    };
    let ok = [ma, h]
        .iter()
        .all(|x| log_real(x) >= log_real(mc) - 0.5 && x.scores.evaluator_accuracy >= 0.5);
    out.push(claim(
        XU,
        &format!("MALA and HMC give realistic images without clipping{prior}"),
        &format!("at {bl} gradient evaluations, MALA's and HMC's mean log p(real) is within 0.5 nat of MAP with clipping, and the evaluator recognises at least half of their samples"),
        format!(
            "log p(real) MALA {:.3}, HMC {:.3}, MAP+clip {:.3}; accuracy MALA {:.3}, HMC {:.3}",
            log_real(ma), log_real(h), log_real(mc), ma.scores.evaluator_accuracy, h.scores.evaluator_accuracy
        ),
        ok,
    ));
}

/// "MCMC generates more content-diverse images than MAP" on the rows
/// `mala` and `hmc` at the long budget.
fn more_diverse_than_map(long: &BudgetTable, rows: &McmcRows, out: &mut Vec<Claim>) {
    let (bl, mala, hmc, prior) = (long.grad_evals, rows.mala, rows.hmc, rows.prior);
    let (Some(ma), Some(h), Some(mc), Some(m)) = (
        row(long, mala),
        row(long, hmc),
        row(long, MAP_CLIP),
        row(long, MAP),
    ) else {
        return;
    };
    let map_best = mc.mean_ms_ssim.min(m.mean_ms_ssim);
    let ok = ma.mean_ms_ssim < map_best && h.mean_ms_ssim < map_best;
    out.push(claim(
        XU,
        &format!("MCMC generates more content-diverse images than MAP{prior}"),
        &format!("within-class MS-SSIM (lower is more diverse) of MALA and HMC below both MAP rows at {bl}"),
        format!(
            "MALA {:.3}, HMC {:.3}, MAP+clip {:.3}, MAP {:.3}",
            ma.mean_ms_ssim, h.mean_ms_ssim, mc.mean_ms_ssim, m.mean_ms_ssim
        ),
        ok,
    ));
}

/// Nguyen et al.'s claims on PPGN's samples at the short budget.
fn ppgn_sample_claims(r: &Report, short: &BudgetTable, out: &mut Vec<Claim>) {
    let bs = short.grad_evals;
    let nguyen = NGUYEN;
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
}

/// Nguyen et al.'s eps1 (S23) and eps3 (S15) studies.
fn ppgn_study_claims(r: &Report, out: &mut Vec<Claim>) {
    let nguyen = NGUYEN;
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
}

/// Nguyen et al.'s noise-robustness (S16) and mixing (S13) studies.
fn ppgn_noise_and_mixing_claims(r: &Report, out: &mut Vec<Claim>) {
    let nguyen = NGUYEN;
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
}
