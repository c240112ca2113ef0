//! ResNet (He et al., 2016) and SE-ResNet (Hu et al., 2018): the reference point the efficient
//! families are compared against.
//!
//! Architecture: 7×7/2 conv (64) → BN → ReLU → 3×3/2 max-pool → four stages (64, 128, 256, 512
//! planes; the first unit of stages 3–5 strided) of basic blocks (ResNet-18: 2-2-2-2, -34: 3-4-6-3)
//! or bottlenecks (ResNet-50: 3-4-6-3, expansion 4) → global average pool → FC. Blocks:
//! [`basic_block`] and [`bottleneck`], 1×1 conv + BN projection shortcuts where the shape changes.
//!
//! Entries and their checkpoint layouts:
//! - `resnet18|34|50`: torchvision ResNet (v1.5: bottleneck stride on the 3×3 conv); torchvision
//!   and timm `resnet*` names (`conv1`, `layer1.0.conv1`, `layer2.0.downsample.0`, `fc`), which
//!   are the same.
//! - `resnet50_v1`: the original ResNet-50 (stride on the first 1×1 of a bottleneck; 3857.97 M
//!   MACs vs 4089.18 M, same parameters). Canonical names only: torchvision/timm weights are v1.5.
//! - `se_resnet18|34|50`: timm `seresnet*`: the v1.5 layout with an SE module (`se.fc1`, `se.fc2`)
//!   after the last BN of each block, width make_divisible(C/16, 8) ([`SeWidth::TimmSeModule`]).
//! - `legacy_se_resnet18|34|50`: the SENet paper's models (timm `legacy_seresnet*`, Cadene's port
//!   of the Caffe weights): SE width C/16, bottleneck stride on the first 1×1, basic blocks apply
//!   their second ReLU before SE; timm names `layer0.conv1`, `layer0.bn1`, `layer1.0.conv1`, …,
//!   `layer1.0.se_module.fc1`, `layer2.0.downsample.0`, `last_linear`; dropout 0.2 before the
//!   classifier (timm's default). The stem max-pool (`pool0`) is timm's: 3×3/2 with no padding
//!   and `ceil_mode=True` (`Op::MaxPool { ceil_mode: true, .. }`), not torchvision's padding 1.
//!   The two give the same size at 224² (112² → 56²) but different windows, and different sizes
//!   where the stem output is odd (65² input: 33² → 16², where padding 1 would give 17²).
//!
//! Canonical paths: `conv_stem`, `bn1`, `blocks.{stage}.{unit}.{conv1,bn1,conv2,bn2,conv3,bn3}`,
//! `….se.fc1|fc2`, `….downsample.conv|bn`, `classifier`.
//!
//! CIFAR profile (as kuangliu/pytorch-cifar's ResNet18): the stem is a 3×3 stride-1 conv (64) with
//! BN and ReLU and no max-pool, so a 32×32 input runs stage 2 at 32×32 and reaches the head at 4×4
//! (ResNet-18 with 10 classes: 11,173,962 params, 555.42 M MACs).

use crate::blocks::residual::{basic_block, bottleneck, ResCfg, ResNames, StrideAt};
use crate::blocks::{conv_bn_act, ConvCfg, Pn, SeCfg, SeWidth};
use crate::builder::{join, names, GraphBuilder, Names};
use crate::error::ArchError;
use crate::graph::BlockKind;
use crate::graph::{Act, Graph, ModelMeta, NodeId, Profile, Shape};
use crate::zoo::{Entry, Options, Reported};

/// Which residual block a network stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResidualKind {
    Basic,
    /// Bottleneck with expansion 4.
    Bottleneck,
}

/// Whose checkpoint names the graph carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// Canonical paths only.
    Canonical,
    /// torchvision `resnet*` (identical to timm `resnet*`).
    Torchvision,
    /// timm `seresnet*`.
    TimmSe,
    /// timm `legacy_seresnet*` (SENet).
    TimmLegacy,
}

/// Everything that distinguishes one residual network from another.
#[derive(Debug, Clone, Copy)]
pub struct ResNetSpec {
    pub name: &'static str,
    pub family: &'static str,
    pub block: ResidualKind,
    /// Blocks per stage.
    pub layers: &'static [usize],
    /// Planes per stage (block width; bottleneck outputs are 4×).
    pub planes: &'static [usize],
    /// Stride of the first block of each stage.
    pub strides: &'static [usize],
    pub stride_at: StrideAt,
    pub se: Option<SeCfg>,
    pub act_before_se: bool,
    pub naming: Naming,
}

