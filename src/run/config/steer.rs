//! Changes of a run's settings keyed by step: what a user steering chains
//! live (`ppgn serve`'s sliders) does, recorded so the run stays
//! reproducible. A run's settings carry their schedule of changes
//! (`SamplerConfig::changes`, in the manifest); changes made while it runs
//! are added to it, in the checkpoint as they come, so `ppgn sample
//! --resume` and a rerun with the manifest's settings replay them at the
//! same steps.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// From step `at` on (before the step of that index runs): new values of
/// some settings, or the end of the chains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Change {
    /// The step (set by the run when the change is made live).
    #[serde(default)]
    pub at: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps2: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps3: Option<f64>,
    /// A constant step in place of the step schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<f64>,
    /// The chains end here: their images now are the samples.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop: bool,
}

impl Change {
    /// Checks the values (before a run or a server accepts them).
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("eps1", self.eps1),
            ("eps2", self.eps2),
            ("eps3", self.eps3),
        ] {
            if let Some(v) = v.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(Error::setting(name, v, "a finite non-negative number"));
            }
        }
        if let Some(s) = self.step.filter(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::setting("step", s, "a positive number"));
        }
        Ok(())
    }

    /// Whether the change reweights the target's terms (which rebuilds it).
    pub fn reweights(&self) -> bool {
        self.eps1.is_some() || self.eps2.is_some()
    }

    /// Whether the change sets anything.
    pub fn is_empty(&self) -> bool {
        *self
            == Change {
                at: self.at,
                ..Change::default()
            }
    }
}
