//! `effcnn train` and `effcnn eval`.

use std::path::PathBuf;

use crate::common::{ProfileArg, SampleArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use effcnn_report::{Cell, Column, Table};
use effcnn_train::{
    EvalOptions, EvalReport, OptimizerConfig, ProgressMode, RunOptions, RunSummary, RunWeights,
    ScheduleKind, TrainConfig, TrainEngine, TRAIN_ENGINE_ENV,
};

/// Optimizer choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    /// SGD with (Nesterov) momentum 0.9, PyTorch semantics.
    Sgd,
    /// AdamW (default lr 1e-3, weight decay 0.05).
    Adamw,
}

/// Learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    /// Linear warm-up, then cosine annealing to 0.
    Cosine,
    /// One-cycle (cosine rise from lr/25 over the warm-up or 30 %, then cosine decay).
    Onecycle,
    /// Linear warm-up, then constant.
    Constant,
}

/// Implementation of the training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrainEngineArg {
    /// effcnn's compiled CPU training step (burn's optimizer applies its gradients); burn on a
    /// GPU and for models the plan cannot train.
    Plan,
    /// burn's autodiff forward and backward (the reference, and the path on a GPU).
    Burn,
}

impl From<TrainEngineArg> for TrainEngine {
    fn from(e: TrainEngineArg) -> Self {
        match e {
            TrainEngineArg::Plan => TrainEngine::Plan,
            TrainEngineArg::Burn => TrainEngine::Burn,
        }
    }
}

/// Progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ProgressArg {
    /// A bar on a terminal, one line per epoch otherwise.
    #[default]
    Auto,
    /// Always the bar.
    Bar,
    /// One line per epoch.
    Lines,
    /// Nothing.
    Quiet,
}

impl From<ProgressArg> for ProgressMode {
    fn from(p: ProgressArg) -> Self {
        match p {
            ProgressArg::Auto => ProgressMode::Auto,
            ProgressArg::Bar => ProgressMode::Bar,
            ProgressArg::Lines => ProgressMode::Lines,
            ProgressArg::Quiet => ProgressMode::Quiet,
        }
    }
}

/// `effcnn train`: train a zoo model on CPU into a run folder.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Zoo model (see `effcnn list`), e.g. dwsep_cnn, plain_cnn, mobilenet_v2.
    pub model: String,
    /// Width multiplier.
    #[arg(long)]
    pub width: Option<f64>,
    /// Architecture profile.
    #[arg(long, value_enum, default_value_t = ProfileArg::Cifar)]
    pub profile: ProfileArg,
    /// Dataset: `synthetic[:N[:M]]`, a CIFAR-10 binary folder or .tar.gz, or an image folder
    /// (train/ and test/ class folders) or its .tar.gz.
    #[arg(long)]
    pub data: String,
    /// Number of epochs [default: 30].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Mini-batch size [default: 128].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate [default: 0.1, 0.05 for depthwise-heavy nets; 1e-3 with AdamW].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Optimizer [default: sgd].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerArg>,
    /// SGD momentum [default: 0.9].
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Plain (heavy-ball) momentum instead of Nesterov.
    #[arg(long)]
    pub no_nesterov: bool,
    /// Learning-rate schedule [default: cosine].
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleArg>,
    /// Warm-up epochs (may be fractional) [default: 1].
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Label smoothing ε [default: 0 for CIFAR, 0.1 for ImageNet].
    #[arg(long)]
    pub label_smoothing: Option<f64>,
    /// Weight decay [default: 5e-4 for CIFAR; 0.05 with AdamW].
    #[arg(long)]
    pub wd: Option<f64>,
    /// Apply weight decay to BatchNorm parameters and biases too (exempt by default).
    #[arg(long)]
    pub decay_bn_bias: bool,
    /// Dropout before the classifier (models that have one).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Disable the pad-crop and flip augmentation.
    #[arg(long)]
    pub no_augment: bool,
    /// Seed of weights, data order, augmentation and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Hold out this fraction of the training split (stratified) for validation; the best
    /// checkpoint is then chosen by validation accuracy.
    #[arg(long)]
    pub val_split: Option<f32>,
    #[command(flatten)]
    pub sample: SampleArgs,
    /// Resize every image to this side length.
    #[arg(long)]
    pub image_size: Option<u32>,
    /// Number of classes (must match the dataset; default: the dataset's).
    #[arg(long)]
    pub classes: Option<usize>,
    /// CPU threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub device: crate::common::DeviceArgs,
    /// Training step on the CPU: effcnn's compiled plan or burn's autodiff; recorded in the
    /// run's config.json [default: $EFFCNN_TRAIN_ENGINE if set, else plan].
    #[arg(long, value_enum)]
    pub train_engine: Option<TrainEngineArg>,
    /// Run folder: config.json, metrics.jsonl, last/best.safetensors, summary.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run in --out from its last completed epoch (its config.json is used).
    #[arg(long)]
    pub resume: bool,
    /// Replace a run already in --out.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Progress display on stderr.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
}

