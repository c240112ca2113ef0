//! A run folder read back: its configuration, summary and per-epoch metrics, typed — the one
//! reader used by evaluation, comparisons, experiments and the SE-attention analysis.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{TrainConfig, TrainEngine};
use crate::error::{Result, TrainError};
use crate::files::{read_json, read_jsonl, CONFIG_FILE, METRICS_FILE, SUMMARY_FILE};

/// Keys of `config.json` that a run adds or that do not change its result beyond float
/// rounding (the resolved data, the version, the thread count, the engine of the steps): not
/// part of the recipe.
pub const NOT_RECIPE: [&str; 4] = ["resolved", "effcnn_version", "threads", "train_engine"];

/// One line of `metrics.jsonl`: the state after a completed epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch index (0-based).
    pub epoch: usize,
    /// Mean training loss over the epoch's steps (label-smoothed cross-entropy).
    pub loss: f64,
    /// Training accuracy over the epoch (augmented images, training mode), a fraction.
    pub train_acc: f64,
    /// Test-split accuracy after the epoch (eval mode), a fraction.
    pub test_acc: f64,
    /// Validation accuracy after the epoch, when a validation split is held out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_acc: Option<f64>,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Training throughput (images per second, training steps only).
    pub img_per_s: f64,
    /// Wall-clock seconds of the epoch, evaluation included.
    pub seconds: f64,
}

/// `summary.json`: the outcome of a run (rewritten after every epoch; `finished` at the end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Zoo model name.
    pub model: String,
    /// Trainable parameters (BatchNorm running statistics excluded).
    pub params: u64,
    /// Multiply-accumulates of one forward pass at the training resolution.
    pub macs: u64,
    /// Best test accuracy over the completed epochs (a fraction).
    pub best_test_accuracy: f64,
    /// Epoch (0-based) of `best.safetensors`.
    pub best_epoch: usize,
    /// Test accuracy after the last completed epoch (a fraction).
    pub final_test_accuracy: f64,
    /// Validation accuracy after the last completed epoch, with a validation split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_val_accuracy: Option<f64>,
    /// Wall-clock seconds spent training, over every session of the run.
    pub wall_seconds: f64,
    /// Mean training throughput over the completed epochs (images per second).
    pub img_per_s: f64,
    /// Compute device, e.g. `cpu (flex, 2 threads)` or `cuda:0 (NVIDIA H200, burn cuda)`.
    pub device: String,
    /// What computed the training steps of the last session: `plan` (effcnn's compiled CPU
    /// training step) or `burn` (burn's autodiff). Summaries written before this field existed
    /// read as `burn`.
    #[serde(default = "burn_engine")]
    pub train_engine: TrainEngine,
    /// Description of the data source.
    pub data: String,
    /// Configured number of epochs.
    pub epochs: usize,
    /// Epochs completed so far.
    pub epochs_completed: usize,
    /// Whether every configured epoch has completed.
    pub finished: bool,
    /// effcnn version.
    pub effcnn_version: String,
}

fn burn_engine() -> TrainEngine {
    TrainEngine::Burn
}

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
