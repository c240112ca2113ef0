//! EfficientNet-B0…B7 (Tan & Le, 2019) and EfficientNet-Lite0.
//!
//! **B0…B7** follow torchvision `efficientnet_b0` … `efficientnet_b7` (layout and checkpoint
//! names): stem `features.0.{0,1}`; stage s block i is `features.{s+1}.{i}.block.K`, K counting
//! the block's sub-modules (expand conv-BN-SiLU when the expansion ratio is not 1, depthwise
//! conv-BN-SiLU, SE `fc1`/`fc2`, projection conv-BN); head conv `features.8.{0,1}`;
//! `classifier.1`. BatchNorm eps 1e-5 (torchvision's EfficientNet-V1 default), SiLU everywhere,
//! SE width `max(1, ⌊block input / 4⌋)` with SiLU inside and a sigmoid gate, residual when stride 1
//! and input width = output width, stochastic depth (`DropPath`, identity in eval) rising
//! linearly from 0 to 0.2 over the blocks (block j of N: 0.2·j/N). timm `efficientnet_b*` names
//! are derived too and are also the canonical paths: `conv_stem`, `bn1`,
//! `blocks.S.I.{conv_pw, bn1, conv_dw, bn2, se.conv_reduce, se.conv_expand, conv_pwl, bn3}`
//! (expansion-1 blocks: `conv_dw, bn1, se.*, conv_pw, bn2`), `conv_head`, `bn2`, `classifier`.
//!
//! Compound scaling from the B0 table with the released (width, depth, resolution, dropout):
//! B0 (1.0, 1.0, 224, 0.2), B1 (1.0, 1.1, 240, 0.2), B2 (1.1, 1.2, 260, 0.3), B3 (1.2, 1.4, 300,
//! 0.3), B4 (1.4, 1.8, 380, 0.4), B5 (1.6, 2.2, 456, 0.4), B6 (1.8, 2.6, 528, 0.5),
//! B7 (2.0, 3.1, 600, 0.5). Repeats per stage are `⌈n · depth⌉`, widths `make_divisible(c · width,
//! 8)`, the head conv is 4× the last stage's width. `--width` and `--depth` *multiply* the
//! variant's coefficients (1.0 = as released) and are recorded as given in [`ModelMeta`].
//!
//! **Lite0** (`efficientnet_lite0`): the B0 table without SE, ReLU6 instead of SiLU, stem (32) and
//! head (1280) never scaled, TensorFlow "SAME" padding (asymmetric for stride 2), BatchNorm eps
//! 1e-3, dropout 0.2, no width/depth multipliers. Names: timm `tf_efficientnet_lite0` (also the
//! canonical paths) and lukemelas/EfficientNet-PyTorch, which the released Lite0 checkpoint uses:
//! `_conv_stem`, `_bn0`, `_blocks.N.{_expand_conv, _bn0, _depthwise_conv, _bn1, _project_conv,
//! _bn2}` (N counts blocks over all stages), `_conv_head`, `_bn1`, `_fc`. Its weights expect
//! `(x − 127/255) / (128/255)` input normalization.
//!
//! CIFAR profile (all entries): the stem conv has stride 1 and the first block of stage 1 (the
//! 16→24 stage, `blocks.1.0`) has stride 1, so a 32×32 input reaches the head at 4×4 (three
//! stride-2 stages remain: 32 → 16 → 8 → 4).

use crate::blocks::{
    conv_bn_act, divisible8, inverted_residual, ConvCfg, IrCfg, IrNames, Pn, SeCfg, SeWidth,
};
use crate::builder::{join, names, GraphBuilder};
use crate::error::ArchError;
use crate::graph::{Act, Graph, ModelMeta, Profile, Shape};
use crate::graph::{BlockKind, InitScheme};
use crate::zoo::{Entry, Options, Reported, IMAGENET_MEAN, IMAGENET_STD, TF127_MEAN, TF127_STD};

/// The B0 baseline (paper Table 1): expansion t, kernel k, first stride s, input width, output
/// width, repeats n.
#[rustfmt::skip]
pub const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    // t, k, s, in,  out, n
    (1, 3, 1,  32,  16, 1),
    (6, 3, 2,  16,  24, 2),
    (6, 5, 2,  24,  40, 2),
    (6, 3, 2,  40,  80, 3),
    (6, 5, 1,  80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
];

/// Final stochastic-depth probability (torchvision `stochastic_depth_prob`, lukemelas
/// `drop_connect_rate`).
pub const STOCHASTIC_DEPTH: f64 = 0.2;

/// A released compound-scaled variant.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    pub name: &'static str,
    pub width: f64,
    pub depth: f64,
    pub resolution: usize,
    pub dropout: f64,
    /// torchvision IMAGENET1K_V1 top-1 (%).
    pub top1: f64,
}

const fn v(
    name: &'static str,
    width: f64,
    depth: f64,
    resolution: usize,
    dropout: f64,
    top1: f64,
) -> Variant {
    Variant {
        name,
        width,
        depth,
        resolution,
        dropout,
        top1,
    }
}

