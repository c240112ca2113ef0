//! ShuffleNetV1/V2, ResNet/SE-ResNet, CIFAR ResNets and the study nets: REFERENCE.md §2 targets
//! (params exact, conv+linear MACs to the stated precision), published CIFAR costs, the parity
//! fixtures' per-layer rows and checkpoint keys, block structure, and error paths.

use std::collections::BTreeMap;
use std::path::PathBuf;

use effcnn_arch::blocks::shuffle::{
    shufflenet_v1_unit, shufflenet_v2_unit, ShuffleV1Cfg, ShuffleV1Names, ShuffleV2Names,
};
use effcnn_arch::blocks::Pn;
use effcnn_arch::builder::GraphBuilder;
use effcnn_arch::cost::analyze;
use effcnn_arch::graph::pool_out_size;
use effcnn_arch::zoo::shufflenet_v1::widths;
use effcnn_arch::{entry, resolve, ArchError, Graph, Layout, Op, Options, Profile, Shape};
use serde_json::Value;

/// Every entry of these families, with the foreign layouts it derives names for.
const ENTRIES: [(&str, &[Layout]); 25] = [
    ("shufflenet_v1_g1", &[]),
    ("shufflenet_v1_g2", &[]),
    ("shufflenet_v1_g3", &[]),
    ("shufflenet_v1_g4", &[]),
    ("shufflenet_v1_g8", &[]),
    ("shufflenet_v2_x0_5", &[Layout::Torchvision]),
    ("shufflenet_v2_x1_0", &[Layout::Torchvision]),
    ("shufflenet_v2_x1_5", &[Layout::Torchvision]),
    ("shufflenet_v2_x2_0", &[Layout::Torchvision]),
    ("resnet18", &[Layout::Torchvision, Layout::Timm]),
    ("resnet34", &[Layout::Torchvision, Layout::Timm]),
    ("resnet50", &[Layout::Torchvision, Layout::Timm]),
    ("resnet50_v1", &[]),
    ("se_resnet18", &[Layout::Timm]),
    ("se_resnet34", &[Layout::Timm]),
    ("se_resnet50", &[Layout::Timm]),
    ("legacy_se_resnet18", &[Layout::Timm]),
    ("legacy_se_resnet34", &[Layout::Timm]),
    ("legacy_se_resnet50", &[Layout::Timm]),
    ("resnet20", &[]),
    ("resnet56", &[]),
    ("se_resnet20", &[]),
    ("se_resnet56", &[]),
    ("plain_cnn", &[]),
    ("dwsep_cnn", &[]),
];

fn cost(name: &str, opts: &Options) -> (u64, u64) {
    let g = resolve(name, opts).unwrap_or_else(|e| panic!("{name} {opts:?}: {e}"));
    let c = analyze(&g);
    (c.params, c.macs)
}

/// Params exact, MACs within `tol_m` million of `macs_m`.
fn check(name: &str, opts: Options, params: u64, macs_m: f64, tol_m: f64) {
    let (p, m) = cost(name, &opts);
    let got_m = m as f64 / 1e6;
    assert_eq!(
        p, params,
        "{name} {opts:?}: params {p} vs reference {params}"
    );
    assert!(
        (got_m - macs_m).abs() <= tol_m * (1.0 + 1e-9),
        "{name} {opts:?}: MACs {got_m:.4} M vs reference {macs_m} M (±{tol_m})"
    );
}

/// Rounded to `decimals` places, as a published table prints it.
fn rounds_to(x: f64, decimals: i32, published: f64) -> bool {
    let s = 10f64.powi(decimals);
    ((x * s).round() - published * s).abs() < 1e-6
}

#[test]
fn shufflenet_v2_reference() {
    // torchvision's exact conv+linear MACs (reference_meta.json) and REFERENCE §2 params.
    let rows = [
        ("shufflenet_v2_x0_5", 1_366_792, 40_476_448),
        ("shufflenet_v2_x1_0", 2_278_604, 144_907_992),
        ("shufflenet_v2_x1_5", 3_503_624, 295_759_392),
        ("shufflenet_v2_x2_0", 7_393_996, 583_253_464),
    ];
    for (name, params, macs) in rows {
        assert_eq!(cost(name, &Options::imagenet()), (params, macs), "{name}");
    }
    for (name, m) in [
        ("shufflenet_v2_x0_5", 40.48),
        ("shufflenet_v2_x1_0", 144.91),
        ("shufflenet_v2_x1_5", 295.76),
        ("shufflenet_v2_x2_0", 583.25),
    ] {
        let (_, macs) = cost(name, &Options::imagenet());
        assert!(rounds_to(macs as f64 / 1e6, 2, m), "{name}: {macs}");
    }
}

