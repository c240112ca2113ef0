//! Run-folder file handling: atomic writes, JSON files, content fingerprints.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Result, TrainError};

/// `config.json`: the [`crate::TrainConfig`] of the run, with the resolved data.
pub const CONFIG_FILE: &str = "config.json";
/// `metrics.jsonl`: one [`crate::EpochMetrics`] per completed epoch.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// `last.safetensors`: weights after the last completed epoch.
pub const LAST_WEIGHTS: &str = "last.safetensors";
/// `best.safetensors`: weights of the epoch with the best test (or validation) accuracy.
pub const BEST_WEIGHTS: &str = "best.safetensors";
/// `last.optim.bpk`: burn optimizer record (momentum / Adam moments) matching `last.safetensors`.
pub const LAST_OPTIMIZER: &str = "last.optim.bpk";
/// Suffix of a checkpoint file written for the next `state.json` and not yet moved into place:
/// an epoch saves `last.safetensors.next` and `last.optim.bpk.next`, commits `state.json` with
/// their fingerprints, then renames them. A run killed in between still resumes exactly: the
/// files match either the old `state.json` or, still staged, the new one.
pub const STAGED_SUFFIX: &str = ".next";

/// The staged (not yet renamed) version of the run file `name` in `dir`.
pub fn staged(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{STAGED_SUFFIX}"))
}
/// `state.json`: progress counters and fingerprints of the last checkpoint (the commit point).
pub const STATE_FILE: &str = "state.json";
/// `summary.json`: the [`crate::RunSummary`].
pub const SUMMARY_FILE: &str = "summary.json";

/// Writes `bytes` to `path` through a temporary file in the same folder, flushed to disk, then
/// renamed over `path`: readers see the old or the new content, never a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(effcnn_nn::checkpoint::write_atomic(path, bytes)?)
}

/// Writes `value` as pretty JSON (with a final newline), atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value)
        .map_err(|e| TrainError::format(path, format!("cannot serialize: {e}")))?;
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

/// Reads a JSON file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let s = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&s).map_err(|e| TrainError::format(path, format!("invalid JSON: {e}")))
}

/// Reads a JSON-lines file, one value per non-empty line.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let s = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    s.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| TrainError::format(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// Writes values as JSON lines, atomically.
pub fn write_jsonl<T: Serialize>(path: &Path, values: &[T]) -> Result<()> {
    let mut s = String::new();
    for v in values {
        s.push_str(
            &serde_json::to_string(v)
                .map_err(|e| TrainError::format(path, format!("cannot serialize: {e}")))?,
        );
        s.push('\n');
    }
    write_atomic(path, s.as_bytes())
}

/// 64-bit FNV-1a hash of a file's bytes, as 16 hex digits (detects a checkpoint set whose
/// files come from different epochs).
pub fn fingerprint(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    Ok(format!("{:016x}", fnv1a(&bytes)))
}

/// 64-bit FNV-1a.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Creates `dir` (and its parents) and proves it writable by writing and removing a probe file.
pub fn prepare_dir(dir: &Path) -> Result<()> {
    let fail = |message: String| TrainError::OutDir {
        path: dir.to_path_buf(),
        message,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(fail("exists and is not a folder".into()));
    }
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create it: {e}")))?;
    let probe = dir.join(format!(".effcnn-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"probe").map_err(|e| fail(format!("not writable: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}
