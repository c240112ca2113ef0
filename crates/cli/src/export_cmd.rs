//! `export`: a zoo model (random or real weights) as an ONNX file for deployment runtimes.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use effcnn_nn::{load_weights, EffNet, InitConfig};
use effcnn_onnx::{Batch, ExportOptions, DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME};

use crate::common::LayoutArg;
use crate::common::{out, ModelArgs};

#[derive(Args)]
pub struct ExportArgs {
    /// Zoo model name.
    pub model: String,
    /// Weights: .safetensors (e.g. a run's best.safetensors) or PyTorch .pth/.pt (read
    /// weights-only). Default: effcnn's random initialisation with --seed.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Checkpoint key layout of --weights (default: detected from the keys).
    #[arg(long, value_enum)]
    pub layout: Option<LayoutArg>,
    /// Output .onnx file (written atomically: no partial file on error).
    #[arg(long, value_name = "OUT.onnx")]
    pub onnx: PathBuf,
    /// ONNX operator set (effcnn exports 11 to 21).
    #[arg(long, default_value_t = DEFAULT_OPSET, allow_negative_numbers = true)]
    pub opset: i64,
    /// Batch dimension of the input and output: a fixed size, or `dynamic` (a symbolic `batch`
    /// dimension). The resolution is always fixed (--resolution): TF "SAME" padding is written
    /// as the explicit pads it resolves to there.
    #[arg(long, default_value = "1")]
    pub batch: String,
    /// Fold each batch norm that follows a convolution into that convolution's weights and bias.
    #[arg(long)]
    pub fold_bn: bool,
    /// Seed of the random initialisation (without --weights).
    #[arg(long, default_value_t = InitConfig::default().seed)]
    pub seed: u64,
    #[command(flatten)]
    pub m: ModelArgs,
}

pub fn export(a: ExportArgs) -> Result<()> {
    if a.onnx.extension().and_then(|e| e.to_str()) != Some("onnx") {
        bail!("--onnx {}: must end in .onnx", a.onnx.display());
    }
    let batch: Batch = a.batch.parse()?;
    if a.weights.is_none() && a.layout.is_some() {
        bail!("--layout needs --weights");
    }
    let opts = ExportOptions {
        opset: a.opset,
        batch,
        fold_bn: a.fold_bn,
        metadata: Vec::new(),
    };
    opts.validate()?;
    let device = effcnn_nn::cpu();
    let init = InitConfig { seed: a.seed };
    let mut model = EffNet::from_zoo(&a.model, &a.m.options(), &device, init)?;
    let source = match &a.weights {
        Some(w) => {
            let rep = load_weights(&mut model, w, a.layout.map(Into::into), false)
                .with_context(|| format!("--weights {}", w.display()))?;
            format!(
                "{} ({} layout, {} tensors)",
                w.display(),
                rep.layout.name(),
                rep.loaded
            )
        }
        None => format!("random initialisation, seed {}", a.seed),
    };
    let opts = ExportOptions {
        metadata: vec![("effcnn.weights".into(), source.clone())],
        ..opts
    };
    let proto = effcnn_onnx::export_model(&model, &opts)?;
    effcnn_onnx::write(&proto, &a.onnx)?;
    let graph = proto.graph.as_ref().expect("an exported model has a graph");
    let s = model.graph().input_shape();
    let classes = model.graph().nodes[model.graph().output].shape.numel();
    let size = std::fs::metadata(&a.onnx).map(|m| m.len()).unwrap_or(0);
    out(&format!(
        "wrote {}: {} ONNX opset {}, {} nodes, {} initializers, {:.2} MiB\n\
         input `{INPUT_NAME}` [{batch}, {}, {}, {}] float32 (RGB, (x/255 − mean)/std, mean {:?}, \
         std {:?}), output `{OUTPUT_NAME}` [{batch}, {classes}]\nweights: {source}{}",
        a.onnx.display(),
        a.model,
        a.opset,
        graph.node.len(),
        graph.initializer.len(),
        size as f64 / (1024.0 * 1024.0),
        s.c,
        s.h,
        s.w,
        model.graph().meta.norm_mean,
        model.graph().meta.norm_std,
        if a.fold_bn {
            ", batch norms folded into convolutions"
        } else {
            ""
        }
    ))
}
