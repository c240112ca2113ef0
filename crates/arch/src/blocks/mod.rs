//! Building blocks written once as expansions into primitive ops: conv-bn-act, depthwise-separable,
//! squeeze-and-excitation, inverted residual / MBConv, channel shuffle units, residual blocks.
//!
//! Every block takes the canonical (effcnn) path of each parameter node plus its names in the
//! foreign layouts, so checkpoint key maps are a by-product of building the graph.

use crate::builder::{join, GraphBuilder, Names};
use crate::error::ArchError;
use crate::graph::{Act, BlockKind, NodeId, SeInfo};

pub mod residual;
pub mod shuffle;

type R = Result<NodeId, ArchError>;

/// `make_divisible(v, divisor)` as in the MobileNet/EfficientNet reference code: round to the
/// nearest multiple of `divisor`, at least `min_value` (default `divisor`), and never more than 10%
/// below `v` (`round_limit` = 0.9). With `round_limit` = 0 the 10% rule is off (timm SEModule).
pub fn make_divisible(v: f64, divisor: usize, min_value: Option<usize>, round_limit: f64) -> usize {
    let min_value = min_value.unwrap_or(divisor);
    let d = divisor as f64;
    let mut new_v = min_value.max(((v + d / 2.0) / d).floor() as usize * divisor);
    if (new_v as f64) < round_limit * v {
        new_v += divisor;
    }
    new_v
}

/// The common `make_divisible(v, 8)` with the 90% rule.
pub fn divisible8(v: f64) -> usize {
    make_divisible(v, 8, None, 0.9)
}

/// A parameter node's canonical path and foreign names.
#[derive(Debug, Clone, Default)]
pub struct Pn {
    pub path: String,
    pub names: Names,
}

impl Pn {
    pub fn new(path: impl Into<String>, names: Names) -> Pn {
        Pn {
            path: path.into(),
            names,
        }
    }
}

/// Shape-level settings of a convolution inside a block.
#[derive(Debug, Clone, Copy)]
pub struct ConvCfg {
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub groups: usize,
    pub bias: bool,
    /// TensorFlow "SAME" padding instead of PyTorch's symmetric `k/2`.
    pub tf_same: bool,
}

impl ConvCfg {
    pub fn new(cout: usize, k: usize, stride: usize) -> Self {
        ConvCfg {
            cout,
            k,
            stride,
            groups: 1,
            bias: false,
            tf_same: false,
        }
    }
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    pub fn same(mut self, tf_same: bool) -> Self {
        self.tf_same = tf_same;
        self
    }
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
}

/// conv → batch norm → activation (activation optional). The activation node is named
/// `{conv path}.{act}` so it never collides with parameter nodes.
pub fn conv_bn_act(
    g: &mut GraphBuilder,
    x: NodeId,
    conv: &Pn,
    bn: &Pn,
    cfg: ConvCfg,
    eps: f64,
    act: Option<Act>,
) -> R {
    let y = g.conv2d(
        x,
        &conv.path,
        cfg.cout,
        cfg.k,
        cfg.stride,
        cfg.groups,
        cfg.bias,
        cfg.tf_same,
        conv.names.clone(),
    )?;
    let y = g.bn(y, &bn.path, eps, bn.names.clone())?;
    Ok(match act {
        Some(a) => g.act(y, &format!("{}.{}", bn.path, a.name()), a),
        None => y,
    })
}

/// How wide the SE bottleneck is. The rules differ between papers and libraries, so each is named.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeWidth {
    /// SENet: C / r (integer division), e.g. r = 16.
    Ratio(usize),
    /// EfficientNet: max(1, ⌊ratio · block input channels⌋), ratio 0.25.
    OfBlockInput { ratio: f64, block_in: usize },
    /// MobileNetV3: make_divisible(ratio · expanded channels, 8), ratio 0.25.
    Divisible { ratio: f64 },
    /// timm SEModule: make_divisible(C · ratio, 8, round_limit = 0), ratio 1/16.
    TimmSeModule { ratio: f64 },
}

impl SeWidth {
    pub fn squeeze(&self, channels: usize) -> usize {
        match *self {
            SeWidth::Ratio(r) => channels / r,
            SeWidth::OfBlockInput { ratio, block_in } => {
                ((block_in as f64 * ratio) as usize).max(1)
            }
            SeWidth::Divisible { ratio } => divisible8(channels as f64 * ratio),
            SeWidth::TimmSeModule { ratio } => {
                make_divisible(channels as f64 * ratio, 8, None, 0.0)
            }
        }
    }
}

/// Squeeze-and-excitation settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeCfg {
    pub width: SeWidth,
    /// Non-linearity between the two FC (1×1 conv) layers: ReLU (SENet, MobileNetV3) or SiLU (EfficientNet).
    pub inner: Act,
    /// Gate: sigmoid (SENet, EfficientNet) or hard-sigmoid (MobileNetV3).
    pub gate: Act,
}

