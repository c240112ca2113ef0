//! Sample data shared by the integration tests and the example.
#![allow(dead_code)]

use effcnn_report::{Heatmap, Histogram, HistogramGrid, LinePlot, Point, ScatterPlot};

/// (label, family, MACs, params, top-1 %)
pub const MODELS: [(&str, &str, f64, f64, f64); 16] = [
    ("MobileNetV1 1.0", "MobileNetV1", 569e6, 4.2e6, 70.6),
    ("MobileNetV1 0.75", "MobileNetV1", 325e6, 2.6e6, 68.4),
    ("MobileNetV1 0.5", "MobileNetV1", 149e6, 1.3e6, 63.7),
    ("MobileNetV1 0.25", "MobileNetV1", 41e6, 0.5e6, 50.6),
    ("MobileNetV2 1.4", "MobileNetV2", 585e6, 6.9e6, 74.7),
    ("MobileNetV2 1.0", "MobileNetV2", 300e6, 3.4e6, 72.0),
    ("MobileNetV2 0.75", "MobileNetV2", 209e6, 2.6e6, 69.8),
    ("MobileNetV2 0.5", "MobileNetV2", 97e6, 2.0e6, 65.4),
    ("ShuffleNetV1 1.0 g3", "ShuffleNetV1", 140e6, 1.9e6, 67.4),
    ("ShuffleNetV2 2.0", "ShuffleNetV2", 591e6, 7.4e6, 74.9),
    ("ShuffleNetV2 1.5", "ShuffleNetV2", 299e6, 3.5e6, 72.6),
    ("ShuffleNetV2 1.0", "ShuffleNetV2", 146e6, 2.3e6, 69.4),
    ("ShuffleNetV2 0.5", "ShuffleNetV2", 41e6, 1.4e6, 60.3),
    ("MobileNetV3-L 1.0", "MobileNetV3", 217e6, 5.4e6, 75.2),
    ("MobileNetV3-S 1.0", "MobileNetV3", 56e6, 2.5e6, 67.4),
    ("EfficientNet-B0", "EfficientNet", 390e6, 5.3e6, 77.1),
];

pub fn accuracy_vs_macs(log_x: bool) -> ScatterPlot {
    let mut p = ScatterPlot::new(
        "Top-1 accuracy vs MACs",
        "MACs (224×224)",
        "Top-1 accuracy (%)",
    );
    p.log_x = log_x;
    p.frontier = true;
    p.points = MODELS
        .iter()
        .map(|&(l, f, macs, _, acc)| Point::new(l, f, macs, acc))
        .collect();
    p
}

/// Deterministic pseudo-random numbers in [0, 1).
pub fn lcg(seed: u64) -> impl FnMut() -> f64 {
    let mut s = seed;
    move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// SE gates: `rows` classes × `cols` channels, values in [0, 1].
pub fn se_gates(rows: usize, cols: usize) -> Heatmap {
    let mut r = lcg(7);
    let values: Vec<Vec<f32>> = (0..rows)
        .map(|i| {
            (0..cols)
                .map(|c| {
                    let base = 0.5 + 0.4 * ((c as f64 / 37.0 + i as f64).sin());
                    (0.8 * base + 0.2 * r()) as f32
                })
                .collect()
        })
        .collect();
    let mut h = Heatmap::new(
        format!("SE gates, last block ({rows} classes × {cols} channels)"),
        (0..rows).map(|i| format!("class {i}")).collect(),
        (0..cols).map(|c| c.to_string()).collect(),
        values,
    );
    h.vmin = 0.0;
    h.vmax = 1.0;
    h
}

pub fn gate_histograms(blocks: usize) -> HistogramGrid {
    let mut g = HistogramGrid::new("SE gate distribution per block", "gate value");
    g.range = Some((0.0, 1.0));
    let mut r = lcg(11);
    for b in 0..blocks {
        let centre = 0.2 + 0.6 * b as f64 / blocks.max(1) as f64;
        let values = (0..2000)
            .map(|_| (centre + 0.25 * (r() + r() + r() - 1.5)).clamp(0.0, 1.0))
            .collect();
        g.panels
            .push(Histogram::new(format!("block {}", b + 1), 25, values));
    }
    g
}

pub fn training_curves() -> LinePlot {
    let mut p = LinePlot::new("Training curves", "epoch", "top-1 accuracy (%)");
    for (name, rate, top) in [
        ("MobileNetV2", 0.12, 72.0),
        ("ShuffleNetV2", 0.15, 69.4),
        ("MobileNetV2 + SE", 0.11, 73.5),
    ] {
        let pts = (0..=60)
            .map(|e| (e as f64, top * (1.0 - (-(rate * e as f64)).exp())))
            .collect();
        p.series.push((name.to_string(), pts));
    }
    p
}