impl TrainArgs {
    /// The recipe: the model's recommended one with the given flags applied.
    pub fn config(&self) -> Result<TrainConfig> {
        let mut c = TrainConfig::recommended(&self.model, self.profile.into(), &self.data);
        c.width = self.width;
        if let Some(v) = self.epochs {
            c.epochs = v;
        }
        if let Some(v) = self.batch_size {
            c.batch_size = v;
        }
        if self.optimizer == Some(OptimizerArg::Adamw) {
            c.optimizer = OptimizerConfig::Adamw {
                lr: 1e-3,
                weight_decay: 0.05,
                no_decay_bn_bias: true,
            };
        }
        if let Some(v) = self.lr {
            c.optimizer.set_lr(v);
        }
        if let Some(v) = self.wd {
            c.optimizer.set_weight_decay(v);
        }
        match &mut c.optimizer {
            OptimizerConfig::Sgd {
                momentum,
                nesterov,
                no_decay_bn_bias,
                ..
            } => {
                if let Some(m) = self.momentum {
                    *momentum = m;
                }
                *nesterov = !self.no_nesterov;
                *no_decay_bn_bias = !self.decay_bn_bias;
            }
            OptimizerConfig::Adamw {
                no_decay_bn_bias, ..
            } => {
                if self.momentum.is_some() || self.no_nesterov {
                    bail!("--momentum and --no-nesterov apply to --optimizer sgd only");
                }
                *no_decay_bn_bias = !self.decay_bn_bias;
            }
        }
        if let Some(s) = self.schedule {
            c.schedule.kind = match s {
                ScheduleArg::Cosine => ScheduleKind::Cosine,
                ScheduleArg::Onecycle => ScheduleKind::Onecycle,
                ScheduleArg::Constant => ScheduleKind::Constant,
            };
        }
        if let Some(v) = self.warmup {
            c.schedule.warmup_epochs = v;
        }
        if let Some(v) = self.label_smoothing {
            c.label_smoothing = v;
        }
        c.dropout = self.dropout;
        if self.no_augment {
            c.augment = effcnn_data::Augment::NONE;
        }
        c.seed = self.seed;
        if let Some(v) = self.val_split {
            c.val_split = v;
        }
        self.sample.apply(&mut c);
        c.image_size = self.image_size;
        c.classes = self.classes;
        c.threads = self.threads;
        c.device = self.device.get().to_string();
        c.train_engine = self.train_engine.map(TrainEngine::from);
        c.validate().context("invalid training flags")?;
        Ok(c)
    }
}

fn print_summary(s: &RunSummary, out: &std::path::Path) -> Result<()> {
    let state = if s.finished {
        "finished".to_string()
    } else {
        format!("stopped after {}/{} epochs", s.epochs_completed, s.epochs)
    };
    crate::common::out(&format!(
        "{model} {state}: final test accuracy {:.2}%, best {:.2}% (epoch {}); {} params, {:.2} M \
         MACs; {:.0} img/s on {} ({} training step); {:.1} s\nrun folder: {}",
        s.final_test_accuracy * 100.0,
        s.best_test_accuracy * 100.0,
        s.best_epoch + 1,
        effcnn_report::format::format_thousands(s.params),
        s.macs as f64 / 1e6,
        s.img_per_s,
        s.device,
        s.train_engine.name(),
        s.wall_seconds,
        out.display(),
        model = s.model,
    ))
}

