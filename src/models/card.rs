//! The JSON card beside every shipped weights file: what the network is,
//! the exact command that trained it, and what was measured.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::models::generator_error::ErrorByValue;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Card {
    /// `classifier`, `evaluator`, `generator`, `h-dae`, `x-dae`.
    pub network: String,
    /// The network's architecture configuration (its serde config struct).
    pub config: serde_json::Value,
    /// The command line that produced the weights.
    pub command: String,
    pub seed: u64,
    pub epochs: usize,
    pub steps: u64,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub wall_time_s: f64,
    /// Measured after training (test accuracy, losses, ...).
    pub metrics: BTreeMap<String, f64>,
    /// Weights file name and its SHA-256.
    pub weights: String,
    pub weights_sha256: String,
    /// Other shipped networks this one was trained against, with their hashes.
    #[serde(default)]
    pub depends_on: BTreeMap<String, String>,
    /// Metrics measured after training by another command than
    /// `command`: the metric's name, and the command line that measured it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub measured_by: BTreeMap<String, String>,
    /// A generator's error given the value it draws, measured on the
    /// validation split (`crate::models::generator_error`); its command is
    /// `measured_by`'s [`GENERATOR_ERROR`] one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_by_value: Option<ErrorByValue>,
}

/// The generator card's metric of its own error per pixel: the RMSE of
/// its reconstructions `G(E(x))` of the validation split (what a
/// restoration adds to the observation's noise).
pub const GENERATOR_ERROR: &str = "validation_reconstruction_rmse";

/// The code prior card's metric of the temperature its draws are taken at
/// (`crate::models::fashion::Stack::transport`; absent: 1, the flow as
/// trained), chosen by `ppgn models flow-temperature --record`.
pub const FLOW_TEMPERATURE: &str = "temperature";

impl Card {
    pub fn load(path: &Path) -> Result<Card> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let card: Card = serde_json::from_str(&text)
            .map_err(|e| Error::data(path, format!("not a valid model card: {e}")))?;
        if let Some(t) = &card.error_by_value {
            t.check(&format!("{}: error_by_value", path.display()))?;
        }
        Ok(card)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("card serialises");
        write_atomic(path, format!("{text}\n").as_bytes())
    }

    /// One line: the network, its training time and steps, and its metrics.
    pub fn summary(&self) -> String {
        let metrics: Vec<String> = self
            .metrics
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect();
        format!(
            "trained {} in {:.0} s ({} steps): {}",
            self.network,
            self.wall_time_s,
            self.steps,
            metrics.join(", ")
        )
    }

    /// The config as a typed struct, with an error naming the card.
    pub fn config<T: serde::de::DeserializeOwned>(&self, path: &Path) -> Result<T> {
        serde_json::from_value(self.config.clone()).map_err(|e| {
            Error::data(
                path,
                format!("card config does not fit {}: {e}", self.network),
            )
        })
    }
}

/// The command line as typed, for cards and manifests (the program's name
/// as `ppgn`).
pub fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.first_mut() {
        *first = "ppgn".into();
    }
    args.join(" ")
}

/// Hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(sha256_bytes(&bytes))
}

/// SHA-256 of bytes, lower-case hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}
