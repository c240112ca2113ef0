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
