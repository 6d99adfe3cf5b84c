//! Settings with a few named values, listed and parsed by name (the
//! presets' sampler, prior, class gradient and engine; the trainable
//! networks of `crate::train::job`).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// A setting with a few named values (spelled in kebab-case, as in the
/// manifest), so a front end can list and parse them.
pub trait Choice: Copy + Serialize + DeserializeOwned + 'static {
    /// Every value.
    const ALL: &'static [Self];
    /// What the setting is called, for messages.
    const WHAT: &'static str;

    /// One line on the value, for a front end's help.
    fn help(self) -> Option<&'static str> {
        None
    }

    /// The value's name.
    fn name(self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => s,
            other => format!("{other:?}"),
        }
    }

    /// The value named `s`, or an error listing the names.
    fn parse(s: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(s.trim().to_string())).map_err(|_| {
            let names: Vec<String> = Self::ALL.iter().map(|v| v.name()).collect();
            Error::unknown(Self::WHAT, s, &names)
        })
    }
}
