//! The training loop and its run folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::ParamGroup;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
use effcnn_data::Batch;
use effcnn_data::{Dataset, LoadOptions, Loader, LoaderConfig, Normalization};
use effcnn_nn::engine::{engine_weights, Engine, PlanOptions};
use effcnn_nn::train_step::{
    apply_batch_stats, check_switches, compile_train_plan, gradients_from_map, EngineError,
    StepInput, TrainPlan,
};
use effcnn_nn::{EffNet, InitConfig};
use serde::{Deserialize, Serialize};

use crate::config::{OptimizerConfig, ResolvedData, TrainConfig, TrainEngine};
use crate::error::{Result, TrainError};
use crate::eval::{argmax_rows, evaluate_model};
use crate::files::{
    fingerprint, prepare_dir, read_json, read_jsonl, staged, write_atomic, write_json, write_jsonl,
    BEST_WEIGHTS, CONFIG_FILE, LAST_OPTIMIZER, LAST_WEIGHTS, METRICS_FILE, STATE_FILE,
    SUMMARY_FILE,
};
use crate::params::{first_nonfinite_grad, no_decay_ids, stable_ids};
use crate::progress::{Progress, ProgressMode};
use crate::run_folder::{EpochMetrics, RunSummary};
use crate::schedule::lr_at;

/// `state.json`: where training stands; written last after each epoch (the commit point).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TrainState {
    epochs_completed: usize,
    global_step: u64,
    best_test_accuracy: f64,
    best_epoch: usize,
    wall_seconds: f64,
    /// Fingerprints of `last.safetensors` and `last.optim.bpk` at the commit.
    weights_fingerprint: String,
    optimizer_fingerprint: String,
}

/// How to run training (not part of the recipe).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Progress display.
    pub progress: ProgressMode,
    /// Stop after this many epochs in this session (the run stays resumable); `None` runs to
    /// the end.
    pub max_epochs_this_session: Option<usize>,
    /// Allow training into a folder that already holds a run (its files are replaced).
    pub overwrite: bool,
}

/// Trains `config` from scratch, writing the run into `out` (see the crate docs for the files).
///
/// The folder is created if needed; it must not already hold a run unless
/// [`RunOptions::overwrite`]. It is checked writable before the data is loaded.
pub fn train(config: TrainConfig, out: &Path, opts: &RunOptions) -> Result<RunSummary> {
    config.validate()?;
    effcnn_arch::entry(&config.model)?;
    let created = !out.exists();
    prepare_dir(out)?;
    let result = train_in(config, out, opts);
    // A run that failed before writing anything leaves no empty folder behind.
    if result.is_err() && created {
        let _ = std::fs::remove_dir(out);
    }
    result
}

fn train_in(config: TrainConfig, out: &Path, opts: &RunOptions) -> Result<RunSummary> {
    if !opts.overwrite && out.join(CONFIG_FILE).exists() {
        return Err(TrainError::OutDir {
            path: out.to_path_buf(),
            message: "already holds a run (config.json); resume it with --resume or choose \
                      another folder"
                .into(),
        });
    }
    for f in [
        STATE_FILE,
        SUMMARY_FILE,
        METRICS_FILE,
        LAST_WEIGHTS,
        BEST_WEIGHTS,
        LAST_OPTIMIZER,
    ] {
        let _ = std::fs::remove_file(out.join(f));
        let _ = std::fs::remove_file(staged(out, f));
    }
    Session::start(config, out, None, opts)?.run(opts)
}

