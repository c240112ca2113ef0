//! The resolved network graph: every node has a stable path, an operation, its inputs and its
//! output shape. Nodes are stored in topological order (a node's inputs always come before it),
//! so the cost analyzer and the runnable model both walk `nodes` front to back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ArchError;

/// Index of a node in [`Graph::nodes`].
pub type NodeId = usize;

/// A feature-map shape without the batch dimension: channels × height × width.
/// A flattened vector of `n` features is `Shape { c: n, h: 1, w: 1 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub const fn new(c: usize, h: usize, w: usize) -> Self {
        Shape { c, h, w }
    }
    /// Number of elements of one sample.
    pub fn numel(&self) -> u64 {
        (self.c * self.h * self.w) as u64
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}×{}", self.c, self.h, self.w)
    }
}

/// Spatial padding of a convolution or pooling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Pad {
    /// Explicit padding: top, left, bottom, right (PyTorch pads symmetrically).
    Fixed {
        top: usize,
        left: usize,
        bottom: usize,
        right: usize,
    },
    /// TensorFlow "SAME": output = ceil(input / stride), the extra pixel (if any) at the bottom/right.
    /// Computed from the actual input size, so it stays right at any resolution.
    TfSame,
}

impl Pad {
    pub const fn sym(p: usize) -> Pad {
        Pad::Fixed {
            top: p,
            left: p,
            bottom: p,
            right: p,
        }
    }
    /// The concrete (top, left, bottom, right) padding for an input of `h`×`w`.
    pub fn resolve(
        &self,
        h: usize,
        w: usize,
        k: (usize, usize),
        stride: (usize, usize),
        dilation: usize,
    ) -> (usize, usize, usize, usize) {
        match *self {
            Pad::Fixed {
                top,
                left,
                bottom,
                right,
            } => (top, left, bottom, right),
            Pad::TfSame => {
                let same = |n: usize, k: usize, s: usize| {
                    let out = n.div_ceil(s);
                    let eff_k = (k - 1) * dilation + 1;
                    let total = ((out - 1) * s + eff_k).saturating_sub(n);
                    (total / 2, total - total / 2)
                };
                let (t, b) = same(h, k.0, stride.0);
                let (l, r) = same(w, k.1, stride.1);
                (t, l, b, r)
            }
        }
    }
}

/// Activation functions, with PyTorch's formulas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Act {
    Relu,
    Relu6,
    /// x · sigmoid(x) (a.k.a. swish).
    Silu,
    Sigmoid,
    /// x · ReLU6(x + 3) / 6.
    HardSwish,
    /// ReLU6(x + 3) / 6.
    HardSigmoid,
}

impl Act {
    pub fn name(&self) -> &'static str {
        match self {
            Act::Relu => "relu",
            Act::Relu6 => "relu6",
            Act::Silu => "silu",
            Act::Sigmoid => "sigmoid",
            Act::HardSwish => "hardswish",
            Act::HardSigmoid => "hardsigmoid",
        }
    }
}

/// 2-D convolution (also depthwise, pointwise and grouped: see `groups`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Conv {
    pub cin: usize,
    pub cout: usize,
    pub k: (usize, usize),
    pub stride: (usize, usize),
    pub pad: Pad,
    pub dilation: usize,
    pub groups: usize,
    pub bias: bool,
}

impl Conv {
    /// Weight shape in PyTorch's layout [C_out, C_in/groups, kh, kw].
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.cout, self.cin / self.groups, self.k.0, self.k.1]
    }
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.cin && self.groups > 1 && self.cout % self.cin == 0
    }
    pub fn is_pointwise(&self) -> bool {
        self.k == (1, 1)
    }
    /// A human-readable kind: "depthwise", "pointwise", "group-pointwise", "group", "conv".
    pub fn kind(&self) -> &'static str {
        if self.is_depthwise() {
            "dwconv"
        } else if self.is_pointwise() && self.groups > 1 {
            "gpwconv"
        } else if self.is_pointwise() {
            "pwconv"
        } else if self.groups > 1 {
            "gconv"
        } else {
            "conv"
        }
    }
}

