//! Evaluation of a trained model: accuracy, per-class accuracy, confusion matrix.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use effcnn_data::{Dataset, LoadOptions, Loader, LoaderConfig, Normalization};
use effcnn_nn::engine::{Engine, Inference, PlanOptions};
use effcnn_nn::{EffNet, InitConfig};
use serde::{Deserialize, Serialize};

use crate::config::{Profile, TrainConfig};
use crate::error::{Result, TrainError};
use crate::files::{BEST_WEIGHTS, LAST_WEIGHTS};

/// Result of evaluating a model on a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Fraction of images classified correctly, in `[0, 1]`.
    pub accuracy: f64,
    /// Per class (in label order): name and fraction of its images classified correctly
    /// (`NaN`, written as `null` in JSON, for a class without images).
    pub per_class: Vec<(String, f64)>,
    /// `confusion[true][predicted]` image counts.
    pub confusion: Vec<Vec<u32>>,
    /// Number of images evaluated.
    pub images: usize,
    /// The model evaluated.
    pub model: String,
    /// The weights file evaluated.
    pub weights: PathBuf,
    /// Description of the data evaluated on.
    pub data: String,
}

/// Counts gathered by [`evaluate_model`].
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Images classified correctly.
    pub correct: u64,
    /// Images seen.
    pub total: u64,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u32>>,
}

impl Evaluation {
    /// `correct / total` (0 for an empty dataset).
    pub fn accuracy(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.correct as f64 / self.total as f64
        }
    }
}

/// Index of the largest value of each row of a row-major `[n, k]` matrix (first on ties).
pub(crate) fn argmax_rows(values: &[f32], k: usize) -> Vec<usize> {
    values
        .chunks_exact(k)
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// Runs `model` in eval mode (running BatchNorm statistics, no dropout) on every image of
/// `dataset` through `engine` (effcnn's compiled plan on the CPU, or burn's forward).
pub fn evaluate_model(
    model: &EffNet,
    dataset: Arc<Dataset>,
    normalization: Normalization,
    batch_size: usize,
    engine: Engine,
) -> Result<Evaluation> {
    let valid = burn::module::Module::valid(model);
    let classes = valid.graph().meta.classes;
    let loader = Loader::new(dataset, LoaderConfig::eval(batch_size, normalization))?;
    let mut e = Evaluation {
        correct: 0,
        total: 0,
        confusion: vec![vec![0; classes]; classes],
    };
    let mut inference = Inference::new(&valid, engine, PlanOptions::default())?;
    for batch in loader.epoch(0) {
        let shape = batch.shape();
        let values = inference.logits(&batch.images, shape)?;
        for (pred, &label) in argmax_rows(&values, classes).iter().zip(&batch.labels) {
            let label = label as usize;
            if label < classes {
                e.confusion[label][*pred] += 1;
            }
            e.correct += u64::from(*pred == label);
            e.total += 1;
        }
    }
    Ok(e)
}

/// Which weights of a run folder to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunWeights {
    /// `last.safetensors`: the weights after the last completed epoch.
    #[default]
    Last,
    /// `best.safetensors`: the epoch with the best test (or validation) accuracy.
    Best,
}

/// How to evaluate (see [`eval`]).
#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    /// Dataset spec; `None` uses the run's own data (required for a bare weights file).
    pub data: Option<String>,
    /// Where the model runs (default: the CPU).
    pub device: effcnn_nn::ComputeDevice,
    /// Which weights of a run folder.
    pub weights: RunWeights,
    /// For a bare weights file outside a run folder: the model name (default: the name recorded
    /// in the file's metadata).
    pub model: Option<String>,
    /// For a bare weights file: width multiplier.
    pub width: Option<f64>,
    /// For a bare weights file: profile (default CIFAR).
    pub profile: Option<Profile>,
    /// Resize images to this side (default: the run's, or the native size).
    pub image_size: Option<u32>,
    /// Evaluation batch size (default 256).
    pub batch_size: Option<usize>,
    /// The inference engine (default: effcnn's compiled plan).
    pub engine: Engine,
}