/// Continues the run in `dir` from its last completed epoch.
///
/// With the same thread count, the final weights and metrics equal those of an uninterrupted
/// run (data order and augmentation depend only on (seed, epoch), dropout is reseeded from
/// (seed, epoch, step), and the optimizer state is restored).
pub fn resume(dir: &Path, opts: &RunOptions) -> Result<RunSummary> {
    let resume_err = |m: &str| TrainError::Resume {
        path: dir.to_path_buf(),
        message: m.to_string(),
    };
    if !dir.join(CONFIG_FILE).is_file() {
        return Err(resume_err("no config.json: not a run folder"));
    }
    prepare_dir(dir)?;
    let config: TrainConfig = read_json(&dir.join(CONFIG_FILE))?;
    config.validate()?;
    let state: Option<TrainState> = if dir.join(STATE_FILE).is_file() {
        Some(read_json(&dir.join(STATE_FILE))?)
    } else {
        None // Interrupted before the first epoch completed: start over.
    };
    if let Some(s) = &state {
        for (file, want) in [
            (LAST_WEIGHTS, &s.weights_fingerprint),
            (LAST_OPTIMIZER, &s.optimizer_fingerprint),
        ] {
            let (p, next) = (dir.join(file), staged(dir, file));
            let matches =
                |p: &Path| -> Result<bool> { Ok(p.is_file() && &fingerprint(p)? == want) };
            if matches(&p)? {
                // A staged file of an epoch that never committed.
                let _ = std::fs::remove_file(&next);
            } else if matches(&next)? {
                // Committed, killed before the staged file was moved into place.
                std::fs::rename(&next, &p).map_err(|e| TrainError::io(&p, e))?;
            } else if !p.is_file() {
                return Err(resume_err(&format!("{file} is missing")));
            } else {
                return Err(resume_err(&format!(
                    "{file} does not match state.json (the file was changed or damaged after \
                     training wrote it); it cannot be resumed exactly"
                )));
            }
        }
    }
    Session::start(config, dir, state, opts)?.run(opts)
}