/// One operation of the graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Input,
    Conv(Conv),
    BatchNorm {
        c: usize,
        eps: f64,
    },
    Act {
        act: Act,
    },
    /// Max pooling with `pad` on every side (padding never wins the max). `ceil_mode` as in
    /// PyTorch: the output size rounds up, so the last window may hang over the bottom/right edge
    /// and is clipped to the input; a window is kept only if it starts inside the input or the
    /// left/top padding (see [`pool_out_size`]).
    MaxPool {
        k: usize,
        stride: usize,
        pad: usize,
        ceil_mode: bool,
    },
    /// Average pooling; `count_include_pad` as in PyTorch (default true).
    AvgPool {
        k: usize,
        stride: usize,
        pad: usize,
        count_include_pad: bool,
    },
    /// Global average pooling to C×1×1.
    GlobalAvgPool,
    Flatten,
    Linear {
        fin: usize,
        fout: usize,
        bias: bool,
    },
    Dropout {
        p: f64,
    },
    /// Stochastic depth on a residual branch (per sample, training only).
    DropPath {
        p: f64,
    },
    /// Element-wise sum of the inputs (residual connection).
    Add,
    /// `inputs[0] * inputs[1]`, the second a per-channel C×1×1 gate (SE recalibration).
    Scale,
    /// Concatenation along channels.
    Concat,
    /// Channels `start .. start + len` of the input (ShuffleNetV2 channel split).
    Slice {
        start: usize,
        len: usize,
    },
    /// Channel shuffle with `groups` groups: reshape (g, C/g) → transpose → flatten.
    Shuffle {
        groups: usize,
    },
}

/// Output size of a `k`-window pooling with stride `stride` over `n` inputs padded by `pad` on
/// both sides, PyTorch's rule: ⌊(n + 2·pad − k) / stride⌋ + 1, or with `ceil_mode` the ceiling,
/// less one when that last window would start in the right padding (at or past `n + pad`).
/// `None` when the window does not fit in the padded input.
pub fn pool_out_size(
    n: usize,
    k: usize,
    stride: usize,
    pad: usize,
    ceil_mode: bool,
) -> Option<usize> {
    let span = (n + 2 * pad).checked_sub(k)?;
    if n == 0 || stride == 0 {
        return None;
    }
    if !ceil_mode {
        return Some(span / stride + 1);
    }
    let out = span.div_ceil(stride) + 1;
    Some(if (out - 1) * stride >= n + pad {
        out - 1
    } else {
        out
    })
}

impl Op {
    /// Short name used in tables.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Conv(c) => c.kind(),
            Op::BatchNorm { .. } => "bn",
            Op::Act { act } => act.name(),
            Op::MaxPool { .. } => "maxpool",
            Op::AvgPool { .. } => "avgpool",
            Op::GlobalAvgPool => "gap",
            Op::Flatten => "flatten",
            Op::Linear { .. } => "linear",
            Op::Dropout { .. } => "dropout",
            Op::DropPath { .. } => "droppath",
            Op::Add => "add",
            Op::Scale => "scale",
            Op::Concat => "concat",
            Op::Slice { .. } => "split",
            Op::Shuffle { .. } => "shuffle",
        }
    }
    /// Whether the op owns trainable parameters (and so checkpoint tensors).
    pub fn has_params(&self) -> bool {
        matches!(self, Op::Conv(_) | Op::BatchNorm { .. } | Op::Linear { .. })
    }
}

/// Checkpoint layouts whose tensor names effcnn derives from the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// effcnn's own role-based paths (the node paths).
    Canonical,
    /// torchvision `state_dict` names.
    Torchvision,
    /// timm `state_dict` names.
    Timm,
    /// lukemelas/EfficientNet-PyTorch names (`_conv_stem`, `_blocks.N._depthwise_conv`, …).
    Lukemelas,
}

