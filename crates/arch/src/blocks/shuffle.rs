//! ShuffleNet units. Channel shuffle itself is a graph op ([`GraphBuilder::shuffle`]): reshape
//! (g, C/g) → transpose → flatten, 0 MACs.
//!
//! - [`shufflenet_v1_unit`] (Zhang et al. 2018, Fig. 2b/c): grouped 1×1 conv → BN → ReLU → channel
//!   shuffle → 3×3 depthwise conv (stride) → BN → grouped 1×1 conv → BN, then either `+ input` →
//!   ReLU (stride 1) or `concat(avg-pool 3×3/2 of the input, branch)` → ReLU (stride 2, the branch
//!   producing `out − in` channels).
//! - [`shufflenet_v2_unit`] (Ma et al. 2018, Fig. 3c/d, torchvision's `InvertedResidual`):
//!   stride 1 splits the channels in halves, keeps the first and runs the second through
//!   1×1-BN-ReLU → 3×3 DW-BN → 1×1-BN-ReLU; stride 2 runs a projection branch (3×3 DW/2-BN →
//!   1×1-BN-ReLU) and the main branch on the full input. Both concatenate and shuffle with 2 groups.

use crate::blocks::{conv_bn_act, ConvCfg, Pn};
use crate::builder::{join, GraphBuilder};
use crate::error::ArchError;
use crate::graph::{Act, BlockKind, NodeId};

type R = Result<NodeId, ArchError>;

/// Names of the parameter nodes of a ShuffleNetV1 unit.
#[derive(Debug, Clone, Default)]
pub struct ShuffleV1Names {
    /// Grouped 1×1 conv into the bottleneck.
    pub conv_pw: Pn,
    pub bn1: Pn,
    pub conv_dw: Pn,
    pub bn2: Pn,
    /// Grouped 1×1 conv out of the bottleneck (linear).
    pub conv_pwl: Pn,
    pub bn3: Pn,
}

/// Settings of a ShuffleNetV1 unit.
#[derive(Debug, Clone, Copy)]
pub struct ShuffleV1Cfg {
    /// Output channels of the unit (for stride 2, input + branch channels).
    pub cout: usize,
    /// Bottleneck channels (the paper: a quarter of the unit's output channels).
    pub mid: usize,
    /// Groups of the pointwise convolutions.
    pub groups: usize,
    /// Groups of the first pointwise conv (1 for the first unit of stage 2, whose input has few
    /// channels; `groups` elsewhere).
    pub first_groups: usize,
    pub stride: usize,
    pub eps: f64,
}

/// ShuffleNetV1 unit (see the module docs). The channel shuffle is skipped when `groups` is 1
/// (it would be the identity).
pub fn shufflenet_v1_unit(
    g: &mut GraphBuilder,
    x: NodeId,
    block: &str,
    cfg: ShuffleV1Cfg,
    n: &ShuffleV1Names,
) -> R {
    let cin = g.shape(x).c;
    g.begin_block(
        block,
        BlockKind::ShuffleV1 {
            cin,
            mid: cfg.mid,
            cout: cfg.cout,
            groups: cfg.groups,
            stride: cfg.stride,
        },
    );
    let branch_out = if cfg.stride == 1 {
        cfg.cout
    } else {
        if cfg.cout <= cin {
            return Err(ArchError::Invalid {
                path: n.conv_pwl.path.clone(),
                msg: format!(
                    "a stride-2 unit concatenates its input: {} output channels must exceed {} input channels",
                    cfg.cout, cin
                ),
            });
        }
        cfg.cout - cin
    };
    let relu = Act::Relu;
    let mut y = conv_bn_act(
        g,
        x,
        &n.conv_pw,
        &n.bn1,
        ConvCfg::new(cfg.mid, 1, 1).groups(cfg.first_groups),
        cfg.eps,
        Some(relu),
    )?;
    if cfg.groups > 1 {
        y = g.shuffle(y, &join(block, "shuffle"), cfg.groups)?;
    }
    y = conv_bn_act(
        g,
        y,
        &n.conv_dw,
        &n.bn2,
        ConvCfg::new(cfg.mid, 3, cfg.stride).groups(cfg.mid),
        cfg.eps,
        None,
    )?;
    y = conv_bn_act(
        g,
        y,
        &n.conv_pwl,
        &n.bn3,
        ConvCfg::new(branch_out, 1, 1).groups(cfg.groups),
        cfg.eps,
        None,
    )?;
    let y = if cfg.stride == 1 {
        g.add(y, x, &join(block, "add"))?
    } else {
        let s = g.avg_pool(x, &join(block, "shortcut_pool"), 3, cfg.stride, 1)?;
        g.concat(&[s, y], &join(block, "concat"))?
    };
    Ok(g.act(y, &join(block, relu.name()), relu))
}

