//! Per-pixel summaries of a restoration's draws, and their scores against
//! the true images.

use rand::SeedableRng;
use serde::Serialize;

use super::draws::{DrawNoise, Restored};

/// Per-pixel summaries of a restoration, each `[k, h, w, c]` flat.
pub struct Summary {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub q05: Vec<f32>,
    pub q95: Vec<f32>,
}

/// The mean of each image's draws, and the spread and the 5% and 95%
/// quantiles of the draws with `noise` added to every pixel (the
/// generator's own error; seeded), per pixel.
pub fn summarise(r: &Restored, noise: &DrawNoise, seed: u64) -> Summary {
    let per = r.image.0 * r.image.1 * r.image.2;
    let (d, k) = (
        r.draws_per_image,
        r.draws.len() / (per * r.draws_per_image).max(1),
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x7a0_0015e);
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
                *v = noise.add(x, p, &mut rng);
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