impl Layout {
    pub const ALL: [Layout; 4] = [
        Layout::Canonical,
        Layout::Torchvision,
        Layout::Timm,
        Layout::Lukemelas,
    ];
    pub fn name(&self) -> &'static str {
        match self {
            Layout::Canonical => "effcnn",
            Layout::Torchvision => "torchvision",
            Layout::Timm => "timm",
            Layout::Lukemelas => "lukemelas",
        }
    }
    pub fn parse(s: &str) -> Option<Layout> {
        Layout::ALL.into_iter().find(|l| l.name() == s)
    }
}

/// A node of the resolved graph.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// Stable, role-based path, e.g. `blocks.3.1.conv_dw`; unique within the graph.
    pub path: String,
    pub op: Op,
    pub inputs: Vec<NodeId>,
    /// Output shape (one sample).
    pub shape: Shape,
    /// For parameter nodes: the module name in other layouts (without `.weight`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<Layout, String>,
    /// The block this node belongs to (e.g. `blocks.3.1`), for per-block summaries.
    pub block: String,
}

/// Names of the trainable and buffer tensors of a parameter node, as (suffix, shape, trainable).
pub fn tensor_suffixes(op: &Op) -> Vec<(&'static str, Vec<usize>, bool)> {
    match op {
        Op::Conv(c) => {
            let mut v = vec![("weight", c.weight_shape().to_vec(), true)];
            if c.bias {
                v.push(("bias", vec![c.cout], true));
            }
            v
        }
        Op::BatchNorm { c, .. } => vec![
            ("weight", vec![*c], true),
            ("bias", vec![*c], true),
            ("running_mean", vec![*c], false),
            ("running_var", vec![*c], false),
        ],
        Op::Linear { fin, fout, bias } => {
            // PyTorch layout [out, in].
            let mut v = vec![("weight", vec![*fout, *fin], true)];
            if *bias {
                v.push(("bias", vec![*fout], true));
            }
            v
        }
        _ => vec![],
    }
}

/// What a block of the graph is, with the settings it was built from. Commands that explain,
/// profile or probe a block read this instead of guessing from node names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BlockKind {
    /// Layers before the first block.
    Stem,
    /// Layers after the last block: final convs, pooling, classifier.
    Head,
    /// A plain layer group (conv-BN-act, a stage's last 1×1 conv, pooling between stages).
    Plain,
    /// MobileNetV1 depthwise-separable block: depthwise k×k → pointwise 1×1.
    DepthwiseSeparable {
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
    },
    /// Inverted residual (MobileNetV2) / MBConv (MobileNetV3, EfficientNet): optional 1×1
    /// expansion to `mid` channels → depthwise k×k → optional SE → linear 1×1 projection.
    InvertedResidual {
        cin: usize,
        mid: usize,
        cout: usize,
        k: usize,
        stride: usize,
        /// Whether the 1×1 expansion conv exists.
        expand: bool,
        /// Whether the block adds its input (stride 1, same channels).
        residual: bool,
        se: Option<SeInfo>,
    },
    /// ResNet basic block (two 3×3 convs) or bottleneck (1×1 → 3×3 → 1×1), optionally with SE.
    Residual {
        cin: usize,
        planes: usize,
        cout: usize,
        stride: usize,
        bottleneck: bool,
        /// Whether the shortcut is a 1×1 conv + BN projection.
        projection: bool,
        se: Option<SeInfo>,
    },
    /// ShuffleNetV1 unit: grouped 1×1 → channel shuffle → depthwise 3×3 → grouped 1×1.
    ShuffleV1 {
        cin: usize,
        mid: usize,
        cout: usize,
        groups: usize,
        stride: usize,
    },
    /// ShuffleNetV2 unit: channel split (stride 1) or two branches (stride 2), concat, shuffle.
    ShuffleV2 {
        cin: usize,
        cout: usize,
        stride: usize,
    },
}

/// The squeeze-and-excitation module of a block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeInfo {
    /// Path of the SE module (its pool, gate and scale nodes are `{path}.pool`, `.gate`, `.scale`).
    pub path: String,
    /// Channels it recalibrates.
    pub channels: usize,
    /// Width of its bottleneck.
    pub squeeze: usize,
    /// Its nodes (pool, the two FCs and their activations, gate, scale), in graph order.
    pub nodes: std::ops::Range<NodeId>,
}