#[test]
fn shufflenet_v1_reference() {
    // REFERENCE §2 (params exact, MACs ±0.1 M) and the paper's Table 1 complexities (within 2%).
    let rows = [
        ("shufflenet_v1_g1", 1_530_936, 143.1, 143.0),
        ("shufflenet_v1_g2", 1_732_848, 140.8, 140.0),
        ("shufflenet_v1_g3", 1_864_728, 137.5, 137.0),
        ("shufflenet_v1_g4", 1_967_344, 134.3, 133.0),
        ("shufflenet_v1_g8", 2_433_768, 138.4, 137.0),
    ];
    for (name, params, macs_m, paper_m) in rows {
        check(name, Options::imagenet(), params, macs_m, 0.1);
        let (_, m) = cost(name, &Options::imagenet());
        let rel = (m as f64 / 1e6 - paper_m).abs() / paper_m;
        assert!(
            rel <= 0.02,
            "{name}: {m} MACs is {rel:.4} off the paper's {paper_m} M"
        );
        let e = entry(name).unwrap();
        assert!(e.has_width);
        assert!(e.reported.unwrap().source.contains("Table 2"));
    }
}

#[test]
fn shufflenet_v1_widths() {
    // Table 1 at 1.0×, megvii's released 0.5×/1.5×/2.0× widths, and divisibility at every width.
    assert_eq!(widths(3, 1.0), Some([240, 480, 960]));
    assert_eq!(widths(3, 0.5), Some([120, 240, 480]));
    assert_eq!(widths(3, 1.5), Some([360, 720, 1440]));
    assert_eq!(widths(3, 2.0), Some([480, 960, 1920]));
    assert_eq!(widths(8, 0.5), Some([192, 384, 768]));
    assert_eq!(widths(8, 1.5), Some([576, 1152, 2304]));
    assert_eq!(widths(5, 1.0), None);
    for g in [1, 2, 3, 4, 8] {
        for s in [0.25, 0.5, 0.75, 1.0, 1.5, 2.0] {
            let name = format!("shufflenet_v1_g{g}");
            let graph = resolve(&name, &Options::imagenet().width(s))
                .unwrap_or_else(|e| panic!("{name} ×{s}: {e}"));
            let w = widths(g, s).unwrap();
            assert_eq!(graph.nodes[graph.output].shape, Shape::new(1000, 1, 1));
            let head = graph.node("global_pool").unwrap();
            assert_eq!(head.shape.c, w[2], "{name} ×{s}");
        }
    }
    // Width 0.5, g=3: the paper's 0.5× model has 120/240/480 channels.
    let g = resolve("shufflenet_v1_g3", &Options::imagenet().width(0.5)).unwrap();
    assert_eq!(
        g.node("blocks.0.3.add").unwrap().shape,
        Shape::new(120, 28, 28)
    );
}

fn conv<'a>(g: &'a Graph, path: &str) -> &'a effcnn_arch::Conv {
    match &g.node(path).unwrap_or_else(|| panic!("no node {path}")).op {
        Op::Conv(c) => c,
        other => panic!("{path} is {other:?}"),
    }
}

#[test]
fn shufflenet_v1_structure() {
    let g = resolve("shufflenet_v1_g3", &Options::imagenet()).unwrap();
    // First pointwise conv of stage 2 is not grouped; every other pointwise conv is.
    assert_eq!(conv(&g, "blocks.0.0.conv_pw").groups, 1);
    assert_eq!(conv(&g, "blocks.0.0.conv_pwl").groups, 3);
    assert_eq!(conv(&g, "blocks.0.1.conv_pw").groups, 3);
    assert_eq!(conv(&g, "blocks.1.0.conv_pw").groups, 3);
    // Stride-2 unit: the branch outputs out − in channels, concatenated with the pooled input.
    assert_eq!(conv(&g, "blocks.0.0.conv_pwl").cout, 240 - 24);
    assert_eq!(conv(&g, "blocks.1.0.conv_pwl").cout, 480 - 240);
    assert_eq!(conv(&g, "blocks.0.0.conv_dw").groups, 60);
    assert_eq!(conv(&g, "blocks.0.0.conv_dw").stride, (2, 2));
    let pool = g.node("blocks.0.0.shortcut_pool").unwrap();
    assert!(matches!(
        pool.op,
        Op::AvgPool {
            k: 3,
            stride: 2,
            pad: 1,
            ..
        }
    ));
    let cat = g.node("blocks.0.0.concat").unwrap();
    assert_eq!(cat.shape, Shape::new(240, 28, 28));
    assert_eq!(g.nodes[cat.inputs[0]].path, "blocks.0.0.shortcut_pool");
    // Shuffle follows the first pointwise conv-BN-ReLU, before the depthwise conv.
    let sh = g.node("blocks.1.3.shuffle").unwrap();
    assert_eq!(sh.op, Op::Shuffle { groups: 3 });
    assert_eq!(g.nodes[sh.inputs[0]].path, "blocks.1.3.bn1.relu");
    let dw = g.node("blocks.1.3.conv_dw").unwrap();
    assert_eq!(g.nodes[dw.inputs[0]].path, "blocks.1.3.shuffle");
    // Stride-1 unit: residual add, then ReLU.
    let relu = g.node("blocks.1.3.relu").unwrap();
    assert_eq!(g.nodes[relu.inputs[0]].path, "blocks.1.3.add");
    // The paper's unit cost h·w·(2cm/g + 9m) for a stage-3 stride-1 unit (c = 480, m = 120).
    let c = analyze(&g);
    let unit: u64 = c
        .layers
        .iter()
        .filter(|l| l.block == "blocks.1.3")
        .map(|l| l.macs)
        .sum();
    let (hw, cc, m, gr) = (14 * 14u64, 480u64, 120u64, 3u64);
    assert_eq!(unit, hw * (2 * cc * m / gr + 9 * m));
    // g = 1: no shuffle at all (it would be the identity).
    let g1 = resolve("shufflenet_v1_g1", &Options::imagenet()).unwrap();
    assert!(!g1.nodes.iter().any(|n| matches!(n.op, Op::Shuffle { .. })));
    assert!(g.layouts() == vec![Layout::Canonical]);
}

