//! The training recipe ([`TrainConfig`]) and its per-model defaults.

use effcnn_data::{Augment, Normalization};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// The effcnn version that wrote a run.
pub const EFFCNN_VERSION: &str = env!("CARGO_PKG_VERSION");

pub use effcnn_arch::Profile;

/// The environment variable that picks the training step's implementation for runs whose
/// configuration does not ([`TrainConfig::train_engine`] unset): `plan` or `burn`.
pub const TRAIN_ENGINE_ENV: &str = "EFFCNN_TRAIN_ENGINE";

/// Which implementation computes a training step (forward, loss, backward, batch statistics);
/// burn's optimizer applies the update either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainEngine {
    /// effcnn's compiled CPU training step (effcnn-engine) on the CPU device; burn on other
    /// devices and for graphs the engine cannot train (said once on the progress output).
    #[default]
    Plan,
    /// burn's autodiff forward and backward (the reference, and the path on a GPU).
    Burn,
}

impl TrainEngine {
    /// `plan` or `burn`.
    pub fn parse(s: &str) -> Option<TrainEngine> {
        match s {
            "plan" => Some(TrainEngine::Plan),
            "burn" => Some(TrainEngine::Burn),
            _ => None,
        }
    }

    /// The name used on the command line, in `config.json` and in `summary.json`.
    pub fn name(self) -> &'static str {
        match self {
            TrainEngine::Plan => "plan",
            TrainEngine::Burn => "burn",
        }
    }

    /// The engine [`TRAIN_ENGINE_ENV`] asks for: `None` when it is unset or empty, an error
    /// when it holds anything but `plan` or `burn`.
    pub fn from_env() -> Result<Option<TrainEngine>> {
        match std::env::var(TRAIN_ENGINE_ENV) {
            Ok(v) if v.trim().is_empty() => Ok(None),
            Ok(v) => TrainEngine::parse(v.trim()).map(Some).ok_or_else(|| {
                TrainError::Config(format!(
                    "{TRAIN_ENGINE_ENV}={v}: the training engine must be `plan` or `burn`"
                ))
            }),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(v)) => Err(TrainError::Config(format!(
                "{TRAIN_ENGINE_ENV}={v:?}: the training engine must be `plan` or `burn`"
            ))),
        }
    }
}

/// The optimizer and its hyper-parameters (burn's SGD / AdamW).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// SGD with momentum, PyTorch semantics (dampening 0; weight decay added to the gradient).
    Sgd {
        /// Peak learning rate.
        lr: f64,
        /// Momentum factor.
        momentum: f64,
        /// Nesterov momentum.
        nesterov: bool,
        /// L2 penalty (coupled weight decay).
        weight_decay: f64,
        /// Exempt BatchNorm γ/β and all biases from weight decay.
        no_decay_bn_bias: bool,
    },
    /// AdamW (decoupled weight decay).
    Adamw {
        /// Peak learning rate.
        lr: f64,
        /// Decoupled weight decay.
        weight_decay: f64,
        /// Exempt BatchNorm γ/β and all biases from weight decay.
        no_decay_bn_bias: bool,
    },
}

impl OptimizerConfig {
    /// Peak learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adamw { lr, .. } => *lr,
        }
    }

    /// Sets the peak learning rate.
    pub fn set_lr(&mut self, value: f64) {
        match self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adamw { lr, .. } => *lr = value,
        }
    }

    /// Weight decay.
    pub fn weight_decay(&self) -> f64 {
        match self {
            OptimizerConfig::Sgd { weight_decay, .. }
            | OptimizerConfig::Adamw { weight_decay, .. } => *weight_decay,
        }
    }

    /// Sets the weight decay.
    pub fn set_weight_decay(&mut self, value: f64) {
        match self {
            OptimizerConfig::Sgd { weight_decay, .. }
            | OptimizerConfig::Adamw { weight_decay, .. } => *weight_decay = value,
        }
    }

    /// Whether BatchNorm parameters and biases are exempt from weight decay.
    pub fn no_decay_bn_bias(&self) -> bool {
        match self {
            OptimizerConfig::Sgd {
                no_decay_bn_bias, ..
            }
            | OptimizerConfig::Adamw {
                no_decay_bn_bias, ..
            } => *no_decay_bn_bias,
        }
    }

    /// `"sgd"` or `"adamw"`.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerConfig::Sgd { .. } => "sgd",
            OptimizerConfig::Adamw { .. } => "adamw",
        }
    }
}

