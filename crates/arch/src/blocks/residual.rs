//! ResNet residual blocks: the basic block (two 3×3 convs) and the bottleneck (1×1 → 3×3 → 1×1,
//! expansion 4), with an optional squeeze-and-excitation module on the residual branch (before the
//! addition, as in SENet) and a 1×1 conv + BN projection shortcut when the shape changes.
//!
//! Two stride placements exist for the bottleneck: ResNet v1 (He et al. 2016; the Caffe models
//! and the SENet paper / timm `legacy_seresnet*`) strides the first 1×1 conv, ResNet v1.5
//! (torchvision, timm `resnet*`/`seresnet*`) strides the 3×3 conv. They have identical parameters
//! but v1.5 costs more MACs (ResNet-50: 4089.18 M vs 3857.97 M at 224²).

use crate::blocks::{conv_bn_act, squeeze_excitation, ConvCfg, Pn, SeCfg};
use crate::builder::{join, GraphBuilder};
use crate::error::ArchError;
use crate::graph::{Act, BlockKind, NodeId};

type R = Result<NodeId, ArchError>;

/// Where a strided bottleneck puts its stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrideAt {
    /// ResNet v1 / SENet paper: stride on the first 1×1 conv.
    First1x1,
    /// ResNet v1.5 (torchvision): stride on the 3×3 conv.
    Conv3x3,
}

/// Settings of one residual block.
#[derive(Debug, Clone, Copy)]
pub struct ResCfg {
    /// Width of the inner convolutions: the output channels of a basic block, the bottleneck
    /// width (`planes`) of a bottleneck.
    pub planes: usize,
    /// Output channels (`planes` for a basic block, `4·planes` for a ResNet bottleneck).
    pub cout: usize,
    pub stride: usize,
    /// Bottleneck only: which conv carries the stride.
    pub stride_at: StrideAt,
    pub se: Option<SeCfg>,
    /// Basic block only: apply the ReLU after the second BN *before* SE (timm `legacy_seresnet*`,
    /// Cadene's port of the SENet Caffe models); otherwise SE sees the BN output directly.
    pub act_before_se: bool,
    pub eps: f64,
    pub act: Act,
}

impl ResCfg {
    /// A basic block with `cout` channels (torchvision layout, no SE).
    pub fn basic(cout: usize, stride: usize) -> Self {
        ResCfg {
            planes: cout,
            cout,
            stride,
            stride_at: StrideAt::Conv3x3,
            se: None,
            act_before_se: false,
            eps: 1e-5,
            act: Act::Relu,
        }
    }
    /// A bottleneck of width `planes` and `4·planes` outputs (v1.5 stride placement, no SE).
    pub fn bottleneck(planes: usize, stride: usize) -> Self {
        ResCfg {
            planes,
            cout: 4 * planes,
            ..ResCfg::basic(planes, stride)
        }
    }
    pub fn stride_at(mut self, s: StrideAt) -> Self {
        self.stride_at = s;
        self
    }
    pub fn se(mut self, se: Option<SeCfg>) -> Self {
        self.se = se;
        self
    }
    pub fn act_before_se(mut self, on: bool) -> Self {
        self.act_before_se = on;
        self
    }
}

/// Names of the parameter nodes of a residual block (`conv3`/`bn3` are used by bottlenecks
/// only, `se_*` only with SE, `down_*` only when the block needs a projection shortcut).
#[derive(Debug, Clone, Default)]
pub struct ResNames {
    pub conv1: Pn,
    pub bn1: Pn,
    pub conv2: Pn,
    pub bn2: Pn,
    pub conv3: Pn,
    pub bn3: Pn,
    /// Path of the SE module (its pool/act/gate/scale nodes hang below it).
    pub se: String,
    pub se_fc1: Pn,
    pub se_fc2: Pn,
    pub down_conv: Pn,
    pub down_bn: Pn,
}