impl BlockKind {
    /// The block's SE module, if it has one.
    pub fn se(&self) -> Option<&SeInfo> {
        match self {
            BlockKind::InvertedResidual { se, .. } | BlockKind::Residual { se, .. } => se.as_ref(),
            _ => None,
        }
    }
    /// Short name, e.g. `inverted_residual`.
    pub fn name(&self) -> &'static str {
        match self {
            BlockKind::Stem => "stem",
            BlockKind::Head => "head",
            BlockKind::Plain => "plain",
            BlockKind::DepthwiseSeparable { .. } => "depthwise_separable",
            BlockKind::InvertedResidual { .. } => "inverted_residual",
            BlockKind::Residual { .. } => "residual",
            BlockKind::ShuffleV1 { .. } => "shuffle_v1",
            BlockKind::ShuffleV2 { .. } => "shuffle_v2",
        }
    }
}

/// A block: a contiguous run of nodes built by one block function.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Block {
    /// The block's path (every node in it has `node.block == path`).
    pub path: String,
    pub kind: BlockKind,
    /// Its nodes, `first..end` in graph order.
    pub nodes: std::ops::Range<NodeId>,
}

/// How a model's parameters are initialised when it is not loaded from a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InitScheme {
    /// torchvision's MobileNet/ShuffleNet/ResNet init: He-normal (fan-out) convs, BN γ=1 β=0,
    /// linear layers N(0, 0.01²) with zero bias.
    Torchvision,
    /// EfficientNet's init: as torchvision, but linear layers U(−1/√fout, 1/√fout).
    EfficientNet,
}

/// Per-model facts that travel with the graph.
#[derive(Debug, Clone, Serialize)]
pub struct ModelMeta {
    /// Zoo name, e.g. `mobilenet_v2`.
    pub name: String,
    pub family: String,
    pub profile: Profile,
    pub width: f64,
    pub depth: f64,
    pub resolution: usize,
    pub classes: usize,
    /// Input normalization (mean, std in [0,1] pixel units) the zoo records for pretrained weights.
    pub norm_mean: [f32; 3],
    pub norm_std: [f32; 3],
    /// Parameter initialisation of a fresh model.
    pub init: InitScheme,
}

/// ImageNet-style (224², strided stem) or CIFAR-style (32², 3×3 stride-1 stem, fewer early strides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    Imagenet,
    Cifar,
}

impl Profile {
    pub fn name(&self) -> &'static str {
        match self {
            Profile::Imagenet => "imagenet",
            Profile::Cifar => "cifar",
        }
    }
}

/// A resolved network.
#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    pub meta: ModelMeta,
    pub nodes: Vec<Node>,
    /// The node whose output is the model's output (logits).
    pub output: NodeId,
    /// The blocks, in graph order; together they cover every node but the input.
    pub blocks: Vec<Block>,
}

