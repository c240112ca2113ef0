//! REFERENCE.md §2 targets for the MobileNet and EfficientNet families: params exact, conv+linear
//! MACs to ±0.01 M, at every listed width and resolution; plus whole-zoo sanity for these entries.

use effcnn_arch::cost::analyze;
use effcnn_arch::{entry, resolve, ArchError, Graph, Layout, Op, Options, Pad, Profile, Shape};

/// The entries this file covers, with the foreign layouts each derives names for.
const ENTRIES: [(&str, &[Layout]); 13] = [
    ("mobilenet_v1", &[Layout::Timm]),
    ("mobilenet_v2", &[Layout::Torchvision, Layout::Timm]),
    ("mobilenet_v3_large", &[Layout::Torchvision]),
    ("mobilenet_v3_small", &[Layout::Torchvision]),
    ("efficientnet_b0", &[Layout::Torchvision, Layout::Timm]),
    ("efficientnet_b1", &[Layout::Torchvision, Layout::Timm]),
    ("efficientnet_b2", &[Layout::Torchvision, Layout::Timm]),
    ("efficientnet_b3", &[Layout::Torchvision, Layout::Timm]),
    ("efficientnet_b4", &[Layout::Torchvision, Layout::Timm]),
    ("efficientnet_b5", &[Layout::Torchvision, Layout::Timm]),
    ("efficientnet_b6", &[Layout::Torchvision, Layout::Timm]),
    ("efficientnet_b7", &[Layout::Torchvision, Layout::Timm]),
    ("efficientnet_lite0", &[Layout::Timm, Layout::Lukemelas]),
];

fn check(name: &str, opts: Options, params: u64, macs_m: f64) {
    let g = resolve(name, &opts).unwrap_or_else(|e| panic!("{name} {opts:?}: {e}"));
    let c = analyze(&g);
    let got_m = c.macs as f64 / 1e6;
    assert_eq!(
        c.params, params,
        "{name} {opts:?}: params {} vs reference {params}",
        c.params
    );
    assert!(
        (got_m - macs_m).abs() <= 0.0100001,
        "{name} {opts:?}: MACs {got_m:.4} M vs reference {macs_m} M"
    );
}

#[test]
fn mobilenet_v1_reference() {
    let o = Options::imagenet;
    check("mobilenet_v1", o(), 4_231_976, 568.74);
    check("mobilenet_v1", o().width(0.75), 2_585_560, 325.40);
    check("mobilenet_v1", o().width(0.5), 1_331_592, 149.50);
    check("mobilenet_v1", o().width(0.25), 470_072, 41.03);
    check("mobilenet_v1", o().resolution(192), 4_231_976, 418.12);
    check("mobilenet_v1", o().resolution(160), 4_231_976, 290.68);
    check("mobilenet_v1", o().resolution(128), 4_231_976, 186.40);
}

#[test]
fn mobilenet_v2_reference() {
    let o = Options::imagenet;
    check("mobilenet_v2", o(), 3_504_872, 300.77);
    check("mobilenet_v2", o().width(1.4), 6_108_776, 582.20);
    // 32×32 input with the ImageNet strides, 10 classes.
    check(
        "mobilenet_v2",
        o().resolution(32).classes(10),
        2_236_682,
        6.12,
    );
}

#[test]
fn mobilenet_v3_reference() {
    check("mobilenet_v3_large", Options::imagenet(), 5_483_032, 216.59);
    check("mobilenet_v3_small", Options::imagenet(), 2_542_856, 56.51);
}