/// Shape of the learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Linear warm-up from 0 to the peak, then cosine annealing to 0 (per step).
    #[default]
    Cosine,
    /// One-cycle: cosine rise from peak/25 to the peak over the warm-up (30 % of training when
    /// the warm-up is 0), then cosine annealing to peak/10⁵ (PyTorch's `OneCycleLR` defaults).
    Onecycle,
    /// Linear warm-up, then the peak learning rate throughout.
    Constant,
}

/// The learning-rate schedule; see [`crate::schedule::lr_at`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    /// Shape after (or including, for one-cycle) the warm-up.
    pub kind: ScheduleKind,
    /// Warm-up length in epochs (may be fractional).
    pub warmup_epochs: f64,
}

/// What a run was trained on, recorded in `config.json` when training starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedData {
    /// Description of the data source (path or `synthetic(seed=…)`).
    pub source: String,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Normalization computed from the training images.
    pub normalization: Normalization,
    /// Image side length in pixels (height, width).
    pub image_size: (u32, u32),
    /// Images trained on.
    pub train_images: usize,
    /// Images held out from the training split for validation (0 without `val_split`).
    pub val_images: usize,
    /// Images in the test split.
    pub test_images: usize,
}

/// Everything needed to train a model, and — with [`TrainConfig::resolved`] filled in — to
/// rebuild it and resume its run. Serialized as a run's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Zoo model name (`effcnn list`).
    pub model: String,
    /// Width multiplier (`None`: the model's default).
    pub width: Option<f64>,
    /// Architecture profile.
    pub profile: Profile,
    /// Number of classes (`None`: the dataset's).
    pub classes: Option<usize>,
    /// Dropout before the classifier for models that support it (`None`: the model's default).
    #[serde(default)]
    pub dropout: Option<f64>,
    /// Dataset spec (see `effcnn_data::load`): `synthetic[:N[:M]]`, a folder or an archive.
    pub data: String,
    /// Resize every image to this side length (`None`: keep the native size).
    pub image_size: Option<u32>,
    /// Number of training epochs.
    pub epochs: usize,
    /// Training mini-batch size.
    pub batch_size: usize,
    /// Evaluation mini-batch size.
    pub eval_batch_size: usize,
    /// Optimizer and its hyper-parameters.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// Label smoothing ε of the cross-entropy (PyTorch semantics: target = (1−ε)·one-hot + ε/K).
    pub label_smoothing: f64,
    /// Seed of the weights, the data order, the augmentation and dropout.
    pub seed: u64,
    /// Training augmentation (pad-crop, horizontal flip).
    pub augment: Augment,
    /// Fraction of the training split held out (stratified) for validation, in `[0, 1)`.
    pub val_split: f32,
    /// Train on a stratified sample of this many training images (`None`: all of them).
    #[serde(default)]
    pub train_limit: Option<usize>,
    /// Test on a stratified sample of this many test images (`None`: all of them).
    #[serde(default)]
    pub test_limit: Option<usize>,
    /// CPU threads of the compute pool (`None`: all cores).
    pub threads: Option<usize>,
    /// Compute device: `cpu` (burn's flex backend) or `cuda[:N]` (burn's CUDA backend, in a
    /// build with the `cuda` feature).
    pub device: String,
    /// Implementation of the training step (`None`: [`TRAIN_ENGINE_ENV`] if set, else the
    /// plan); see [`TrainConfig::train_engine`]. Absent from older `config.json` files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_engine: Option<TrainEngine>,
    /// effcnn version that wrote the configuration.
    pub effcnn_version: String,
    /// Filled in when training starts: what the data turned out to be.
    #[serde(default)]
    pub resolved: Option<ResolvedData>,
}

