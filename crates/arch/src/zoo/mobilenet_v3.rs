//! MobileNetV3-Large and -Small (Howard et al., 2019): MBConv blocks with optional
//! squeeze-and-excitation, ReLU in the early blocks and hard-swish later, a 1×1 conv to 6× the last
//! block width, then global pooling and a two-layer classifier (Linear → hard-swish → dropout →
//! Linear).
//!
//! Layout and checkpoint names follow torchvision `mobilenet_v3_large` / `mobilenet_v3_small`:
//! stem `features.0.{0,1}`; block n is `features.n.block.K` where K counts the block's sub-modules
//! (expand conv-BN-act if the expanded width differs from the input, depthwise conv-BN-act, SE
//! `fc1`/`fc2`, projection conv-BN); the last 1×1 conv is `features.L.{0,1}`; the classifier
//! Linears are `classifier.0` and `classifier.3`. BatchNorm eps 0.001. SE width is
//! `make_divisible(expanded / 4, 8)` with ReLU inside and a hard-sigmoid gate; residual when
//! stride 1 and input width = output width.
//!
//! Width multiplier (`--width`, torchvision `width_mult`): every input, expanded and output width
//! and the classifier's hidden width (1280 / 1024) become `make_divisible(c·width, 8)`; the last
//! conv is 6× the last block's width.
//!
//! Canonical (effcnn) paths use timm's `mobilenetv3_*` stage grouping and names: `conv_stem`,
//! `bn1`, `blocks.S.I.{conv_pw, bn1, conv_dw, bn2, se.conv_reduce, se.conv_expand, conv_pwl, bn3}`
//! (blocks without an expand conv: `conv_dw, bn1, se.*, conv_pw, bn2`), the last 1×1 conv
//! `blocks.S.0.{conv, bn1}`, then `head_fc` (the 960→1280 / 576→1024 Linear) and `classifier`.
//!
//! CIFAR profile: the stem conv has stride 1 and the first stride-2 block of the body has stride 1
//! (Large: `blocks.1.0`, the 16→24 block; Small: `blocks.0.0`, the 16→16 SE block), so a 32×32
//! input reaches the last conv at 4×4 (three stride-2 blocks remain: 32 → 16 → 8 → 4).

use crate::blocks::{
    conv_bn_act, divisible8, inverted_residual, ConvCfg, IrCfg, IrNames, Pn, SeCfg, SeWidth,
};
use crate::builder::{join, names, GraphBuilder};
use crate::error::ArchError;
use crate::graph::BlockKind;
use crate::graph::{Act, Graph, ModelMeta, Profile, Shape};
use crate::zoo::{Entry, Options, Reported};

/// One row of the paper's Tables 1 and 2 (torchvision's `InvertedResidualConfig`).
#[derive(Debug, Clone, Copy)]
pub struct Bneck {
    /// Kernel size of the depthwise conv.
    pub k: usize,
    /// Expanded (hidden) width.
    pub exp: usize,
    /// Output width.
    pub out: usize,
    pub se: bool,
    /// Hard-swish (true) or ReLU (false).
    pub hs: bool,
    pub stride: usize,
    /// timm stage index (canonical path grouping).
    pub stage: usize,
}

const fn b(
    k: usize,
    exp: usize,
    out: usize,
    se: bool,
    hs: bool,
    stride: usize,
    stage: usize,
) -> Bneck {
    Bneck {
        k,
        exp,
        out,
        se,
        hs,
        stride,
        stage,
    }
}