/// Runs `effcnn train`.
pub fn train(args: TrainArgs) -> Result<()> {
    let opts = RunOptions {
        progress: args.progress.into(),
        max_epochs_this_session: None,
        overwrite: args.overwrite,
    };
    let summary = if args.resume {
        let cfg_path = args.out.join(effcnn_train::files::CONFIG_FILE);
        let existing: TrainConfig = effcnn_train::files::read_json(&cfg_path)
            .with_context(|| format!("--resume: {} is not a run folder", args.out.display()))?;
        if existing.model != args.model {
            bail!(
                "--resume: the run in {} trains {}, not {}",
                args.out.display(),
                existing.model,
                args.model
            );
        }
        if let Some(d) = args.device.device {
            if existing.device != d.to_string() {
                bail!(
                    "--resume: the run in {} trains on {}, not {d} (a run resumes on its own \
                     device; drop --device)",
                    args.out.display(),
                    existing.device
                );
            }
        }
        if let Some(e) = args.train_engine.map(TrainEngine::from) {
            if existing.train_engine != Some(e) {
                let recorded = match existing.train_engine {
                    Some(r) => format!("with --train-engine {}", r.name()),
                    None => format!("with the engine {TRAIN_ENGINE_ENV} picks (plan if unset)"),
                };
                bail!(
                    "--resume: the run in {} trains {recorded}, not {} (a run resumes with its \
                     own training engine; drop --train-engine)",
                    args.out.display(),
                    e.name()
                );
            }
        }
        effcnn_train::resume(&args.out, &opts)
            .with_context(|| format!("resuming the run in {}", args.out.display()))?
    } else {
        let config = args.config()?;
        // A device this build or machine cannot use fails before anything is written.
        args.device.open()?;
        effcnn_train::train(config, &args.out, &opts)
            .with_context(|| format!("training {} into {}", args.model, args.out.display()))?
    };
    print_summary(&summary, &args.out)
}

/// `effcnn rerun`: train again the run a run folder (or its `config.json`) describes.
#[derive(Debug, Clone, Args)]
pub struct RerunArgs {
    /// A run folder, e.g. results/cifar10/se/resnet20-s0, or its config.json.
    pub run: PathBuf,
    /// The dataset, when it lives elsewhere on this machine than the recorded path.
    #[arg(long)]
    pub data: Option<String>,
    #[command(flatten)]
    pub device: crate::common::DeviceArgs,
    /// New run folder (must not hold a run unless --overwrite).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace a run already in --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Progress display on stderr.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
}

/// Runs `effcnn rerun`: the recorded recipe (model, data, seed, optimizer, …) trained into a new
/// folder, then the new final accuracy next to the recorded one.
pub fn rerun(args: RerunArgs) -> Result<()> {
    let dir = if args.run.is_file() {
        args.run
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .to_path_buf()
    } else {
        args.run.clone()
    };
    let recorded = effcnn_train::RunFolder::open(&dir).context("rerun")?;
    // The same folder however it is spelled (`run`, `run/`, `./run/.`): never overwritten.
    let same = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize())
    {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    };
    if same(&recorded.dir, &args.out) {
        bail!("--out is the recorded run's own folder; give a new one");
    }
    let mut config = recorded.config.clone();
    config.resolved = None;
    config.effcnn_version = effcnn_train::EFFCNN_VERSION.to_string();
    if let Some(d) = &args.data {
        config.data = d.clone();
    }
    if let Some(d) = args.device.device {
        config.device = d.to_string();
    }
    config.validate().context("the recorded configuration")?;
    // A device this build or machine cannot use fails before anything is written.
    config.compute_device()?.open()?;
    let opts = RunOptions {
        progress: args.progress.into(),
        max_epochs_this_session: None,
        overwrite: args.overwrite,
    };
    let s = effcnn_train::train(config, &args.out, &opts)
        .with_context(|| format!("rerunning {} into {}", dir.display(), args.out.display()))?;
    print_summary(&s, &args.out)?;
    if let Some(r) = &recorded.summary {
        crate::common::out(&format!(
            "recorded final test accuracy {:.2}% ({}), this run {:.2}% ({:+.2} points)",
            r.final_test_accuracy * 100.0,
            r.device,
            s.final_test_accuracy * 100.0,
            (s.final_test_accuracy - r.final_test_accuracy) * 100.0
        ))?;
    }
    Ok(())
}

