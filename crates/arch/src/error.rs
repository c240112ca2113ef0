//! Errors of architecture resolution.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum ArchError {
    #[error("unknown model '{name}'{}", suggest(.suggestions))]
    UnknownModel {
        name: String,
        suggestions: Vec<String>,
    },
    #[error("layer {path}: {msg}")]
    Invalid { path: String, msg: String },
    #[error("{0}")]
    BadOption(String),
}

fn suggest(s: &[String]) -> String {
    if s.is_empty() {
        " (run `effcnn list` to see every model)".to_string()
    } else {
        format!(" — did you mean {}?", s.join(", "))
    }
}