/// MobileNetV3-Large (paper Table 1); stem 16, last conv 960, classifier hidden 1280.
#[rustfmt::skip]
pub const LARGE: [Bneck; 15] = [
    //  k  exp  out   SE     HS    s  stage
    b(3,  16,  16, false, false, 1, 0),
    b(3,  64,  24, false, false, 2, 1),
    b(3,  72,  24, false, false, 1, 1),
    b(5,  72,  40, true,  false, 2, 2),
    b(5, 120,  40, true,  false, 1, 2),
    b(5, 120,  40, true,  false, 1, 2),
    b(3, 240,  80, false, true,  2, 3),
    b(3, 200,  80, false, true,  1, 3),
    b(3, 184,  80, false, true,  1, 3),
    b(3, 184,  80, false, true,  1, 3),
    b(3, 480, 112, true,  true,  1, 4),
    b(3, 672, 112, true,  true,  1, 4),
    b(5, 672, 160, true,  true,  2, 5),
    b(5, 960, 160, true,  true,  1, 5),
    b(5, 960, 160, true,  true,  1, 5),
];

/// MobileNetV3-Small (paper Table 2); stem 16, last conv 576, classifier hidden 1024.
#[rustfmt::skip]
pub const SMALL: [Bneck; 11] = [
    //  k  exp  out   SE     HS    s  stage
    b(3,  16,  16, true,  false, 2, 0),
    b(3,  72,  24, false, false, 2, 1),
    b(3,  88,  24, false, false, 1, 1),
    b(5,  96,  40, true,  true,  2, 2),
    b(5, 240,  40, true,  true,  1, 2),
    b(5, 240,  40, true,  true,  1, 2),
    b(5, 120,  48, true,  true,  1, 3),
    b(5, 144,  48, true,  true,  1, 3),
    b(5, 288,  96, true,  true,  2, 4),
    b(5, 576,  96, true,  true,  1, 4),
    b(5, 576,  96, true,  true,  1, 4),
];

const PAPER: &str = "Howard et al. 2019, Searching for MobileNetV3";

pub fn entries() -> Vec<Entry> {
    vec![
        Entry {
            name: "mobilenet_v3_large",
            family: "MobileNetV3",
            paper: PAPER,
            reported: Some(Reported {
                top1: 74.042,
                source: "torchvision IMAGENET1K_V1",
            }),
            cifar_native: false,
            build: build_large,
            has_width: true,
        },
        Entry {
            name: "mobilenet_v3_small",
            family: "MobileNetV3",
            paper: PAPER,
            reported: Some(Reported {
                top1: 67.668,
                source: "torchvision IMAGENET1K_V1",
            }),
            cifar_native: false,
            build: build_small,
            has_width: true,
        },
    ]
}

pub fn build_large(o: &Options) -> Result<Graph, ArchError> {
    build(o, "mobilenet_v3_large", &LARGE, 1280)
}

pub fn build_small(o: &Options) -> Result<Graph, ArchError> {
    build(o, "mobilenet_v3_small", &SMALL, 1024)
}