#[test]
fn efficientnet_reference() {
    #[rustfmt::skip]
    let table: [(&str, usize, u64, f64); 8] = [
        ("efficientnet_b0", 224, 5_288_548, 385.81),
        ("efficientnet_b1", 240, 7_794_184, 686.80),
        ("efficientnet_b2", 260, 9_109_994, 993.56),
        ("efficientnet_b3", 300, 12_233_232, 1827.14),
        ("efficientnet_b4", 380, 19_341_616, 4393.77),
        ("efficientnet_b5", 456, 30_389_784, 10266.38),
        ("efficientnet_b6", 528, 43_040_704, 19067.59),
        ("efficientnet_b7", 600, 66_347_960, 37745.88),
    ];
    for (name, res, params, macs) in table {
        // Explicit resolution and the entry's default must agree.
        check(name, Options::imagenet().resolution(res), params, macs);
        check(name, Options::imagenet(), params, macs);
    }
    check("efficientnet_lite0", Options::imagenet(), 4_652_008, 385.19);
    // fixtures/reference_meta.json: torchvision conv+linear MACs at 224² for B1..B3, exact.
    for (name, macs) in [
        ("efficientnet_b1", 569_651_680u64),
        ("efficientnet_b2", 658_963_440),
        ("efficientnet_b3", 962_708_240),
        ("efficientnet_lite0", 385_187_552),
    ] {
        let g = resolve(name, &Options::imagenet().resolution(224)).unwrap();
        assert_eq!(analyze(&g).macs, macs, "{name} at 224");
    }
}

/// The feature map entering global average pooling.
fn head_map(g: &Graph) -> Shape {
    let gap = g
        .nodes
        .iter()
        .find(|n| matches!(n.op, Op::GlobalAvgPool) && n.path == "global_pool")
        .expect("a global_pool node");
    g.nodes[gap.inputs[0]].shape
}

fn conv_stride(g: &Graph, path: &str) -> usize {
    match &g.node(path).unwrap_or_else(|| panic!("no node {path}")).op {
        Op::Conv(c) => c.stride.0,
        other => panic!("{path} is {other:?}"),
    }
}

/// Sanity checks that hold for every resolved graph.
fn sane(name: &str, g: &Graph, res: usize, classes: usize) {
    g.validate().unwrap();
    assert_eq!(g.meta.name, name);
    assert_eq!(g.input_shape(), Shape::new(3, res, res), "{name}");
    assert_eq!(g.nodes[g.output].shape, Shape::new(classes, 1, 1), "{name}");
    assert_eq!(g.output, g.nodes.len() - 1, "{name}");
    let c = analyze(g);
    assert!(c.params > 0 && c.macs > 0, "{name}");
}

#[test]
fn entries_resolve_at_default_cifar_and_small_resolution() {
    for (name, layouts) in ENTRIES {
        let e = entry(name).unwrap();
        assert!(!e.cifar_native, "{name}");
        assert!(e.reported.is_some(), "{name}");

        let g = resolve(name, &Options::imagenet()).unwrap();
        sane(name, &g, g.meta.resolution, 1000);
        assert_eq!(g.meta.profile, Profile::Imagenet);
        let have = g.layouts();
        assert!(have.contains(&Layout::Canonical), "{name}");
        for l in layouts {
            assert!(have.contains(l), "{name}: no {} names", l.name());
        }
        // Checkpoint keys are unique in every layout.
        for l in have {
            let keys = g.tensor_keys(l);
            let set: std::collections::BTreeSet<_> = keys.iter().map(|k| &k.key).collect();
            assert_eq!(set.len(), keys.len(), "{name}: duplicate {} keys", l.name());
        }

        // CIFAR profile: 32×32, 10 classes, the head sees a 4×4 map.
        let g = resolve(name, &Options::cifar()).unwrap();
        sane(name, &g, 32, 10);
        assert_eq!(g.meta.profile, Profile::Cifar);
        assert_eq!((head_map(&g).h, head_map(&g).w), (4, 4), "{name} CIFAR");
        assert_eq!(conv_stride(&g, "conv_stem"), 1, "{name} CIFAR stem");

        // A small ImageNet-profile resolution: 64 / 32 = 2×2 at the head.
        let g = resolve(name, &Options::imagenet().resolution(64)).unwrap();
        sane(name, &g, 64, 1000);
        assert_eq!((head_map(&g).h, head_map(&g).w), (2, 2), "{name} at 64");
        assert_eq!(conv_stride(&g, "conv_stem"), 2, "{name} stem");
    }
}

