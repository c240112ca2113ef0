//! MobileNetV2 (Sandler et al., 2018): inverted residuals with linear bottlenecks.
//!
//! torchvision `mobilenet_v2` and timm `mobilenetv2_*` names are derived here. CIFAR profile (as in
//! the well-known CIFAR ports, kuangliu/pytorch-cifar and chenyaofo/pytorch-cifar-models): the stem
//! conv has stride 1 and the second stage (24 channels) stride 1 instead of 2, so a 32×32 input
//! reaches the head at 4×4.

use crate::blocks::{conv_bn_act, divisible8, inverted_residual, ConvCfg, IrCfg, IrNames, Pn};
use crate::builder::{join, names, GraphBuilder};
use crate::error::ArchError;
use crate::graph::BlockKind;
use crate::graph::{Act, Graph, ModelMeta, Profile, Shape};
use crate::zoo::{Entry, Options, Reported};

/// The paper's Table 2 rows: expansion t, output channels c, repeats n, first stride s.
#[rustfmt::skip]
pub const SETTINGS: [(usize, usize, usize, usize); 7] = [
    // t,   c,  n, s
    (1,  16, 1, 1),
    (6,  24, 2, 2),
    (6,  32, 3, 2),
    (6,  64, 4, 2),
    (6,  96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

pub fn entries() -> Vec<Entry> {
    vec![Entry {
        name: "mobilenet_v2",
        family: "MobileNetV2",
        paper: "Sandler et al. 2018, MobileNetV2: Inverted Residuals and Linear Bottlenecks",
        reported: Some(Reported {
            top1: 71.878,
            source: "torchvision IMAGENET1K_V1",
        }),
        cifar_native: false,
        build,
        has_width: true,
    }]
}

pub fn build(o: &Options) -> Result<Graph, ArchError> {
    let width = o.width.unwrap_or(1.0);
    let res = o.resolution_or(224);
    let classes = o.classes_or_default();
    let cifar = o.profile == Profile::Cifar;
    let eps = 1e-5;
    let act = Act::Relu6;

    let (mut g, x) = GraphBuilder::new(Shape::new(3, res, res));
    g.begin_block("stem", BlockKind::Stem);
    let stem_c = divisible8(32.0 * width);
    let stem_stride = if cifar { 1 } else { 2 };
    let mut y = conv_bn_act(
        &mut g,
        x,
        &Pn::new(
            "conv_stem",
            names(Some("features.0.0".into()), Some("conv_stem".into()), None),
        ),
        &Pn::new(
            "bn1",
            names(Some("features.0.1".into()), Some("bn1".into()), None),
        ),
        ConvCfg::new(stem_c, 3, stem_stride),
        eps,
        Some(act),
    )?;

    let mut feature = 1; // torchvision `features.N` index
    for (stage, &(t, c, n, s)) in SETTINGS.iter().enumerate() {
        let cout = divisible8(c as f64 * width);
        for i in 0..n {
            let stride = if i > 0 || (cifar && stage == 1) { 1 } else { s };
            let block = format!("blocks.{stage}.{i}");
            let cin = g.shape(y).c;
            let mid = cin * t;
            let tv = format!("features.{feature}.conv");
            let p = |canon: &str, tv_name: String| {
                Pn::new(
                    join(&block, canon),
                    names(Some(tv_name), Some(join(&block, canon)), None),
                )
            };
            let n = if t == 1 {
                // timm DepthwiseSeparableConv: conv_dw, bn1, conv_pw, bn2.
                IrNames {
                    conv_dw: p("conv_dw", format!("{tv}.0.0")),
                    bn2: p("bn1", format!("{tv}.0.1")),
                    conv_pwl: p("conv_pw", format!("{tv}.1")),
                    bn3: p("bn2", format!("{tv}.2")),
                    ..Default::default()
                }
            } else {
                IrNames {
                    conv_pw: p("conv_pw", format!("{tv}.0.0")),
                    bn1: p("bn1", format!("{tv}.0.1")),
                    conv_dw: p("conv_dw", format!("{tv}.1.0")),
                    bn2: p("bn2", format!("{tv}.1.1")),
                    conv_pwl: p("conv_pwl", format!("{tv}.2")),
                    bn3: p("bn3", format!("{tv}.3")),
                    ..Default::default()
                }
            };
            let cfg = IrCfg {
                mid,
                cout,
                k: 3,
                stride,
                expand: t != 1,
                act,
                se: None,
                eps,
                tf_same: false,
                drop_path: 0.0,
                residual: true,
            };
            y = inverted_residual(&mut g, y, &block, cfg, &n)?;
            feature += 1;
        }
    }

    g.begin_block("head", BlockKind::Head);
    let last = divisible8(1280.0 * width.max(1.0));
    y = conv_bn_act(
        &mut g,
        y,
        &Pn::new(
            "conv_head",
            names(
                Some(format!("features.{feature}.0")),
                Some("conv_head".into()),
                None,
            ),
        ),
        &Pn::new(
            "bn2",
            names(
                Some(format!("features.{feature}.1")),
                Some("bn2".into()),
                None,
            ),
        ),
        ConvCfg::new(last, 1, 1),
        eps,
        Some(act),
    )?;
    y = g.global_avg_pool(y, "global_pool");
    y = g.flatten(y, "flatten");
    y = g.dropout(y, "dropout", o.dropout.unwrap_or(0.2));
    y = g.linear(
        y,
        "classifier",
        classes,
        true,
        names(Some("classifier.1".into()), Some("classifier".into()), None),
    )?;

    g.finish(
        ModelMeta::torchvision(
            "mobilenet_v2",
            "MobileNetV2",
            o.profile,
            width,
            res,
            classes,
        ),
        y,
    )
}
