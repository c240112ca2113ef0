//! The error type of training and evaluation.

use std::path::{Path, PathBuf};

/// Why a training run or an evaluation could not start or had to stop.
///
/// Every variant that concerns a file names it, so the message can be shown to a user as is.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The model could not be resolved (unknown name, bad width, …).
    #[error(transparent)]
    Arch(#[from] effcnn_arch::ArchError),
    /// Building the model or reading/writing its weights failed.
    #[error(transparent)]
    Nn(#[from] effcnn_nn::NnError),
    /// The dataset could not be loaded.
    #[error(transparent)]
    Data(#[from] effcnn_data::DataError),
    /// A table or report could not be built.
    #[error(transparent)]
    Report(#[from] effcnn_report::ReportError),
    /// Reading or writing a file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating-system error (shown in the message, so not chained as a source).
        error: std::io::Error,
    },
    /// A run file exists but cannot be understood (corrupt JSON, inconsistent checkpoint, …).
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The output folder cannot hold a run (not writable, already holds a run, …).
    #[error("output folder {path}: {message}")]
    OutDir {
        /// The folder.
        path: PathBuf,
        /// Why it cannot be used.
        message: String,
    },
    /// A configuration value is out of range or inconsistent with the data.
    #[error("{0}")]
    Config(String),
    /// The loss (or a gradient) became NaN or infinite; the last good checkpoint is kept.
    #[error(
        "training diverged at epoch {epoch}, step {step} (global step {global_step}): the loss is \
         {loss}{}; the last good checkpoint is kept (try a lower --lr or a longer --warmup)",
        .layer.as_ref().map(|l| format!(", first non-finite gradient in layer {l}")).unwrap_or_default()
    )]
    NonFinite {
        /// Epoch (0-based) of the failing step.
        epoch: usize,
        /// Step within the epoch (0-based).
        step: usize,
        /// Step counted from the start of training.
        global_step: u64,
        /// The loss value.
        loss: f32,
        /// The graph path of the first layer (in graph order) whose gradient is not finite.
        layer: Option<String>,
    },
    /// A run cannot be resumed.
    #[error("cannot resume {path}: {message}")]
    Resume {
        /// The run folder.
        path: PathBuf,
        /// Why not.
        message: String,
    },
}

impl TrainError {
    pub(crate) fn io(path: impl AsRef<Path>, error: std::io::Error) -> Self {
        TrainError::Io {
            path: path.as_ref().to_path_buf(),
            error,
        }
    }

    pub(crate) fn format(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        TrainError::Format {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }
}

/// Shorthand for `Result<T, TrainError>`.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