#[test]
fn cifar_profile_moves_the_documented_stride() {
    // (entry, the block whose first stride-2 becomes stride 1, its depthwise conv)
    for (name, dw) in [
        ("mobilenet_v1", "blocks.1.0.conv_dw"),
        ("mobilenet_v2", "blocks.1.0.conv_dw"),
        ("mobilenet_v3_large", "blocks.1.0.conv_dw"),
        ("mobilenet_v3_small", "blocks.0.0.conv_dw"),
        ("efficientnet_b0", "blocks.1.0.conv_dw"),
        ("efficientnet_lite0", "blocks.1.0.conv_dw"),
    ] {
        let img = resolve(name, &Options::imagenet()).unwrap();
        let cif = resolve(name, &Options::cifar()).unwrap();
        assert_eq!(conv_stride(&img, dw), 2, "{name} {dw}");
        assert_eq!(conv_stride(&cif, dw), 1, "{name} {dw} CIFAR");
        // Every other conv keeps its stride.
        for n in &img.nodes {
            if let Op::Conv(c) = &n.op {
                if n.path != dw && n.path != "conv_stem" {
                    assert_eq!(conv_stride(&cif, &n.path), c.stride.0, "{name} {}", n.path);
                }
            }
        }
    }
}

#[test]
fn unusual_widths_and_resolutions_never_panic() {
    let widths = [0.01, 0.1, 0.35, 0.6, 1.3, 2.5];
    let resolutions = [1, 2, 7, 31, 32, 33, 97];
    for (name, _) in ENTRIES {
        let e = entry(name).unwrap();
        for &w in if e.has_width { &widths[..] } else { &[1.0][..] } {
            for &r in &resolutions {
                for base in [Options::imagenet(), Options::cifar()] {
                    let o = base.width(w).resolution(r);
                    let got = std::panic::catch_unwind(|| resolve(name, &o).map(|g| analyze(&g)));
                    match got {
                        Err(_) => panic!("{name} {o:?} panicked"),
                        Ok(Ok(c)) => assert!(c.params > 0, "{name} {o:?}"),
                        Ok(Err(ArchError::Invalid { path, msg })) => {
                            assert!(!path.is_empty() && !msg.is_empty(), "{name} {o:?}")
                        }
                        Ok(Err(e)) => panic!("{name} {o:?}: unexpected {e}"),
                    }
                }
            }
        }
    }
    // make_divisible(·, 8) keeps every layer at ≥ 8 channels: MobileNetV1 0.1 at 32 px resolves.
    let g = resolve(
        "mobilenet_v1",
        &Options::imagenet().width(0.1).resolution(32),
    )
    .unwrap();
    assert!(g.nodes.iter().all(|n| n.shape.c >= 8 || n.path == "input"));
    assert_eq!(head_map(&g), Shape::new(104, 1, 1));
}

#[test]
fn option_errors() {
    let bad = |name: &str, o: Options| match resolve(name, &o) {
        Err(ArchError::BadOption(msg)) => assert!(!msg.is_empty()),
        other => panic!("{name} {o:?}: expected BadOption, got {other:?}"),
    };
    let depth = |d: f64| Options {
        depth: Some(d),
        ..Options::imagenet()
    };
    bad("mobilenet_v1", depth(2.0));
    bad("mobilenet_v3_large", depth(2.0));
    bad("efficientnet_lite0", depth(2.0));
    bad("efficientnet_lite0", Options::imagenet().width(0.5));
    // EfficientNet-B*: --depth and --width multiply the variant's coefficients.
    let b0 = analyze(&resolve("efficientnet_b0", &Options::imagenet()).unwrap());
    let deeper = analyze(&resolve("efficientnet_b0", &depth(1.1).resolution(224)).unwrap());
    let b1 = analyze(&resolve("efficientnet_b1", &Options::imagenet().resolution(224)).unwrap());
    assert_eq!(deeper.params, b1.params);
    assert_eq!(deeper.macs, b1.macs);
    assert!(deeper.params > b0.params);
    let g = resolve("efficientnet_b1", &depth(1.1)).unwrap();
    assert_eq!((g.meta.width, g.meta.depth), (1.0, 1.1));
}

