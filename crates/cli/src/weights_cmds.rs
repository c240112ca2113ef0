//! `predict` and `convert`: real checkpoints in, predictions or `.safetensors` out.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use effcnn_arch::resolve;
use effcnn_nn::predict::{load_input, predict_with, Normalization};
use effcnn_nn::{convert as convert_file, load_weights, EffNet, InitConfig};
use effcnn_report::{Cell, Column, Table};

use crate::common::{out, render, DeviceArgs, EngineArgs, Format, LayoutArg, ModelArgs};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NormArg {
    /// The normalization the zoo entry records for its pretrained weights.
    Model,
    /// ImageNet mean/std (torchvision, timm).
    Imagenet,
    /// (x − 127)/128 (TensorFlow EfficientNet-Lite weights).
    Tf127,
    /// No normalization: pixels in [0, 1].
    None,
}

#[derive(Args)]
pub struct PredictArgs {
    /// Zoo model name.
    pub model: String,
    /// Checkpoint: .safetensors, or PyTorch .pth/.pt (zip or legacy format; read weights-only).
    #[arg(long)]
    pub weights: PathBuf,
    /// Images (PNG/JPEG: shorter side resized to 256/224 of the resolution, center crop) or .npy
    /// float32 NCHW tensors fed as they are.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub m: ModelArgs,
    #[arg(long, default_value_t = 5)]
    pub topk: usize,
    /// Checkpoint key layout (default: detected from the keys).
    #[arg(long, value_enum)]
    pub layout: Option<LayoutArg>,
    /// Input normalization for images.
    #[arg(long, value_enum, default_value_t = NormArg::Model)]
    pub norm: NormArg,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub fn predict(a: PredictArgs) -> Result<()> {
    if a.topk == 0 {
        bail!("--topk must be at least 1");
    }
    let device = a.device.open()?;
    let mut model = EffNet::from_zoo(&a.model, &a.m.options(), &device, InitConfig::default())?;
    let rep = load_weights(&mut model, &a.weights, a.layout.map(Into::into), false)
        .with_context(|| format!("--weights {}", a.weights.display()))?;
    let norm = match a.norm {
        NormArg::Model => None,
        NormArg::Imagenet => Some(Normalization::IMAGENET),
        NormArg::Tf127 => Some(Normalization::TF127),
        NormArg::None => Some(Normalization {
            mean: [0.0; 3],
            std: [1.0; 3],
        }),
    };
    // Read every input first: a bad one fails before any output.
    let mut batches = Vec::new();
    for p in &a.inputs {
        batches.push((
            p,
            load_input(p, &model, norm).with_context(|| format!("input {}", p.display()))?,
        ));
    }
    let mut json = Vec::new();
    let mut text = String::new();
    for (p, b) in &batches {
        let preds = predict_with(&model, b, a.topk, a.engine.engine.into())?;
        for (i, pr) in preds.iter().enumerate() {
            let name = if preds.len() > 1 {
                format!("{}[{i}]", p.display())
            } else {
                p.display().to_string()
            };
            json.push(serde_json::json!({
                "input": name,
                "top": pr.top.iter().map(|t| serde_json::json!([t.index, t.label, t.prob])).collect::<Vec<_>>(),
                "logits": pr.logits,
            }));
            let mut t = Table::new(
                format!(
                    "{name}: {} ({} weights, {} tensors)",
                    a.model,
                    rep.layout.name(),
                    rep.loaded
                ),
                vec![
                    Column::right("rank"),
                    Column::right("class"),
                    Column::left("label"),
                    Column::right("probability"),
                ],
            );
            for (r, c) in pr.top.iter().enumerate() {
                t.push_row(vec![
                    Cell::int(r as i64 + 1),
                    Cell::int(c.index as i64),
                    Cell::text(&c.label),
                    Cell::percent(c.prob as f64, 2),
                ])?;
            }
            text.push_str(&render(&t, a.format));
            text.push('\n');
        }
    }
    if a.format == Format::Json {
        return out(&serde_json::to_string_pretty(&json)?);
    }
    out(&text)
}

#[derive(Args)]
pub struct ConvertArgs {
    /// Input checkpoint (.pth/.pt or .safetensors).
    pub input: PathBuf,
    /// Output .safetensors file (written atomically).
    pub output: PathBuf,
    /// Rename the keys to effcnn's canonical paths for this zoo model (checked strictly:
    /// missing, unexpected or mis-shaped tensors are an error).
    #[arg(long)]
    pub canonical: Option<String>,
    #[command(flatten)]
    pub m: ModelArgs,
}

pub fn convert(a: ConvertArgs) -> Result<()> {
    if a.output.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!("output {}: must end in .safetensors", a.output.display());
    }
    let graph = match &a.canonical {
        Some(m) => Some(resolve(m, &a.m.options())?),
        None => None,
    };
    let r = convert_file(&a.input, &a.output, graph.as_ref())
        .with_context(|| format!("converting {}", a.input.display()))?;
    let mut s = format!("wrote {} tensors to {}", r.written, a.output.display());
    if let Some(l) = r.layout {
        s.push_str(&format!(
            " (keys recognised as {}, renamed to effcnn paths)",
            l.name()
        ));
    }
    if !r.skipped.is_empty() {
        s.push_str(&format!(
            "\nleft out {} non-float or unused entries: {}",
            r.skipped.len(),
            r.skipped
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out(&s)
}
