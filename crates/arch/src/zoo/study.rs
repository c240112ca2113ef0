//! The curriculum's small study networks (CIFAR-native, 32×32, 10 classes by default).
//!
//! `plain_cnn`: a VGG-style net of 3×3 conv-BN-ReLU layers in four stages of two convolutions,
//! 16-16 | 32-32 | 64-64 | 128-128 channels on 32², 16², 8² and 4² maps (2×2 max-pool between
//! stages), global average pool and a linear classifier: 295,290 params and 13.42 M MACs at
//! 32×32 with 10 classes. It is sized so that 15 epochs of CIFAR-10 train well within an hour on
//! a 2-core CPU (the curriculum's target: ≥ 80 % test accuracy; the README has the measured run).
//! `--width 2` gives the wider 32…256 variant (1,175,786 params, 52.79 M MACs).
//!
//! `dwsep_cnn` (Exercise 1.6): the same widths, depth and pooling with every 3×3 conv except the
//! first replaced by a depthwise-separable conv (3×3 depthwise-BN-ReLU → 1×1 pointwise-BN-ReLU,
//! [`depthwise_separable`]). A replaced layer with M inputs and N outputs costs
//! `1/N + 1/9` of the standard conv's MACs and weights: 39,066 params and 2.23 M MACs in all.
//!
//! `--width` scales every layer's channels (rounded, at least 1). Both nets are CIFAR-native: the
//! default resolution is 32 and the default class count 10 whatever the profile, and
//! `Options::profile` is ignored (no ImageNet variant). Canonical names only:
//! `blocks.{stage}.{layer}.{conv,bn}` (plain) or `.{conv_dw,bn1,conv_pw,bn2}` (separable),
//! `blocks.{stage}.pool`, `classifier`.

use crate::blocks::{conv_bn_act, depthwise_separable, ConvCfg, Pn};
use crate::builder::{join, GraphBuilder};
use crate::error::ArchError;
use crate::graph::BlockKind;
use crate::graph::{Act, Graph, ModelMeta, Profile, Shape};
use crate::zoo::cifar_resnet::{CIFAR10_MEAN, CIFAR10_STD};
use crate::zoo::{Entry, Options};

/// Channels of each stage at width 1.0.
pub const WIDTHS: [usize; 4] = [16, 32, 64, 128];
/// 3×3 convolutions per stage.
pub const CONVS_PER_STAGE: usize = 2;

pub fn entries() -> Vec<Entry> {
    vec![
        Entry {
            name: "plain_cnn",
            family: "Study",
            paper: "effcnn curriculum: a VGG-style baseline (Simonyan & Zisserman 2015, with BN)",
            reported: None,
            cifar_native: true,
            build: |o| build(false, o),
            has_width: true,
        },
        Entry {
            name: "dwsep_cnn",
            family: "Study",
            paper: "effcnn curriculum, Exercise 1.6: plain_cnn with depthwise-separable convs (Howard et al. 2017)",
            reported: None,
            cifar_native: true,
            build: |o| build(true, o),
            has_width: true,
        },
    ]
}

/// Resolve `plain_cnn` (`separable = false`) or `dwsep_cnn`.
pub fn build(separable: bool, o: &Options) -> Result<Graph, ArchError> {
    let width = o.width.unwrap_or(1.0);
    let res = o.resolution.unwrap_or(32);
    let classes = o.classes.unwrap_or(10);
    let eps = 1e-5;
    let relu = Act::Relu;
    let name = if separable { "dwsep_cnn" } else { "plain_cnn" };

    let (mut g, mut y) = GraphBuilder::new(Shape::new(3, res, res));
    for (stage, &base) in WIDTHS.iter().enumerate() {
        let c = ((base as f64 * width).round() as usize).max(1);
        for layer in 0..CONVS_PER_STAGE {
            let block = format!("blocks.{stage}.{layer}");
            let p = |role: &str| Pn::new(join(&block, role), vec![]);
            y = if separable && (stage, layer) != (0, 0) {
                depthwise_separable(
                    &mut g,
                    y,
                    &block,
                    c,
                    3,
                    1,
                    relu,
                    eps,
                    &p("conv_dw"),
                    &p("bn1"),
                    &p("conv_pw"),
                    &p("bn2"),
                )?
            } else {
                g.begin_block(&block, BlockKind::Plain);
                conv_bn_act(
                    &mut g,
                    y,
                    &p("conv"),
                    &p("bn"),
                    ConvCfg::new(c, 3, 1),
                    eps,
                    Some(relu),
                )?
            };
        }
        if stage + 1 < WIDTHS.len() {
            y = g.max_pool(y, &format!("blocks.{stage}.pool"), 2, 2, 0)?;
        }
    }
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
            ..ModelMeta::torchvision(name, "Study", Profile::Cifar, width, res, classes)
        },
        y,
    )
}