/// Seed of the dropout / drop-path masks of one step.
fn step_seed(seed: u64, epoch: usize, step: usize) -> u64 {
    let mut z = seed ^ 0xD809_0F7A_5EED_0001;
    for v in [epoch as u64, step as u64] {
        z = z.wrapping_add(v).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

/// Label-smoothed cross-entropy (PyTorch semantics), mean over the batch.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>, smoothing: f64) -> Tensor<1> {
    let k = logits.dims()[1];
    let logp = log_softmax(logits, 1);
    let target = labels
        .one_hot::<2>(k)
        .float()
        .mul_scalar(1.0 - smoothing)
        .add_scalar(smoothing / k as f64);
    logp.mul(target).sum_dim(1).mean().neg()
}

/// Builds burn's optimizer for `config`, with a no-decay group for BN and biases if asked.
fn build_optimizer(config: &OptimizerConfig, model: &EffNet) -> ModuleOptimizer {
    let exempt = config.no_decay_bn_bias() && config.weight_decay() > 0.0;
    match *config {
        OptimizerConfig::Sgd {
            momentum,
            nesterov,
            weight_decay,
            ..
        } => {
            let sgd = |wd: f64| {
                let momentum = (momentum > 0.0).then(|| {
                    MomentumConfig::new()
                        .with_momentum(momentum)
                        .with_dampening(0.0)
                        .with_nesterov(nesterov)
                });
                SgdConfig::new()
                    .with_momentum(momentum)
                    .with_weight_decay((wd > 0.0).then(|| WeightDecayConfig::new(wd as f32)))
                    .build()
            };
            let optim = ModuleOptimizer::from(sgd(weight_decay));
            if exempt {
                optim.with_group(ParamGroup::from_ids(no_decay_ids(model)), sgd(0.0), None)
            } else {
                optim
            }
        }
        OptimizerConfig::Adamw { weight_decay, .. } => {
            let adamw = |wd: f64| {
                AdamWConfig::new()
                    .with_epsilon(1e-8)
                    .with_weight_decay(wd as f32)
                    .build()
            };
            let optim = ModuleOptimizer::from(adamw(weight_decay));
            if exempt {
                optim.with_group(ParamGroup::from_ids(no_decay_ids(model)), adamw(0.0), None)
            } else {
                optim
            }
        }
    }
}

fn optimizer_bytes(optim: &ModuleOptimizer, path: &Path) -> Result<Vec<u8>> {
    let bytes = optim
        .into_bytes()
        .map_err(|e| TrainError::format(path, format!("cannot serialize the optimizer: {e}")))?;
    Ok(bytes.to_vec())
}

struct Session {
    config: TrainConfig,
    out: PathBuf,
    device: Device,
    model: EffNet,
    optim: ModuleOptimizer,
    train_loader: Loader,
    test: Arc<Dataset>,
    val: Option<Arc<Dataset>>,
    normalization: Normalization,
    state: TrainState,
    metrics: Vec<EpochMetrics>,
    params: u64,
    macs: u64,
    device_desc: String,
    data_desc: String,
    /// The engine of this session's steps (the plan only on the CPU; it may still give way to
    /// burn when [`Session::prepare_plans`] cannot compile it).
    engine: TrainEngine,
    /// Compiled training steps by batch size (plan engine only).
    plans: Vec<([usize; 4], TrainPlan)>,
    /// Training images and their (height, width), for the batch sizes of an epoch.
    train_len: usize,
    image_hw: (usize, usize),
}

/// Where a step is, for error messages.
#[derive(Debug, Clone, Copy)]
struct StepAt {
    epoch: usize,
    step: usize,
    global: u64,
}

impl Session {
    fn start(
        mut config: TrainConfig,
        out: &Path,
        state: Option<TrainState>,
        opts: &RunOptions,
    ) -> Result<Session> {
        let _ = opts;
        let threads = effcnn_nn::configure_threads(config.threads)?;
        let splits = effcnn_data::load(
            &config.data,
            &LoadOptions {
                image_size: config.image_size,
                seed: config.seed,
            },
        )?;
        let train_all = limit(splits.train, config.train_limit)?;
        let (train_ds, val_ds) = if config.val_split > 0.0 {
            let (t, v) = train_all.split_validation(config.val_split, config.seed)?;
            (t, Some(v))
        } else {
            (train_all, None)
        };
        if train_ds.is_empty() {
            return Err(TrainError::Config(format!(
                "dataset '{}' has no training images",
                config.data
            )));
        }
        let test = limit(splits.test, config.test_limit)?;
        let normalization = train_ds.normalization();
        let resolved = ResolvedData {
            source: train_ds.source.clone(),
            classes: train_ds.classes.clone(),
            normalization,
            image_size: (train_ds.height, train_ds.width),
            train_images: train_ds.len(),
            val_images: val_ds.as_ref().map_or(0, Dataset::len),
            test_images: test.len(),
        };
        if let Some(prev) = &config.resolved {
            if state.is_some() && prev != &resolved {
                return Err(TrainError::Resume {
                    path: out.to_path_buf(),
                    message: format!(
                        "the data differs from the run's (was {} with {} training images, now \
                         {} with {})",
                        prev.source, prev.train_images, resolved.source, resolved.train_images
                    ),
                });
            }
        }
        let classes = train_ds.num_classes();
        if let Some(c) = config.classes {
            if c != classes {
                return Err(TrainError::Config(format!(
                    "--classes {c} does not match the {classes} classes of '{}'",
                    config.data
                )));
            }
        }
        let (h, w) = (train_ds.height as usize, train_ds.width as usize);
        let graph = effcnn_arch::resolve(&config.model, &config.arch_options(Some(h), classes))?;
        let cost = effcnn_arch::cost::analyze(&graph);
        config.resolved = Some(resolved.clone());
        config.effcnn_version = crate::config::EFFCNN_VERSION.to_string();

        let compute = config.compute_device()?;
        // Read once per run (the environment variable only for configs that leave it open).
        let engine = match config.requested_train_engine()? {
            TrainEngine::Plan if compute.is_cpu() => TrainEngine::Plan,
            _ => TrainEngine::Burn,
        };
        if engine == TrainEngine::Plan {
            // Before any run file is written.
            check_switches().map_err(effcnn_nn::NnError::from)?;
        }
        let device = compute.open().map_err(effcnn_nn::NnError::from)?.autodiff();
        device.seed(config.seed);
        let mut model = EffNet::new(&graph, &device, InitConfig { seed: config.seed })?;
        model.check_input([1, 3, h, w])?;
        let params = model.num_trainable_params() as u64;

        let (model, optim, state, metrics) = match state {
            None => {
                let model = stable_ids(model);
                let optim = build_optimizer(&config.optimizer, &model);
                write_json(&out.join(CONFIG_FILE), &config)?;
                let fresh = TrainState {
                    epochs_completed: 0,
                    global_step: 0,
                    best_test_accuracy: 0.0,
                    best_epoch: 0,
                    wall_seconds: 0.0,
                    weights_fingerprint: String::new(),
                    optimizer_fingerprint: String::new(),
                };
                (model, optim, fresh, Vec::new())
            }
            Some(state) => {
                effcnn_nn::load_weights(&mut model, out.join(LAST_WEIGHTS), None, false)?;
                let model = stable_ids(model);
                let opt_path = out.join(LAST_OPTIMIZER);
                let bytes = std::fs::read(&opt_path).map_err(|e| TrainError::io(&opt_path, e))?;
                let optim = build_optimizer(&config.optimizer, &model)
                    .from_bytes(Bytes::from_bytes_vec(bytes))
                    .map_err(|e| TrainError::format(&opt_path, format!("{e}")))?;
                let mut metrics: Vec<EpochMetrics> = read_jsonl(&out.join(METRICS_FILE))?;
                if metrics.len() < state.epochs_completed {
                    return Err(TrainError::Resume {
                        path: out.to_path_buf(),
                        message: format!(
                            "metrics.jsonl has {} lines but {} epochs completed",
                            metrics.len(),
                            state.epochs_completed
                        ),
                    });
                }
                metrics.truncate(state.epochs_completed);
                (model, optim, state, metrics)
            }
        };

        let train_len = train_ds.len();
        let train_loader = Loader::new(
            Arc::new(train_ds),
            LoaderConfig {
                batch_size: config.batch_size,
                shuffle: true,
                seed: config.seed,
                augment: config.augment,
                normalization,
                drop_last: false,
                prefetch: 4,
            },
        )?;
        Ok(Session {
            device_desc: if compute.is_cpu() {
                format!(
                    "cpu (flex, {threads} thread{})",
                    if threads == 1 { "" } else { "s" }
                )
            } else {
                compute.describe()
            },
            data_desc: resolved.source.clone(),
            config,
            out: out.to_path_buf(),
            device,
            model,
            optim,
            train_loader,
            test: Arc::new(test),
            val: val_ds.map(Arc::new),
            normalization,
            state,
            metrics,
            params,
            macs: cost.macs,
            engine,
            plans: Vec::new(),
            train_len,
            image_hw: (h, w),
        })
    }

    fn summary(&self) -> RunSummary {
        let last = self.metrics.last();
        let n = self.metrics.len().max(1) as f64;
        RunSummary {
            model: self.config.model.clone(),
            params: self.params,
            macs: self.macs,
            best_test_accuracy: self.state.best_test_accuracy,
            best_epoch: self.state.best_epoch,
            final_test_accuracy: last.map_or(0.0, |m| m.test_acc),
            final_val_accuracy: last.and_then(|m| m.val_acc),
            wall_seconds: self.state.wall_seconds,
            img_per_s: self.metrics.iter().map(|m| m.img_per_s).sum::<f64>() / n,
            device: self.device_desc.clone(),
            train_engine: self.engine,
            data: self.data_desc.clone(),
            epochs: self.config.epochs,
            epochs_completed: self.state.epochs_completed,
            finished: self.state.epochs_completed >= self.config.epochs,
            effcnn_version: crate::config::EFFCNN_VERSION.to_string(),
        }
    }

    fn run(mut self, opts: &RunOptions) -> Result<RunSummary> {
        let mut progress = Progress::new(opts.progress, self.config.epochs);
        let start = self.state.epochs_completed;
        let end = match opts.max_epochs_this_session {
            Some(n) => (start + n).min(self.config.epochs),
            None => self.config.epochs,
        };
        if start > 0 && start < self.config.epochs {
            progress.note(&format!(
                "resuming {} at epoch {}/{}",
                self.out.display(),
                start + 1,
                self.config.epochs
            ));
        }
        if start < end {
            self.prepare_plans(&mut progress)?;
        } else if let Ok(prev) = read_json::<RunSummary>(&self.out.join(SUMMARY_FILE)) {
            // Nothing to train: the summary keeps the engine that trained.
            self.engine = prev.train_engine;
        }
        for epoch in start..end {
            let t0 = Instant::now();
            match self.train_epoch(epoch, &mut progress) {
                Ok(()) => {}
                Err(e) => {
                    progress.abandon();
                    return Err(e);
                }
            }
            let _ = t0;
        }
        let summary = self.summary();
        write_json(&self.out.join(SUMMARY_FILE), &summary)?;
        Ok(summary)
    }

    /// With the plan engine, compile the training steps of the batch sizes an epoch has (the
    /// last batch may be smaller). A graph the plan cannot train is trained on burn for the
    /// whole run, said once on the progress output.
    fn prepare_plans(&mut self, progress: &mut Progress) -> Result<()> {
        if self.engine != TrainEngine::Plan {
            return Ok(());
        }
        let b = self.config.batch_size.min(self.train_len);
        let rest = self.train_len % self.config.batch_size;
        let (h, w) = self.image_hw;
        for n in [b, rest] {
            if n > 0 && self.plan_index([n, 3, h, w], progress)?.is_none() {
                break;
            }
        }
        Ok(())
    }

    /// The compiled step for batches of `dims`, compiled on first use; `None` when the step
    /// runs on burn (from the first plan that fails to compile on, for the rest of the run).
    fn plan_index(&mut self, dims: [usize; 4], progress: &Progress) -> Result<Option<usize>> {
        if self.engine != TrainEngine::Plan {
            return Ok(None);
        }
        if let Some(i) = self.plans.iter().position(|(d, _)| *d == dims) {
            return Ok(Some(i));
        }
        match compile_train_plan(&self.model, dims, PlanOptions::default())? {
            Ok(plan) => {
                self.plans.push((dims, plan));
                Ok(Some(self.plans.len() - 1))
            }
            // A misspelt switch is the user's error, not a graph to train on burn instead.
            Err(e @ EngineError::Setting(_)) => Err(effcnn_nn::NnError::from(e).into()),
            Err(e) => {
                progress.note(&format!(
                    "training {} on burn: effcnn's compiled training step is not available \
                     ({e})",
                    self.config.model
                ));
                self.engine = TrainEngine::Burn;
                self.plans.clear();
                Ok(None)
            }
        }
    }

    /// burn's forward and backward of one step: the loss, the logits and the gradients.
    fn burn_grads(
        &self,
        model: &EffNet,
        batch: &Batch,
        seed: u64,
    ) -> (f32, Tensor<2>, GradientsParams) {
        self.device.seed(seed);
        let x = Tensor::<4>::from_data(
            TensorData::new(batch.images.clone(), batch.shape()),
            &self.device,
        );
        let y = Tensor::<1, Int>::from_data(
            TensorData::new(batch.labels.clone(), [batch.n]),
            &self.device,
        );
        let logits = model.forward(x);
        let loss = cross_entropy(logits.clone(), y, self.config.label_smoothing);
        let loss_v: f32 = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), model);
        (loss_v, logits, grads)
    }

    /// One step on burn: the updated model, the loss and the logits.
    fn burn_step(
        &mut self,
        model: EffNet,
        batch: &Batch,
        lr: f64,
        seed: u64,
        at: StepAt,
    ) -> Result<(EffNet, f32, Vec<f32>)> {
        let (loss_v, logits, grads) = self.burn_grads(&model, batch, seed);
        if !loss_v.is_finite() {
            return Err(non_finite(at, loss_v, first_nonfinite_grad(&model, &grads)));
        }
        let model = self.optim.step(lr, model, grads);
        let values = logits
            .detach()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| TrainError::Config(format!("cannot read the logits: {e:?}")))?;
        Ok((model, loss_v, values))
    }

    /// One step on the compiled plan `i`: its gradients through burn's optimizer, its batch
    /// statistics into the running statistics.
    fn plan_step(
        &mut self,
        i: usize,
        model: EffNet,
        batch: &Batch,
        lr: f64,
        seed: u64,
        at: StepAt,
    ) -> Result<(EffNet, f32, Vec<f32>)> {
        let weights = engine_weights(&model)?;
        let out = self.plans[i]
            .1
            .step(
                &weights,
                &StepInput {
                    images: &batch.images,
                    labels: &batch.labels,
                    label_smoothing: self.config.label_smoothing as f32,
                    seed,
                },
            )
            .map_err(|e| {
                effcnn_nn::NnError::BadInput(format!(
                    "training step {} of epoch {}: {e}",
                    at.step, at.epoch
                ))
            })?;
        if !out.loss.is_finite() {
            // Name the layer from burn's gradients of the same step.
            let (_, _, grads) = self.burn_grads(&model, batch, seed);
            return Err(non_finite(
                at,
                out.loss,
                first_nonfinite_grad(&model, &grads),
            ));
        }
        let grads = gradients_from_map(&model, &out.grads)?;
        let model = apply_batch_stats(model, &out.batch_stats)?;
        let model = self.optim.step(lr, model, grads);
        Ok((model, out.loss, out.logits))
    }

    fn train_epoch(&mut self, epoch: usize, progress: &mut Progress) -> Result<()> {
        let t_epoch = Instant::now();
        let spe = self.train_loader.num_batches();
        let total = (self.config.epochs * spe) as u64;
        let peak = self.config.optimizer.lr();
        progress.start_epoch(epoch, spe);
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0u64, 0u64);
        let mut train_secs = 0f64;
        let mut lr = peak;
        let mut model = self.model.clone();
        for batch in self.train_loader.epoch(epoch as u64) {
            let t_step = Instant::now();
            let step = batch.index;
            let at = StepAt {
                epoch,
                step,
                global: self.state.global_step,
            };
            lr = lr_at(&self.config.schedule, peak, at.global, spe, total);
            let seed = step_seed(self.config.seed, epoch, step);
            let n = batch.n;
            let (next, loss_v, values) = match self.plan_index(batch.shape(), progress)? {
                Some(i) => self.plan_step(i, model, &batch, lr, seed, at)?,
                None => self.burn_step(model, &batch, lr, seed, at)?,
            };
            model = next;
            let k = values.len() / n.max(1);
            for (p, &l) in argmax_rows(&values, k).iter().zip(&batch.labels) {
                correct += u64::from(*p as i64 == l);
            }
            seen += n as u64;
            loss_sum += f64::from(loss_v) * n as f64;
            self.state.global_step += 1;
            train_secs += t_step.elapsed().as_secs_f64();
            progress.step(
                loss_sum / seen as f64,
                correct as f64 / seen as f64,
                seen as f64 / train_secs.max(1e-9),
            );
        }
        self.model = model;
        progress.evaluating();
        let test = evaluate_model(
            &self.model,
            Arc::clone(&self.test),
            self.normalization,
            self.config.eval_batch_size,
            Engine::default(),
        )?;
        let val = match &self.val {
            Some(v) => Some(
                evaluate_model(
                    &self.model,
                    Arc::clone(v),
                    self.normalization,
                    self.config.eval_batch_size,
                    Engine::default(),
                )?
                .accuracy(),
            ),
            None => None,
        };
        let test_acc = test.accuracy();
        let metrics = EpochMetrics {
            epoch,
            loss: loss_sum / seen.max(1) as f64,
            train_acc: correct as f64 / seen.max(1) as f64,
            test_acc,
            val_acc: val,
            lr,
            img_per_s: seen as f64 / train_secs.max(1e-9),
            seconds: t_epoch.elapsed().as_secs_f64(),
        };
        // Best by validation accuracy when a validation split exists, else by test accuracy.
        let score = val.unwrap_or(test_acc);
        let prev_best = if epoch == 0 {
            f64::NEG_INFINITY
        } else {
            match (&self.val, self.metrics.get(self.state.best_epoch)) {
                (Some(_), Some(m)) => m.val_acc.unwrap_or(f64::NEG_INFINITY),
                _ => self.state.best_test_accuracy,
            }
        };
        let improved = score > prev_best;
        self.metrics.push(metrics.clone());

        // Save: metrics, best, the staged last weights and optimizer; state.json (the commit
        // point, naming the staged files' fingerprints); then the staged files move into place.
        write_jsonl(&self.out.join(METRICS_FILE), &self.metrics)?;
        let last = staged(&self.out, LAST_WEIGHTS);
        effcnn_nn::save_safetensors(&self.model, &last, None)?;
        let opt_path = staged(&self.out, LAST_OPTIMIZER);
        write_atomic(&opt_path, &optimizer_bytes(&self.optim, &opt_path)?)?;
        if improved {
            effcnn_nn::save_safetensors(&self.model, self.out.join(BEST_WEIGHTS), None)?;
            self.state.best_epoch = epoch;
            self.state.best_test_accuracy = test_acc;
        }
        self.state.epochs_completed = epoch + 1;
        self.state.wall_seconds += t_epoch.elapsed().as_secs_f64();
        self.state.weights_fingerprint = fingerprint(&last)?;
        self.state.optimizer_fingerprint = fingerprint(&opt_path)?;
        write_json(&self.out.join(STATE_FILE), &self.state)?;
        for (staged_file, name) in [(&last, LAST_WEIGHTS), (&opt_path, LAST_OPTIMIZER)] {
            let to = self.out.join(name);
            std::fs::rename(staged_file, &to).map_err(|e| TrainError::io(&to, e))?;
        }
        write_json(&self.out.join(SUMMARY_FILE), &self.summary())?;
        progress.end_epoch(&metrics);
        Ok(())
    }
}

