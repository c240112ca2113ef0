//! The exact cost analyzer: pure arithmetic over the resolved graph, no tensors.
//!
//! Convention (printed with every table, see [`CONVENTION`]):
//! - **params**: trainable parameters (conv/linear weights and biases, BN γ/β), not BN running stats;
//! - **MACs**: multiply-accumulates of conv + linear layers only (torchvision `_ops`, the papers'
//!   "Mult-Adds"); FLOPs = 2 × MACs;
//! - **activations**: output elements of conv + linear layers (timm's "MActs");
//! - **memory traffic**: elements read + written by each op (inputs + weights + output), the
//!   ShuffleNetV2 "MAC" memory-access cost; element-wise view ops (flatten, eval dropout) are free;
//! - **peak activation memory**: the largest sum of live tensors while running the graph in order,
//!   freeing each tensor after its last consumer (batch 1, float32).

use serde::Serialize;

use crate::graph::{tensor_suffixes, Act, Graph, NodeId, Op, Shape};

pub const CONVENTION: &str =
    "params = trainable (no BN running stats); MACs = conv+linear multiply-accumulates \
(torchvision/paper convention; no BN, activation, pooling, bias, SE scale, add); FLOPs = 2×MACs; \
activations = conv+linear output elements; traffic = elements read+written; batch 1, float32";

/// Cost of one node.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LayerCost {
    pub path: String,
    pub op: String,
    pub block: String,
    #[serde(rename = "in")]
    pub input: Vec<Shape>,
    pub out: Shape,
    pub params: u64,
    /// BN running statistics (buffers), stored in checkpoints but not trained.
    pub buffers: u64,
    pub macs: u64,
    /// Output elements of this node.
    pub out_elems: u64,
    /// Elements read + written (inputs + weights + output).
    pub traffic: u64,
    pub k: Option<(usize, usize)>,
    pub stride: Option<(usize, usize)>,
    pub groups: Option<usize>,
}

/// Totals over a graph, plus the per-layer rows.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCost {
    pub model: String,
    pub resolution: usize,
    pub classes: usize,
    pub params: u64,
    pub macs: u64,
    pub flops: u64,
    pub activations: u64,
    pub traffic: u64,
    /// Bytes of a float32 checkpoint (params + BN buffers).
    pub weight_bytes: u64,
    /// Peak live activation memory in bytes (batch 1, float32), input included.
    pub peak_activation_bytes: u64,
    pub convention: &'static str,
    pub layers: Vec<LayerCost>,
}

impl ModelCost {
    /// Only the conv and linear rows (the rows of a torchvision/fvcore per-layer table).
    pub fn conv_linear_layers(&self) -> impl Iterator<Item = &LayerCost> {
        self.layers
            .iter()
            .filter(|l| l.macs > 0 || l.op == "linear" || l.k.is_some())
    }
}

fn param_counts(op: &Op) -> (u64, u64) {
    let mut p = 0;
    let mut b = 0;
    for (_, shape, trainable) in tensor_suffixes(op) {
        let n: usize = shape.iter().product();
        if trainable {
            p += n as u64;
        } else {
            b += n as u64;
        }
    }
    (p, b)
}

/// MACs of one node under the conv+linear convention.
pub fn node_macs(op: &Op, out: Shape) -> u64 {
    match op {
        Op::Conv(c) => {
            (out.h * out.w * c.cout) as u64 * (c.cin / c.groups) as u64 * (c.k.0 * c.k.1) as u64
        }
        Op::Linear { fin, fout, .. } => (*fin * *fout) as u64,
        _ => 0,
    }
}

/// Analyze a graph.
pub fn analyze(g: &Graph) -> ModelCost {
    let mut layers = Vec::with_capacity(g.nodes.len());
    for n in &g.nodes {
        let (params, buffers) = param_counts(&n.op);
        let input: Vec<Shape> = n.inputs.iter().map(|&i| g.nodes[i].shape).collect();
        let in_elems: u64 = input.iter().map(|s| s.numel()).sum();
        let out_elems = n.shape.numel();
        let macs = node_macs(&n.op, n.shape);
        let traffic = match n.op {
            Op::Input | Op::Flatten | Op::Dropout { .. } | Op::DropPath { .. } => 0,
            // BN reads its input, γ, β, mean, var and writes its output.
            _ => in_elems + params + buffers + out_elems,
        };
        let (k, stride, groups) = match &n.op {
            Op::Conv(c) => (Some(c.k), Some(c.stride), Some(c.groups)),
            _ => (None, None, None),
        };
        layers.push(LayerCost {
            path: n.path.clone(),
            op: n.op.kind().to_string(),
            block: n.block.clone(),
            input,
            out: n.shape,
            params,
            buffers,
            macs,
            out_elems,
            traffic,
            k,
            stride,
            groups,
        });
    }
    let params = layers.iter().map(|l| l.params).sum();
    let buffers: u64 = layers.iter().map(|l| l.buffers).sum();
    let macs = layers.iter().map(|l| l.macs).sum();
    let activations = g
        .nodes
        .iter()
        .zip(&layers)
        .filter(|(n, _)| matches!(n.op, Op::Conv(_) | Op::Linear { .. }))
        .map(|(_, l)| l.out_elems)
        .sum();
    let traffic = layers.iter().map(|l| l.traffic).sum();
    ModelCost {
        model: g.meta.name.clone(),
        resolution: g.meta.resolution,
        classes: g.meta.classes,
        params,
        macs,
        flops: 2 * macs,
        activations,
        traffic,
        weight_bytes: 4 * (params + buffers),
        peak_activation_bytes: 4 * peak_live_elements(g),
        convention: CONVENTION,
        layers,
    }
}

