//! Errors of the ONNX exporter.

use thiserror::Error;

use crate::{DEFAULT_OPSET, MAX_OPSET, MIN_OPSET};

/// Everything that can go wrong while exporting.
#[derive(Debug, Error)]
pub enum OnnxError {
    /// An operator set outside the supported range.
    #[error(
        "--opset {0}: effcnn exports ONNX opsets {min} to {max} (default {default})",
        min = MIN_OPSET,
        max = MAX_OPSET,
        default = DEFAULT_OPSET
    )]
    Opset(i64),
    /// A fixed batch size of zero.
    #[error("--batch 0: the batch size must be at least 1 (or `dynamic`)")]
    ZeroBatch,
    /// A batch argument that is neither a positive integer nor `dynamic`.
    #[error("--batch {0}: expected a batch size (1, 8, …) or `dynamic`")]
    BadBatch(String),
    /// A parameter tensor the graph needs is missing or has the wrong shape.
    #[error("weights do not fit the model: tensor {key}: {msg}")]
    Tensor {
        /// The tensor's canonical key (`<node path>.<suffix>`).
        key: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A node whose operation (or inputs) ONNX cannot express as exported.
    #[error("cannot export node {path} to ONNX: {msg}")]
    Unsupported {
        /// The node's path.
        path: String,
        /// Why.
        msg: String,
    },
    /// The exported model failed effcnn's structural check (a bug in the exporter).
    #[error("internal error: the exported ONNX model is inconsistent: {0}")]
    Internal(String),
    /// Reading weights or writing the file failed.
    #[error(transparent)]
    Nn(#[from] effcnn_nn::NnError),
}