/// Whether a zoo model is built from depthwise blocks ([`effcnn_arch::Graph::depthwise_built`]);
/// an unknown model is not (validation names it later).
fn depthwise_heavy(model: &str, profile: Profile) -> bool {
    let opts = effcnn_arch::Options {
        profile,
        ..effcnn_arch::Options::default()
    };
    effcnn_arch::resolve(model, &opts).is_ok_and(|g| g.depthwise_built())
}

impl TrainConfig {
    /// The recommended recipe for `model` on `data` with `profile`.
    ///
    /// CIFAR profile: SGD (Nesterov, momentum 0.9), peak lr 0.1 — 0.05 for depthwise-heavy nets
    /// (MobileNet, ShuffleNet, EfficientNet, `dwsep_cnn`), whose thin depthwise filters are less
    /// stable at high rates — weight decay 5·10⁻⁴ with BatchNorm and biases exempt, batch 128,
    /// 30 epochs, cosine schedule with a 1-epoch warm-up, pad-crop 4 + flip, no label smoothing.
    ///
    /// ImageNet profile: the same with label smoothing 0.1 and weight decay 4·10⁻⁵ for the
    /// depthwise-heavy nets (the MobileNet papers' value) or 10⁻⁴ otherwise.
    pub fn recommended(model: &str, profile: Profile, data: &str) -> TrainConfig {
        let dw = depthwise_heavy(model, profile);
        let (weight_decay, label_smoothing) = match (profile, dw) {
            (Profile::Cifar, _) => (5e-4, 0.0),
            (Profile::Imagenet, true) => (4e-5, 0.1),
            (Profile::Imagenet, false) => (1e-4, 0.1),
        };
        TrainConfig {
            model: model.to_string(),
            width: None,
            profile,
            classes: None,
            dropout: None,
            data: data.to_string(),
            image_size: None,
            epochs: 30,
            batch_size: 128,
            eval_batch_size: 256,
            optimizer: OptimizerConfig::Sgd {
                lr: if dw { 0.05 } else { 0.1 },
                momentum: 0.9,
                nesterov: true,
                weight_decay,
                no_decay_bn_bias: true,
            },
            schedule: ScheduleConfig {
                kind: ScheduleKind::Cosine,
                warmup_epochs: 1.0,
            },
            label_smoothing,
            seed: 0,
            augment: Augment::default(),
            val_split: 0.0,
            train_limit: None,
            test_limit: None,
            threads: None,
            device: "cpu".to_string(),
            train_engine: None,
            effcnn_version: EFFCNN_VERSION.to_string(),
            resolved: None,
        }
    }

    /// The `effcnn_arch` options this configuration resolves the model with.
    pub fn arch_options(&self, image_size: Option<usize>, classes: usize) -> effcnn_arch::Options {
        effcnn_arch::Options {
            width: self.width,
            depth: None,
            resolution: image_size,
            classes: Some(classes),
            profile: self.profile,
            dropout: self.dropout,
        }
    }

    /// [`Self::device`] parsed (`cpu`, `cuda`, `cuda:N`). Whether this build and machine can
    /// use it is decided when the run opens it.
    pub fn compute_device(&self) -> Result<effcnn_nn::ComputeDevice> {
        self.device
            .parse()
            .map_err(|e: effcnn_nn::DeviceError| TrainError::Config(e.to_string()))
    }

    /// The training engine this run asks for: [`Self::train_engine`] when set, else
    /// [`TRAIN_ENGINE_ENV`] when set, else [`TrainEngine::Plan`]. (The plan still gives way to
    /// burn off the CPU and for graphs it cannot train.)
    pub fn requested_train_engine(&self) -> Result<TrainEngine> {
        match self.train_engine {
            Some(e) => Ok(e),
            None => Ok(TrainEngine::from_env()?.unwrap_or_default()),
        }
    }

