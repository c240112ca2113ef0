//! REFERENCE.md §2 targets for the MobileNet and EfficientNet families: params exact, conv+linear
//! MACs to ±0.01 M, at every listed width and resolution; plus whole-zoo sanity for these entries.

use effcnn_arch::cost::analyze;
use effcnn_arch::{resolve, Options};

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
}
