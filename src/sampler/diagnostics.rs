//! Convergence diagnostics over several chains of scalar draws
//! (`draws[chain][iteration]`): split R-hat and effective sample size, with
//! the rank-normalised "bulk" variants of Vehtari et al. 2021 (what Stan and
//! ArviZ report).

/// Mean and (n-1)-variance.
fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, v)
}

/// Splits each chain in two halves (dropping a middle draw if odd).
fn split(draws: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    for c in draws {
        let h = c.len() / 2;
        out.push(c[..h].to_vec());
        out.push(c[c.len() - h..].to_vec());
    }
    out
}

/// Potential scale reduction of the chains as given.
fn rhat_raw(chains: &[Vec<f64>]) -> f64 {
    let m = chains.len() as f64;
    let n = chains[0].len() as f64;
    let stats: Vec<(f64, f64)> = chains.iter().map(|c| mean_var(c)).collect();
    let means: Vec<f64> = stats.iter().map(|s| s.0).collect();
    let (_, var_means) = mean_var(&means);
    let b = n * var_means;
    let w = stats.iter().map(|s| s.1).sum::<f64>() / m;
    let var_plus = (n - 1.0) / n * w + b / n;
    (var_plus / w).sqrt()
}

/// Split R-hat.
pub fn split_rhat(draws: &[Vec<f64>]) -> f64 {
    rhat_raw(&split(draws))
}

/// Effective sample size of the chains as given, by Geyer's initial
/// monotone sequence on the multi-chain autocorrelation (Stan's estimator).
fn ess_raw(chains: &[Vec<f64>]) -> f64 {
    let m = chains.len();
    let n = chains[0].len();
    let stats: Vec<(f64, f64)> = chains.iter().map(|c| mean_var(c)).collect();
    let means: Vec<f64> = stats.iter().map(|s| s.0).collect();
    let w = stats.iter().map(|s| s.1).sum::<f64>() / m as f64;
    let b_over_n = mean_var(&means).1;
    let var_plus = (n as f64 - 1.0) / n as f64 * w + b_over_n;
    if var_plus.is_nan() || var_plus <= 0.0 {
        return (m * n) as f64;
    }
    // autocovariance of chain c at lag k (biased, divided by n)
    let acov = |c: usize, k: usize| -> f64 {
        let (mu, _) = stats[c];
        let x = &chains[c];
        (0..n - k)
            .map(|i| (x[i] - mu) * (x[i + k] - mu))
            .sum::<f64>()
            / n as f64
    };
    let rho = |k: usize| -> f64 {
        let mean_acov = (0..m).map(|c| acov(c, k)).sum::<f64>() / m as f64;
        1.0 - (w - mean_acov) / var_plus
    };
    // pairs (rho_{2t} + rho_{2t+1}), positive and monotone
    let mut tau = -1.0;
    let mut prev = f64::INFINITY;
    let mut t = 0;
    while 2 * t + 1 < n {
        let mut p = rho(2 * t) + rho(2 * t + 1);
        if p <= 0.0 {
            break;
        }
        p = p.min(prev);
        prev = p;
        tau += 2.0 * p;
        t += 1;
    }
    let tau = tau.max(1.0 / ((m * n) as f64).log10());
    (m * n) as f64 / tau
}

/// Effective sample size of the mean (split chains).
pub fn ess(draws: &[Vec<f64>]) -> f64 {
    ess_raw(&split(draws))
}

/// Rank-normalises the pooled draws: ranks mapped through the normal quantile.
pub fn rank_normalise(draws: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let mut all: Vec<(f64, usize, usize)> = draws
        .iter()
        .enumerate()
        .flat_map(|(c, v)| v.iter().enumerate().map(move |(i, &x)| (x, c, i)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let s = all.len() as f64;
    let mut out: Vec<Vec<f64>> = draws.iter().map(|v| vec![0.0; v.len()]).collect();
    let mut i = 0;
    while i < all.len() {
        // ties share their average rank
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        let z = normal_quantile((r - 0.375) / (s + 0.25));
        for e in &all[i..=j] {
            out[e.1][e.2] = z;
        }
        i = j + 1;
    }
    out
}

/// Bulk ESS (rank-normalised split chains).
pub fn bulk_ess(draws: &[Vec<f64>]) -> f64 {
    ess_raw(&split(&rank_normalise(draws)))
}

/// Rank-normalised split R-hat.
pub fn rank_rhat(draws: &[Vec<f64>]) -> f64 {
    rhat_raw(&split(&rank_normalise(draws)))
}

/// The standard normal quantile (Acklam's rational approximation, relative
/// error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let lo = 0.02425;
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    if p < lo {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - lo {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}
