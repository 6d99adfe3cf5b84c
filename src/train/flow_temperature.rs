//! The flow prior's temperature: draws `u = T(t z)`, `z ~ N(0, I)`, for a
//! temperature `t <= 1` (Kingma and Dhariwal 2018, "Glow", S5: reduced
//! temperatures draw more typical images). The prior stays an exact
//! density (the flow's push-forward of `N(0, t^2 I)`), and the chains of
//! `--prior flow` keep moving `z ~ N(0, I)`: the engine graph
//! [`crate::models::fashion::Stack::transport`] scales `z` by `t` before
//! `T`. "Generating Class-conditional Images with Gradient-based
//! Inference" (S2) asks of the exact samplers' prior that its mass be where
//! the generator draws well; the flow as trained puts it 4x farther from
//! real codes than the codes' own sampling error (its card).
//!
//! **The rule** (written before any temperature ran): each temperature in
//! [`TEMPERATURES`] draws [`super::code_prior::DRAWS`] codes from the
//! same base draws (seed 0), measured as the card's
//! `validation_draws_frechet` (against the validation split's codes,
//! standardised by the training codes; no network of the stack saw those
//! images). The lowest distance wins, but the flow as trained (`t = 1`)
//! stays unless the winner's distance is more than [`MARGIN`] of its own
//! below it. `ppgn models flow-temperature --record` writes the choice
//! on the code prior's card as the metric [`METRIC`], with the command.

use std::path::Path;

use candle_core::{DType, Device};
use serde::Serialize;

use super::code_prior::{draws_frechet, SplitCodes};
use super::Data;
use crate::data::fashion_mnist;
use crate::error::Result;
use crate::models::fashion::{self as stack, CodePrior};
use crate::nn::frechet::Spread;

/// The temperatures tried, the trained flow's first.
pub const TEMPERATURES: [f64; 10] = [1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.5];

/// How much lower than the trained flow's (a fraction of it) a
/// temperature's distance must be to replace it.
pub const MARGIN: f64 = 0.05;

/// The code prior card's metric holding the chosen temperature (absent: 1).
pub use crate::models::card::FLOW_TEMPERATURE as METRIC;

/// One temperature's draws.
#[derive(Debug, Clone, Serialize)]
pub struct TemperatureRow {
    pub temperature: f64,
    pub validation_draws_frechet: f64,
    pub spread: Spread,
}

/// Every temperature of [`TEMPERATURES`] measured, and the rule's choice.
#[derive(Debug, Clone, Serialize)]
pub struct TemperatureStudy {
    pub rows: Vec<TemperatureRow>,
    /// Training codes against the same validation codes: the floor.
    pub training_codes_frechet: f64,
    pub chosen: f64,
}

/// Measures the shipped flow in `models_dir` at each temperature and
/// applies the rule (module doc). `data_dir`: the Fashion-MNIST folder
/// (`None`: the default one).
pub fn study(models_dir: &Path, data_dir: Option<&Path>) -> Result<TemperatureStudy> {
    let device = Device::Cpu;
    let (flow, _) = stack::load(
        models_dir,
        "code-prior",
        DType::F32,
        &device,
        CodePrior::new,
    )?;
    let data = Data::load(&fashion_mnist::resolve_dir(data_dir))?;
    let codes = SplitCodes::new(&data, models_dir, &device, "code prior")?;
    let mut rows = Vec::new();
    let mut floor = 0.0;
    for t in TEMPERATURES {
        let (frechet, seen, spread) = draws_frechet(&flow, &codes.train, &codes.validation, t)?;
        floor = seen;
        rows.push(TemperatureRow {
            temperature: t,
            validation_draws_frechet: frechet,
            spread,
        });
    }
    let chosen = choose(&rows);
    Ok(TemperatureStudy {
        rows,
        training_codes_frechet: floor,
        chosen,
    })
}

/// The rule on measured rows (the first is the trained flow's, `t = 1`).
pub fn choose(rows: &[TemperatureRow]) -> f64 {
    let Some(trained) = rows.first() else {
        return 1.0;
    };
    let best = rows
        .iter()
        .min_by(|a, b| {
            a.validation_draws_frechet
                .total_cmp(&b.validation_draws_frechet)
        })
        .unwrap_or(trained);
    let bar = trained.validation_draws_frechet * (1.0 - MARGIN);
    match best.validation_draws_frechet < bar {
        true => best.temperature,
        false => trained.temperature,
    }
}

/// Writes `temperature` on the code prior's card in `models_dir` as
/// [`METRIC`], measured by `command`.
pub fn record(models_dir: &Path, temperature: f64, command: &str) -> Result<()> {
    let path = stack::paths(models_dir, "code-prior").1;
    let mut card = crate::models::card::Card::load(&path)?;
    card.metrics.insert(METRIC.into(), temperature);
    card.measured_by.insert(METRIC.into(), command.into());
    card.save(&path)
}

impl std::fmt::Display for TemperatureStudy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "| temperature | Frechet distance to the validation codes | mean term | total variance ratio |"
        )?;
        writeln!(f, "|---:|---:|---:|---:|")?;
        for r in &self.rows {
            writeln!(
                f,
                "| {} | {:.4} | {:.4} | {:.3} |",
                r.temperature,
                r.validation_draws_frechet,
                r.spread.mean_term,
                r.spread.total_variance_ratio
            )?;
        }
        writeln!(
            f,
            "| training codes (floor) | {:.4} | | |",
            self.training_codes_frechet
        )?;
        writeln!(f, "\nchosen by the rule: temperature {}", self.chosen)
    }
}