/// Whether a block from `cin` channels needs the 1×1 projection shortcut.
pub fn needs_projection(cin: usize, cfg: &ResCfg) -> bool {
    cfg.stride != 1 || cin != cfg.cout
}

/// SE (optional) → projection shortcut (optional) → add → activation. The shortcut is built after
/// the residual branch so that graph order follows the checkpoint order of torchvision and timm
/// (`downsample` is registered last in their blocks).
fn finish(
    g: &mut GraphBuilder,
    x: NodeId,
    mut y: NodeId,
    block: &str,
    cfg: &ResCfg,
    n: &ResNames,
    bottleneck: bool,
) -> R {
    let mut se_info = None;
    if let Some(se) = cfg.se {
        let (z, info) = squeeze_excitation(g, y, &n.se, se, &n.se_fc1, &n.se_fc2)?;
        (y, se_info) = (z, Some(info));
    }
    let cin = g.shape(x).c;
    let projection = needs_projection(cin, cfg);
    g.set_block_kind(BlockKind::Residual {
        cin,
        planes: cfg.planes,
        cout: cfg.cout,
        stride: cfg.stride,
        bottleneck,
        projection,
        se: se_info,
    });
    let shortcut = if projection {
        conv_bn_act(
            g,
            x,
            &n.down_conv,
            &n.down_bn,
            ConvCfg::new(cfg.cout, 1, cfg.stride),
            cfg.eps,
            None,
        )?
    } else {
        x
    };
    let y = g.add(y, shortcut, &join(block, "add"))?;
    Ok(g.act(y, &join(block, cfg.act.name()), cfg.act))
}

/// ResNet basic block: 3×3 conv (stride) → BN → ReLU → 3×3 conv → BN [→ ReLU] [→ SE] → + shortcut
/// → ReLU. `cfg.planes` is ignored (the inner width is `cfg.cout`).
pub fn basic_block(g: &mut GraphBuilder, x: NodeId, block: &str, cfg: ResCfg, n: &ResNames) -> R {
    g.begin_block(block, BlockKind::Plain);
    let y = conv_bn_act(
        g,
        x,
        &n.conv1,
        &n.bn1,
        ConvCfg::new(cfg.cout, 3, cfg.stride),
        cfg.eps,
        Some(cfg.act),
    )?;
    let inner_act = if cfg.act_before_se && cfg.se.is_some() {
        Some(cfg.act)
    } else {
        None
    };
    let y = conv_bn_act(
        g,
        y,
        &n.conv2,
        &n.bn2,
        ConvCfg::new(cfg.cout, 3, 1),
        cfg.eps,
        inner_act,
    )?;
    finish(g, x, y, block, &cfg, n, false)
}

/// ResNet bottleneck: 1×1 conv → BN → ReLU → 3×3 conv → BN → ReLU → 1×1 conv → BN [→ SE] →
/// + shortcut → ReLU, the stride on the first 1×1 (v1) or on the 3×3 (v1.5).
pub fn bottleneck(g: &mut GraphBuilder, x: NodeId, block: &str, cfg: ResCfg, n: &ResNames) -> R {
    g.begin_block(block, BlockKind::Plain);
    let (s1, s3) = match cfg.stride_at {
        StrideAt::First1x1 => (cfg.stride, 1),
        StrideAt::Conv3x3 => (1, cfg.stride),
    };
    let y = conv_bn_act(
        g,
        x,
        &n.conv1,
        &n.bn1,
        ConvCfg::new(cfg.planes, 1, s1),
        cfg.eps,
        Some(cfg.act),
    )?;
    let y = conv_bn_act(
        g,
        y,
        &n.conv2,
        &n.bn2,
        ConvCfg::new(cfg.planes, 3, s3),
        cfg.eps,
        Some(cfg.act),
    )?;
    let y = conv_bn_act(
        g,
        y,
        &n.conv3,
        &n.bn3,
        ConvCfg::new(cfg.cout, 1, 1),
        cfg.eps,
        None,
    )?;
    finish(g, x, y, block, &cfg, n, true)
}
