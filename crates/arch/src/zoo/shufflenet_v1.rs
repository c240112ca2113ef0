//! ShuffleNetV1 (Zhang et al., 2018): pointwise group convolutions and channel shuffle.
//!
//! Architecture (paper Table 1): 3×3/2 conv (24) → BN → ReLU → 3×3/2 max-pool → stages 2–4 of
//! 4/8/4 [`shufflenet_v1_unit`]s (the first of each with stride 2: a 3×3/2 average-pool shortcut
//! concatenated with a branch of `out − in` channels) → global average pool → FC (no bias, as in
//! megvii's released code). Stage widths at 1.0×: g=1 144/288/576, g=2 200/400/800,
//! g=3 240/480/960, g=4 272/544/1088, g=8 384/768/1536; the bottleneck is a quarter of the unit's
//! output width, and the first pointwise conv of stage 2 is not grouped (its input has only 24
//! channels). The shuffle follows the first pointwise conv-BN-ReLU (paper Fig. 2).
//!
//! Width `s` (`--width`, 0.25–2.0 in the paper) scales the stage widths, rounded to the nearest
//! multiple of 4·g (at least 4·g) so that the bottleneck and both grouped convolutions divide
//! evenly: this reproduces every width of the paper and of megvii's released 0.5×/1.5×/2.0× models
//! (g=3: 120/240/480, 360/720/1440, 480/960/1920). The stem keeps 24 channels at every width.
//!
//! There is no torchvision or timm ShuffleNetV1, so only canonical names exist:
//! `conv_stem`, `bn1`, `blocks.{stage}.{unit}.{conv_pw,bn1,conv_dw,bn2,conv_pwl,bn3}`, `classifier`.
//!
//! CIFAR profile (as kuangliu/pytorch-cifar's ShuffleNet): the stem conv has stride 1 and the
//! max-pool is removed, so a 32×32 input enters stage 2 at 32×32 and reaches the head at 4×4.

use crate::blocks::shuffle::{shufflenet_v1_unit, ShuffleV1Cfg, ShuffleV1Names};
use crate::blocks::{conv_bn_act, ConvCfg, Pn};
use crate::builder::{join, GraphBuilder};
use crate::error::ArchError;
use crate::graph::BlockKind;
use crate::graph::{Act, Graph, ModelMeta, Profile, Shape};
use crate::zoo::{Entry, Options, Reported};

/// Units per stage (stages 2, 3, 4).
pub const REPEATS: [usize; 3] = [4, 8, 4];
/// Stem (conv1) channels.
pub const STEM: usize = 24;

/// Paper Table 1: output widths of stages 2, 3, 4 at 1.0× for a group count.
pub fn base_widths(groups: usize) -> Option<[usize; 3]> {
    Some(match groups {
        1 => [144, 288, 576],
        2 => [200, 400, 800],
        3 => [240, 480, 960],
        4 => [272, 544, 1088],
        8 => [384, 768, 1536],
        _ => return None,
    })
}

/// Stage widths at width multiplier `s`: round(base·s / 4g)·4g, at least 4g.
pub fn widths(groups: usize, s: f64) -> Option<[usize; 3]> {
    let q = 4 * groups;
    base_widths(groups)
        .map(|b| b.map(|w| (((w as f64 * s) / q as f64).round() as usize).max(1) * q))
}

const PAPER: &str =
    "Zhang et al. 2018, ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices";
const SOURCE: &str = "Zhang et al. 2018, Table 2 (1.0×, 100 − top-1 error)";

pub fn entries() -> Vec<Entry> {
    let e =
        |name: &'static str, top1: f64, build: fn(&Options) -> Result<Graph, ArchError>| Entry {
            name,
            family: "ShuffleNetV1",
            paper: PAPER,
            reported: Some(Reported {
                top1,
                source: SOURCE,
            }),
            cifar_native: false,
            build,
            has_width: true,
        };
    vec![
        e("shufflenet_v1_g1", 66.4, |o| build(1, o)),
        e("shufflenet_v1_g2", 67.3, |o| build(2, o)),
        e("shufflenet_v1_g3", 67.4, |o| build(3, o)),
        e("shufflenet_v1_g4", 67.2, |o| build(4, o)),
        e("shufflenet_v1_g8", 67.6, |o| build(8, o)),
    ]
}

pub fn build(groups: usize, o: &Options) -> Result<Graph, ArchError> {
    let width = o.width.unwrap_or(1.0);
    let ws = widths(groups, width).ok_or_else(|| {
        ArchError::BadOption(format!(
            "ShuffleNetV1 has no {groups}-group variant (1, 2, 3, 4, 8)"
        ))
    })?;
    let res = o.resolution_or(224);
    let classes = o.classes_or_default();
    let cifar = o.profile == Profile::Cifar;
    let eps = 1e-5;

    let (mut g, x) = GraphBuilder::new(Shape::new(3, res, res));
    g.begin_block("stem", BlockKind::Stem);
    let mut y = conv_bn_act(
        &mut g,
        x,
        &Pn::new("conv_stem", vec![]),
        &Pn::new("bn1", vec![]),
        ConvCfg::new(STEM, 3, if cifar { 1 } else { 2 }),
        eps,
        Some(Act::Relu),
    )?;
    if !cifar {
        y = g.max_pool(y, "maxpool", 3, 2, 1)?;
    }

    for (stage, (&n, &cout)) in REPEATS.iter().zip(ws.iter()).enumerate() {
        for i in 0..n {
            let block = format!("blocks.{stage}.{i}");
            let p = |role: &str| Pn::new(join(&block, role), vec![]);
            let names = ShuffleV1Names {
                conv_pw: p("conv_pw"),
                bn1: p("bn1"),
                conv_dw: p("conv_dw"),
                bn2: p("bn2"),
                conv_pwl: p("conv_pwl"),
                bn3: p("bn3"),
            };
            let cfg = ShuffleV1Cfg {
                cout,
                mid: cout / 4,
                groups,
                first_groups: if stage == 0 && i == 0 { 1 } else { groups },
                stride: if i == 0 { 2 } else { 1 },
                eps,
            };
            y = shufflenet_v1_unit(&mut g, y, &block, cfg, &names)?;
        }
    }

    g.begin_block("head", BlockKind::Head);
    y = g.global_avg_pool(y, "global_pool");
    y = g.flatten(y, "flatten");
    if let Some(p) = o.dropout.filter(|p| *p > 0.0) {
        y = g.dropout(y, "dropout", p);
    }
    y = g.linear(y, "classifier", classes, false, vec![])?;

    g.finish(
        ModelMeta::torchvision(
            format!("shufflenet_v1_g{groups}"),
            "ShuffleNetV1",
            o.profile,
            width,
            res,
            classes,
        ),
        y,
    )
}