/// Output format of `effcnn eval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum EvalFormat {
    /// Accuracy, per-class accuracy and the confusion matrix as text tables.
    #[default]
    Table,
    /// The full report as JSON.
    Json,
}

/// `effcnn eval`: accuracy, per-class accuracy and confusion matrix of a trained model.
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// A run folder (from `effcnn train`) or a .safetensors weights file.
    pub source: PathBuf,
    /// Dataset to evaluate on (its test split) [default: the run's own data].
    #[arg(long)]
    pub data: Option<String>,
    /// Evaluate the run's best.safetensors instead of last.safetensors.
    #[arg(long)]
    pub best: bool,
    /// For a weights file outside a run folder: the model (default: recorded in the file).
    #[arg(long)]
    pub model: Option<String>,
    /// For a weights file outside a run folder: width multiplier.
    #[arg(long)]
    pub width: Option<f64>,
    /// For a weights file outside a run folder: profile.
    #[arg(long, value_enum)]
    pub profile: Option<ProfileArg>,
    /// Resize every image to this side length [default: the run's].
    #[arg(long)]
    pub image_size: Option<u32>,
    /// Batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[command(flatten)]
    pub device: crate::common::DeviceArgs,
    #[command(flatten)]
    pub engine: crate::common::EngineArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = EvalFormat::Table)]
    pub format: EvalFormat,
}

/// The three tables of `effcnn eval --format table`.
pub fn eval_tables(r: &EvalReport) -> Result<Vec<Table>> {
    let mut head = Table::new(
        format!("Evaluation of {}", r.model),
        vec![
            Column::left("weights"),
            Column::left("data"),
            Column::right("images"),
            Column::right("accuracy"),
        ],
    );
    head.push_row(vec![
        Cell::text(r.weights.display().to_string()),
        Cell::text(r.data.clone()),
        Cell::from(r.images),
        Cell::percent(r.accuracy, 2),
    ])?;
    let mut per = Table::new(
        "Per-class accuracy",
        vec![
            Column::right("#"),
            Column::left("class"),
            Column::right("images"),
            Column::right("correct"),
            Column::right("accuracy"),
        ],
    );
    for (i, ((name, acc), row)) in r.per_class.iter().zip(&r.confusion).enumerate() {
        let n: u64 = row.iter().map(|&v| u64::from(v)).sum();
        per.push_row(vec![
            Cell::from(i),
            Cell::text(name.clone()),
            Cell::count(n),
            Cell::count(u64::from(row[i])),
            Cell::percent(*acc, 2),
        ])?;
    }
    let mut cols = vec![Column::left("true \\ predicted")];
    cols.extend((0..r.confusion.len()).map(|j| Column::right(j.to_string())));
    let mut conf = Table::new(
        "Confusion matrix (rows: true class, columns: predicted)",
        cols,
    );
    for (i, row) in r.confusion.iter().enumerate() {
        let name = r.per_class.get(i).map_or(String::new(), |(n, _)| n.clone());
        let mut cells = vec![Cell::text(format!("{i} {name}"))];
        cells.extend(row.iter().map(|&v| Cell::from(v)));
        conf.push_row(cells)?;
    }
    Ok(vec![head, per, conf])
}

/// Runs `effcnn eval`.
pub fn eval(args: EvalArgs) -> Result<()> {
    // A device this build or machine cannot use fails before the data is loaded.
    args.device.open()?;
    let opts = EvalOptions {
        data: args.data.clone(),
        weights: if args.best {
            RunWeights::Best
        } else {
            RunWeights::Last
        },
        model: args.model.clone(),
        width: args.width,
        profile: args.profile.map(Into::into),
        image_size: args.image_size,
        batch_size: args.batch_size,
        engine: args.engine.engine.into(),
        device: args.device.get(),
    };
    let report = effcnn_train::eval(&args.source, &opts)
        .with_context(|| format!("evaluating {}", args.source.display()))?;
    let text = match args.format {
        EvalFormat::Json => serde_json::to_string_pretty(&report)?,
        EvalFormat::Table => eval_tables(&report)?
            .iter()
            .map(Table::to_text)
            .collect::<Vec<_>>()
            .join("\n"),
    };
    crate::common::out(&text)
}