/// Squeeze (global average pool) → FC reduce → act → FC expand → gate → channel-wise scale.
/// The FC layers are 1×1 convolutions with bias, as in torchvision and timm. `path` is the SE
/// module's path; its gate node is `{path}.gate`. Returns the scaled output and the module's
/// description for its block.
pub fn squeeze_excitation(
    g: &mut GraphBuilder,
    x: NodeId,
    path: &str,
    cfg: SeCfg,
    fc1: &Pn,
    fc2: &Pn,
) -> Result<(NodeId, SeInfo), ArchError> {
    let first = g.next_id();
    let c = g.shape(x).c;
    let s = cfg.width.squeeze(c);
    let z = g.global_avg_pool(x, &join(path, "pool"));
    let h = g.conv2d(z, &fc1.path, s, 1, 1, 1, true, false, fc1.names.clone())?;
    let h = g.act(h, &join(path, cfg.inner.name()), cfg.inner);
    let e = g.conv2d(h, &fc2.path, c, 1, 1, 1, true, false, fc2.names.clone())?;
    let gate = g.act(e, &join(path, "gate"), cfg.gate);
    let y = g.scale(x, gate, &join(path, "scale"))?;
    let info = SeInfo {
        path: path.to_string(),
        channels: c,
        squeeze: s,
        nodes: first..y + 1,
    };
    Ok((y, info))
}

/// Names of the parameter nodes of an inverted residual / MBConv block.
#[derive(Debug, Clone, Default)]
pub struct IrNames {
    pub conv_pw: Pn,
    pub bn1: Pn,
    pub conv_dw: Pn,
    pub bn2: Pn,
    pub se_fc1: Pn,
    pub se_fc2: Pn,
    pub se: String,
    pub conv_pwl: Pn,
    pub bn3: Pn,
}

/// Inverted residual (MobileNetV2) / MBConv (EfficientNet, MobileNetV3) settings.
#[derive(Debug, Clone, Copy)]
pub struct IrCfg {
    /// Expanded (hidden) channels; equal to the input channels when there is no expansion conv.
    pub mid: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    /// Whether the 1×1 expansion conv exists (MobileNetV2/EfficientNet t=1 blocks have none).
    pub expand: bool,
    pub act: Act,
    pub se: Option<SeCfg>,
    pub eps: f64,
    pub tf_same: bool,
    /// Stochastic-depth probability on the residual branch (EfficientNet).
    pub drop_path: f64,
    /// Use the residual when stride 1 and in == out (all families do; exposed for study nets).
    pub residual: bool,
}

/// Expand 1×1 (optional) → depthwise k×k → SE (optional) → project 1×1 (linear bottleneck), with
/// a residual when stride is 1 and the channel count is kept.
pub fn inverted_residual(
    g: &mut GraphBuilder,
    x: NodeId,
    block: &str,
    cfg: IrCfg,
    n: &IrNames,
) -> R {
    g.begin_block(block, BlockKind::Plain);
    let cin = g.shape(x).c;
    let mut y = x;
    if cfg.expand {
        y = conv_bn_act(
            g,
            y,
            &n.conv_pw,
            &n.bn1,
            ConvCfg::new(cfg.mid, 1, 1).same(cfg.tf_same),
            cfg.eps,
            Some(cfg.act),
        )?;
    }
    let dw = ConvCfg::new(cfg.mid, cfg.k, cfg.stride)
        .groups(cfg.mid)
        .same(cfg.tf_same);
    y = conv_bn_act(g, y, &n.conv_dw, &n.bn2, dw, cfg.eps, Some(cfg.act))?;
    let mut se_info = None;
    if let Some(se) = cfg.se {
        let (z, info) = squeeze_excitation(g, y, &n.se, se, &n.se_fc1, &n.se_fc2)?;
        (y, se_info) = (z, Some(info));
    }
    y = conv_bn_act(
        g,
        y,
        &n.conv_pwl,
        &n.bn3,
        ConvCfg::new(cfg.cout, 1, 1).same(cfg.tf_same),
        cfg.eps,
        None,
    )?;
    let residual = cfg.residual && cfg.stride == 1 && cin == cfg.cout;
    if residual {
        if cfg.drop_path > 0.0 {
            y = g.drop_path(y, &join(block, "drop_path"), cfg.drop_path);
        }
        y = g.add(y, x, &join(block, "add"))?;
    }
    g.set_block_kind(BlockKind::InvertedResidual {
        cin,
        mid: cfg.mid,
        cout: cfg.cout,
        k: cfg.k,
        stride: cfg.stride,
        expand: cfg.expand,
        residual,
        se: se_info,
    });
    Ok(y)
}

/// Depthwise-separable convolution (MobileNetV1): depthwise k×k conv-bn-act → pointwise 1×1 conv-bn-act.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_separable(
    g: &mut GraphBuilder,
    x: NodeId,
    block: &str,
    cout: usize,
    k: usize,
    stride: usize,
    act: Act,
    eps: f64,
    conv_dw: &Pn,
    bn1: &Pn,
    conv_pw: &Pn,
    bn2: &Pn,
) -> R {
    let cin = g.shape(x).c;
    g.begin_block(
        block,
        BlockKind::DepthwiseSeparable {
            cin,
            cout,
            k,
            stride,
        },
    );
    let y = conv_bn_act(
        g,
        x,
        conv_dw,
        bn1,
        ConvCfg::new(cin, k, stride).groups(cin),
        eps,
        Some(act),
    )?;
    conv_bn_act(g, y, conv_pw, bn2, ConvCfg::new(cout, 1, 1), eps, Some(act))
}