fn build(o: &Options, name: &str, spec: &[Bneck], hidden: usize) -> Result<Graph, ArchError> {
    if o.depth.is_some_and(|d| (d - 1.0).abs() > 1e-12) {
        return Err(ArchError::BadOption(format!(
            "{name} has no depth multiplier (MobileNetV3 scales width and resolution only)"
        )));
    }
    let width = o.width.unwrap_or(1.0);
    let res = o.resolution_or(224);
    let classes = o.classes_or_default();
    let cifar = o.profile == Profile::Cifar;
    let eps = 1e-3;
    let adjust = |c: usize| divisible8(c as f64 * width);
    let se = SeCfg {
        width: SeWidth::Divisible { ratio: 0.25 },
        inner: Act::Relu,
        gate: Act::HardSigmoid,
    };
    // Canonical path + torchvision name.
    let pn = |canon: String, tv: String| Pn::new(canon, names(Some(tv), None, None));

    let (mut g, x) = GraphBuilder::new(Shape::new(3, res, res));
    g.begin_block("stem", BlockKind::Stem);
    let stem_stride = if cifar { 1 } else { 2 };
    let mut y = conv_bn_act(
        &mut g,
        x,
        &pn("conv_stem".into(), "features.0.0".into()),
        &pn("bn1".into(), "features.0.1".into()),
        ConvCfg::new(adjust(16), 3, stem_stride),
        eps,
        Some(Act::HardSwish),
    )?;

    // CIFAR: the first stride-2 block of the body runs at stride 1.
    let first_s2 = spec.iter().position(|r| r.stride == 2);
    let mut index_in_stage = 0;
    for (n, r) in spec.iter().enumerate() {
        if n > 0 && spec[n - 1].stage != r.stage {
            index_in_stage = 0;
        }
        let block = format!("blocks.{}.{index_in_stage}", r.stage);
        index_in_stage += 1;
        let stride = if cifar && Some(n) == first_s2 {
            1
        } else {
            r.stride
        };
        let cin = g.shape(y).c;
        let mid = adjust(r.exp);
        let expand = mid != cin;
        // torchvision numbers the block's sub-modules in order.
        let tv = format!("features.{}.block", n + 1);
        let mut k = 0;
        let mut next = || {
            k += 1;
            format!("{tv}.{}", k - 1)
        };
        let c = |s: &str| join(&block, s);
        let mut ir = IrNames::default();
        if expand {
            let t = next();
            ir.conv_pw = pn(c("conv_pw"), format!("{t}.0"));
            ir.bn1 = pn(c("bn1"), format!("{t}.1"));
        }
        let t = next();
        let (dw_bn, pw, pw_bn) = if expand {
            ("bn2", "conv_pwl", "bn3")
        } else {
            ("bn1", "conv_pw", "bn2")
        };
        ir.conv_dw = pn(c("conv_dw"), format!("{t}.0"));
        ir.bn2 = pn(c(dw_bn), format!("{t}.1"));
        if r.se {
            let t = next();
            ir.se = c("se");
            ir.se_fc1 = pn(c("se.conv_reduce"), format!("{t}.fc1"));
            ir.se_fc2 = pn(c("se.conv_expand"), format!("{t}.fc2"));
        }
        let t = next();
        ir.conv_pwl = pn(c(pw), format!("{t}.0"));
        ir.bn3 = pn(c(pw_bn), format!("{t}.1"));
        let cfg = IrCfg {
            mid,
            cout: adjust(r.out),
            k: r.k,
            stride,
            expand,
            act: if r.hs { Act::HardSwish } else { Act::Relu },
            se: r.se.then_some(se),
            eps,
            tf_same: false,
            drop_path: 0.0,
            residual: true,
        };
        y = inverted_residual(&mut g, y, &block, cfg, &ir)?;
    }

    let last_stage = spec.last().map_or(0, |r| r.stage) + 1;
    let last = format!("blocks.{last_stage}.0");
    g.begin_block(&last, BlockKind::Plain);
    let tv_last = format!("features.{}", spec.len() + 1);
    let last_c = 6 * g.shape(y).c;
    y = conv_bn_act(
        &mut g,
        y,
        &pn(join(&last, "conv"), format!("{tv_last}.0")),
        &pn(join(&last, "bn1"), format!("{tv_last}.1")),
        ConvCfg::new(last_c, 1, 1),
        eps,
        Some(Act::HardSwish),
    )?;

    g.begin_block("head", BlockKind::Head);
    y = g.global_avg_pool(y, "global_pool");
    y = g.flatten(y, "flatten");
    y = g.linear(
        y,
        "head_fc",
        adjust(hidden),
        true,
        names(Some("classifier.0".into()), None, None),
    )?;
    y = g.act(y, "head_fc.hardswish", Act::HardSwish);
    y = g.dropout(y, "dropout", o.dropout.unwrap_or(0.2));
    y = g.linear(
        y,
        "classifier",
        classes,
        true,
        names(Some("classifier.3".into()), None, None),
    )?;

    g.finish(
        ModelMeta::torchvision(name, "MobileNetV3", o.profile, width, res, classes),
        y,
    )
}
