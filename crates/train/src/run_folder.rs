//! A run folder read back: its configuration, summary and per-epoch metrics, typed — the one
//! reader used by evaluation, comparisons, experiments and the SE-attention analysis.

use std::path::{Path, PathBuf};

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::files::{read_json, read_jsonl, CONFIG_FILE, METRICS_FILE, SUMMARY_FILE};
use crate::trainer::{EpochMetrics, RunSummary};

/// Keys of `config.json` that a run adds or that do not change its result beyond float
/// rounding (the resolved data, the version, the thread count, the engine of the steps): not
/// part of the recipe.
pub const NOT_RECIPE: [&str; 4] = ["resolved", "effcnn_version", "threads", "train_engine"];

/// The recipe of a configuration: every field of `config.json` except [`NOT_RECIPE`], and
/// except `ignore` (e.g. `["model", "seed"]` to compare the runs of one experiment).
pub fn recipe(config: &TrainConfig, ignore: &[&str]) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(config).map_err(|e| {
        TrainError::format(Path::new(CONFIG_FILE), format!("cannot serialize: {e}"))
    })?;
    if let Some(o) = v.as_object_mut() {
        for k in NOT_RECIPE.iter().chain(ignore) {
            o.remove(*k);
        }
    }
    Ok(v)
}

/// A training run's folder with its `config.json` and, once an epoch has finished, its
/// `summary.json`.
#[derive(Debug, Clone)]
pub struct RunFolder {
    /// The folder.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: TrainConfig,
    /// `summary.json` (`None` before the first epoch finished).
    pub summary: Option<RunSummary>,
}

impl RunFolder {
    /// Whether `dir` holds a run (a `config.json`).
    pub fn is_run(dir: &Path) -> bool {
        dir.join(CONFIG_FILE).is_file()
    }

    /// Reads the run in `dir`: an error if `config.json` is missing or either file is not what
    /// effcnn writes.
    pub fn open(dir: &Path) -> Result<RunFolder> {
        if !Self::is_run(dir) {
            return Err(TrainError::format(
                dir,
                format!("not a run folder (no {CONFIG_FILE})"),
            ));
        }
        let config: TrainConfig = read_json(&dir.join(CONFIG_FILE))?;
        let summary_path = dir.join(SUMMARY_FILE);
        let summary = if summary_path.is_file() {
            Some(read_json(&summary_path)?)
        } else {
            None
        };
        Ok(RunFolder {
            dir: dir.to_path_buf(),
            config,
            summary,
        })
    }

    /// Every run under `root`: `root` itself if it is a run folder, else the run folders found
    /// below it (not below a run folder), sorted by path. An error if there is none.
    pub fn find(root: &Path) -> Result<Vec<RunFolder>> {
        if !root.is_dir() {
            return Err(TrainError::format(root, "not a directory"));
        }
        let mut dirs = Vec::new();
        collect(root, &mut dirs)?;
        if dirs.is_empty() {
            return Err(TrainError::format(
                root,
                format!("no run folder (a folder with {CONFIG_FILE}) in it"),
            ));
        }
        dirs.sort();
        dirs.iter().map(|d| RunFolder::open(d)).collect()
    }

    /// The finished summary, if the run finished.
    pub fn finished(&self) -> Option<&RunSummary> {
        self.summary.as_ref().filter(|s| s.finished)
    }

    /// `metrics.jsonl`: one entry per completed epoch (empty before the first).
    pub fn metrics(&self) -> Result<Vec<EpochMetrics>> {
        let p = self.dir.join(METRICS_FILE);
        if !p.is_file() {
            return Ok(Vec::new());
        }
        read_jsonl(&p)
    }

    /// The recipe of the run ([`recipe`]).
    pub fn recipe(&self, ignore: &[&str]) -> Result<serde_json::Value> {
        recipe(&self.config, ignore)
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if RunFolder::is_run(dir) {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))?;
    for e in entries {
        let e = e.map_err(|e| TrainError::io(dir, e))?;
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect(&e.path(), out)?;
        }
    }
    Ok(())
}
