//! Option bounds: absurd widths, depths, resolutions and class counts are refused with a
//! message naming the flag, and everything up to the bounds resolves and is costed without
//! overflow (found by the `arch_resolve` fuzz target: `--width 5e276` overflowed the MACs).

use effcnn_arch::zoo::{MAX_CLASSES, MAX_MULTIPLIER, MAX_RESOLUTION};
use effcnn_arch::{cost, entries, resolve, Options, Profile};

#[test]
fn out_of_range_options_are_refused() {
    let cases = [
        (Options::default().width(5.367975554333201e276), "--width"),
        (Options::default().width(MAX_MULTIPLIER * 2.0), "--width"),
        (
            Options::default().resolution(MAX_RESOLUTION + 1),
            "--resolution",
        ),
        (Options::default().resolution(usize::MAX), "--resolution"),
        (Options::default().classes(MAX_CLASSES + 1), "--classes"),
        (
            Options {
                depth: Some(1e300),
                ..Options::default()
            },
            "--depth",
        ),
    ];
    for (o, flag) in cases {
        let e = resolve("mobilenet_v2", &o).unwrap_err().to_string();
        assert!(e.contains(flag), "{e}");
    }
}

#[test]
fn every_model_at_the_bounds_is_costed_without_overflow() {
    for e in entries() {
        for profile in [Profile::Imagenet, Profile::Cifar] {
            let o = Options {
                width: e.has_width.then_some(MAX_MULTIPLIER),
                depth: Some(MAX_MULTIPLIER),
                resolution: Some(MAX_RESOLUTION),
                classes: Some(MAX_CLASSES),
                profile,
                dropout: None,
            };
            // Some families refuse a depth multiplier: that is an error, not a panic.
            for o in [o.clone(), Options { depth: None, ..o }] {
                if let Ok(g) = resolve(e.name, &o) {
                    let c = cost::analyze(&g);
                    assert!(c.params > 0 && c.macs > 0, "{}", e.name);
                }
            }
        }
    }
}
