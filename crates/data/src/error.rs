//! The error type of every fallible operation in this crate.

use std::path::Path;

/// Why a dataset could not be loaded or an operation on it was refused.
///
/// Every variant that concerns a file carries the path (or `archive:entry` name) that caused
/// it, so a message such as `data_batch_3.bin: size 30000 is not a multiple of the 3073-byte
/// CIFAR-10 record` can be shown to a user as is.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Reading a file or folder failed.
    #[error("{path}: {error}")]
    Io {
        /// The file or folder being read.
        path: String,
        /// The underlying operating-system error (shown in the message, so not chained as a
        /// source: a report of the whole chain would print it twice).
        error: std::io::Error,
    },
    /// A file or folder exists but its content or layout is not what the format requires.
    #[error("{path}: {message}")]
    Invalid {
        /// The offending file or folder.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A file with an image extension could not be decoded.
    #[error("{path}: corrupt image: {message}")]
    CorruptImage {
        /// The offending file.
        path: String,
        /// The decoder's explanation.
        message: String,
    },
    /// An argument (a dataset spec, a fraction, an index, a batch size …) is out of range.
    #[error("{0}")]
    InvalidArgument(String),
}

impl DataError {
    pub(crate) fn io(path: impl AsRef<Path>, error: std::io::Error) -> Self {
        DataError::Io {
            path: path.as_ref().display().to_string(),
            error,
        }
    }

    pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        DataError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Shorthand for `Result<T, DataError>`.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