fn non_finite(at: StepAt, loss: f32, layer: Option<String>) -> TrainError {
    TrainError::NonFinite {
        epoch: at.epoch,
        step: at.step,
        global_step: at.global,
        loss,
        layer,
    }
}

/// `ds` cut to a stratified sample of `n` images when `n` is given and smaller than `ds`
/// (a fixed seed, so every run with the same limit sees the same images).
fn limit(ds: Dataset, n: Option<usize>) -> Result<Dataset> {
    match n {
        Some(n) if n < ds.len() => Ok(ds.stratified_sample(n, 0)?),
        _ => Ok(ds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_matches_hand_computation() {
        let device = effcnn_nn::cpu();
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 0.5, 0.5, 0.5], [2, 3]),
            &device,
        );
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64, 0], [2]), &device);
        let lse0 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        let lse1 = (3.0 * 0.5f64.exp()).ln();
        let logp = [[1.0 - lse0, 2.0 - lse0, 3.0 - lse0], [0.5 - lse1; 3]];
        for eps in [0.0, 0.1] {
            let want: f64 = [(0usize, 2usize), (1, 0)]
                .iter()
                .map(|&(r, y)| {
                    -(0..3)
                        .map(|j| {
                            let t = if j == y { 1.0 - eps } else { 0.0 } + eps / 3.0;
                            t * logp[r][j]
                        })
                        .sum::<f64>()
                })
                .sum::<f64>()
                / 2.0;
            let got = cross_entropy(logits.clone(), labels.clone(), eps).into_scalar::<f32>();
            assert!(
                (f64::from(got) - want).abs() < 1e-5,
                "{eps}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn step_seeds_differ() {
        assert_ne!(step_seed(1, 0, 1), step_seed(1, 1, 0));
        assert_ne!(step_seed(1, 0, 0), step_seed(2, 0, 0));
        assert_eq!(step_seed(5, 3, 7), step_seed(5, 3, 7));
    }
}
