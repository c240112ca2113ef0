//! Shared CLI pieces: output formats, model selection flags, writing to stdout.

use std::io::Write;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use effcnn_arch::{Layout, Options, Profile};
use effcnn_nn::ComputeDevice;
use effcnn_report::Table;
use effcnn_train::TrainConfig;

/// Output format of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
    Csv,
    Md,
}

/// Architecture profile (`--profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ProfileArg {
    /// Strided stem, 224² (the ImageNet variants).
    #[default]
    Imagenet,
    /// 32² inputs, 3×3 stride-1 stem, fewer early strides (the CIFAR variants).
    Cifar,
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Profile {
        match p {
            ProfileArg::Imagenet => Profile::Imagenet,
            ProfileArg::Cifar => Profile::Cifar,
        }
    }
}

/// Flags that pick a concrete variant of a zoo model.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Width multiplier (channels × W, rounded as the family does).
    #[arg(long)]
    pub width: Option<f64>,
    /// Depth multiplier (EfficientNet-style families).
    #[arg(long)]
    pub depth: Option<f64>,
    /// Input resolution (default: the model's own; 32 for the CIFAR profile).
    #[arg(long)]
    pub resolution: Option<usize>,
    /// Number of classes (default 1000, or 10 for the CIFAR profile).
    #[arg(long)]
    pub classes: Option<usize>,
    /// imagenet (strided stem, 224²) or cifar (3×3 stride-1 stem, fewer early strides, 32²).
    #[arg(long, value_enum, default_value_t = ProfileArg::Imagenet)]
    pub profile: ProfileArg,
}

impl ModelArgs {
    pub fn options(&self) -> Options {
        Options {
            width: self.width,
            depth: self.depth,
            resolution: self.resolution,
            classes: self.classes,
            profile: self.profile.into(),
            dropout: None,
        }
    }
}

/// `--device`: where models run.
#[derive(Debug, Clone, Copy, Args)]
pub struct DeviceArgs {
    /// Compute device: `cpu` (burn's flex backend) or `cuda[:N]` (GPU N, 0 the first; needs
    /// effcnn built with `--features cuda`) [default: cpu].
    #[arg(long, value_name = "DEVICE", value_parser = parse_device)]
    pub device: Option<ComputeDevice>,
}

impl DeviceArgs {
    /// The device asked for (the CPU by default).
    pub fn get(&self) -> ComputeDevice {
        self.device.unwrap_or_default()
    }

    /// The burn device, or a one-line error (CUDA not built in, no driver, no such GPU).
    pub fn open(&self) -> Result<burn::tensor::Device> {
        Ok(self.get().open()?)
    }
}

fn parse_device(s: &str) -> Result<ComputeDevice, String> {
    s.parse().map_err(|e: effcnn_nn::DeviceError| e.to_string())
}

/// Write text to stdout (a closed pipe is not an error; see `is_broken_pipe`).
pub fn out(s: &str) -> Result<()> {
    let mut o = std::io::stdout().lock();
    (|| {
        o.write_all(s.as_bytes())?;
        if !s.ends_with('\n') {
            o.write_all(b"\n")?;
        }
        o.flush()
    })()
    .context("writing to standard output")
}

pub fn render(t: &Table, f: Format) -> String {
    match f {
        Format::Table => t.to_text(),
        Format::Json => t.to_json(),
        Format::Csv => t.to_csv(),
        Format::Md => t.to_markdown(),
    }
}

pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The inference engine on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum EngineArg {
    /// effcnn's compiled CPU plan (fused NHWC steps, packed weights, one arena).
    #[default]
    Plan,
    /// burn's module forward, op by op (the reference, and the path on a GPU).
    Burn,
}

impl From<EngineArg> for effcnn_nn::engine::Engine {
    fn from(e: EngineArg) -> Self {
        match e {
            EngineArg::Plan => effcnn_nn::engine::Engine::Plan,
            EngineArg::Burn => effcnn_nn::engine::Engine::Burn,
        }
    }
}

/// `--engine`, shared by every command that runs inference.
#[derive(Debug, Clone, Copy, Args)]
pub struct EngineArgs {
    /// Inference engine on the CPU: effcnn's compiled plan, or burn's forward (the reference).
    #[arg(long, value_enum, default_value_t = EngineArg::Plan)]
    pub engine: EngineArg,
}

/// Checkpoint key layout of a weights file (`predict`, `convert`, `export`, `se-attention`).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LayoutArg {
    Effcnn,
    Torchvision,
    Timm,
    Lukemelas,
}

impl From<LayoutArg> for Layout {
    fn from(l: LayoutArg) -> Layout {
        match l {
            LayoutArg::Effcnn => Layout::Canonical,
            LayoutArg::Torchvision => Layout::Torchvision,
            LayoutArg::Timm => Layout::Timm,
            LayoutArg::Lukemelas => Layout::Lukemelas,
        }
    }
}

/// Stratified samples of the data, for quick runs (shared by `train` and `experiment`).
#[derive(Debug, Clone, Copy, Args)]
pub struct SampleArgs {
    /// Train on a stratified sample of exactly this many training images (all classes in turn;
    /// the same images in every run).
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Evaluate on a stratified sample of exactly this many test images.
    #[arg(long)]
    pub test_limit: Option<usize>,
}

impl SampleArgs {
    /// Records the limits in a run's configuration.
    pub fn apply(&self, c: &mut TrainConfig) {
        c.train_limit = self.train_limit;
        c.test_limit = self.test_limit;
    }
}
