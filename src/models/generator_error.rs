//! A generator's own error given the value it draws: for each of `bins`
//! equal parts of its output range, the empirical quantile function of
//! `x - G(E(x))` over real images `x` (the validation split), at `levels`
//! evenly spaced probabilities from 0 to 1.
//!
//! A restoration adds this error to each drawn pixel before it takes the
//! quantiles of its intervals (`crate::run::jobs::restore`, `--draw-error
//! by-value`): a real image is `G(h)` plus what `G` cannot draw, and that
//! error is not one Gaussian for every pixel. Fashion-MNIST's background
//! is exactly 0 and the generator draws it nearly so, while its edges and
//! textures miss by a tenth of the range; the Gaussian `N(0, tau^2)` of
//! the card's one `tau` widens both alike (docs/restore.md, "Why `down:2`
//! over-covers").

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The error's quantiles by the drawn value (module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorByValue {
    /// The generator's output range `[low, high]` the bins divide.
    pub range: [f64; 2],
    /// Per bin (`bins` of them, low to high): the error's quantiles at the
    /// probabilities `j / (levels - 1)`, `j = 0..levels`, ascending.
    pub quantiles: Vec<Vec<f64>>,
    /// The number of (pixel, image) pairs behind each bin.
    pub counts: Vec<u64>,
}

impl ErrorByValue {
    /// Fits the quantiles from `(drawn, true)` pixel pairs: `bins` equal
    /// parts of `range`, `levels` probabilities. A bin no pair fell in
    /// takes the error of all pairs together.
    pub fn fit(
        pairs: impl Iterator<Item = (f64, f64)>,
        range: [f64; 2],
        bins: usize,
        levels: usize,
    ) -> Result<ErrorByValue> {
        if bins == 0
            || levels < 2
            || range[1].partial_cmp(&range[0]) != Some(std::cmp::Ordering::Greater)
        {
            return Err(Error::setting(
                "the error-by-value table",
                format!("bins {bins}, levels {levels}, range {range:?}"),
                "at least 1 bin, 2 levels and a range [low, high] with low < high",
            ));
        }
        let mut errors: Vec<Vec<f32>> = vec![Vec::new(); bins];
        let mut all = Vec::new();
        for (g, x) in pairs {
            let e = x - g;
            if !e.is_finite() {
                return Err(Error::Diverged(format!(
                    "a non-finite pixel ({g} drawn, {x} true) in the generator's error"
                )));
            }
            errors[bin(range, bins, g)].push(e as f32);
            all.push(e as f32);
        }
        if all.is_empty() {
            return Err(Error::setting(
                "the error-by-value table",
                "no pixels",
                "reconstructions of at least one image",
            ));
        }
        let table = |v: &mut Vec<f32>| -> Vec<f64> {
            v.sort_by(f32::total_cmp);
            (0..levels)
                .map(|j| {
                    let sorted: &[f32] = v;
                    let pos = j as f64 / (levels - 1) as f64 * (sorted.len() - 1) as f64;
                    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
                    let (a, b) = (sorted[lo] as f64, sorted[hi] as f64);
                    a + (b - a) * (pos - lo as f64)
                })
                .collect()
        };
        let pooled = table(&mut all);
        Ok(ErrorByValue {
            range,
            counts: errors.iter().map(|e| e.len() as u64).collect(),
            quantiles: errors
                .iter_mut()
                .map(|e| match e.is_empty() {
                    true => pooled.clone(),
                    false => table(e),
                })
                .collect(),
        })
    }

    /// The error at probability `u` in [0, 1] for a pixel drawn at `g`:
    /// the bin's quantile function, linear between its levels. With `u`
    /// uniform, a draw of the error.
    pub fn error(&self, g: f64, u: f64) -> f64 {
        let q = &self.quantiles[bin(self.range, self.quantiles.len(), g)];
        let pos = u.clamp(0.0, 1.0) * (q.len() - 1) as f64;
        let lo = (pos.floor() as usize).min(q.len() - 1);
        let hi = (lo + 1).min(q.len() - 1);
        q[lo] + (q[hi] - q[lo]) * (pos - lo as f64)
    }

    /// Refuses a table that is not one: no bins, bins of different
    /// lengths or fewer than 2 levels, non-finite or descending values.
    pub fn check(&self, what: &str) -> Result<()> {
        let levels = self.quantiles.first().map_or(0, Vec::len);
        let ok = levels >= 2
            && self.range[1] > self.range[0]
            && self.counts.len() == self.quantiles.len()
            && self.quantiles.iter().all(|q| {
                q.len() == levels
                    && q.iter().all(|v| v.is_finite())
                    && q.windows(2).all(|w| w[0] <= w[1])
            });
        match ok {
            true => Ok(()),
            false => Err(Error::setting(
                what,
                format!(
                    "{} bins over {:?}, levels {:?}",
                    self.quantiles.len(),
                    self.range,
                    self.quantiles.iter().map(Vec::len).collect::<Vec<_>>()
                ),
                "bins of at least 2 ascending finite quantiles, all of one length, a count per bin and a range [low, high] with low < high (rewrite it with `ppgn models check --record-tau`)",
            )),
        }
    }
}

