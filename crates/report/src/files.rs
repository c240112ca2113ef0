//! Writing result files.

use std::path::Path;

use crate::ReportError;

/// Writes `bytes` to `path` atomically ([`effcnn_arch::files::write_atomic`]: a temporary file
/// in the same directory, flushed, renamed over `path`); the error names `path`.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    effcnn_arch::files::write_atomic(path, bytes).map_err(|e| ReportError::io(path, e))
}
