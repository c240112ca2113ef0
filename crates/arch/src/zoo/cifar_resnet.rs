//! He et al.'s CIFAR ResNets (2016, §4.2) and their SE twins: CIFAR-native networks.
//!
//! Architecture: 3×3 conv (16) → BN → ReLU → three stages of `n` basic blocks with 16, 32 and 64
//! channels on 32×32, 16×16 and 8×8 maps (the first block of stages 2 and 3 has stride 2) →
//! global average pool → FC; depth 6n + 2 (`resnet20`: n = 3, `resnet56`: n = 9).
//!
//! Shortcut: where the shape changes, a 1×1 conv (stride 2) + BN projection (the paper's option B,
//! as chenyaofo/pytorch-cifar-models does), not the paper's parameter-free option A (strided
//! identity zero-padded to more channels). Only option B reproduces chenyaofo's published costs:
//! `resnet20` 272,474 params / 40.81 M MACs and `resnet56` 855,770 / 125.75 M (10 classes; option A
//! gives 269,722 / 40.55 M and 853,018 / 125.49 M). Their checkpoints use torchvision-style keys
//! (`conv1`, `layer1.0.conv1`, `layer2.0.downsample.0`, `fc`); the canonical paths here are
//! `conv_stem`, `bn1`, `blocks.{stage}.{unit}.{conv1,bn1,conv2,bn2}`, `….downsample.conv|bn`,
//! `classifier`.
//!
//! `se_resnet20`, `se_resnet56`: the same networks with an SE module (SENet's C/16 squeeze — 1, 2
//! and 4 units for 16, 32, 64 channels — ReLU, sigmoid) on the residual branch of every block,
//! after the second BN and before the addition (SENet Fig. 3).
//!
//! These are CIFAR-native: the default resolution is 32 and the default class count 10 whatever
//! the profile, and `Options::profile` is ignored (there is no ImageNet variant; the graph records
//! the CIFAR profile). The input normalization recorded is CIFAR-10's per-channel mean/std.

use crate::blocks::residual::StrideAt;
use crate::blocks::{conv_bn_act, ConvCfg, Pn};
use crate::error::ArchError;
use crate::graph::BlockKind;
use crate::graph::{Act, Graph, ModelMeta, Profile, Shape};
use crate::zoo::resnet::{residual_stages, Naming, ResNetSpec, ResidualKind, SE_SENET};
use crate::zoo::{Entry, Options, Reported};

/// CIFAR-10 training-set per-channel mean and std (in [0,1] units), as used by the CIFAR ports.
pub const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
pub const CIFAR10_STD: [f32; 3] = [0.2023, 0.1994, 0.2010];

const PLANES: &[usize] = &[16, 32, 64];
const STRIDES: &[usize] = &[1, 2, 2];

/// Blocks per stage of a named entry (n of depth 6n + 2) and whether it has SE.
fn variant(name: &str) -> Option<(&'static [usize], bool)> {
    Some(match name {
        "resnet20" => (&[3, 3, 3], false),
        "resnet56" => (&[9, 9, 9], false),
        "se_resnet20" => (&[3, 3, 3], true),
        "se_resnet56" => (&[9, 9, 9], true),
        _ => return None,
    })
}

const PAPER: &str = "He et al. 2016, Deep Residual Learning for Image Recognition (§4.2, CIFAR-10)";
const SE_PAPER: &str =
    "Hu et al. 2018, Squeeze-and-Excitation Networks (SE on He et al.'s CIFAR ResNet)";
const SOURCE: &str = "CIFAR-10 test top-1, chenyaofo/pytorch-cifar-models";

pub fn entries() -> Vec<Entry> {
    type Build = fn(&Options) -> Result<Graph, ArchError>;
    let e = |name: &'static str, reported: Option<f64>, build: Build| {
        let se = variant(name).map(|v| v.1).unwrap_or(false);
        Entry {
            name,
            family: if se {
                "SE-ResNet (CIFAR)"
            } else {
                "ResNet (CIFAR)"
            },
            paper: if se { SE_PAPER } else { PAPER },
            reported: reported.map(|top1| Reported {
                top1,
                source: SOURCE,
            }),
            cifar_native: true,
            build,
            has_width: false,
        }
    };
    vec![
        e("resnet20", Some(92.60), |o| build("resnet20", o)),
        e("resnet56", Some(94.37), |o| build("resnet56", o)),
        e("se_resnet20", None, |o| build("se_resnet20", o)),
        e("se_resnet56", None, |o| build("se_resnet56", o)),
    ]
}

pub fn build(name: &'static str, o: &Options) -> Result<Graph, ArchError> {
    let (layers, se) = variant(name)
        .ok_or_else(|| ArchError::BadOption(format!("unknown CIFAR ResNet {name}")))?;
    let res = o.resolution.unwrap_or(32);
    let classes = o.classes.unwrap_or(10);
    let eps = 1e-5;
    let family = if se {
        "SE-ResNet (CIFAR)"
    } else {
        "ResNet (CIFAR)"
    };
    let spec = ResNetSpec {
        name,
        family,
        block: ResidualKind::Basic,
        layers,
        planes: PLANES,
        strides: STRIDES,
        stride_at: StrideAt::Conv3x3,
        se: se.then_some(SE_SENET),
        act_before_se: false,
        naming: Naming::Canonical,
    };

    let (mut g, x) = crate::builder::GraphBuilder::new(Shape::new(3, res, res));
    g.begin_block("stem", BlockKind::Stem);
    let mut y = conv_bn_act(
        &mut g,
        x,
        &Pn::new("conv_stem", vec![]),
        &Pn::new("bn1", vec![]),
        ConvCfg::new(PLANES[0], 3, 1),
        eps,
        Some(Act::Relu),
    )?;
    y = residual_stages(&mut g, y, &spec)?;
    g.begin_block("head", BlockKind::Head);
    y = g.global_avg_pool(y, "global_pool");
    y = g.flatten(y, "flatten");
    if let Some(p) = o.dropout.filter(|p| *p > 0.0) {
        y = g.dropout(y, "dropout", p);
    }
    y = g.linear(y, "classifier", classes, true, vec![])?;

    g.finish(
        ModelMeta {
            norm_mean: CIFAR10_MEAN,
            norm_std: CIFAR10_STD,
            ..ModelMeta::torchvision(name, family, Profile::Cifar, 1.0, res, classes)
        },
        y,
    )
}