/// Evaluates a run folder (its `config.json` rebuilds the model, its normalization and its
/// data) or a weights file on the test split of a dataset.
///
/// A weights file inside a run folder uses that run's configuration; a bare file needs
/// [`EvalOptions::data`] and takes the model from [`EvalOptions::model`] or the file's metadata,
/// with the zoo's normalization for the model.
pub fn eval(source: &Path, opts: &EvalOptions) -> Result<EvalReport> {
    if !source.exists() {
        return Err(TrainError::format(
            source,
            "no such run folder or weights file",
        ));
    }
    let (run_dir, weights) = if source.is_dir() {
        let name = match opts.weights {
            RunWeights::Last => LAST_WEIGHTS,
            RunWeights::Best => BEST_WEIGHTS,
        };
        (Some(source.to_path_buf()), source.join(name))
    } else {
        let parent = source.parent().filter(|p| crate::RunFolder::is_run(p));
        (parent.map(Path::to_path_buf), source.to_path_buf())
    };
    if !weights.is_file() {
        return Err(TrainError::format(
            &weights,
            "weights file missing (has the run completed an epoch?)",
        ));
    }
    let config: Option<TrainConfig> = match &run_dir {
        Some(d) => Some(crate::RunFolder::open(d)?.config),
        None => None,
    };
    let data_spec = match (&opts.data, &config) {
        (Some(d), _) => d.clone(),
        (None, Some(c)) => c.data.clone(),
        (None, None) => {
            return Err(TrainError::Config(format!(
                "{}: a bare weights file needs --data",
                weights.display()
            )))
        }
    };
    let image_size = opts
        .image_size
        .or(config.as_ref().and_then(|c| c.image_size));
    let seed = config.as_ref().map_or(0, |c| c.seed);
    let splits = effcnn_data::load(&data_spec, &LoadOptions { image_size, seed })?;
    let test = splits.test;
    if test.is_empty() {
        return Err(TrainError::Config(format!(
            "dataset '{data_spec}' has no test images"
        )));
    }
    let (h, w) = (test.height as usize, test.width as usize);
    let classes = test.num_classes();
    let (graph, normalization) = match &config {
        Some(c) => {
            let n_cls = c
                .resolved
                .as_ref()
                .map_or(c.classes.unwrap_or(classes), |r| r.classes.len());
            let graph = effcnn_arch::resolve(&c.model, &c.arch_options(Some(h), n_cls))?;
            let norm = c
                .resolved
                .as_ref()
                .map_or(test.normalization(), |r| r.normalization);
            (graph, norm)
        }
        None => {
            let model = opts
                .model
                .clone()
                .or_else(|| effcnn_nn::checkpoint::recorded_model(&weights))
                .ok_or_else(|| {
                    TrainError::Config(format!(
                        "{}: the file does not record its model; pass the model name",
                        weights.display()
                    ))
                })?;
            let o = effcnn_arch::Options {
                width: opts.width,
                depth: None,
                resolution: Some(h),
                classes: Some(classes),
                profile: opts.profile.unwrap_or(Profile::Cifar),
                dropout: None,
            };
            let graph = effcnn_arch::resolve(&model, &o)?;
            let norm = Normalization {
                mean: graph.meta.norm_mean,
                std: graph.meta.norm_std,
            };
            (graph, norm)
        }
    };
    if graph.meta.classes != classes {
        return Err(TrainError::Config(format!(
            "the model has {} classes but dataset '{data_spec}' has {classes}",
            graph.meta.classes
        )));
    }
    let device = opts.device.open().map_err(effcnn_nn::NnError::from)?;
    let mut model = EffNet::new(&graph, &device, InitConfig::default())?;
    model.check_input([1, 3, h, w])?;
    effcnn_nn::load_weights(&mut model, &weights, None, false)?;
    let batch = opts.batch_size.unwrap_or(256).max(1);
    let class_names = test.classes.clone();
    let source_desc = test.source.clone();
    let e = evaluate_model(&model, Arc::new(test), normalization, batch, opts.engine)?;
    let per_class = class_names
        .into_iter()
        .zip(&e.confusion)
        .enumerate()
        .map(|(i, (name, row))| {
            let n: u64 = row.iter().map(|&v| u64::from(v)).sum();
            let acc = if n == 0 {
                f64::NAN
            } else {
                f64::from(row[i]) / n as f64
            };
            (name, acc)
        })
        .collect();
    Ok(EvalReport {
        accuracy: e.accuracy(),
        per_class,
        images: e.total as usize,
        confusion: e.confusion,
        model: graph.meta.name.clone(),
        weights,
        data: source_desc,
    })
}