/// Foreign names of one module path (relative to the model root) under a naming.
fn foreign(naming: Naming, path: &str) -> Names {
    match naming {
        Naming::Canonical => vec![],
        Naming::Torchvision => names(Some(path.to_string()), Some(path.to_string()), None),
        Naming::TimmSe | Naming::TimmLegacy => names(None, Some(path.to_string()), None),
    }
}

/// Parameter-node names of block `unit` of stage `stage` (0-based; torchvision `layer{stage+1}`).
pub fn block_names(naming: Naming, stage: usize, unit: usize) -> ResNames {
    let block = format!("blocks.{stage}.{unit}");
    let foreign_block = format!("layer{}.{unit}", stage + 1);
    let se_name = if naming == Naming::TimmLegacy {
        "se_module"
    } else {
        "se"
    };
    let p = |canon: &str, theirs: &str| {
        Pn::new(
            join(&block, canon),
            foreign(naming, &join(&foreign_block, theirs)),
        )
    };
    ResNames {
        conv1: p("conv1", "conv1"),
        bn1: p("bn1", "bn1"),
        conv2: p("conv2", "conv2"),
        bn2: p("bn2", "bn2"),
        conv3: p("conv3", "conv3"),
        bn3: p("bn3", "bn3"),
        se: join(&block, "se"),
        se_fc1: p("se.fc1", &format!("{se_name}.fc1")),
        se_fc2: p("se.fc2", &format!("{se_name}.fc2")),
        down_conv: p("downsample.conv", "downsample.0"),
        down_bn: p("downsample.bn", "downsample.1"),
    }
}

/// Stack the residual stages of `spec` on `x`.
pub fn residual_stages(
    g: &mut GraphBuilder,
    mut y: NodeId,
    spec: &ResNetSpec,
) -> Result<NodeId, ArchError> {
    for (stage, (&n, (&planes, &stride))) in spec
        .layers
        .iter()
        .zip(spec.planes.iter().zip(spec.strides.iter()))
        .enumerate()
    {
        for unit in 0..n {
            let block = format!("blocks.{stage}.{unit}");
            let s = if unit == 0 { stride } else { 1 };
            let names = block_names(spec.naming, stage, unit);
            let cfg = match spec.block {
                ResidualKind::Basic => ResCfg::basic(planes, s),
                ResidualKind::Bottleneck => ResCfg::bottleneck(planes, s),
            }
            .stride_at(spec.stride_at)
            .se(spec.se)
            .act_before_se(spec.act_before_se);
            y = match spec.block {
                ResidualKind::Basic => basic_block(g, y, &block, cfg, &names)?,
                ResidualKind::Bottleneck => bottleneck(g, y, &block, cfg, &names)?,
            };
        }
    }
    Ok(y)
}

const PLANES: &[usize] = &[64, 128, 256, 512];
const STRIDES: &[usize] = &[1, 2, 2, 2];
const L18: &[usize] = &[2, 2, 2, 2];
const L34: &[usize] = &[3, 4, 6, 3];

/// SENet's SE: C/16, ReLU, sigmoid.
pub const SE_SENET: SeCfg = SeCfg {
    width: SeWidth::Ratio(16),
    inner: Act::Relu,
    gate: Act::Sigmoid,
};
/// timm SEModule: make_divisible(C/16, 8, round_limit 0), ReLU, sigmoid.
pub const SE_TIMM: SeCfg = SeCfg {
    width: SeWidth::TimmSeModule { ratio: 1.0 / 16.0 },
    inner: Act::Relu,
    gate: Act::Sigmoid,
};

/// The spec of a named ImageNet ResNet entry.
pub fn spec(name: &str) -> Option<ResNetSpec> {
    let plain = |name, block, layers| ResNetSpec {
        name,
        family: "ResNet",
        block,
        layers,
        planes: PLANES,
        strides: STRIDES,
        stride_at: StrideAt::Conv3x3,
        se: None,
        act_before_se: false,
        naming: Naming::Torchvision,
    };
    let timm_se = |name, block, layers| ResNetSpec {
        family: "SE-ResNet",
        se: Some(SE_TIMM),
        naming: Naming::TimmSe,
        ..plain(name, block, layers)
    };
    let legacy = |name, block, layers| ResNetSpec {
        family: "SE-ResNet",
        se: Some(SE_SENET),
        stride_at: StrideAt::First1x1,
        act_before_se: true,
        naming: Naming::TimmLegacy,
        ..plain(name, block, layers)
    };
    use ResidualKind::{Basic, Bottleneck};
    Some(match name {
        "resnet18" => plain("resnet18", Basic, L18),
        "resnet34" => plain("resnet34", Basic, L34),
        "resnet50" => plain("resnet50", Bottleneck, L34),
        "resnet50_v1" => ResNetSpec {
            stride_at: StrideAt::First1x1,
            naming: Naming::Canonical,
            ..plain("resnet50_v1", Bottleneck, L34)
        },
        "se_resnet18" => timm_se("se_resnet18", Basic, L18),
        "se_resnet34" => timm_se("se_resnet34", Basic, L34),
        "se_resnet50" => timm_se("se_resnet50", Bottleneck, L34),
        "legacy_se_resnet18" => legacy("legacy_se_resnet18", Basic, L18),
        "legacy_se_resnet34" => legacy("legacy_se_resnet34", Basic, L34),
        "legacy_se_resnet50" => legacy("legacy_se_resnet50", Bottleneck, L34),
        _ => return None,
    })
}