    /// Checks every value's range; the message names the offending setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        let lr = self.optimizer.lr();
        if !(lr.is_finite() && lr > 0.0) {
            return bad(format!("learning rate must be a positive number, got {lr}"));
        }
        let wd = self.optimizer.weight_decay();
        if !(wd.is_finite() && wd >= 0.0) {
            return bad(format!("weight decay must be ≥ 0, got {wd}"));
        }
        if let OptimizerConfig::Sgd { momentum, .. } = self.optimizer {
            if !(0.0..1.0).contains(&momentum) {
                return bad(format!("momentum must be in [0, 1), got {momentum}"));
            }
        }
        let w = self.schedule.warmup_epochs;
        if !(w.is_finite() && w >= 0.0) {
            return bad(format!("warm-up must be ≥ 0 epochs, got {w}"));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!(
                "label smoothing must be in [0, 1), got {}",
                self.label_smoothing
            ));
        }
        if self.train_limit == Some(0) || self.test_limit == Some(0) {
            return Err(TrainError::Config(
                "--train-limit and --test-limit must be at least 1".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.val_split) {
            return bad(format!(
                "validation split must be in [0, 1), got {}",
                self.val_split
            ));
        }
        if self.threads == Some(0) {
            return bad("threads must be at least 1".into());
        }
        self.compute_device()?;
        if self.image_size == Some(0) {
            return bad("image size must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depthwise_built_models_are_the_mobile_families_and_dwsep_cnn() {
        // The zoo's names say which family a model is from: the graph's blocks must agree.
        for e in effcnn_arch::entries() {
            let by_name = ["dwsep", "mobilenet", "shufflenet", "efficientnet"]
                .iter()
                .any(|p| e.name.starts_with(p));
            for profile in [Profile::Cifar, Profile::Imagenet] {
                assert_eq!(depthwise_heavy(e.name, profile), by_name, "{}", e.name);
            }
        }
        assert!(!depthwise_heavy("no_such_model", Profile::Cifar));
    }

    #[test]
    fn recommended_recipes_and_validation() {
        let c = TrainConfig::recommended("plain_cnn", Profile::Cifar, "synthetic");
        assert_eq!(c.optimizer.lr(), 0.1);
        assert!(c.validate().is_ok());
        let d = TrainConfig::recommended("dwsep_cnn", Profile::Cifar, "synthetic");
        assert_eq!(d.optimizer.lr(), 0.05);
        let i = TrainConfig::recommended("mobilenet_v2", Profile::Imagenet, "x");
        assert_eq!((i.optimizer.weight_decay(), i.label_smoothing), (4e-5, 0.1));
        let json = serde_json::to_string(&c).unwrap();
        let back: TrainConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let mut e = c.clone();
        e.device = "cuda:1".into();
        assert!(e.validate().is_ok());
        e.device = "tpu".into();
        assert!(e.validate().unwrap_err().to_string().contains("tpu"));
        let mut e = c;
        e.label_smoothing = 1.0;
        assert!(e.validate().is_err());
    }

    #[test]
    fn train_engine_is_optional_in_config_json() {
        let mut c = TrainConfig::recommended("plain_cnn", Profile::Cifar, "synthetic");
        // Unset: not written, so the file reads as before the setting existed.
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("train_engine"), "{json}");
        // A config.json written before the setting existed still loads.
        let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
        old.as_object_mut().unwrap().remove("train_engine");
        let back: TrainConfig = serde_json::from_value(old).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.train_engine, None);
        for e in [TrainEngine::Plan, TrainEngine::Burn] {
            c.train_engine = Some(e);
            let json = serde_json::to_string(&c).unwrap();
            assert!(json.contains(&format!("\"train_engine\":\"{}\"", e.name())));
            let back: TrainConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(back.train_engine, Some(e));
            assert_eq!(back.requested_train_engine().unwrap(), e);
            assert_eq!(TrainEngine::parse(e.name()), Some(e));
        }
        assert_eq!(TrainEngine::parse("gpu"), None);
    }
}
