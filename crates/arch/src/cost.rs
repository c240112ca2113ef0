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
    let n = g.nodes.len();
    let mut last_use: Vec<NodeId> = (0..n).collect();
    for (i, node) in g.nodes.iter().enumerate() {
        for &j in &node.inputs {
            last_use[j] = last_use[j].max(i);
        }
    }
    last_use[g.output] = n;
    let is_view = |op: &Op| matches!(op, Op::Flatten | Op::Dropout { .. } | Op::DropPath { .. });
    let mut live: u64 = 0;
    let mut peak: u64 = 0;
    let mut alive = vec![false; n];
    for (i, node) in g.nodes.iter().enumerate() {
        if !is_view(&node.op) {
            live += node.shape.numel();
            alive[i] = true;
        }
        peak = peak.max(live);
        for (j, a) in alive.iter_mut().enumerate().take(i + 1) {
            if *a && last_use_through_views(g, j, &last_use, is_view) <= i {
                live -= g.nodes[j].shape.numel();
                *a = false;
            }
        }
    }
    peak
}

fn last_use_through_views(
    g: &Graph,
    j: NodeId,
    last_use: &[NodeId],
    is_view: impl Fn(&Op) -> bool + Copy,
) -> NodeId {
    // A tensor lives as long as any view of it is used.
    let mut end = last_use[j];
    for (i, node) in g.nodes.iter().enumerate().skip(j + 1) {
        if is_view(&node.op) && node.inputs.contains(&j) {
            end = end.max(last_use_through_views(g, i, last_use, is_view));
        }
    }
    end
}

/// Other tools' totals reproduced from the same graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Convention {
    /// conv + linear MACs (torchvision `_ops`, papers, effcnn's default).
    Torchvision,
    /// fvcore `FlopCountAnalysis`: conv + linear MACs, + BN (2 per element with affine), +
    /// adaptive average pooling (1 per input element); activations, mul and add are skipped.
    Fvcore,
    /// ptflops (pytorch backend): conv + linear MACs, + conv/linear bias (1 per output element),
    /// + BN (2 per element), + ReLU/ReLU6 (1 per element), + pooling (1 per input element).
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
    /// What is counted: "batch norm", "activations (relu, relu6)", "pooling", "bias", "SE scale", …
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
    /// Ops the tool does not count at all (where users expect them to be counted).
    pub skipped: Vec<String>,
}

/// Reproduce a tool's total for the graph and itemise where it differs from conv + linear MACs.
pub fn convention_total(g: &Graph, conv: Convention) -> ConventionTotal {
    let mut bn = 0u64;
    let mut pool = 0u64;
    let mut bias = 0u64;
    let mut relu = 0u64;
    let mut other_act = 0u64;
    let mut scale = 0u64;
    let mut add = 0u64;
    let mut base = 0u64;
    for n in &g.nodes {
        let in_elems: u64 = n.inputs.iter().map(|&i| g.nodes[i].shape.numel()).sum();
        let out = n.shape.numel();
        base += node_macs(&n.op, n.shape);
        match &n.op {
            Op::BatchNorm { .. } => bn += 2 * out,
            Op::GlobalAvgPool | Op::AvgPool { .. } | Op::MaxPool { .. } => pool += in_elems,
            Op::Conv(c) if c.bias => bias += out,
            Op::Linear { bias: true, .. } => bias += out,
            Op::Act {
                act: Act::Relu | Act::Relu6,
            } => relu += out,
            Op::Act { .. } => other_act += out,
            Op::Scale => scale += out,
            Op::Add => add += out,
            _ => {}
        }
    }
    let item = |what: &str, count: u64| DiffItem {
        what: what.to_string(),
        count,
    };
    let (added, skipped): (Vec<DiffItem>, Vec<&str>) = match conv {
        Convention::Torchvision => (
            vec![],
            vec![
                "batch norm",
                "activations",
                "pooling",
                "bias",
                "SE scale",
                "residual add",
            ],
        ),
        Convention::Fvcore => (
            vec![
                item("batch norm (2 per element)", bn),
                item("pooling (1 per input element)", pool),
            ],
            vec!["activations", "bias", "SE scale", "residual add"],
        ),
        Convention::Ptflops => (
            vec![
                item("batch norm (2 per element)", bn),
                item("ReLU/ReLU6 (1 per element)", relu),
                item("pooling (1 per input element)", pool),
                item("conv/linear bias (1 per output element)", bias),
            ],
            vec![
                "sigmoid/hard-swish/SiLU modules called functionally",
                "SE scale",
                "residual add",
            ],
        ),
    };
    let _ = (other_act, scale, add);
    let added: Vec<DiffItem> = added.into_iter().filter(|d| d.count > 0).collect();
    ConventionTotal {
        convention: conv,
        total: base + added.iter().map(|d| d.count).sum::<u64>(),
        base_macs: base,
        added,
        skipped: skipped.into_iter().map(String::from).collect(),
    }
}