#[test]
fn shufflenet_v2_structure() {
    let g = resolve("shufflenet_v2_x1_0", &Options::imagenet()).unwrap();
    // Stride 1: split in halves, the second half through branch2, concat, shuffle(2).
    let cat = g.node("blocks.1.3.concat").unwrap();
    let keep = &g.nodes[cat.inputs[0]];
    assert_eq!(keep.op, Op::Slice { start: 0, len: 116 });
    let main_in = &g.nodes[g.node("blocks.1.3.branch_main.conv_pw").unwrap().inputs[0]];
    assert_eq!(
        main_in.op,
        Op::Slice {
            start: 116,
            len: 116
        }
    );
    assert_eq!(
        g.node("blocks.1.3.shuffle").unwrap().op,
        Op::Shuffle { groups: 2 }
    );
    // Stride 2: both branches see the full input.
    let x = g.node("blocks.1.0.branch_proj.conv_dw").unwrap().inputs[0];
    assert_eq!(
        g.node("blocks.1.0.branch_main.conv_pw").unwrap().inputs[0],
        x
    );
    assert_eq!(g.nodes[x].shape, Shape::new(116, 28, 28));
    assert_eq!(conv(&g, "blocks.1.0.branch_proj.conv_dw").groups, 116);
    assert_eq!(g.layouts(), vec![Layout::Canonical, Layout::Torchvision]);
}

