//! `effcnn`: efficient CNN architectures — zoo, exact costs, runnable models, training, comparisons.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod common;
mod compare;
mod experiment;
mod explain;
mod export_cmd;
mod se_attention;
mod train_cmds;
mod weights_cmds;
mod zoo_cmds;

#[derive(Parser)]
#[command(
    name = "effcnn",
    version,
    about = "Efficient CNN architectures: model zoo, exact cost analysis, training and comparisons",
    long_about = "effcnn defines MobileNetV1/V2/V3, ShuffleNetV1/V2, EfficientNet, (SE-)ResNet and small study \
nets once, as data, and derives from that one definition the exact cost table, the runnable model, the \
checkpoint key maps and the diagrams.\n\nConvention of every cost table: params = trainable parameters; \
MACs = conv + linear multiply-accumulates (torchvision/paper convention); FLOPs = 2 × MACs."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every zoo model with params, MACs at its default resolution and reported ImageNet top-1.
    List(zoo_cmds::ListArgs),
    /// The per-layer cost table of one model (path, op, shapes, params, MACs, activations) and totals.
    Show(zoo_cmds::ShowArgs),
    /// The curriculum's calculators: cost of a conv, depthwise, pointwise, separable, group conv, SE,
    /// ShuffleNet unit or inverted residual, with the formula and the ratio to a standard conv.
    #[command(subcommand)]
    Cost(zoo_cmds::CostCmd),
    /// The channel-shuffle permutation as a diagram (reshape → transpose → flatten).
    Shuffle(zoo_cmds::ShuffleArgs),
    /// Explain a technique with a block diagram and numbers from the analyzer.
    Explain(explain::ExplainArgs),
    /// Comparison report (Exercise 4): table, accuracy/latency vs cost plots, Pareto frontier,
    /// analysis — report.md, self-contained report.html, PNG/SVG plots, CSV/JSON.
    Compare(compare::CompareArgs),
    /// Inference latency (median, p90), throughput and peak memory next to params/MACs.
    Bench(bench::BenchArgs),
    /// Top-k ImageNet classes of images or .npy tensors with real weights (.pth or .safetensors).
    Predict(weights_cmds::PredictArgs),
    /// Convert a PyTorch checkpoint to .safetensors (keys kept, or renamed with --canonical MODEL).
    Convert(weights_cmds::ConvertArgs),
    /// Export a model (random or trained/pretrained weights) to ONNX for deployment runtimes
    /// (ONNX Runtime, TensorRT, OpenVINO, tract), from its resolved graph.
    Export(export_cmd::ExportArgs),
    /// Train a zoo model (CPU, or a GPU with --device cuda) into a run folder (config, metrics, checkpoints, summary).
    Train(train_cmds::TrainArgs),
    /// Train again the run a run folder records (its config.json), e.g. a committed result,
    /// and print the new accuracy next to the recorded one.
    Rerun(train_cmds::RerunArgs),
    /// Accuracy, per-class accuracy and confusion matrix of a run folder or a weights file.
    Eval(train_cmds::EvalArgs),
    /// The curriculum's training experiments: dwsep (1.6), se (2.5, several seeds), zoo (4),
    /// each ending in a report with accuracy, cost and latency.
    Experiment(experiment::ExperimentArgs),
    /// SE attention (Exercise 2.6): per-block gate heatmaps (sample images, class means),
    /// histograms and class specificity by depth of a trained (or --random-init) SE model.
    SeAttention(se_attention::SeAttentionArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.cmd {
        Cmd::List(a) => zoo_cmds::list(a),
        Cmd::Show(a) => zoo_cmds::show(a),
        Cmd::Cost(c) => zoo_cmds::cost(c),
        Cmd::Shuffle(a) => zoo_cmds::shuffle(a),
        Cmd::Explain(a) => explain::explain(a),
        Cmd::Compare(a) => compare::compare(a),
        Cmd::Bench(a) => bench::bench(a),
        Cmd::Predict(a) => weights_cmds::predict(a),
        Cmd::Convert(a) => weights_cmds::convert(a),
        Cmd::Export(a) => export_cmd::export(a),
        Cmd::Train(a) => train_cmds::train(a),
        Cmd::Rerun(a) => train_cmds::rerun(a),
        Cmd::Eval(a) => train_cmds::eval(a),
        Cmd::SeAttention(a) => se_attention::se_attention(a),
        Cmd::Experiment(a) => experiment::experiment(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if common::is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
