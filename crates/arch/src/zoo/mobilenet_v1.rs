//! MobileNetV1 (Howard et al., 2017): a 3×3 stem followed by 13 depthwise-separable blocks.
//!
//! Layout and names follow timm `mobilenetv1_100` (the canonical paths *are* the timm names):
//! `conv_stem`, `bn1`, `blocks.S.I.{conv_dw, bn1, conv_pw, bn2}`, `classifier`. Stage S groups the
//! blocks by output width (64, 128, 256, 512, 1024; repeats 1, 2, 2, 6, 2; stride 2 on the first
//! block of stages 1–4). BatchNorm eps 1e-5, ReLU6 after every BN, no head conv.
//!
//! Width multiplier α (`--width`, paper §4.2): every layer's channels are `make_divisible(c·α, 8)`,
//! as timm does (identical to the paper's `c·α` for α = 0.25, 0.5, 0.75, 1.0). Resolution (the
//! paper's ρ) is free: global average pooling makes the classifier size-independent.
//! The paper's named widths are `--width 0.75 / 0.5 / 0.25` (reported 68.4 / 63.7 / 50.6 % top-1).
//!
//! CIFAR profile: the stem conv has stride 1 and the first stride-2 of the body (`blocks.1.0`, the
//! 64→128 block) has stride 1, so a 32×32 input reaches the classifier at 4×4 (three stride-2
//! stages remain: 32 → 16 → 8 → 4), the same treatment as effcnn's MobileNetV2 CIFAR profile.

use crate::blocks::{conv_bn_act, depthwise_separable, divisible8, ConvCfg, Pn};
use crate::builder::{join, names, GraphBuilder};
use crate::error::ArchError;
use crate::graph::BlockKind;
use crate::graph::{Act, Graph, ModelMeta, Profile, Shape};
use crate::zoo::{Entry, Options, Reported};

/// timm's MobileNetV1 weights (`mobilenetv1_100.ra4_e3600_r224_in1k`) take mean = std = 0.5.
pub const MOBILENET_V1_MEAN: [f32; 3] = [0.5; 3];
pub const MOBILENET_V1_STD: [f32; 3] = [0.5; 3];

/// The paper's Table 1 body, grouped into stages: (output channels, repeats, first stride).
#[rustfmt::skip]
pub const STAGES: [(usize, usize, usize); 5] = [
    //  c, n, s
    (  64, 1, 1),
    ( 128, 2, 2),
    ( 256, 2, 2),
    ( 512, 6, 2),
    (1024, 2, 2),
];

const PAPER: &str = "Howard et al. 2017, MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications";

/// Paper top-1 (%, Table 6, 224×224) for the named widths 1.0, 0.75, 0.5, 0.25.
pub const REPORTED_TOP1: [(f64, f64); 4] = [(1.0, 70.6), (0.75, 68.4), (0.5, 63.7), (0.25, 50.6)];

pub fn entries() -> Vec<Entry> {
    vec![Entry {
        name: "mobilenet_v1",
        family: "MobileNetV1",
        paper: PAPER,
        reported: Some(Reported {
            top1: 70.6,
            source: "MobileNetV1 paper, Table 6 (1.0, 224×224)",
        }),
        cifar_native: false,
        build,
        has_width: true,
    }]
}

pub fn build(o: &Options) -> Result<Graph, ArchError> {
    let name = "mobilenet_v1";
    let width = o.width.unwrap_or(1.0);
    if o.depth.is_some_and(|d| (d - 1.0).abs() > 1e-12) {
        return Err(ArchError::BadOption(format!(
            "{name} has no depth multiplier (MobileNetV1 scales width and resolution only)"
        )));
    }
    let res = o.resolution_or(224);
    let classes = o.classes_or_default();
    let cifar = o.profile == Profile::Cifar;
    let eps = 1e-5;
    let act = Act::Relu6;
    // timm's names are the canonical paths.
    let pn = |path: String| Pn::new(path.clone(), names(None, Some(path), None));

    let (mut g, x) = GraphBuilder::new(Shape::new(3, res, res));
    g.begin_block("stem", BlockKind::Stem);
    let stem_stride = if cifar { 1 } else { 2 };
    let mut y = conv_bn_act(
        &mut g,
        x,
        &pn("conv_stem".into()),
        &pn("bn1".into()),
        ConvCfg::new(divisible8(32.0 * width), 3, stem_stride),
        eps,
        Some(act),
    )?;

    for (stage, &(c, n, s)) in STAGES.iter().enumerate() {
        let cout = divisible8(c as f64 * width);
        for i in 0..n {
            let stride = if i > 0 || (cifar && stage == 1) { 1 } else { s };
            let block = format!("blocks.{stage}.{i}");
            y = depthwise_separable(
                &mut g,
                y,
                &block,
                cout,
                3,
                stride,
                act,
                eps,
                &pn(join(&block, "conv_dw")),
                &pn(join(&block, "bn1")),
                &pn(join(&block, "conv_pw")),
                &pn(join(&block, "bn2")),
            )?;
        }
    }

    g.begin_block("head", BlockKind::Head);
    y = g.global_avg_pool(y, "global_pool");
    y = g.flatten(y, "flatten");
    y = g.dropout(y, "dropout", o.dropout.unwrap_or(0.2));
    y = g.linear(
        y,
        "classifier",
        classes,
        true,
        names(None, Some("classifier".into()), None),
    )?;

    g.finish(
        ModelMeta {
            norm_mean: MOBILENET_V1_MEAN,
            norm_std: MOBILENET_V1_STD,
            ..ModelMeta::torchvision(name, "MobileNetV1", o.profile, width, res, classes)
        },
        y,
    )
}
