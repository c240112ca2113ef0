//! The graph's typed blocks against the papers' architecture tables: block counts, strides,
//! expansion, shortcuts and SE placement, and the blocks' node ranges against the nodes.

use effcnn_arch::graph::{Block, BlockKind};
use effcnn_arch::{entries, resolve, Graph, Op, Options, Profile};

fn graph(name: &str) -> Graph {
    resolve(name, &Options::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn cifar(name: &str) -> Graph {
    let o = Options {
        profile: Profile::Cifar,
        ..Options::default()
    };
    resolve(name, &o).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The blocks between stem and head.
fn body(g: &Graph) -> Vec<&Block> {
    g.blocks
        .iter()
        .filter(|b| !matches!(b.kind, BlockKind::Stem | BlockKind::Head))
        .collect()
}

fn count(g: &Graph, f: impl Fn(&BlockKind) -> bool) -> usize {
    g.blocks.iter().filter(|b| f(&b.kind)).count()
}

#[test]
fn every_zoo_graph_is_partitioned_into_blocks_in_order_ending_with_the_head() {
    for e in entries() {
        for g in [graph(e.name), cifar(e.name)] {
            let name = &g.meta.name;
            assert!(g.blocks.len() >= 3, "{name}: {} blocks", g.blocks.len());
            assert_eq!(g.blocks[0].nodes.start, 1, "{name}");
            assert_eq!(g.blocks.last().unwrap().nodes.end, g.nodes.len(), "{name}");
            for w in g.blocks.windows(2) {
                assert_eq!(w[0].nodes.end, w[1].nodes.start, "{name}: {}", w[1].path);
            }
            for b in &g.blocks {
                assert!(g.nodes[b.nodes.clone()].iter().all(|n| n.block == b.path));
            }
            assert_eq!(g.blocks.last().unwrap().kind, BlockKind::Head, "{name}");
            // The zoo families open with a stem; the study nets (plain/dwsep CNN) start with
            // their first conv block.
            let stem = g.blocks.iter().position(|b| b.kind == BlockKind::Stem);
            assert!(stem.is_none_or(|i| i == 0), "{name}");
            assert_eq!(stem.is_none(), g.meta.family == "Study", "{name}");
            // SE modules sit inside their block and hold exactly the gate and scale nodes of it.
            for b in &g.blocks {
                if let Some(se) = b.kind.se() {
                    assert!(b.nodes.start <= se.nodes.start && se.nodes.end <= b.nodes.end);
                    let scale = &g.nodes[se.nodes.end - 1];
                    assert!(matches!(scale.op, Op::Scale), "{name} {}", scale.path);
                    assert_eq!(scale.shape.c, se.channels);
                    assert!(se.nodes.clone().all(|i| g.in_se(i)));
                }
            }
            let scales = g.nodes.iter().filter(|n| matches!(n.op, Op::Scale)).count();
            assert_eq!(scales, count(&g, |k| k.se().is_some()), "{name}");
        }
    }
}

#[test]
fn mobilenet_v1_is_thirteen_depthwise_separable_blocks() {
    // Howard et al. 2017, Table 1: 13 dw/pw pairs, four of them with stride 2 in the depthwise.
    let g = graph("mobilenet_v1");
    let b = body(&g);
    assert_eq!(b.len(), 13);
    let strides: Vec<usize> = b
        .iter()
        .map(|b| match b.kind {
            BlockKind::DepthwiseSeparable { k: 3, stride, .. } => stride,
            ref k => panic!("{}: {k:?}", b.path),
        })
        .collect();
    assert_eq!(strides.iter().filter(|&&s| s == 2).count(), 4);
    assert!(matches!(
        b.last().unwrap().kind,
        BlockKind::DepthwiseSeparable {
            cin: 1024,
            cout: 1024,
            ..
        }
    ));
}

#[test]
fn mobilenet_v2_is_seventeen_inverted_residuals_ten_with_shortcuts() {
    // Sandler et al. 2018, Table 2: n = 1, 2, 3, 4, 3, 3, 1; the first (t = 1) has no expansion;
    // every repeat after the first of its row keeps shape and adds its input.
    let g = graph("mobilenet_v2");
    let b = body(&g);
    assert_eq!(b.len(), 17);
    let mut residual = 0;
    for (i, blk) in b.iter().enumerate() {
        let BlockKind::InvertedResidual {
            cin,
            mid,
            expand,
            residual: r,
            se,
            ..
        } = &blk.kind
        else {
            panic!("{}: {:?}", blk.path, blk.kind)
        };
        assert!(se.is_none());
        assert_eq!(*expand, i > 0, "{}", blk.path);
        if i > 0 {
            assert_eq!(*mid, 6 * cin, "{}", blk.path);
        }
        residual += *r as usize;
    }
    assert_eq!(residual, 10);
}

#[test]
fn mobilenet_v3_se_placement_follows_the_papers_tables() {
    // Howard et al. 2019, Tables 1 and 2: Large has 15 bnecks, 8 with SE; Small 11, 9 with SE.
    for (name, blocks, with_se) in [("mobilenet_v3_large", 15, 8), ("mobilenet_v3_small", 11, 9)] {
        let g = graph(name);
        let irs = count(&g, |k| matches!(k, BlockKind::InvertedResidual { .. }));
        assert_eq!(irs, blocks, "{name}");
        assert_eq!(count(&g, |k| k.se().is_some()), with_se, "{name}");
        // SE width: torchvision's _make_divisible(expanded // 4, 8): round to a multiple of 8,
        // at least 8, never more than 10% below.
        let divisible = |v: usize| {
            let r = ((v + 4) / 8 * 8).max(8);
            if (r as f64) < 0.9 * v as f64 {
                r + 8
            } else {
                r
            }
        };
        for b in &g.blocks {
            if let BlockKind::InvertedResidual {
                mid, se: Some(se), ..
            } = &b.kind
            {
                assert_eq!(se.channels, *mid);
                assert_eq!(se.squeeze, divisible(mid / 4), "{}", b.path);
            }
        }
    }
}

#[test]
fn efficientnet_b0_is_sixteen_mbconv_blocks_all_with_se_of_a_quarter_of_the_input() {
    // Tan & Le 2019, Table 1: stages of 1, 2, 2, 3, 3, 4, 1 MBConv blocks, SE ratio 0.25 of
    // the block's input channels.
    let g = graph("efficientnet_b0");
    let mut n = 0;
    for b in &g.blocks {
        if let BlockKind::InvertedResidual { cin, se, .. } = &b.kind {
            let se = se.as_ref().expect("every MBConv block has SE");
            assert_eq!(se.squeeze, (cin / 4).max(1), "{}", b.path);
            n += 1;
        }
    }
    assert_eq!(n, 16);
    assert_eq!(g.meta.init, effcnn_arch::graph::InitScheme::EfficientNet);
    assert_eq!(
        graph("mobilenet_v2").meta.init,
        effcnn_arch::graph::InitScheme::Torchvision
    );
}

#[test]
fn shufflenet_units_and_their_strides() {
    // Zhang et al. 2018, Table 1 and Ma et al. 2018, Table 5: 4 + 8 + 4 units, the first of each
    // stage with stride 2.
    let g = graph("shufflenet_v1_g3");
    let units: Vec<_> = g
        .blocks
        .iter()
        .filter_map(|b| match b.kind {
            BlockKind::ShuffleV1 {
                groups,
                stride,
                cin,
                cout,
                mid,
            } => Some((groups, stride, cin, cout, mid)),
            _ => None,
        })
        .collect();
    assert_eq!(units.len(), 16);
    assert!(units.iter().all(|u| u.0 == 3));
    assert_eq!(units.iter().filter(|u| u.1 == 2).count(), 3);
    // g = 3: output channels 240, 480, 960; bottleneck a quarter of the output.
    assert_eq!(units[0].3, 240);
    assert_eq!(units[15].3, 960);
    assert!(units.iter().all(|u| u.4 == u.3 / 4));
    let g = graph("shufflenet_v2_x1_0");
    let v2: Vec<usize> = g
        .blocks
        .iter()
        .filter_map(|b| match b.kind {
            BlockKind::ShuffleV2 { stride, .. } => Some(stride),
            _ => None,
        })
        .collect();
    assert_eq!(v2.len(), 16);
    assert_eq!(v2.iter().filter(|&&s| s == 2).count(), 3);
}

#[test]
fn cifar_resnet20_and_its_se_twin() {
    // He et al. 2016 §4.2: 3 stages of n = 3 basic blocks, 16/32/64 channels; the two stage
    // transitions project the shortcut. SE (Hu et al. 2018): r = 16 on every block.
    let g = cifar("resnet20");
    let res: Vec<_> = g
        .blocks
        .iter()
        .filter_map(|b| match &b.kind {
            BlockKind::Residual {
                cout,
                bottleneck: false,
                projection,
                se,
                ..
            } => Some((*cout, *projection, se.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(res.len(), 9);
    assert_eq!(res.iter().filter(|r| r.1).count(), 2);
    assert!(res.iter().all(|r| r.2.is_none()));
    let g = cifar("se_resnet20");
    let squeeze: Vec<(usize, usize)> = g
        .blocks
        .iter()
        .filter_map(|b| b.kind.se().map(|s| (s.channels, s.squeeze)))
        .collect();
    assert_eq!(squeeze.len(), 9);
    assert!(squeeze.iter().all(|&(c, s)| s == c / 16));
}

#[test]
fn se_models_pair_with_the_model_they_add_se_to() {
    use effcnn_arch::se_baseline;
    assert_eq!(se_baseline("se_resnet20"), Some("resnet20"));
    assert_eq!(se_baseline("se_resnet56"), Some("resnet56"));
    assert_eq!(se_baseline("legacy_se_resnet50"), Some("resnet50"));
    assert_eq!(se_baseline("resnet20"), None);
    assert_eq!(se_baseline("mobilenet_v3_small"), None);
    assert_eq!(se_baseline("se_nothing"), None);
    // Each pair differs by exactly the SE modules: same blocks, the twin's with SE.
    for e in entries() {
        if let Some(base) = se_baseline(e.name) {
            let (s, b) = (graph(e.name), graph(base));
            assert_eq!(s.blocks.len(), b.blocks.len(), "{}", e.name);
            assert!(
                body(&s).iter().all(|blk| blk.kind.se().is_some()),
                "{}",
                e.name
            );
        }
    }
}