fn fixture(stem: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/parity")
        .join(format!("{stem}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

/// Per-layer rows and checkpoint keys (same keys, shapes and state-dict order).
fn check_fixture(stem: &str, model: &str, layout: Layout) {
    let fx = fixture(stem);
    let g = resolve(model, &Options::imagenet()).unwrap();
    let c = analyze(&g);
    assert_eq!(c.params, fx["params"].as_u64().unwrap(), "{stem} params");
    assert_eq!(c.macs, fx["macs_224"].as_u64().unwrap(), "{stem} MACs");
    let by_name: BTreeMap<&str, usize> = g
        .param_nodes()
        .filter_map(|(id, _)| g.module_name(id, layout).map(|m| (m, id)))
        .collect();
    let rows = fx["layers_224"].as_array().unwrap();
    let convs = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Conv(_) | Op::Linear { .. }))
        .count();
    assert_eq!(convs, rows.len(), "{stem}: conv/linear count");
    for r in rows {
        let name = r["name"].as_str().unwrap();
        let id = *by_name
            .get(name)
            .unwrap_or_else(|| panic!("{stem}: no node named {name}"));
        let n = &g.nodes[id];
        let input = g.nodes[n.inputs[0]].shape;
        let shape = |v: &Value| match usizes(v).as_slice() {
            [c, h, w] => Shape::new(*c, *h, *w),
            [c] => Shape::new(*c, 1, 1),
            s => panic!("{s:?}"),
        };
        assert_eq!(input, shape(&r["in"]), "{stem} {name} in");
        assert_eq!(n.shape, shape(&r["out"]), "{stem} {name} out");
        assert_eq!(c.layers[id].params, r["params"].as_u64().unwrap(), "{name}");
        assert_eq!(c.layers[id].macs, r["macs"].as_u64().unwrap(), "{name}");
        if let Op::Conv(cv) = &n.op {
            let k = usizes(&r["k"]);
            let s = usizes(&r["stride"]);
            assert_eq!((cv.k.0, cv.k.1), (k[0], k[1]), "{name} k");
            assert_eq!((cv.stride.0, cv.stride.1), (s[0], s[1]), "{name} stride");
            assert_eq!(cv.groups as u64, r["groups"].as_u64().unwrap(), "{name}");
        }
    }
    let ours: Vec<(String, Vec<usize>)> = g
        .tensor_keys(layout)
        .into_iter()
        .map(|t| (t.key, t.shape))
        .collect();
    let theirs: Vec<(String, Vec<usize>)> = fx["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["key"].as_str().unwrap().to_string(), usizes(&t["shape"])))
        .collect();
    assert_eq!(ours, theirs, "{stem}: checkpoint keys");
}

#[test]
fn fixtures_layer_by_layer() {
    check_fixture(
        "shufflenet_v2_x1_0",
        "shufflenet_v2_x1_0",
        Layout::Torchvision,
    );
    check_fixture("resnet18", "resnet18", Layout::Torchvision);
    check_fixture("resnet18", "resnet18", Layout::Timm);
    check_fixture("timm_seresnet18", "se_resnet18", Layout::Timm);
}

#[test]
fn resnet_reference() {
    let o = Options::imagenet;
    // torchvision (exact MACs from reference_meta.json) and REFERENCE §2.
    assert_eq!(cost("resnet18", &o()), (11_689_512, 1_814_073_344));
    assert_eq!(cost("resnet50", &o()), (25_557_032, 4_089_184_256));
    assert_eq!(cost("resnet34", &o()).0, 21_797_672); // torchvision's num_params
    check("resnet50_v1", o(), 25_557_032, 3857.97, 0.01);
    // timm seresnet* (v1.5 layout, SE width make_divisible(C/16, 8)).
    check("se_resnet18", o(), 11_779_624, 1814.16, 0.01);
    check("se_resnet34", o(), 21_960_416, 3663.92, 0.01);
    check("se_resnet50", o(), 28_088_024, 4091.70, 0.01);
    assert_eq!(cost("se_resnet18", &o()).1, 1_814_161_408);
    assert_eq!(cost("se_resnet50", &o()).1, 4_091_699_200);
    // SENet paper = timm legacy_seresnet* (SE width C/16, bottleneck stride in the first 1×1).
    check("legacy_se_resnet18", o(), 11_778_592, 1814.16, 0.01);
    check("legacy_se_resnet34", o(), 21_958_868, 3663.92, 0.01);
    check("legacy_se_resnet50", o(), 28_088_024, 3860.49, 0.01);
    assert_eq!(cost("legacy_se_resnet18", &o()).1, 1_814_160_384);
    // SENet Table 2: SE-ResNet-50 3.87 GFLOPs (their MACs), 28.1 M params.
    let (p, m) = cost("legacy_se_resnet50", &o());
    assert!((m as f64 / 3.87e9 - 1.0).abs() < 0.01);
    assert!(rounds_to(p as f64 / 1e6, 1, 28.1));
    // SE adds 2C²/r weights + C/r + C biases per block: 28,088,024 − 25,557,032 for ResNet-50.
    assert_eq!(p - 25_557_032, 2_514_944 + 16_048);
    let e = entry("legacy_se_resnet50").unwrap().reported.unwrap();
    assert!((e.top1 - 76.71).abs() < 1e-9);
    assert!((entry("resnet18").unwrap().reported.unwrap().top1 - 69.758).abs() < 1e-9);
    assert!((entry("resnet50").unwrap().reported.unwrap().top1 - 76.130).abs() < 1e-9);
}

#[test]
fn resnet_structure() {
    let o = Options::imagenet();
    let v15 = resolve("resnet50", &o).unwrap();
    let v1 = resolve("resnet50_v1", &o).unwrap();
    assert_eq!(conv(&v15, "blocks.1.0.conv1").stride, (1, 1));
    assert_eq!(conv(&v15, "blocks.1.0.conv2").stride, (2, 2));
    assert_eq!(conv(&v1, "blocks.1.0.conv1").stride, (2, 2));
    assert_eq!(conv(&v1, "blocks.1.0.conv2").stride, (1, 1));
    assert_eq!(v1.layouts(), vec![Layout::Canonical]);
    // SE widths: timm rounds C/16 up to a multiple of 8, SENet does not.
    let timm = resolve("se_resnet18", &o).unwrap();
    let legacy = resolve("legacy_se_resnet18", &o).unwrap();
    assert_eq!(conv(&timm, "blocks.0.0.se.fc1").cout, 8);
    assert_eq!(conv(&legacy, "blocks.0.0.se.fc1").cout, 4);
    assert_eq!(conv(&legacy, "blocks.3.0.se.fc1").cout, 32);
    // SE sits on the residual branch before the addition; legacy basic blocks apply ReLU first.
    let add = timm.node("blocks.0.0.add").unwrap();
    assert_eq!(timm.nodes[add.inputs[0]].path, "blocks.0.0.se.scale");
    let se_in = timm.node("blocks.0.0.se.scale").unwrap().inputs[0];
    assert_eq!(timm.nodes[se_in].path, "blocks.0.0.bn2");
    let se_in = legacy.node("blocks.0.0.se.scale").unwrap().inputs[0];
    assert_eq!(legacy.nodes[se_in].path, "blocks.0.0.bn2.relu");
    let l50 = resolve("legacy_se_resnet50", &o).unwrap();
    let se_in = l50.node("blocks.0.0.se.scale").unwrap().inputs[0];
    assert_eq!(l50.nodes[se_in].path, "blocks.0.0.bn3");
    // Projection shortcuts only where the shape changes.
    assert!(v15.node("blocks.0.0.downsample.conv").is_some()); // 64 → 256
    assert!(v15.node("blocks.0.1.downsample.conv").is_none());
    let r18 = resolve("resnet18", &o).unwrap();
    assert!(r18.node("blocks.0.0.downsample.conv").is_none());
    assert_eq!(conv(&r18, "blocks.1.0.downsample.conv").stride, (2, 2));
    assert_eq!(
        r18.layouts(),
        vec![Layout::Canonical, Layout::Torchvision, Layout::Timm]
    );
    assert_eq!(timm.layouts(), vec![Layout::Canonical, Layout::Timm]);
}

/// PyTorch's `F.max_pool2d(..., ceil_mode=False/True)` output sizes (torch 2.15), as
/// (input size, k, stride, pad, floor-mode size, ceil-mode size).
const TORCH_POOL_SIZES: [(usize, usize, usize, usize, usize, usize); 30] = [
    (1, 3, 2, 1, 1, 1),
    (2, 3, 2, 1, 1, 2),
    (2, 2, 2, 0, 1, 1),
    (3, 2, 2, 0, 1, 2),
    (3, 3, 3, 1, 1, 2),
    (4, 3, 2, 0, 1, 2),
    (4, 3, 2, 1, 2, 3),
    (4, 2, 2, 1, 3, 3),
    (5, 3, 2, 0, 2, 2),
    (5, 2, 2, 0, 2, 3),
    // Ceil mode's extra window would start in the right padding: dropped.
    (5, 2, 2, 1, 3, 3),
    (6, 3, 2, 0, 2, 3),
    (6, 3, 2, 1, 3, 4),
    (6, 3, 3, 1, 2, 3),
    (7, 2, 2, 0, 3, 4),
    (7, 3, 2, 1, 4, 4),
    (8, 3, 2, 0, 3, 4),
    (8, 3, 2, 1, 4, 5),
    (8, 3, 1, 0, 6, 6),
    (33, 3, 2, 0, 16, 16),
    (33, 3, 2, 1, 17, 17),
    (33, 2, 2, 0, 16, 17),
    (33, 3, 3, 1, 11, 12),
    (65, 3, 2, 0, 32, 32),
    (65, 2, 2, 0, 32, 33),
    (112, 3, 2, 0, 55, 56),
    (112, 3, 2, 1, 56, 57),
    (113, 2, 2, 0, 56, 57),
    (113, 3, 3, 1, 38, 38),
    (113, 3, 1, 0, 111, 111),
];

#[test]
fn max_pool_sizes_follow_pytorch() {
    for (n, k, s, p, floor, ceil) in TORCH_POOL_SIZES {
        let case = format!("n {n} k {k} s {s} p {p}");
        assert_eq!(pool_out_size(n, k, s, p, false), Some(floor), "{case}");
        assert_eq!(pool_out_size(n, k, s, p, true), Some(ceil), "{case}");
        for (ceil_mode, want) in [(false, floor), (true, ceil)] {
            let (mut g, x) = GraphBuilder::new(Shape::new(2, n, n));
            let y = if ceil_mode {
                g.max_pool_with(x, "pool", k, s, p, true)
            } else {
                g.max_pool(x, "pool", k, s, p)
            }
            .unwrap();
            assert_eq!(
                g.shape(y),
                Shape::new(2, want, want),
                "{case} ceil {ceil_mode}"
            );
        }
    }
    // A window larger than the padded input, and padding over half the window, are refused.
    assert_eq!(pool_out_size(2, 3, 2, 0, true), None);
    let (mut g, x) = GraphBuilder::new(Shape::new(1, 2, 2));
    assert!(g.max_pool_with(x, "pool", 3, 2, 0, true).is_err());
    let (mut g, x) = GraphBuilder::new(Shape::new(1, 8, 8));
    assert!(g.max_pool_with(x, "pool", 3, 2, 2, true).is_err());
}

#[test]
fn legacy_se_resnet_stem_pool_is_timms_ceil_mode_pool() {
    let at = |name: &str, res: usize| {
        let g = resolve(name, &Options::imagenet().resolution(res)).unwrap();
        let pool = g.node("maxpool").unwrap().clone();
        let stem = g.nodes[pool.inputs[0]].shape;
        (pool, stem)
    };
    // timm legacy_seresnet18: MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True).
    let (pool, stem) = at("legacy_se_resnet18", 224);
    assert_eq!(
        pool.op,
        Op::MaxPool {
            k: 3,
            stride: 2,
            pad: 0,
            ceil_mode: true
        }
    );
    assert_eq!((stem.h, pool.shape.h, pool.shape.w), (112, 56, 56));
    // An odd stem output (65² input → 33²): ceil mode gives 16², torchvision's padded pool 17².
    let (pool, stem) = at("legacy_se_resnet18", 65);
    assert_eq!((stem.h, pool.shape.h, pool.shape.w), (33, 16, 16));
    let (pool, _) = at("se_resnet18", 65);
    assert_eq!((pool.shape.h, pool.shape.w), (17, 17));
    assert!(matches!(
        pool.op,
        Op::MaxPool {
            pad: 1,
            ceil_mode: false,
            ..
        }
    ));
    let g = resolve("legacy_se_resnet18", &Options::imagenet()).unwrap();
    assert!(effcnn_arch::diagram::render(&g).contains("maxpool 3×3/2 ceil"));
}

/// timm `legacy_seresnet*` state-dict keys in registration order (SENet / Cadene layout).
fn legacy_keys(blocks: &[usize], bottleneck: bool) -> Vec<String> {
    let bn = |m: &str| {
        ["weight", "bias", "running_mean", "running_var"]
            .iter()
            .map(|s| format!("{m}.{s}"))
            .collect::<Vec<_>>()
    };
    let mut k = vec!["layer0.conv1.weight".to_string()];
    k.extend(bn("layer0.bn1"));
    let mut inplanes = 64;
    for (s, &n) in blocks.iter().enumerate() {
        let planes = 64 << s;
        let out = if bottleneck { planes * 4 } else { planes };
        for i in 0..n {
            let b = format!("layer{}.{i}", s + 1);
            let convs = if bottleneck { 3 } else { 2 };
            for c in 1..=convs {
                k.push(format!("{b}.conv{c}.weight"));
                k.extend(bn(&format!("{b}.bn{c}")));
            }
            for fc in ["fc1", "fc2"] {
                k.push(format!("{b}.se_module.{fc}.weight"));
                k.push(format!("{b}.se_module.{fc}.bias"));
            }
            if i == 0 && (s > 0 || inplanes != out) {
                k.push(format!("{b}.downsample.0.weight"));
                k.extend(bn(&format!("{b}.downsample.1")));
            }
            inplanes = out;
        }
    }
    k.push("last_linear.weight".into());
    k.push("last_linear.bias".into());
    k
}

#[test]
fn legacy_se_resnet_timm_names() {
    for (name, blocks, bottleneck) in [
        ("legacy_se_resnet18", [2, 2, 2, 2], false),
        ("legacy_se_resnet34", [3, 4, 6, 3], false),
        ("legacy_se_resnet50", [3, 4, 6, 3], true),
    ] {
        let g = resolve(name, &Options::imagenet()).unwrap();
        let ours: Vec<String> = g
            .tensor_keys(Layout::Timm)
            .into_iter()
            .map(|t| t.key)
            .collect();
        assert_eq!(ours, legacy_keys(&blocks, bottleneck), "{name}");
    }
    let g = resolve("legacy_se_resnet18", &Options::imagenet()).unwrap();
    let shapes: BTreeMap<String, Vec<usize>> = g
        .tensor_keys(Layout::Timm)
        .into_iter()
        .map(|t| (t.key, t.shape))
        .collect();
    assert_eq!(shapes["layer0.conv1.weight"], [64, 3, 7, 7]);
    assert_eq!(shapes["layer1.0.se_module.fc1.weight"], [4, 64, 1, 1]);
    assert_eq!(shapes["layer4.1.se_module.fc2.bias"], [512]);
    assert_eq!(shapes["layer2.0.downsample.0.weight"], [128, 64, 1, 1]);
    assert_eq!(shapes["last_linear.weight"], [1000, 512]);
    // Stem max-pool: same size as timm's ceil-mode pool0 at 224² (see the resnet module docs).
    assert_eq!(g.node("maxpool").unwrap().shape, Shape::new(64, 56, 56));
}

#[test]
fn cifar_costs_match_published() {
    // chenyaofo/pytorch-cifar-models: resnet20 0.27 M / 40.81 M, resnet56 0.86 M / 125.75 M.
    // Option B (1×1 conv + BN projection) shortcuts give exactly these; option A (zero padding,
    // no parameters) would give 269,722 / 40.55 M and 853,018 / 125.49 M.
    let (p, m) = cost("resnet20", &Options::default());
    assert_eq!(p, 272_474);
    assert!(rounds_to(p as f64 / 1e6, 2, 0.27));
    assert!(rounds_to(m as f64 / 1e6, 2, 40.81), "{m}");
    let (p, m) = cost("resnet56", &Options::default());
    assert_eq!(p, 855_770);
    assert!(rounds_to(p as f64 / 1e6, 2, 0.86));
    assert!(rounds_to(m as f64 / 1e6, 2, 125.75), "{m}");
    let option_a = |p: u64, m: u64| {
        (
            p - (16 * 32 + 64 + 32 * 64 + 128),
            m - 2 * 16 * 32 * 16 * 16,
        )
    };
    let (pa, ma) = option_a(p, m);
    assert_eq!(pa, 853_018);
    assert!(!rounds_to(ma as f64 / 1e6, 2, 125.75));
    // The profile is ignored: CIFAR-native at 32×32 with 10 classes either way.
    assert_eq!(
        cost("resnet20", &Options::cifar()),
        cost("resnet20", &Options::imagenet())
    );
    let g = resolve("resnet56", &Options::imagenet()).unwrap();
    assert_eq!(g.meta.resolution, 32);
    assert_eq!(g.meta.classes, 10);
    assert_eq!(g.meta.profile, Profile::Cifar);
    assert_eq!(g.node("global_pool").unwrap().inputs.len(), 1);
    assert_eq!(
        g.nodes[g.node("global_pool").unwrap().inputs[0]].shape,
        Shape::new(64, 8, 8)
    );
    let r = entry("resnet20").unwrap().reported.unwrap();
    assert!((r.top1 - 92.60).abs() < 1e-9 && r.source.contains("chenyaofo"));
    assert!((entry("resnet56").unwrap().reported.unwrap().top1 - 94.37).abs() < 1e-9);
    // SE twins: C/16 squeeze (1, 2, 4 units) before the addition in every block.
    let g = resolve("se_resnet20", &Options::default()).unwrap();
    assert_eq!(conv(&g, "blocks.0.0.se.fc1").cout, 1);
    assert_eq!(conv(&g, "blocks.2.2.se.fc1").cout, 4);
    assert_eq!(g.se_gates().len(), 9);
    let add = g.node("blocks.1.0.add").unwrap();
    assert_eq!(g.nodes[add.inputs[0]].path, "blocks.1.0.se.scale");
    assert_eq!(
        resolve("se_resnet56", &Options::default())
            .unwrap()
            .se_gates()
            .len(),
        27
    );
    // SE adds 2C²/16 + C/16 + C per block.
    let se = |c: u64, n: u64| n * (2 * c * (c / 16) + c / 16 + c);
    assert_eq!(
        cost("se_resnet20", &Options::default()).0 - 272_474,
        se(16, 3) + se(32, 3) + se(64, 3)
    );

    // CIFAR profiles of the ImageNet families (kuangliu ResNet18, chenyaofo ShuffleNetV2).
    assert_eq!(cost("resnet18", &Options::cifar()).0, 11_173_962);
    assert!(rounds_to(
        cost("resnet18", &Options::cifar()).1 as f64 / 1e9,
        2,
        0.56
    ));
    for (name, p_m, m_m) in [
        ("shufflenet_v2_x0_5", 0.35, 10.90),
        ("shufflenet_v2_x1_0", 1.26, 45.00),
    ] {
        let (p, m) = cost(name, &Options::cifar());
        assert!(rounds_to(p as f64 / 1e6, 2, p_m), "{name}: {p}");
        assert!(rounds_to(m as f64 / 1e6, 2, m_m), "{name}: {m}");
    }
    for name in [
        "resnet18",
        "shufflenet_v1_g3",
        "shufflenet_v2_x1_0",
        "legacy_se_resnet50",
    ] {
        let g = resolve(name, &Options::cifar()).unwrap();
        assert!(g.node("maxpool").is_none(), "{name}");
        let stem = g.param_nodes().next().unwrap().1;
        assert!(
            matches!(&stem.op, Op::Conv(c) if c.stride == (1, 1) && c.k == (3, 3)),
            "{name}"
        );
        let head = g.nodes[g.node("global_pool").unwrap().inputs[0]].shape;
        assert_eq!((head.h, head.w), (4, 4), "{name}");
    }
}

/// The layers of a study net: per block, its number of spatial (k > 1) convs and the output shape
/// of its last conv.
fn layers(g: &Graph) -> Vec<(String, usize, Shape)> {
    let mut out: Vec<(String, usize, Shape)> = Vec::new();
    for n in &g.nodes {
        if let Op::Conv(c) = &n.op {
            let spatial = usize::from(c.k != (1, 1));
            match out.last_mut() {
                Some(l) if l.0 == n.block => {
                    l.1 += spatial;
                    l.2 = n.shape;
                }
                _ => out.push((n.block.clone(), spatial, n.shape)),
            }
        }
    }
    out
}

#[test]
fn study_nets() {
    let o = Options::default();
    let plain = resolve("plain_cnn", &o).unwrap();
    let dwsep = resolve("dwsep_cnn", &o).unwrap();
    let (pc, dc) = (analyze(&plain), analyze(&dwsep));
    // By hand: 3×3 conv weights 293,040 + BN 2·480 + classifier 1,290; MACs = weights × output
    // positions (2,736·32² + 13,824·16² + 55,296·8² + 221,184·4²) + 1,280.
    assert_eq!((pc.params, pc.macs), (295_290, 13_419_776));
    // Same depth, widths and maps: one 3×3 spatial conv per layer in both.
    let (lp, ld) = (layers(&plain), layers(&dwsep));
    assert_eq!(lp.len(), 8);
    assert!(lp.iter().all(|l| l.1 == 1));
    assert_eq!(lp, ld);
    let widths: Vec<usize> = lp.iter().map(|l| l.2.c).collect();
    assert_eq!(widths, [16, 16, 32, 32, 64, 64, 128, 128]);
    // The first conv stays standard.
    assert_eq!(conv(&dwsep, "blocks.0.0.conv").groups, 1);
    assert!(dwsep.node("blocks.0.1.conv_dw").is_some());
    // Far cheaper.
    assert!(dc.params * 5 < pc.params && dc.macs * 5 < pc.macs);
    assert_eq!((dc.params, dc.macs), (39_066, 2_226_432));
    // The 1/N + 1/K² rule on a replaced layer (M = 16 → N = 32, 3×3, 16×16), MACs and weights.
    let layer = |c: &effcnn_arch::cost::ModelCost, path: &str| {
        let l = c.layers.iter().find(|l| l.path == path).unwrap();
        (l.macs, l.params)
    };
    let (std_m, std_p) = layer(&pc, "blocks.1.0.conv");
    let (dw_m, dw_p) = layer(&dc, "blocks.1.0.conv_dw");
    let (pw_m, pw_p) = layer(&dc, "blocks.1.0.conv_pw");
    let (n, k2) = (32u64, 9u64);
    // (dw + pw) / std = 1/N + 1/K²  ⇔  (dw + pw)·N·K² = std·(K² + N).
    assert_eq!((dw_m + pw_m) * n * k2, std_m * (k2 + n));
    assert_eq!((dw_p + pw_p) * n * k2, std_p * (k2 + n));
    assert_eq!(std_m, 9 * 16 * 32 * 16 * 16);
    // Width multiplier and metadata: width 2 is the 32…256 variant.
    let double = resolve("plain_cnn", &o.clone().width(2.0)).unwrap();
    let w: Vec<usize> = layers(&double).iter().map(|l| l.2.c).collect();
    assert_eq!(w, [32, 32, 64, 64, 128, 128, 256, 256]);
    assert_eq!(analyze(&double).params, 1_175_786);
    assert_eq!(plain.meta.profile, Profile::Cifar);
    assert_eq!(plain.nodes[plain.output].shape, Shape::new(10, 1, 1));
    assert!(entry("plain_cnn").unwrap().cifar_native && entry("dwsep_cnn").unwrap().has_width);
}

#[test]
fn indivisible_groups_and_channels_fail_with_a_path() {
    // A grouped 1×1 conv whose groups do not divide its channels.
    let (mut g, x) = GraphBuilder::new(Shape::new(30, 8, 8));
    let p = |r: &str| Pn::new(format!("u.{r}"), vec![]);
    let names = ShuffleV1Names {
        conv_pw: p("conv_pw"),
        bn1: p("bn1"),
        conv_dw: p("conv_dw"),
        bn2: p("bn2"),
        conv_pwl: p("conv_pwl"),
        bn3: p("bn3"),
    };
    let cfg = ShuffleV1Cfg {
        cout: 30,
        mid: 8,
        groups: 4,
        first_groups: 4,
        stride: 1,
        eps: 1e-5,
    };
    match shufflenet_v1_unit(&mut g, x, "u", cfg, &names) {
        Err(ArchError::Invalid { path, msg }) => {
            assert_eq!(path, "u.conv_pw");
            assert!(msg.contains("groups=4"), "{msg}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    // Bottleneck divisible, output not: fails at the last grouped conv.
    let (mut g, x) = GraphBuilder::new(Shape::new(24, 8, 8));
    let cfg = ShuffleV1Cfg {
        cout: 24 + 30,
        mid: 12,
        groups: 4,
        first_groups: 1,
        stride: 2,
        eps: 1e-5,
    };
    let err = shufflenet_v1_unit(&mut g, x, "u", cfg, &names).unwrap_err();
    assert!(
        matches!(err, ArchError::Invalid { ref path, .. } if path == "u.conv_pwl"),
        "{err}"
    );
    // ShuffleNetV2: an odd width cannot be split.
    let (mut g, x) = GraphBuilder::new(Shape::new(24, 8, 8));
    let err =
        shufflenet_v2_unit(&mut g, x, "v", 25, 2, 1e-5, &ShuffleV2Names::default()).unwrap_err();
    assert!(
        matches!(err, ArchError::Invalid { ref path, .. } if path == "v"),
        "{err}"
    );
    // Unknown group count or variant.
    assert!(widths(6, 1.0).is_none());
}

#[test]
fn entries_resolve_and_small_resolutions_never_panic() {
    for (name, layouts) in ENTRIES {
        let e = entry(name).unwrap_or_else(|err| panic!("{err}"));
        assert!(!e.paper.is_empty());
        let g = resolve(name, &Options::default()).unwrap();
        g.validate().unwrap();
        let mut want = vec![Layout::Canonical];
        want.extend_from_slice(layouts);
        want.sort();
        assert_eq!(g.layouts(), want, "{name}");
        for profile in [Profile::Imagenet, Profile::Cifar] {
            for res in 1..=64 {
                let o = Options {
                    profile,
                    resolution: Some(res),
                    ..Options::default()
                };
                let got = std::panic::catch_unwind(|| resolve(name, &o).map(|g| analyze(&g)));
                match got {
                    Ok(Ok(c)) => assert!(c.macs > 0),
                    Ok(Err(ArchError::Invalid { path, msg })) => {
                        assert!(!path.is_empty(), "{name}@{res}: {msg}");
                        assert!(msg.contains("smaller than"), "{name}@{res}: {path}: {msg}");
                    }
                    Ok(Err(other)) => panic!("{name}@{res}: unexpected {other}"),
                    Err(_) => panic!("{name} panicked at resolution {res} ({profile:?})"),
                }
            }
        }
    }
    // The ImageNet nets downsample by 32 but still resolve at 32×32.
    for name in [
        "resnet18",
        "legacy_se_resnet50",
        "shufflenet_v1_g8",
        "shufflenet_v2_x2_0",
    ] {
        let g = resolve(name, &Options::imagenet().resolution(32).classes(10)).unwrap();
        assert_eq!(g.nodes[g.output].shape, Shape::new(10, 1, 1));
    }
    // Entries with a fixed width refuse --width.
    assert!(resolve("resnet18", &Options::imagenet().width(0.5)).is_err());
    assert!(resolve("shufflenet_v2_x1_0", &Options::imagenet().width(0.5)).is_err());
}
