//! Other tools' totals (REFERENCE.md §1: torchvision `_ops`, fvcore 0.1.5, ptflops 0.7.5 at 224²)
//! reproduced from the same graph, within 0.5%.

use effcnn_arch::cost::{convention_total, Convention};
use effcnn_arch::{resolve, Options};

#[rustfmt::skip]
const TOOLS: [(&str, u64, u64, u64); 8] = [
    // model,              torchvision,   fvcore,        ptflops
    ("mobilenet_v2",       300_774_272,   314_193_216,   320_300_008),
    ("mobilenet_v3_large", 216_589_760,   226_033_824,   231_316_416),
    ("mobilenet_v3_small",  56_510_400,    59_649_536,    60_910_032),
    ("shufflenet_v2_x1_0", 144_907_992,   148_808_392,   152_387_568),
    ("shufflenet_v2_x0_5",  40_476_448,    42_524_256,    44_770_632),
    ("efficientnet_b0",    385_814_752,   401_659_392,   410_196_896),
    ("resnet18",         1_814_073_344, 1_819_065_856, 1_825_313_768),
    ("resnet50",         4_089_184_256, 4_111_512_576, 4_132_436_968),
];

#[test]
fn other_tools_totals_within_half_a_percent() {
    let mut report = Vec::new();
    let mut bad = Vec::new();
    for (name, tv, fv, pt) in TOOLS {
        let g = resolve(name, &Options::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (conv, want) in [
            (Convention::Torchvision, tv),
            (Convention::Fvcore, fv),
            (Convention::Ptflops, pt),
        ] {
            let got = convention_total(&g, conv).total;
            let rel = (got as f64 - want as f64) / want as f64;
            report.push(format!(
                "{name:<20} {:<12} ours {got:>14} tool {want:>14} ({:+.3}%)",
                conv.name(),
                rel * 100.0
            ));
            if rel.abs() > 0.005 || (conv == Convention::Torchvision && got != want) {
                bad.push(report.last().cloned().unwrap_or_default());
            }
        }
    }
    println!("{}", report.join("\n"));
    assert!(bad.is_empty(), "outside tolerance:\n{}", bad.join("\n"));
}

#[test]
fn explain_diff_items_add_up() {
    let g = resolve("mobilenet_v2", &Options::default()).unwrap();
    for conv in Convention::ALL {
        let t = convention_total(&g, conv);
        assert_eq!(
            t.total,
            t.base_macs + t.added.iter().map(|d| d.count).sum::<u64>()
        );
    }
}