#[rustfmt::skip]
pub const VARIANTS: [Variant; 8] = [
    v("efficientnet_b0", 1.0, 1.0, 224, 0.2, 77.692),
    v("efficientnet_b1", 1.0, 1.1, 240, 0.2, 78.642),
    v("efficientnet_b2", 1.1, 1.2, 260, 0.3, 80.608),
    v("efficientnet_b3", 1.2, 1.4, 300, 0.3, 82.008),
    v("efficientnet_b4", 1.4, 1.8, 380, 0.4, 83.384),
    v("efficientnet_b5", 1.6, 2.2, 456, 0.4, 83.444),
    v("efficientnet_b6", 1.8, 2.6, 528, 0.5, 84.008),
    v("efficientnet_b7", 2.0, 3.1, 600, 0.5, 84.122),
];

const PAPER: &str =
    "Tan & Le 2019, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks";

type Build = fn(&Options) -> Result<Graph, ArchError>;

pub fn entries() -> Vec<Entry> {
    let builds: [Build; 8] = [
        |o| build_variant(o, &VARIANTS[0]),
        |o| build_variant(o, &VARIANTS[1]),
        |o| build_variant(o, &VARIANTS[2]),
        |o| build_variant(o, &VARIANTS[3]),
        |o| build_variant(o, &VARIANTS[4]),
        |o| build_variant(o, &VARIANTS[5]),
        |o| build_variant(o, &VARIANTS[6]),
        |o| build_variant(o, &VARIANTS[7]),
    ];
    let mut v: Vec<Entry> = VARIANTS
        .iter()
        .zip(builds)
        .map(|(var, build)| Entry {
            name: var.name,
            family: "EfficientNet",
            paper: PAPER,
            reported: Some(Reported {
                top1: var.top1,
                source: "torchvision IMAGENET1K_V1",
            }),
            cifar_native: false,
            build,
            has_width: true,
        })
        .collect();
    v.push(Entry {
        name: "efficientnet_lite0",
        family: "EfficientNet",
        paper: "EfficientNet-Lite (TensorFlow TPU models, 2020): EfficientNet-B0 without SE, with ReLU6 and a fixed stem/head",
        reported: Some(Reported {
            top1: 75.1,
            source: "TensorFlow EfficientNet-Lite release (float)",
        }),
        cifar_native: false,
        build: build_lite0,
        has_width: false,
    });
    v
}

/// Everything that differs between the torchvision B-series and Lite.
struct Spec<'a> {
    name: &'a str,
    /// Effective width and depth coefficients.
    width: f64,
    depth: f64,
    /// Multipliers as the user gave them (recorded in the meta).
    meta_width: f64,
    meta_depth: f64,
    resolution: usize,
    dropout: f64,
    lite: bool,
}

/// `efficientnet_b0` … `efficientnet_b7`.
pub fn build_variant(o: &Options, var: &Variant) -> Result<Graph, ArchError> {
    let mw = o.width.unwrap_or(1.0);
    let md = o.depth.unwrap_or(1.0);
    build(
        o,
        &Spec {
            name: var.name,
            width: var.width * mw,
            depth: var.depth * md,
            meta_width: mw,
            meta_depth: md,
            resolution: var.resolution,
            dropout: var.dropout,
            lite: false,
        },
    )
}

/// `efficientnet_lite0`.
pub fn build_lite0(o: &Options) -> Result<Graph, ArchError> {
    if o.depth.is_some_and(|d| (d - 1.0).abs() > 1e-12) {
        return Err(ArchError::BadOption(
            "efficientnet_lite0 has a fixed depth; use efficientnet_b* for --depth".into(),
        ));
    }
    build(
        o,
        &Spec {
            name: "efficientnet_lite0",
            width: 1.0,
            depth: 1.0,
            meta_width: 1.0,
            meta_depth: 1.0,
            resolution: 224,
            dropout: 0.2,
            lite: true,
        },
    )
}

