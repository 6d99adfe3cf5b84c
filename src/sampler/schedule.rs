//! Step-size and noise schedules ("Generating Class-conditional Images with Gradient-based Inference", §3), and the ladders of noise levels that score-prior samplers anneal down.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Schedule {
    Constant {
        value: f64,
    },
    /// Linear from `start` at step 0 to `end` at step `steps - 1` (DGN-AM's learning rate).
    Linear {
        start: f64,
        end: f64,
        steps: usize,
    },
    /// Teh et al.'s decaying step `a (b + t)^(-gamma)`, `gamma` in (0.5, 1].
    Polynomial {
        a: f64,
        b: f64,
        gamma: f64,
    },
    /// Annealed noise variance `eta / (1 + t)^0.55` (Neelakantan et al.); the
    /// value is the variance.
    Annealed {
        eta: f64,
    },
}

impl Schedule {
    pub fn at(&self, t: usize) -> f64 {
        let tf = t as f64;
        match *self {
            Schedule::Constant { value } => value,
            Schedule::Linear { start, end, steps } => {
                if steps <= 1 {
                    start
                } else {
                    start + (end - start) * (tf.min((steps - 1) as f64) / (steps - 1) as f64)
                }
            }
            Schedule::Polynomial { a, b, gamma } => a * (b + tf).powf(-gamma),
            Schedule::Annealed { eta } => eta / (1.0 + tf).powf(0.55),
        }
    }

    /// Checks the schedule only produces finite, non-negative values.
    pub fn validate(&self, what: &str) -> crate::Result<()> {
        let bad = |v: f64| !(v.is_finite() && v >= 0.0);
        let ok = match *self {
            Schedule::Constant { value } => !bad(value),
            Schedule::Linear { start, end, .. } => !bad(start) && !bad(end),
            Schedule::Polynomial { a, b, gamma } => !bad(a) && b > 0.0 && gamma > 0.0,
            Schedule::Annealed { eta } => !bad(eta),
        };
        if ok {
            Ok(())
        } else {
            Err(crate::Error::setting(
                what,
                format!("{self:?}"),
                "a schedule of finite non-negative values (and b > 0, gamma > 0)",
            ))
        }
    }
}

/// `n` noise levels from `max` down to `min`, evenly spaced in `s^(1/7)`
/// (Karras et al. 2022, eq. 5).
pub fn ladder(max: f64, min: f64, n: usize) -> Vec<f64> {
    const RHO: f64 = 7.0;
    let (a, b) = (max.powf(1.0 / RHO), min.powf(1.0 / RHO));
    (0..n)
        .map(|i| {
            let t = if n > 1 {
                i as f64 / (n - 1) as f64
            } else {
                0.0
            };
            (a + t * (b - a)).powf(RHO)
        })
        .collect()
}

/// The level a kernel walking `levels` (one a step) reads before step `t`:
/// the last level from the end of the ladder on.
pub fn level_at(levels: &[f64], t: usize) -> Option<f64> {
    levels.get(t.min(levels.len().saturating_sub(1))).copied()
}

/// The level after step `t`: the next one, 0 after the last.
pub fn level_after(levels: &[f64], t: usize) -> f64 {
    levels.get(t + 1).copied().unwrap_or(0.0)
}

/// Checks a ladder of noise levels: finite, positive, strictly decreasing.
pub fn check_ladder(levels: &[f64]) -> Result<()> {
    let ok = !levels.is_empty()
        && levels.iter().all(|s| s.is_finite() && *s > 0.0)
        && levels.windows(2).all(|w| w[1] < w[0]);
    match ok {
        true => Ok(()),
        false => Err(Error::setting(
            "noise levels",
            format!("{levels:?}"),
            "finite positive levels, strictly decreasing",
        )),
    }
}