/// Peak of live activation elements when the graph runs in node order and each tensor is freed
/// after its last consumer (view ops — flatten, dropout in eval — share their input's storage).
pub fn peak_live_elements(g: &Graph) -> u64 {
    crate::liveness::peak(&live_intervals(g))
}

/// The lifetime of every materialised node output (in elements, batch 1) when the graph runs
/// in node order: from its node to its last consumer, through the view ops that share its
/// storage; the model's output stays alive to the end.
pub fn live_intervals(g: &Graph) -> Vec<crate::liveness::Interval> {
    let n = g.nodes.len();
    let uses = crate::liveness::Uses::through_views(g);
    g.nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| !crate::liveness::is_inference_view(&node.op))
        .map(|(i, node)| crate::liveness::Interval {
            size: node.shape.numel(),
            first: i,
            // A tensor lives as long as any view of it is used; the output to the end.
            last: if uses.is_output(i) {
                n
            } else {
                uses.last_reader(i).unwrap_or(i)
            },
        })
        .collect()
}

/// Other tools' totals reproduced from the same graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Convention {
    /// conv + linear MACs (torchvision `_ops`, papers, effcnn's default).
    Torchvision,
    /// fvcore `FlopCountAnalysis`: conv + linear MACs, + BN (2 per element with affine), +
    /// adaptive average pooling (1 per input element); max-pool, `mean`, activations, mul and add
    /// are skipped.
    Fvcore,
    /// ptflops (pytorch backend, functional patching on): conv + linear MACs, conv/linear bias,
    /// BN (2 per element), activations and pooling per element. They are counted twice where a
    /// module (nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d) calls a patched functional (F.relu,
    /// F.max_pool2d, …), once for nn.ReLU6 (it calls F.hardtanh) and F.silu, never for
    /// hard-swish, hard-sigmoid, sigmoid or `mean`.
    Ptflops,
}

impl Convention {
    pub const ALL: [Convention; 3] = [
        Convention::Torchvision,
        Convention::Fvcore,
        Convention::Ptflops,
    ];
    pub fn name(&self) -> &'static str {
        match self {
            Convention::Torchvision => "torchvision",
            Convention::Fvcore => "fvcore",
            Convention::Ptflops => "ptflops",
        }
    }
    pub fn parse(s: &str) -> Option<Convention> {
        Convention::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// One line of the difference between a tool's total and the conv+linear MACs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DiffItem {
    /// What is counted: "batch norm", "ReLU", "pooling", "bias", …
    pub what: String,
    pub count: u64,
}

/// A tool's total and the items it adds on top of conv + linear MACs.
#[derive(Debug, Clone, Serialize)]
pub struct ConventionTotal {
    pub convention: Convention,
    pub total: u64,
    pub base_macs: u64,
    pub added: Vec<DiffItem>,
    /// Ops present in the graph that the tool does not count.
    pub skipped: Vec<String>,
}

/// How the reference PyTorch implementation computes a global average pool; the tools see
/// these differently (an implementation fact of torchvision/timm, not of the architecture).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GapImpl {
    /// `nn.AdaptiveAvgPool2d` module (calls the functional inside).
    Module,
    /// `F.adaptive_avg_pool2d` called directly.
    Functional,
    /// `x.mean((2, 3))`.
    Mean,
}

fn gap_impl(g: &Graph, id: NodeId) -> GapImpl {
    // SE squeeze: the pooled vector feeds a 1×1 conv (fc1) rather than the classifier.
    let in_se = g
        .nodes
        .iter()
        .any(|n| n.inputs.contains(&id) && matches!(n.op, Op::Conv(_)));
    match (g.meta.family.as_str(), in_se) {
        // torchvision ShuffleNetV2 pools with x.mean([2, 3]).
        ("ShuffleNetV2", _) => GapImpl::Mean,
        // timm SEModule (seresnet*) squeezes with x.mean((2, 3), keepdim=True).
        ("SE-ResNet", true) => GapImpl::Mean,
        // torchvision MobileNetV2's head calls F.adaptive_avg_pool2d directly.
        ("MobileNetV2", false) => GapImpl::Functional,
        // nn.AdaptiveAvgPool2d modules: model heads and torchvision.ops.SqueezeExcitation.
        _ => GapImpl::Module,
    }
}

