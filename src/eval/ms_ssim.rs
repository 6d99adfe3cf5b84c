//! MS-SSIM adapted to 28x28 images (diversity within a class, Table S3).
//!
//! Wang et al.'s MS-SSIM uses 5 scales and an 11x11 window, which do not
//! fit 28x28 images. Ours: 3 scales (28, 14, 7; 2x2 average pooling), a
//! Gaussian window of sigma 0.8 truncated at 3.5 sigma (7x7), 'reflect'
//! borders, a 3-pixel border cropped before averaging (as scikit-image),
//! contrast-structure terms at the first two scales and full SSIM at the
//! last, with Wang's first three weights renormalised to sum to 1. Checked
//! against `tests/fixtures/ms_ssim.json`, made by `scripts/ms_ssim_fixture.py`
//! whose per-scale SSIM matches scikit-image's `structural_similarity`.

const SIGMA: f64 = 0.8;
const PAD: usize = 3;
const C1: f64 = 0.01 * 0.01;
const C2: f64 = 0.03 * 0.03;
const WEIGHTS: [f64; 3] = [0.0448, 0.2856, 0.3001];

fn kernel() -> Vec<f64> {
    let r = (3.5 * SIGMA + 0.5) as i64;
    let w: Vec<f64> = (-r..=r)
        .map(|x| (-0.5 * (x * x) as f64 / (SIGMA * SIGMA)).exp())
        .collect();
    let s: f64 = w.iter().sum();
    w.into_iter().map(|v| v / s).collect()
}

/// scipy's 'reflect' (half-sample symmetric) index.
fn reflect(i: i64, n: i64) -> usize {
    let mut i = i;
    loop {
        if i < 0 {
            i = -i - 1;
        } else if i >= n {
            i = 2 * n - i - 1;
        } else {
            return i as usize;
        }
    }
}

/// Separable Gaussian filter of an `h x w` image, rows first then columns.
fn filter(a: &[f64], h: usize, w: usize, k: &[f64]) -> Vec<f64> {
    let r = (k.len() / 2) as i64;
    let mut tmp = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            tmp[y * w + x] = k
                .iter()
                .enumerate()
                .map(|(j, kv)| kv * a[reflect(y as i64 + j as i64 - r, h as i64) * w + x])
                .sum();
        }
    }
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = k
                .iter()
                .enumerate()
                .map(|(j, kv)| kv * tmp[y * w + reflect(x as i64 + j as i64 - r, w as i64)])
                .sum();
        }
    }
    out
}

/// Mean SSIM and mean contrast-structure over the cropped image.
fn ssim_cs(x: &[f64], y: &[f64], h: usize, w: usize) -> (f64, f64) {
    let k = kernel();
    let prod = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).collect::<Vec<_>>();
    let (ux, uy) = (filter(x, h, w, &k), filter(y, h, w, &k));
    let (uxx, uyy, uxy) = (
        filter(&prod(x, x), h, w, &k),
        filter(&prod(y, y), h, w, &k),
        filter(&prod(x, y), h, w, &k),
    );
    let (mut s_sum, mut cs_sum, mut n) = (0.0, 0.0, 0usize);
    for yy in PAD..h - PAD {
        for xx in PAD..w - PAD {
            let i = yy * w + xx;
            let vx = uxx[i] - ux[i] * ux[i];
            let vy = uyy[i] - uy[i] * uy[i];
            let vxy = uxy[i] - ux[i] * uy[i];
            let cs = (2.0 * vxy + C2) / (vx + vy + C2);
            let l = (2.0 * ux[i] * uy[i] + C1) / (ux[i] * ux[i] + uy[i] * uy[i] + C1);
            s_sum += l * cs;
            cs_sum += cs;
            n += 1;
        }
    }
    (s_sum / n as f64, cs_sum / n as f64)
}

fn pool(a: &[f64], h: usize, w: usize) -> Vec<f64> {
    let (h2, w2) = (h / 2, w / 2);
    let mut out = vec![0.0; h2 * w2];
    for y in 0..h2 {
        for x in 0..w2 {
            out[y * w2 + x] = (a[2 * y * w + 2 * x]
                + a[2 * y * w + 2 * x + 1]
                + a[(2 * y + 1) * w + 2 * x]
                + a[(2 * y + 1) * w + 2 * x + 1])
                / 4.0;
        }
    }
    out
}

/// Single-scale SSIM of two grey `h x w` images with values in [0, 1]: the
/// mean over the cropped image of [`ms_ssim`]'s window (sigma 0.8, 7x7),
/// the scale scikit-image's `structural_similarity` computes with it.
pub fn ssim(a: &[f64], b: &[f64], h: usize, w: usize) -> f64 {
    ssim_cs(a, b, h, w).0
}

/// MS-SSIM of two 28x28 grey images with values in [0, 1].
pub fn ms_ssim(a: &[f64], b: &[f64]) -> f64 {
    ms_ssim_sized(a, b, 28, 28)
}

/// [`ms_ssim`] of two grey `h x w` images: as many of the three scales as
/// leave a pixel inside the window's margin (side at least 7: 28, 14, 7
/// for Fashion-MNIST; 16 and 8 for 16-pixel images), the weights of the
/// scales used renormalised.
pub fn ms_ssim_sized(a: &[f64], b: &[f64], h: usize, w: usize) -> f64 {
    let mut scales = 0;
    let (mut sh, mut sw) = (h, w);
    while scales < WEIGHTS.len() && sh > 2 * PAD && sw > 2 * PAD {
        scales += 1;
        (sh, sw) = (sh / 2, sw / 2);
    }
    if scales == 0 {
        return f64::NAN;
    }
    let weights = &WEIGHTS[..scales];
    let total: f64 = weights.iter().sum();
    let (mut x, mut y, mut hw) = (a.to_vec(), b.to_vec(), (h, w));
    let mut out = 1.0;
    for (k, wt) in weights.iter().enumerate() {
        let (s, cs) = ssim_cs(&x, &y, hw.0, hw.1);
        if k + 1 < weights.len() {
            out *= cs.max(0.0).powf(wt / total);
            x = pool(&x, hw.0, hw.1);
            y = pool(&y, hw.0, hw.1);
            hw = (hw.0 / 2, hw.1 / 2);
        } else {
            out *= s.max(0.0).powf(wt / total);
        }
    }
    out
}

/// Mean MS-SSIM over `pairs` random distinct pairs of `images` (each 784
/// values), drawn from `seed`: the within-class diversity measure (lower is
/// more diverse).
pub fn mean_pairwise(images: &[Vec<f64>], pairs: usize, seed: u64) -> Option<f64> {
    let p = pair_indices(images.len(), pairs, seed)?;
    Some(
        p.iter()
            .map(|&(i, j)| ms_ssim(&images[i], &images[j]))
            .sum::<f64>()
            / pairs as f64,
    )
}

/// The pairs [`mean_pairwise`] compares among `n` images: distinct
/// indices drawn from `seed` (none with fewer than 2 images), so a caller
/// streaming the images can keep only these.
pub fn pair_indices(n: usize, pairs: usize, seed: u64) -> Option<Vec<(usize, usize)>> {
    use rand::{Rng, SeedableRng};
    if n < 2 {
        return None;
    }
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    Some(
        (0..pairs)
            .map(|_| {
                let i = r.random_range(0..n);
                let mut j = r.random_range(0..n - 1);
                if j >= i {
                    j += 1;
                }
                (i, j)
            })
            .collect(),
    )
}
