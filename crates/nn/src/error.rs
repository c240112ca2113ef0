//! Errors of the runnable models, checkpoint I/O and prediction helpers.

use std::path::PathBuf;

use thiserror::Error;

/// How many names an error lists before it only gives a count.
pub const LIST_FIRST: usize = 8;

/// Everything that can go wrong in effcnn-nn. Bad user input (files, shapes, options) is always
/// reported through this type, never by a panic.
#[derive(Debug, Error)]
pub enum NnError {
    /// Resolving an architecture failed.
    #[error(transparent)]
    Arch(#[from] effcnn_arch::ArchError),
    /// The compute device cannot be used (unknown, not built in, no driver or GPU).
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    /// An I/O error on a named file.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said (shown in the message, so not chained as a source:
        /// a report of the whole chain would print it twice).
        error: std::io::Error,
    },
    /// A file could not be parsed (format, truncation, unsupported content).
    #[error("{path}: {msg}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// A pickle in a PyTorch checkpoint references a Python global that effcnn refuses to load.
    #[error(
        "{path}: refusing to load: the pickle references `{global}`, which is not a tensor-rebuild \
         function of a weights-only checkpoint (effcnn never executes pickle code; convert the \
         file to .safetensors with PyTorch if it is trusted)"
    )]
    UnsafePickle {
        /// The checkpoint.
        path: PathBuf,
        /// The refused global, `module.name`.
        global: String,
    },
    /// The checkpoint's tensors do not match the model.
    #[error("{0}")]
    Mismatch(Box<MismatchReport>),
    /// The checkpoint's key set matches several layouts equally well.
    #[error(
        "the checkpoint's keys match the layouts {} equally well ({matched} tensors each); \
         pick one with --layout",
        .candidates.join(", ")
    )]
    AmbiguousLayout {
        /// The tied layouts' names.
        candidates: Vec<String>,
        /// How many tensors each of them matched.
        matched: usize,
    },
    /// The requested layout has no names for this model.
    #[error("model {model} has no `{layout}` checkpoint names (available: {})", .available.join(", "))]
    NoSuchLayout {
        /// The zoo name.
        model: String,
        /// The requested layout.
        layout: String,
        /// The layouts the model does have.
        available: Vec<String>,
    },
    /// An input tensor or option does not fit the model.
    #[error("{0}")]
    BadInput(String),
}

impl NnError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        NnError::Io {
            path: path.into(),
            error,
        }
    }
    pub(crate) fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        NnError::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

/// Which checkpoint tensors did not fit the model: missing, unexpected and mis-shaped, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MismatchReport {
    /// The layout the keys were matched against.
    pub layout: String,
    /// Keys the model needs that the checkpoint lacks.
    pub missing: Vec<String>,
    /// Keys of the checkpoint the model does not have.
    pub unexpected: Vec<String>,
    /// `key: expected [..], found [..]` (or a dtype problem).
    pub mismatched: Vec<String>,
}

impl MismatchReport {
    /// Whether every tensor fitted.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

/// `a, b, c, … (N in all)`.
pub(crate) fn list_some(items: &[String]) -> String {
    let mut s = items
        .iter()
        .take(LIST_FIRST)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > LIST_FIRST {
        s.push_str(&format!(", … ({} in all)", items.len()));
    }
    s
}

impl std::fmt::Display for MismatchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "checkpoint does not match the model (layout {})",
            self.layout
        )?;
        if !self.missing.is_empty() {
            write!(
                f,
                "; {} missing: {}",
                self.missing.len(),
                list_some(&self.missing)
            )?;
        }
        if !self.unexpected.is_empty() {
            write!(
                f,
                "; {} unexpected: {}",
                self.unexpected.len(),
                list_some(&self.unexpected)
            )?;
        }
        if !self.mismatched.is_empty() {
            write!(
                f,
                "; {} with the wrong shape: {}",
                self.mismatched.len(),
                list_some(&self.mismatched)
            )?;
        }
        write!(
            f,
            " (use --allow-partial to load only the tensors that match)"
        )
    }
}

/// The compiled plan rejects what it is given (shapes, unsupported graphs) with a message that
/// names the problem; it reaches the user as bad input.
impl From<effcnn_engine::EngineError> for NnError {
    fn from(e: effcnn_engine::EngineError) -> Self {
        NnError::BadInput(e.to_string())
    }
}