impl Graph {
    /// The block holding node `id` (`None` for the input node).
    pub fn block_of(&self, id: NodeId) -> Option<&Block> {
        self.blocks.iter().find(|b| b.nodes.contains(&id))
    }
    /// Whether the network is built from depthwise blocks (depthwise-separable, inverted
    /// residual / MBConv, ShuffleNet units) rather than dense convolutions.
    pub fn depthwise_built(&self) -> bool {
        self.blocks.iter().any(|b| {
            matches!(
                b.kind,
                BlockKind::DepthwiseSeparable { .. }
                    | BlockKind::InvertedResidual { .. }
                    | BlockKind::ShuffleV1 { .. }
                    | BlockKind::ShuffleV2 { .. }
            )
        })
    }
    /// Whether node `id` belongs to a squeeze-and-excitation module.
    pub fn in_se(&self, id: NodeId) -> bool {
        self.block_of(id)
            .and_then(|b| b.kind.se())
            .is_some_and(|se| se.nodes.contains(&id))
    }
    pub fn input_shape(&self) -> Shape {
        self.nodes[0].shape
    }
    pub fn node(&self, path: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.path == path)
    }
    /// Parameter nodes (conv, batch norm, linear) in graph order.
    pub fn param_nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.op.has_params())
    }
    /// The module name of a parameter node in a layout (None where the layout has no such model).
    pub fn module_name(&self, id: NodeId, layout: Layout) -> Option<&str> {
        let n = &self.nodes[id];
        match layout {
            Layout::Canonical => Some(n.path.as_str()),
            other => n.names.get(&other).map(|s| s.as_str()),
        }
    }
    /// Layouts for which every parameter node has a name.
    pub fn layouts(&self) -> Vec<Layout> {
        Layout::ALL
            .into_iter()
            .filter(|l| {
                self.param_nodes()
                    .all(|(id, _)| self.module_name(id, *l).is_some())
            })
            .collect()
    }
    /// Every checkpoint tensor of the graph in a layout: (key, node id, suffix, shape, trainable).
    pub fn tensor_keys(&self, layout: Layout) -> Vec<TensorKey> {
        let mut out = Vec::new();
        for (id, n) in self.param_nodes() {
            if let Some(m) = self.module_name(id, layout) {
                for (suffix, shape, trainable) in tensor_suffixes(&n.op) {
                    out.push(TensorKey {
                        key: format!("{m}.{suffix}"),
                        node: id,
                        suffix,
                        shape,
                        trainable,
                    });
                }
            }
        }
        out
    }
    /// The squeeze-and-excitation modules, each with the block that holds it, in graph order.
    pub fn se_modules(&self) -> impl Iterator<Item = (&Block, &SeInfo)> + '_ {
        self.blocks
            .iter()
            .filter_map(|b| b.kind.se().map(|se| (b, se)))
    }
    /// The gate node of an SE module: the sigmoid / hard-sigmoid whose output its scale node
    /// (the module's last node) multiplies into the channels.
    pub fn se_gate(&self, se: &SeInfo) -> NodeId {
        self.nodes[se.nodes.end - 1].inputs[1]
    }
    /// SE gate nodes, one per SE module, in graph order.
    pub fn se_gates(&self) -> Vec<NodeId> {
        self.se_modules().map(|(_, se)| self.se_gate(se)).collect()
    }
    /// Check structural invariants (topological order, unique paths, input counts).
    pub fn validate(&self) -> Result<(), ArchError> {
        let mut seen = std::collections::HashSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !seen.insert(n.path.as_str()) {
                return Err(ArchError::Invalid {
                    path: n.path.clone(),
                    msg: "duplicate node path".into(),
                });
            }
            if n.inputs.iter().any(|&j| j >= i) {
                return Err(ArchError::Invalid {
                    path: n.path.clone(),
                    msg: "input after node".into(),
                });
            }
        }
        // The blocks partition the nodes after the input, in order, and agree with each node's
        // block name.
        let mut next = 1.min(self.nodes.len());
        for b in &self.blocks {
            let bad = |msg: String| ArchError::Invalid {
                path: b.path.clone(),
                msg,
            };
            if b.nodes.start != next || b.nodes.end > self.nodes.len() || b.nodes.is_empty() {
                return Err(bad(format!(
                    "block covers nodes {:?}, expected a non-empty range from {next}",
                    b.nodes
                )));
            }
            if let Some(n) = self.nodes[b.nodes.clone()]
                .iter()
                .find(|n| n.block != b.path)
            {
                return Err(bad(format!("node {} is in block `{}`", n.path, n.block)));
            }
            next = b.nodes.end;
        }
        if !self.blocks.is_empty() && next != self.nodes.len() {
            return Err(ArchError::Invalid {
                path: self.nodes[next].path.clone(),
                msg: "node outside every block".into(),
            });
        }
        Ok(())
    }
}

/// One checkpoint tensor of a graph in some layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorKey {
    pub key: String,
    pub node: NodeId,
    pub suffix: &'static str,
    pub shape: Vec<usize>,
    pub trainable: bool,
}
