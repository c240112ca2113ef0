//! Errors of plan compilation and execution.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("missing tensor `{key}`")]
    MissingTensor { key: String },
    #[error("tensor `{key}` has shape {got:?}, the model needs {want:?}")]
    ShapeMismatch {
        key: String,
        want: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("{0}")]
    BadInput(String),
    #[error("{path}: the engine cannot run {what}")]
    Unsupported { path: String, what: String },
    /// An environment switch with a value the engine does not know.
    #[error("{0}")]
    Setting(String),
}