/// Names of the parameter nodes of a ShuffleNetV2 unit. The `proj_*` nodes (torchvision
/// `branch1`) exist only in stride-2 units.
#[derive(Debug, Clone, Default)]
pub struct ShuffleV2Names {
    pub proj_dw: Pn,
    pub proj_bn1: Pn,
    pub proj_pw: Pn,
    pub proj_bn2: Pn,
    pub main_pw: Pn,
    pub main_bn1: Pn,
    pub main_dw: Pn,
    pub main_bn2: Pn,
    pub main_pwl: Pn,
    pub main_bn3: Pn,
}

/// ShuffleNetV2 unit with `cout` output channels (see the module docs). Stride 1 needs
/// `cin == cout` and an even channel count; each branch produces `cout / 2` channels.
pub fn shufflenet_v2_unit(
    g: &mut GraphBuilder,
    x: NodeId,
    block: &str,
    cout: usize,
    stride: usize,
    eps: f64,
    n: &ShuffleV2Names,
) -> R {
    let cin = g.shape(x).c;
    g.begin_block(block, BlockKind::ShuffleV2 { cin, cout, stride });
    let relu = Act::Relu;
    if cout % 2 != 0 {
        return Err(ArchError::Invalid {
            path: block.to_string(),
            msg: format!("{cout} output channels cannot be split into two equal branches"),
        });
    }
    let bf = cout / 2;
    if stride == 1 && cin != cout {
        return Err(ArchError::Invalid {
            path: block.to_string(),
            msg: format!("a stride-1 unit keeps its channels: input {cin} ≠ output {cout}"),
        });
    }
    let main = |g: &mut GraphBuilder, x: NodeId| -> R {
        let y = conv_bn_act(
            g,
            x,
            &n.main_pw,
            &n.main_bn1,
            ConvCfg::new(bf, 1, 1),
            eps,
            Some(relu),
        )?;
        let y = conv_bn_act(
            g,
            y,
            &n.main_dw,
            &n.main_bn2,
            ConvCfg::new(bf, 3, stride).groups(bf),
            eps,
            None,
        )?;
        conv_bn_act(
            g,
            y,
            &n.main_pwl,
            &n.main_bn3,
            ConvCfg::new(bf, 1, 1),
            eps,
            Some(relu),
        )
    };
    let y = if stride == 1 {
        let x1 = g.slice(x, &join(block, "split_keep"), 0, bf)?;
        let x2 = g.slice(x, &join(block, "split_main"), bf, bf)?;
        let b2 = main(g, x2)?;
        g.concat(&[x1, b2], &join(block, "concat"))?
    } else {
        // Projection branch first: torchvision registers `branch1` before `branch2`.
        let b1 = conv_bn_act(
            g,
            x,
            &n.proj_dw,
            &n.proj_bn1,
            ConvCfg::new(cin, 3, stride).groups(cin),
            eps,
            None,
        )?;
        let b1 = conv_bn_act(
            g,
            b1,
            &n.proj_pw,
            &n.proj_bn2,
            ConvCfg::new(bf, 1, 1),
            eps,
            Some(relu),
        )?;
        let b2 = main(g, x)?;
        g.concat(&[b1, b2], &join(block, "concat"))?
    };
    g.shuffle(y, &join(block, "shuffle"), 2)
}
