//! The error type of effcnn-report.

use std::path::PathBuf;

/// Everything that can go wrong while building tables, plots and reports.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file or directory could not be created, written or renamed.
    #[error("cannot write {}: {error}", path.display())]
    Io {
        /// The path that could not be written.
        path: PathBuf,
        /// The underlying I/O error (shown in the message, so not chained as a source: a
        /// report of the whole chain would print it twice).
        error: std::io::Error,
    },
    /// The drawing backend failed while rendering a plot.
    #[error("cannot draw plot: {0}")]
    Draw(String),
    /// A rendered image could not be encoded.
    #[error("cannot encode image: {0}")]
    Encode(String),
    /// The input cannot be rendered (bad size, bad figure name, ...).
    #[error("invalid input: {0}")]
    Invalid(String),
}

impl ReportError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        ReportError::Io {
            path: path.into(),
            error,
        }
    }

    pub(crate) fn draw<E: std::fmt::Display>(err: E) -> Self {
        ReportError::Draw(err.to_string())
    }
}
