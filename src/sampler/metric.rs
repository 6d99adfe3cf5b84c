//! The diagonal metric NUTS learns in warm-up (`super::nuts`): Stan's
//! windows, and the regularised variance of the positions seen in one.

/// Stan's warm-up windows for `warmup` steps: a fast start, slow windows
/// doubling from a base size (the last one stretched to the end buffer)
/// that estimate the metric, and a fast end; 15%, 75% and 10% when warm-up
/// is shorter than the three defaults together (75, 25, 50).
pub(crate) struct Windows {
    start: usize,
    end: usize,
    /// The last step of each slow window.
    ends: Vec<usize>,
}

impl Windows {
    pub(crate) fn new(warmup: usize) -> Self {
        let (start, base, term) = if warmup < 150 {
            let s = warmup * 15 / 100;
            let t = warmup / 10;
            (s, warmup - s - t, t)
        } else {
            (75, 25, 50)
        };
        let end = warmup.saturating_sub(term);
        let mut ends = Vec::new();
        let (mut at, mut size) = (start, base.max(1));
        while at < end {
            let mut stop = at + size;
            // a window that would leave less than the next one's size
            // stretches to the end
            if stop + 2 * size > end {
                stop = end;
            }
            ends.push(stop - 1);
            at = stop;
            size *= 2;
        }
        Self { start, end, ends }
    }
    pub(crate) fn slow(&self, t: usize) -> bool {
        (self.start..self.end).contains(&t)
    }
    pub(crate) fn ends_slow(&self, t: usize) -> bool {
        self.ends.contains(&t)
    }
}

/// Per-coordinate mean and spread of the positions seen in a window,
/// pooled over chains (Welford).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Window {
    n: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Window {
    pub(crate) fn add(&mut self, rows: &[Vec<f64>]) {
        for x in rows {
            if self.mean.is_empty() {
                self.mean = vec![0.0; x.len()];
                self.m2 = vec![0.0; x.len()];
            }
            self.n += 1.0;
            for ((m, s), &v) in self.mean.iter_mut().zip(&mut self.m2).zip(x) {
                let delta = v - *m;
                *m += delta / self.n;
                *s += delta * (v - *m);
            }
        }
    }
    /// Stan's regularised variance: `n / (n + 5) var + 1e-3 * 5 / (n + 5)`.
    pub(crate) fn variance(&self) -> Vec<f64> {
        let n = self.n;
        self.m2
            .iter()
            .map(|s| {
                let var = s / (n - 1.0).max(1.0);
                n / (n + 5.0) * var + 1e-3 * 5.0 / (n + 5.0)
            })
            .collect()
    }
}