#[test]
fn efficientnet_details() {
    let g = resolve("efficientnet_b0", &Options::imagenet()).unwrap();
    // Stochastic depth 0.2·j/16 on the residual branches (block j over all 16 blocks).
    let drop = |path: &str| match g.node(path).map(|n| &n.op) {
        Some(Op::DropPath { p }) => *p,
        other => panic!("{path}: {other:?}"),
    };
    assert!((drop("blocks.1.1.drop_path") - 0.2 * 2.0 / 16.0).abs() < 1e-12);
    assert!((drop("blocks.5.3.drop_path") - 0.2 * 14.0 / 16.0).abs() < 1e-12);
    assert!(g.node("blocks.6.0.drop_path").is_none());
    // SE width from the block input: 16 → 4 for the first 6× block (input 16 channels).
    assert_eq!(g.node("blocks.1.0.se.conv_reduce").unwrap().shape.c, 4);
    assert_eq!(g.se_gates().len(), 16);
    assert_eq!(g.meta.norm_mean, effcnn_arch::zoo::IMAGENET_MEAN);

    // Lite0: TF SAME padding (asymmetric for stride 2, output = ⌈in / stride⌉), no SE, fixed stem.
    let lite = resolve("efficientnet_lite0", &Options::imagenet().resolution(225)).unwrap();
    assert!(lite.se_gates().is_empty());
    for n in &lite.nodes {
        if let Op::Conv(c) = &n.op {
            assert_eq!(c.pad, Pad::TfSame, "{}", n.path);
        }
    }
    assert_eq!(
        lite.node("conv_stem").unwrap().shape,
        Shape::new(32, 113, 113)
    );
    assert_eq!(lite.meta.norm_mean, effcnn_arch::zoo::TF127_MEAN);
    assert_eq!(lite.meta.norm_std, effcnn_arch::zoo::TF127_STD);
    let tv = |g: &Graph, path: &str, l: Layout| {
        let id = g.nodes.iter().position(|n| n.path == path).unwrap();
        g.module_name(id, l).map(str::to_string)
    };
    assert_eq!(
        tv(&lite, "blocks.1.0.conv_pw", Layout::Lukemelas).as_deref(),
        Some("_blocks.1._expand_conv")
    );
    assert_eq!(
        tv(&lite, "blocks.6.0.bn3", Layout::Lukemelas).as_deref(),
        Some("_blocks.15._bn2")
    );
    assert_eq!(
        tv(&g, "blocks.0.0.se.conv_reduce", Layout::Torchvision).as_deref(),
        Some("features.1.0.block.1.fc1")
    );
}

#[test]
fn mobilenet_v3_details() {
    let l = resolve("mobilenet_v3_large", &Options::imagenet()).unwrap();
    let s = resolve("mobilenet_v3_small", &Options::imagenet()).unwrap();
    // SE width make_divisible(expanded / 4, 8): 72 → 24 (Large), 16 → 8 (Small's first block).
    assert_eq!(l.node("blocks.2.0.se.conv_reduce").unwrap().shape.c, 24);
    assert_eq!(s.node("blocks.0.0.se.conv_reduce").unwrap().shape.c, 8);
    assert_eq!(l.se_gates().len(), 8);
    assert_eq!(s.se_gates().len(), 9);
    for &gate in &l.se_gates() {
        assert_eq!(
            l.nodes[gate].op,
            Op::Act {
                act: effcnn_arch::Act::HardSigmoid
            }
        );
    }
    // Width multiplier: torchvision's width_mult = 0.75 keeps 1280 → 960 hidden, stem 16.
    let w = resolve("mobilenet_v3_large", &Options::imagenet().width(0.75)).unwrap();
    assert_eq!(w.node("head_fc").unwrap().shape.c, 960);
    assert_eq!(w.node("conv_stem").unwrap().shape.c, 16);
}