/// Reproduce a tool's total for the graph and itemise where it differs from conv + linear MACs.
pub fn convention_total(g: &Graph, conv: Convention) -> ConventionTotal {
    #[derive(Default)]
    struct Counts {
        bn: u64,
        relu: u64,
        relu6: u64,
        silu: u64,
        other_act: u64,
        maxpool: u64,
        avgpool: u64,
        gap_module: u64,
        gap_functional: u64,
        gap_mean: u64,
        bias: u64,
        scale: u64,
        add: u64,
    }
    let mut c = Counts::default();
    let mut base = 0u64;
    for (id, n) in g.nodes.iter().enumerate() {
        let in_elems: u64 = n.inputs.iter().map(|&i| g.nodes[i].shape.numel()).sum();
        let out = n.shape.numel();
        base += node_macs(&n.op, n.shape);
        match &n.op {
            Op::BatchNorm { .. } => c.bn += 2 * out,
            Op::MaxPool { .. } => c.maxpool += in_elems,
            Op::AvgPool { .. } => c.avgpool += in_elems,
            Op::GlobalAvgPool => match gap_impl(g, id) {
                GapImpl::Module => c.gap_module += in_elems,
                GapImpl::Functional => c.gap_functional += in_elems,
                GapImpl::Mean => c.gap_mean += in_elems,
            },
            Op::Conv(cv) if cv.bias => c.bias += out,
            Op::Linear { bias: true, .. } => c.bias += out,
            Op::Act { act: Act::Relu } => c.relu += out,
            Op::Act { act: Act::Relu6 } => c.relu6 += out,
            Op::Act { act: Act::Silu } => c.silu += out,
            Op::Act { .. } => c.other_act += out,
            Op::Scale => c.scale += out,
            Op::Add => c.add += out,
            _ => {}
        }
    }
    let item = |what: &str, count: u64| DiffItem {
        what: what.to_string(),
        count,
    };
    let present = |what: &str, count: u64| (count > 0).then(|| what.to_string());
    let (added, skipped): (Vec<DiffItem>, Vec<Option<String>>) = match conv {
        Convention::Torchvision => (
            vec![],
            vec![
                present("batch norm", c.bn),
                present("activations", c.relu + c.relu6 + c.silu + c.other_act),
                present(
                    "pooling",
                    c.maxpool + c.avgpool + c.gap_module + c.gap_functional + c.gap_mean,
                ),
                present("bias", c.bias),
                present("SE scale", c.scale),
                present("residual add", c.add),
            ],
        ),
        Convention::Fvcore => (
            vec![
                item("batch norm (2 per element)", c.bn),
                item(
                    "adaptive avg pool (1 per input element)",
                    c.gap_module + c.gap_functional,
                ),
                item("avg pool (1 per input element)", c.avgpool),
            ],
            vec![
                present("activations", c.relu + c.relu6 + c.silu + c.other_act),
                present("max pool", c.maxpool),
                present("mean (global pool as x.mean)", c.gap_mean),
                present("bias", c.bias),
                present("SE scale (mul)", c.scale),
                present("residual add", c.add),
            ],
        ),
        Convention::Ptflops => (
            vec![
                item("batch norm (2 per element)", c.bn),
                item("nn.ReLU (module + F.relu: 2 per element)", 2 * c.relu),
                item("nn.ReLU6 (1 per element)", c.relu6),
                item("SiLU (F.silu: 1 per element)", c.silu),
                item(
                    "pooling modules (module + functional: 2 per input element)",
                    2 * (c.maxpool + c.avgpool + c.gap_module),
                ),
                item(
                    "F.adaptive_avg_pool2d (1 per input element)",
                    c.gap_functional,
                ),
                item("conv/linear bias (1 per output element)", c.bias),
            ],
            vec![
                present("hard-swish / hard-sigmoid / sigmoid", c.other_act),
                present("mean (global pool as x.mean)", c.gap_mean),
                present("SE scale (mul)", c.scale),
                present("residual add", c.add),
            ],
        ),
    };
    let added: Vec<DiffItem> = added.into_iter().filter(|d| d.count > 0).collect();
    ConventionTotal {
        convention: conv,
        total: base + added.iter().map(|d| d.count).sum::<u64>(),
        base_macs: base,
        added,
        skipped: skipped.into_iter().flatten().collect(),
    }
}