const RESNET_PAPER: &str = "He et al. 2016, Deep Residual Learning for Image Recognition";
const SENET_PAPER: &str = "Hu et al. 2018, Squeeze-and-Excitation Networks";

pub fn entries() -> Vec<Entry> {
    type Build = fn(&Options) -> Result<Graph, ArchError>;
    let e = |name: &'static str, reported: Option<Reported>, build: Build| {
        let s = spec(name).expect("every entry has a spec");
        Entry {
            name,
            family: s.family,
            paper: if s.se.is_some() {
                SENET_PAPER
            } else {
                RESNET_PAPER
            },
            reported,
            cifar_native: false,
            build,
            has_width: false,
        }
    };
    let tv = |top1| {
        Some(Reported {
            top1,
            source: "torchvision IMAGENET1K_V1",
        })
    };
    vec![
        e("resnet18", tv(69.758), |o| build("resnet18", o)),
        e("resnet34", tv(73.314), |o| build("resnet34", o)),
        e("resnet50", tv(76.130), |o| build("resnet50", o)),
        e("resnet50_v1", None, |o| build("resnet50_v1", o)),
        e("se_resnet18", None, |o| build("se_resnet18", o)),
        e("se_resnet34", None, |o| build("se_resnet34", o)),
        e("se_resnet50", None, |o| build("se_resnet50", o)),
        e("legacy_se_resnet18", None, |o| {
            build("legacy_se_resnet18", o)
        }),
        e("legacy_se_resnet34", None, |o| {
            build("legacy_se_resnet34", o)
        }),
        e(
            "legacy_se_resnet50",
            Some(Reported {
                top1: 76.71,
                source: "Hu et al. 2018, Table 2 (100 − 23.29 top-1 error)",
            }),
            |o| build("legacy_se_resnet50", o),
        ),
    ]
}

pub fn build(name: &str, o: &Options) -> Result<Graph, ArchError> {
    let spec = spec(name).ok_or_else(|| ArchError::BadOption(format!("unknown ResNet {name}")))?;
    let res = o.resolution_or(224);
    let classes = o.classes_or_default();
    let cifar = o.profile == Profile::Cifar;
    let legacy = spec.naming == Naming::TimmLegacy;
    let eps = 1e-5;

    let (mut g, x) = GraphBuilder::new(Shape::new(3, res, res));
    g.begin_block("stem", BlockKind::Stem);
    let (stem_conv, stem_bn) = if legacy {
        ("layer0.conv1", "layer0.bn1")
    } else {
        ("conv1", "bn1")
    };
    let stem = if cifar {
        ConvCfg::new(64, 3, 1)
    } else {
        ConvCfg::new(64, 7, 2)
    };
    let mut y = conv_bn_act(
        &mut g,
        x,
        &Pn::new("conv_stem", foreign(spec.naming, stem_conv)),
        &Pn::new("bn1", foreign(spec.naming, stem_bn)),
        stem,
        eps,
        Some(Act::Relu),
    )?;
    if !cifar {
        y = if legacy {
            // timm's `pool0`: MaxPool2d(3, stride=2, ceil_mode=True), no padding.
            g.max_pool_with(y, "maxpool", 3, 2, 0, true)?
        } else {
            g.max_pool(y, "maxpool", 3, 2, 1)?
        };
    }

    y = residual_stages(&mut g, y, &spec)?;

    g.begin_block("head", BlockKind::Head);
    y = g.global_avg_pool(y, "global_pool");
    y = g.flatten(y, "flatten");
    let dropout = o.dropout.or(if legacy { Some(0.2) } else { None });
    if let Some(p) = dropout.filter(|p| *p > 0.0) {
        y = g.dropout(y, "dropout", p);
    }
    let fc = if legacy { "last_linear" } else { "fc" };
    y = g.linear(y, "classifier", classes, true, foreign(spec.naming, fc))?;

    g.finish(
        ModelMeta::torchvision(name, spec.family, o.profile, 1.0, res, classes),
        y,
    )
}
