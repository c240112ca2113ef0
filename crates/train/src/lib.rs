//! effcnn-train: training and evaluation of effcnn models on burn (CPU, flex backend).
//!
//! A run is described by a [`TrainConfig`] (model, data, optimizer, schedule, seed, …) and
//! produces a **run folder** whose files are each written atomically (temporary file in the same
//! folder, then a rename):
//!
//! | file               | content                                                              |
//! |--------------------|----------------------------------------------------------------------|
//! | `config.json`      | the [`TrainConfig`], with the data it resolved to ([`ResolvedData`]: source, classes, normalization from the training split, sizes) |
//! | `metrics.jsonl`    | one [`EpochMetrics`] per completed epoch                             |
//! | `last.safetensors` | weights after the last completed epoch (effcnn canonical keys)       |
//! | `last.optim.bpk`   | burn's optimizer record (momentum / Adam moments) for resuming       |
//! | `best.safetensors` | weights of the best epoch                                            |
//! | `state.json`       | epoch and step counters, fingerprints of the last checkpoint          |
//! | `*.next`           | an epoch's last weights / optimizer state, staged until `state.json` names them, then renamed (a resume completes or drops a staged pair) |
//! | `summary.json`     | [`RunSummary`]: best/final test accuracy (fractions), params, MACs, wall time, device, data |
//!
//! ```no_run
//! use effcnn_train::{train, Profile, RunOptions, TrainConfig};
//! let mut config = TrainConfig::recommended("dwsep_cnn", Profile::Cifar, "synthetic");
//! config.epochs = 5;
//! let summary = train(config, "runs/dwsep".as_ref(), &RunOptions::default())?;
//! println!("test accuracy {:.2}%", summary.final_test_accuracy * 100.0);
//! # Ok::<(), effcnn_train::TrainError>(())
//! ```
//!
//! **Training step**: forward in training mode → label-smoothed cross-entropy → backward →
//! burn's SGD (PyTorch semantics: dampening 0, coupled weight decay, optional Nesterov) or
//! AdamW, with the learning rate of [`schedule::lr_at`]. Weight decay can exempt BatchNorm γ/β
//! and biases (a second burn parameter group). On the CPU the forward, loss, backward and batch
//! statistics are computed by effcnn's compiled training step (`effcnn_engine::TrainPlan`, one
//! per batch size), whose gradients go through burn's optimizer and whose batch statistics update
//! the running statistics as burn's forward would; on a GPU, for a graph the plan cannot train
//! (said once on the progress output), or with [`TrainEngine::Burn`] (`--train-engine burn`, or
//! [`TRAIN_ENGINE_ENV`]`=burn` for runs that do not set it) the step is burn's autodiff on
//! `Autodiff<flex>`. `summary.json` records which one trained (`train_engine`).
//! After each epoch the model is evaluated in eval mode (`Module::valid`: running BatchNorm
//! statistics, no dropout). A non-finite loss stops training with [`TrainError::NonFinite`],
//! naming the step and the first layer with a non-finite gradient (recomputed on burn when the
//! plan computed the step); the last good checkpoint stays on disk.
//!
//! **Determinism and resume**: weights are initialised from the seed, the data order and
//! augmentation depend only on (seed, epoch), dropout masks are reseeded from
//! (seed, epoch, step), the learning rate is a pure function of the step and the optimizer state
//! is saved with every checkpoint, so [`resume`] continues exactly where the run stopped.
//! Parameters get ids derived from their module paths so the saved optimizer record applies to
//! the rebuilt model.

pub mod comparison;
pub mod config;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod files;
pub mod params;
mod progress;
pub mod results;
pub mod run_folder;
pub mod schedule;
pub mod se_gates;
pub mod se_report;
pub mod trainer;

pub use config::{
    OptimizerConfig, Profile, ResolvedData, ScheduleConfig, ScheduleKind, TrainConfig, TrainEngine,
    EFFCNN_VERSION, TRAIN_ENGINE_ENV,
};
pub use error::{Result, TrainError};
pub use eval::{eval, evaluate_model, EvalOptions, EvalReport, Evaluation, RunWeights};
pub use progress::ProgressMode;
pub use run_folder::{recipe, EpochMetrics, RunFolder, RunSummary};
pub use trainer::{cross_entropy, resume, train, RunOptions};