/// The bin of `range` (cut into `bins` equal parts) that `g` falls in;
/// values outside fall in the first or last.
fn bin(range: [f64; 2], bins: usize, g: f64) -> usize {
    let t = (g - range[0]) / (range[1] - range[0]) * bins as f64;
    match t.is_nan() {
        true => 0,
        false => (t.max(0.0) as usize).min(bins - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::Distribution;

    /// Pixels drawn at `g` uniform in [0, 1] whose truth is `g` plus
    /// `N(0, (0.02 + 0.2 g)^2)`: an error that grows with the value.
    fn pairs(n: usize, seed: u64) -> Vec<(f64, f64)> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let g: f64 = rng.random();
                let e: f64 = rand_distr::StandardNormal.sample(&mut rng);
                (g, g + (0.02 + 0.2 * g) * e)
            })
            .collect()
    }

    #[test]
    fn intervals_from_the_table_cover_new_pixels_at_their_level_in_every_bin() {
        let t = ErrorByValue::fit(pairs(200_000, 1).into_iter(), [0.0, 1.0], 10, 101).unwrap();
        t.check("the table").unwrap();
        // fresh pixels: [g + e(0.05), g + e(0.95)] holds 90% of them, at
        // low and high values alike (one Gaussian could not: its width
        // would be the pooled one)
        let fresh = pairs(100_000, 2);
        for (lo, hi) in [(0.0, 0.2), (0.8, 1.0)] {
            let inside: Vec<bool> = fresh
                .iter()
                .filter(|(g, _)| (lo..hi).contains(g))
                .map(|&(g, x)| g + t.error(g, 0.05) <= x && x <= g + t.error(g, 0.95))
                .collect();
            let cover = inside.iter().filter(|&&b| b).count() as f64 / inside.len() as f64;
            // binomial SE at 20,000 pixels: 0.002; the bins' own widths
            // (a tenth of the range) move the level by about as much
            assert!((cover - 0.90).abs() < 0.015, "[{lo}, {hi}): {cover}");
        }
        // the error's spread grows with the value: the last bin's 90%
        // width is several times the first's
        let width = |g: f64| t.error(g, 0.95) - t.error(g, 0.05);
        assert!(
            width(0.95) > 4.0 * width(0.05),
            "{} {}",
            width(0.95),
            width(0.05)
        );
    }

    #[test]
    fn the_quantile_function_interpolates_and_clamps() {
        let t = ErrorByValue {
            range: [0.0, 1.0],
            quantiles: vec![vec![-1.0, 0.0, 3.0], vec![0.0, 0.0, 0.0]],
            counts: vec![3, 3],
        };
        assert_eq!(t.error(0.2, 0.0), -1.0);
        assert_eq!(t.error(0.2, 0.25), -0.5);
        assert_eq!(t.error(0.2, 0.75), 1.5);
        assert_eq!(t.error(0.2, 1.0), 3.0);
        assert_eq!(t.error(-5.0, 2.0), 3.0);
        assert_eq!(t.error(0.7, 0.3), 0.0);
        assert_eq!(t.error(9.0, 0.3), 0.0);
        assert_eq!(t.error(f64::NAN, 0.5), 0.0);
    }

    #[test]
    fn broken_tables_and_inputs_are_refused() {
        assert!(ErrorByValue::fit(std::iter::empty(), [0.0, 1.0], 10, 11).is_err());
        assert!(ErrorByValue::fit(pairs(10, 3).into_iter(), [1.0, 1.0], 10, 11).is_err());
        assert!(ErrorByValue::fit(pairs(10, 3).into_iter(), [0.0, 1.0], 0, 11).is_err());
        assert!(ErrorByValue::fit([(0.5, f64::NAN)].into_iter(), [0.0, 1.0], 2, 11).is_err());
        // a bin nothing fell in takes the pooled error
        let t = ErrorByValue::fit([(0.1, 0.2), (0.2, 0.2)].into_iter(), [0.0, 1.0], 2, 3).unwrap();
        assert_eq!(t.counts, vec![2, 0]);
        assert_eq!(t.quantiles[1], t.quantiles[0]);
        let mut bad = t.clone();
        bad.quantiles[1] = vec![0.3, 0.1, 0.2];
        let e = bad.check("the card's table").unwrap_err().to_string();
        assert!(e.contains("ascending"), "{e}");
        let mut bad = t.clone();
        bad.quantiles[0].pop();
        assert!(bad.check("t").is_err());
        let mut bad = t;
        bad.counts.pop();
        assert!(bad.check("t").is_err());
    }
}
