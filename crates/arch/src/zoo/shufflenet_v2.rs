//! ShuffleNetV2 (Ma et al., 2018): channel split, equal-width branches, concat and channel shuffle.
//!
//! Architecture (paper Table 5, torchvision `shufflenet_v2_x*`): 3×3/2 conv (24) → BN → ReLU →
//! 3×3/2 max-pool → stages 2–4 of 4/8/4 units (the first of each with stride 2) → 1×1 conv
//! (1024, or 2048 at 2.0×) → BN → ReLU → global average pool → FC. Stage widths: 0.5× 48/96/192,
//! 1.0× 116/232/464, 1.5× 176/352/704, 2.0× 244/488/976. Units: [`shufflenet_v2_unit`].
//!
//! torchvision names are derived for every parameter node (`conv1.0`, `stage2.0.branch1.0`,
//! `stage2.1.branch2.3`, …, `conv5.0`, `fc`); timm has no ShuffleNetV2. Canonical paths name the
//! roles: `blocks.{stage}.{unit}.branch_proj.*` (torchvision `branch1`) and
//! `blocks.{stage}.{unit}.branch_main.*` (`branch2`).
//!
//! CIFAR profile (as chenyaofo/pytorch-cifar-models' `cifar10_shufflenetv2_*`): the stem conv has
//! stride 1 and the max-pool is removed, so a 32×32 input enters stage 2 at 32×32 and reaches the
//! head at 4×4 (1.0×: 1,263,854 params and 45.00 M MACs with 10 classes).

use crate::blocks::shuffle::{shufflenet_v2_unit, ShuffleV2Names};
use crate::blocks::{conv_bn_act, ConvCfg, Pn};
use crate::builder::{join, names, GraphBuilder};
use crate::error::ArchError;
use crate::graph::BlockKind;
use crate::graph::{Act, Graph, ModelMeta, Profile, Shape};
use crate::zoo::{Entry, Options, Reported};

/// Units per stage (stages 2, 3, 4).
pub const REPEATS: [usize; 3] = [4, 8, 4];

/// torchvision's `stages_out_channels` per variant: stem, stage 2, 3, 4, head conv.
pub fn stage_channels(name: &str) -> Option<[usize; 5]> {
    Some(match name {
        "shufflenet_v2_x0_5" => [24, 48, 96, 192, 1024],
        "shufflenet_v2_x1_0" => [24, 116, 232, 464, 1024],
        "shufflenet_v2_x1_5" => [24, 176, 352, 704, 1024],
        "shufflenet_v2_x2_0" => [24, 244, 488, 976, 2048],
        _ => return None,
    })
}

const PAPER: &str =
    "Ma et al. 2018, ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design";

pub fn entries() -> Vec<Entry> {
    let e =
        |name: &'static str, top1: f64, build: fn(&Options) -> Result<Graph, ArchError>| Entry {
            name,
            family: "ShuffleNetV2",
            paper: PAPER,
            reported: Some(Reported {
                top1,
                source: "torchvision IMAGENET1K_V1",
            }),
            cifar_native: false,
            build,
            has_width: false,
        };
    vec![
        e("shufflenet_v2_x0_5", 60.552, |o| {
            build("shufflenet_v2_x0_5", 0.5, o)
        }),
        e("shufflenet_v2_x1_0", 69.362, |o| {
            build("shufflenet_v2_x1_0", 1.0, o)
        }),
        e("shufflenet_v2_x1_5", 72.996, |o| {
            build("shufflenet_v2_x1_5", 1.5, o)
        }),
        e("shufflenet_v2_x2_0", 76.230, |o| {
            build("shufflenet_v2_x2_0", 2.0, o)
        }),
    ]
}

fn tv(s: String) -> crate::builder::Names {
    names(Some(s), None, None)
}

pub fn build(name: &str, width: f64, o: &Options) -> Result<Graph, ArchError> {
    let ch = stage_channels(name)
        .ok_or_else(|| ArchError::BadOption(format!("unknown ShuffleNetV2 variant {name}")))?;
    let res = o.resolution_or(224);
    let classes = o.classes_or_default();
    let cifar = o.profile == Profile::Cifar;
    let eps = 1e-5;

    let (mut g, x) = GraphBuilder::new(Shape::new(3, res, res));
    g.begin_block("stem", BlockKind::Stem);
    let mut y = conv_bn_act(
        &mut g,
        x,
        &Pn::new("conv_stem", tv("conv1.0".into())),
        &Pn::new("bn1", tv("conv1.1".into())),
        ConvCfg::new(ch[0], 3, if cifar { 1 } else { 2 }),
        eps,
        Some(Act::Relu),
    )?;
    if !cifar {
        y = g.max_pool(y, "maxpool", 3, 2, 1)?;
    }

    for (stage, &n) in REPEATS.iter().enumerate() {
        let cout = ch[stage + 1];
        for i in 0..n {
            let block = format!("blocks.{stage}.{i}");
            let t = format!("stage{}.{i}", stage + 2);
            let p = |role: &str, tv_name: String| Pn::new(join(&block, role), tv(tv_name));
            let names = ShuffleV2Names {
                proj_dw: p("branch_proj.conv_dw", format!("{t}.branch1.0")),
                proj_bn1: p("branch_proj.bn1", format!("{t}.branch1.1")),
                proj_pw: p("branch_proj.conv_pw", format!("{t}.branch1.2")),
                proj_bn2: p("branch_proj.bn2", format!("{t}.branch1.3")),
                main_pw: p("branch_main.conv_pw", format!("{t}.branch2.0")),
                main_bn1: p("branch_main.bn1", format!("{t}.branch2.1")),
                main_dw: p("branch_main.conv_dw", format!("{t}.branch2.3")),
                main_bn2: p("branch_main.bn2", format!("{t}.branch2.4")),
                main_pwl: p("branch_main.conv_pwl", format!("{t}.branch2.5")),
                main_bn3: p("branch_main.bn3", format!("{t}.branch2.6")),
            };
            let stride = if i == 0 { 2 } else { 1 };
            y = shufflenet_v2_unit(&mut g, y, &block, cout, stride, eps, &names)?;
        }
    }

    g.begin_block("head", BlockKind::Head);
    y = conv_bn_act(
        &mut g,
        y,
        &Pn::new("conv_head", tv("conv5.0".into())),
        &Pn::new("bn2", tv("conv5.1".into())),
        ConvCfg::new(ch[4], 1, 1),
        eps,
        Some(Act::Relu),
    )?;
    y = g.global_avg_pool(y, "global_pool");
    y = g.flatten(y, "flatten");
    if let Some(p) = o.dropout.filter(|p| *p > 0.0) {
        y = g.dropout(y, "dropout", p);
    }
    y = g.linear(y, "classifier", classes, true, tv("fc".into()))?;

    g.finish(
        ModelMeta::torchvision(name, "ShuffleNetV2", o.profile, width, res, classes),
        y,
    )
}