fn build(o: &Options, spec: &Spec) -> Result<Graph, ArchError> {
    let res = o.resolution_or(spec.resolution);
    let classes = o.classes_or_default();
    let cifar = o.profile == Profile::Cifar;
    let lite = spec.lite;
    let (eps, act) = if lite {
        (1e-3, Act::Relu6)
    } else {
        (1e-5, Act::Silu)
    };
    let adjust = |c: usize| divisible8(c as f64 * spec.width);
    // Parameter node: canonical = timm name; torchvision name for the B-series, lukemelas for Lite.
    let pn = |timm: String, tv: Option<String>, luke: Option<String>| {
        let (tv, luke) = if lite { (None, luke) } else { (tv, None) };
        Pn::new(timm.clone(), names(tv, Some(timm), luke))
    };

    let (mut g, x) = GraphBuilder::new(Shape::new(3, res, res));
    g.begin_block("stem", BlockKind::Stem);
    let stem_c = if lite { 32 } else { adjust(STAGES[0].3) };
    let mut y = conv_bn_act(
        &mut g,
        x,
        &pn(
            "conv_stem".into(),
            Some("features.0.0".into()),
            Some("_conv_stem".into()),
        ),
        &pn(
            "bn1".into(),
            Some("features.0.1".into()),
            Some("_bn0".into()),
        ),
        ConvCfg::new(stem_c, 3, if cifar { 1 } else { 2 }).same(lite),
        eps,
        Some(act),
    )?;

    let repeats: Vec<usize> = STAGES
        .iter()
        .map(|s| (s.5 as f64 * spec.depth).ceil() as usize)
        .collect();
    let total: usize = repeats.iter().sum();
    let mut flat = 0; // block index over all stages (stochastic depth, lukemelas `_blocks.N`)
    for (stage, &(t, k, s, _, c, _)) in STAGES.iter().enumerate() {
        let cout = adjust(c);
        for i in 0..repeats[stage] {
            let stride = if i > 0 || (cifar && stage == 1) { 1 } else { s };
            let block = format!("blocks.{stage}.{i}");
            let cin = g.shape(y).c;
            let mid = divisible8((cin * t) as f64);
            let expand = mid != cin;
            let tv = format!("features.{}.{i}.block", stage + 1);
            let luke = format!("_blocks.{flat}");
            let mut kk = 0;
            let mut next = || {
                kk += 1;
                format!("{tv}.{}", kk - 1)
            };
            let c = |s: &str| join(&block, s);
            let l = |s: &str| Some(join(&luke, s));
            let mut ir = IrNames::default();
            if expand {
                let m = next();
                ir.conv_pw = pn(c("conv_pw"), Some(format!("{m}.0")), l("_expand_conv"));
                ir.bn1 = pn(c("bn1"), Some(format!("{m}.1")), l("_bn0"));
            }
            let (dw_bn, pw, pw_bn) = if expand {
                ("bn2", "conv_pwl", "bn3")
            } else {
                ("bn1", "conv_pw", "bn2")
            };
            let m = next();
            ir.conv_dw = pn(c("conv_dw"), Some(format!("{m}.0")), l("_depthwise_conv"));
            ir.bn2 = pn(c(dw_bn), Some(format!("{m}.1")), l("_bn1"));
            let se = if lite {
                None
            } else {
                let m = next();
                ir.se = c("se");
                ir.se_fc1 = pn(c("se.conv_reduce"), Some(format!("{m}.fc1")), None);
                ir.se_fc2 = pn(c("se.conv_expand"), Some(format!("{m}.fc2")), None);
                Some(SeCfg {
                    width: SeWidth::OfBlockInput {
                        ratio: 0.25,
                        block_in: cin,
                    },
                    inner: Act::Silu,
                    gate: Act::Sigmoid,
                })
            };
            let m = next();
            ir.conv_pwl = pn(c(pw), Some(format!("{m}.0")), l("_project_conv"));
            ir.bn3 = pn(c(pw_bn), Some(format!("{m}.1")), l("_bn2"));
            let cfg = IrCfg {
                mid,
                cout,
                k,
                stride,
                expand,
                act,
                se,
                eps,
                tf_same: lite,
                drop_path: STOCHASTIC_DEPTH * flat as f64 / total as f64,
                residual: true,
            };
            y = inverted_residual(&mut g, y, &block, cfg, &ir)?;
            flat += 1;
        }
    }

    g.begin_block("head", BlockKind::Head);
    let head_c = if lite { 1280 } else { 4 * g.shape(y).c };
    let tv_head = format!("features.{}", STAGES.len() + 1);
    y = conv_bn_act(
        &mut g,
        y,
        &pn(
            "conv_head".into(),
            Some(format!("{tv_head}.0")),
            Some("_conv_head".into()),
        ),
        &pn(
            "bn2".into(),
            Some(format!("{tv_head}.1")),
            Some("_bn1".into()),
        ),
        ConvCfg::new(head_c, 1, 1).same(lite),
        eps,
        Some(act),
    )?;
    y = g.global_avg_pool(y, "global_pool");
    y = g.flatten(y, "flatten");
    y = g.dropout(y, "dropout", o.dropout.unwrap_or(spec.dropout));
    let fc = pn(
        "classifier".into(),
        Some("classifier.1".into()),
        Some("_fc".into()),
    );
    y = g.linear(y, &fc.path, classes, true, fc.names)?;

    let (norm_mean, norm_std) = if lite {
        (TF127_MEAN, TF127_STD)
    } else {
        (IMAGENET_MEAN, IMAGENET_STD)
    };
    g.finish(
        ModelMeta {
            name: spec.name.into(),
            family: "EfficientNet".into(),
            profile: o.profile,
            width: spec.meta_width,
            depth: spec.meta_depth,
            resolution: res,
            classes,
            norm_mean,
            norm_std,
            init: InitScheme::EfficientNet,
        },
        y,
    )
}
