//! The library's one error type. Every variant names the file, tensor, flag or
//! class that is wrong and, where it helps, what would be right.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    Data { path: PathBuf, message: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("unknown {what} {given:?}: expected an index 0..{count} or one of {names}")]
    UnknownClass {
        /// Which set of classes: "class", "ImageNet class".
        what: &'static str,
        given: String,
        count: usize,
        names: String,
    },

    #[error("weights file {path}: {message}")]
    Weights { path: PathBuf, message: String },

    /// A name that is not one of the known ones (a preset, a layer, a
    /// sampler, a network).
    #[error("unknown {what} {given:?}: expected {expected}")]
    UnknownName {
        what: &'static str,
        given: String,
        expected: String,
    },

    /// A setting outside its range.
    #[error("{name} = {value}: expected {expected}")]
    Setting {
        name: String,
        value: String,
        expected: String,
    },

    /// Data of the wrong size or shape for what reads it.
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        what: String,
        expected: String,
        got: String,
    },

    /// A network whose layers do not fit together.
    #[error("network, {at}: {message}")]
    Network { at: String, message: String },

    /// A hidden unit outside its layer.
    #[error("neuron {neuron} does not exist in layer {layer} of shape {shape}")]
    NoSuchUnit {
        neuron: String,
        layer: String,
        shape: String,
    },

    /// A network or file the run needs is not on this machine.
    #[error("{what} is not installed ({missing} is missing): {hint}")]
    NotInstalled {
        what: String,
        missing: PathBuf,
        hint: String,
    },

    /// A combination the library cannot run, and what to use instead.
    #[error("{what}: {instead}")]
    Unsupported { what: String, instead: String },

    /// The run was stopped (Ctrl-C) before it finished; `then` says what
    /// was kept and how to go on.
    #[error("interrupted at step {step} of {steps}; {then}")]
    Interrupted {
        step: usize,
        steps: usize,
        then: String,
    },

    /// A computation that produced non-finite numbers.
    #[error("{0}")]
    Diverged(String),

    /// A failure of an outside tool or encoder (pip, PNG, GIF).
    #[error("{tool}: {message}")]
    External { tool: String, message: String },

    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// Writing text into a `String` (cannot fail in practice).
    #[error(transparent)]
    Fmt(#[from] std::fmt::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether this is a write that found no room: a full filesystem, a
    /// quota, or the file-size limit (`ulimit -f`, with SIGXFSZ ignored).
    pub fn is_disk_full(&self) -> bool {
        use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
        matches!(self, Error::Io { source, .. }
            if matches!(source.kind(), StorageFull | QuotaExceeded | FileTooLarge))
    }
    /// [`Error::Setting`]: `name = value` is wrong, `expected` says what is right.
    pub fn setting(
        name: impl Into<String>,
        value: impl ToString,
        expected: impl Into<String>,
    ) -> Self {
        Error::Setting {
            name: name.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }
    /// [`Error::Shape`].
    pub fn shape(what: impl Into<String>, expected: impl ToString, got: impl ToString) -> Self {
        Error::Shape {
            what: what.into(),
            expected: expected.to_string(),
            got: got.to_string(),
        }
    }
    /// [`Error::UnknownName`], listing the known names.
    pub fn unknown<S: AsRef<str>>(what: &'static str, given: &str, known: &[S]) -> Self {
        let names: Vec<&str> = known.iter().map(|s| s.as_ref()).collect();
        Error::UnknownName {
            what,
            given: given.to_string(),
            expected: format!("one of {}", names.join(", ")),
        }
    }
    /// [`Error::Unsupported`].
    pub fn unsupported(what: impl Into<String>, instead: impl Into<String>) -> Self {
        Error::Unsupported {
            what: what.into(),
            instead: instead.into(),
        }
    }
    /// [`Error::External`].
    pub fn external(tool: impl Into<String>, message: impl ToString) -> Self {
        Error::External {
            tool: tool.into(),
            message: message.to_string(),
        }
    }
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            message: message.into(),
        }
    }
}
