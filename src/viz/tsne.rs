//! t-SNE (van der Maaten & Hinton 2008, exact O(n^2) version: a few hundred
//! samples, as in PPGN Fig. S11) and the "grid t-SNE" layout that snaps the
//! 2-D embedding onto a square grid of images.

use rand::{Rng, SeedableRng};

/// Settings of the embedding.
#[derive(Debug, Clone, Copy)]
pub struct Tsne {
    pub perplexity: f64,
    pub iterations: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

impl Default for Tsne {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            iterations: 1000,
            learning_rate: 200.0,
            seed: 0,
        }
    }
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Symmetric input affinities `P` (rows sum to 1 before symmetrising): each
/// point's Gaussian width is found by bisection so that the entropy of its
/// conditional distribution is `log(perplexity)`.
pub fn affinities(x: &[Vec<f64>], perplexity: f64) -> Vec<Vec<f64>> {
    let n = x.len();
    let d: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| sq_dist(&x[i], &x[j])).collect())
        .collect();
    let target = perplexity.min((n - 1) as f64 / 3.0).max(1.0).ln();
    let mut p = vec![vec![0.0; n]; n];
    for i in 0..n {
        let (mut lo, mut hi, mut beta) = (0.0f64, f64::INFINITY, 1.0f64);
        // distances relative to the nearest neighbour keep exp() in range
        let dmin = (0..n)
            .filter(|&j| j != i)
            .map(|j| d[i][j])
            .fold(f64::INFINITY, f64::min);
        for _ in 0..100 {
            let mut sum = 0.0;
            let mut dot = 0.0;
            for j in 0..n {
                if j != i {
                    let w = (-(d[i][j] - dmin) * beta).exp();
                    p[i][j] = w;
                    sum += w;
                    dot += w * (d[i][j] - dmin);
                }
            }
            // H = log(sum) + beta * E[d]
            let h = sum.ln() + beta * dot / sum;
            for v in p[i].iter_mut() {
                *v /= sum;
            }
            if (h - target).abs() < 1e-6 {
                break;
            }
            if h > target {
                lo = beta;
                beta = if hi.is_finite() {
                    (beta + hi) / 2.0
                } else {
                    beta * 2.0
                };
            } else {
                hi = beta;
                beta = (beta + lo) / 2.0;
            }
        }
    }
    let mut s = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..n {
            s[i][j] = ((p[i][j] + p[j][i]) / (2.0 * n as f64)).max(1e-12);
        }
    }
    s
}

impl Tsne {
    /// 2-D embedding of the rows of `x` (at least 4 points).
    pub fn embed(&self, x: &[Vec<f64>]) -> Vec<[f64; 2]> {
        let n = x.len();
        if n < 4 {
            return (0..n).map(|i| [i as f64, 0.0]).collect();
        }
        let p = affinities(x, self.perplexity);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
        let mut y: Vec<[f64; 2]> = (0..n)
            .map(|_| [rng.random_range(-1e-2..1e-2), rng.random_range(-1e-2..1e-2)])
            .collect();
        let mut vel = vec![[0.0f64; 2]; n];
        let mut gains = vec![[1.0f64; 2]; n];
        let mut q = vec![vec![0.0; n]; n];
        for it in 0..self.iterations {
            // early exaggeration for the first 250 iterations, as in the paper
            let exag = if it < 250 { 12.0 } else { 1.0 };
            let momentum = if it < 250 { 0.5 } else { 0.8 };
            let mut z = 0.0;
            for i in 0..n {
                for j in 0..n {
                    if i != j {
                        let w = 1.0 / (1.0 + sq_dist(&y[i], &y[j]));
                        q[i][j] = w;
                        z += w;
                    }
                }
            }
            for i in 0..n {
                let mut g = [0.0; 2];
                for j in 0..n {
                    if i != j {
                        // dC/dy_i = 4 sum_j (p_ij - q_ij) w_ij (y_i - y_j)
                        let m = (exag * p[i][j] - q[i][j] / z) * q[i][j];
                        g[0] += 4.0 * m * (y[i][0] - y[j][0]);
                        g[1] += 4.0 * m * (y[i][1] - y[j][1]);
                    }
                }
                for k in 0..2 {
                    // delta-bar-delta gains (Jacobs 1988), as in the reference t-SNE
                    gains[i][k] = if (g[k] > 0.0) != (vel[i][k] > 0.0) {
                        gains[i][k] + 0.2
                    } else {
                        (gains[i][k] * 0.8).max(0.01)
                    };
                    vel[i][k] = momentum * vel[i][k] - self.learning_rate * gains[i][k] * g[k];
                }
            }
            for i in 0..n {
                y[i][0] += vel[i][0];
                y[i][1] += vel[i][1];
            }
        }
        y
    }
}

/// Snaps 2-D points onto a `cols x rows` grid (`cols * rows >= n`): points
/// and cells are scaled to the unit square and assigned greedily, closest
/// (point, cell) pairs first. Returns the cell of each point, row-major.
pub fn snap_to_grid(y: &[[f64; 2]], cols: usize, rows: usize) -> Vec<usize> {
    let n = y.len();
    assert!(cols * rows >= n, "grid too small");
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for p in y {
        for k in 0..2 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }
    let norm = |p: &[f64; 2], k: usize| {
        if hi[k] > lo[k] {
            (p[k] - lo[k]) / (hi[k] - lo[k])
        } else {
            0.5
        }
    };
    let cell = |c: usize| {
        let (r, k) = (c / cols, c % cols);
        [
            (k as f64 + 0.5) / cols as f64,
            (r as f64 + 0.5) / rows as f64,
        ]
    };
    let mut pairs: Vec<(f64, usize, usize)> = Vec::with_capacity(n * cols * rows);
    for (i, p) in y.iter().enumerate() {
        let q = [norm(p, 0), norm(p, 1)];
        for c in 0..cols * rows {
            let g = cell(c);
            pairs.push(((q[0] - g[0]).powi(2) + (q[1] - g[1]).powi(2), i, c));
        }
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut of_point = vec![usize::MAX; n];
    let mut taken = vec![false; cols * rows];
    let mut left = n;
    for (_, i, c) in pairs {
        if left == 0 {
            break;
        }
        if of_point[i] == usize::MAX && !taken[c] {
            of_point[i] = c;
            taken[c] = true;
            left -= 1;
        }
    }
    of_point
}

/// Lays out `images` (each `h*w*c` values) in the cells given by
/// [`snap_to_grid`]; empty cells stay white. Returns the image array to
/// pass to [`crate::data::image::grid`] with `cols` columns.
pub fn arrange(images: &[Vec<f32>], cells: &[usize], cols: usize, rows: usize) -> Vec<f32> {
    let size = images.first().map_or(0, |v| v.len());
    let mut out = vec![1.0f32; cols * rows * size];
    for (img, &c) in images.iter().zip(cells) {
        out[c * size..(c + 1) * size].copy_from_slice(img);
    }
    out
}
