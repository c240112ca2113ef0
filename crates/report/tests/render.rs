//! Rendering tests: PNGs decode with the right size and real content, SVGs
//! carry the labels, output is deterministic, and degenerate inputs do not panic.

mod common;

use std::collections::HashSet;

use effcnn_report::{
    Chart, Heatmap, Histogram, HistogramGrid, LinePlot, Plot, Point, ScatterPlot, PALETTE,
};

struct PngStats {
    width: u32,
    height: u32,
    distinct: usize,
    non_white: f64,
    colors: HashSet<[u8; 3]>,
}

fn png_stats(png: &[u8]) -> PngStats {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let img = image::load_from_memory(png).expect("PNG decodes").to_rgb8();
    let colors: HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    let non_white = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    PngStats {
        width: img.width(),
        height: img.height(),
        distinct: colors.len(),
        non_white: non_white as f64 / (img.width() * img.height()) as f64,
        colors,
    }
}

fn check_chart<C: Chart>(chart: &C, min_distinct: usize, min_ink: f64) -> (PngStats, String) {
    let (w, h) = chart.default_size();
    let png = chart.render_png(w, h).unwrap();
    let stats = png_stats(&png);
    assert_eq!((stats.width, stats.height), (w, h));
    assert!(
        stats.distinct >= min_distinct,
        "only {} distinct colours",
        stats.distinct
    );
    assert!(
        stats.non_white >= min_ink,
        "only {:.3} ink",
        stats.non_white
    );
    let svg = chart.render_svg(w, h).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains(&format!("width=\"{w}\" height=\"{h}\"")));
    // Deterministic.
    assert_eq!(chart.render_png(w, h).unwrap(), png);
    assert_eq!(chart.render_svg(w, h).unwrap(), svg);
    (stats, svg)
}

fn rgb(i: usize) -> [u8; 3] {
    let (r, g, b) = PALETTE[i];
    [r, g, b]
}

#[test]
fn scatter_png_and_svg() {
    let plot = common::accuracy_vs_macs(true);
    let (stats, svg) = check_chart(&plot, 200, 0.03);
    // One palette colour per family (6 families), each actually drawn.
    assert_eq!(plot.families().len(), 6);
    for i in 0..6 {
        assert!(stats.colors.contains(&rgb(i)), "family colour {i} missing");
    }
    for (label, ..) in common::MODELS {
        assert!(svg.contains(label), "label {label} missing from SVG");
    }
    for family in plot.families() {
        assert!(svg.contains(&family));
    }
    assert!(svg.contains("Pareto frontier"));
    assert!(svg.contains("Top-1 accuracy vs MACs"));
    assert!(svg.contains("MACs (224×224)"));
    // Log axis ticks.
    assert!(svg.contains(">\n100M\n<"));
    // Linear x axis renders too.
    check_chart(&common::accuracy_vs_macs(false), 200, 0.03);
}

#[test]
fn scatter_frontier_is_pareto() {
    let plot = common::accuracy_vs_macs(true);
    let front: Vec<&str> = plot
        .frontier_indices()
        .into_iter()
        .map(|i| plot.points[i].label.as_str())
        .collect();
    assert_eq!(
        front,
        [
            "ShuffleNetV2 0.5",
            "MobileNetV3-S 1.0",
            "ShuffleNetV2 1.0",
            "MobileNetV2 0.75",
            "MobileNetV3-L 1.0",
            "EfficientNet-B0"
        ]
    );
}

#[test]
fn scatter_skips_bad_points_and_escapes_labels() {
    let mut plot = ScatterPlot::new("t", "x", "y");
    plot.log_x = true;
    plot.frontier = true;
    plot.points = vec![
        Point::new("good <a&b>", "F", 10.0, 1.0),
        Point::new("also good", "G", 100.0, 2.0),
        Point::new("nan-y", "F", 10.0, f64::NAN),
        Point::new("nan-x", "F", f64::NAN, 1.0),
        Point::new("inf-x", "F", f64::INFINITY, 1.0),
        Point::new("zero-x", "F", 0.0, 1.0),
        Point::new("negative-x", "F", -5.0, 1.0),
    ];
    let (_, svg) = check_chart(&plot, 20, 0.005);
    assert!(svg.contains("good &lt;a&amp;b&gt;"));
    assert!(svg.contains("also good"));
    for bad in ["nan-y", "nan-x", "inf-x", "zero-x", "negative-x"] {
        assert!(!svg.contains(bad), "{bad} drawn");
    }
    assert_eq!(plot.frontier_indices(), vec![0, 1]);
}

#[test]
fn empty_and_single_inputs_do_not_panic() {
    let mut nan_heat = Heatmap::new("h", vec![], vec![], vec![vec![f32::NAN; 3]; 2]);
    nan_heat.vmin = f32::NAN;
    let plots: Vec<Plot> = vec![
        ScatterPlot::default().into(),
        ScatterPlot {
            points: vec![Point::new("only", "F", f64::NAN, 1.0)],
            ..Default::default()
        }
        .into(),
        Heatmap::default().into(),
        Heatmap::new("h", vec![], vec![], vec![vec![], vec![]]).into(),
        nan_heat.into(),
        Histogram::default().into(),
        Histogram::new("nan", 0, vec![f64::NAN, f64::INFINITY]).into(),
        HistogramGrid::default().into(),
        LinePlot::default().into(),
        LinePlot::new("t", "x", "y")
            .with_series("empty", vec![])
            .with_series("nan", vec![(f64::NAN, 1.0)])
            .into(),
    ];
    for plot in &plots {
        let (w, h) = plot.default_size();
        let png = plot.render_png(w, h).unwrap();
        assert_eq!(png_stats(&png).width, w);
        let svg = plot.render_svg(w, h).unwrap();
        assert!(svg.contains("No data"), "{plot:?}");
    }
    // A single point, a constant histogram, a constant heatmap: drawn, not "No data".
    let single: Vec<Plot> = vec![
        ScatterPlot {
            points: vec![Point::new("one", "F", 5.0, 5.0)],
            frontier: true,
            log_x: true,
            ..Default::default()
        }
        .into(),
        Histogram::new("const", 10, vec![3.0; 50]).into(),
        Heatmap::new("const", vec![], vec![], vec![vec![0.5; 4]; 3]).into(),
        LinePlot::default()
            .with_series("p", vec![(1.0, 1.0)])
            .into(),
    ];
    for plot in &single {
        let (w, h) = plot.default_size();
        plot.render_png(w, h).unwrap();
        let svg = plot.render_svg(w, h).unwrap();
        assert!(!svg.contains("No data"), "{plot:?}");
    }
    // Extreme values and sizes are drawn without panicking or hanging.
    let extreme: Vec<Plot> = vec![
        ScatterPlot {
            points: vec![
                Point::new("a", "F", -1e308, 1e308),
                Point::new("b", "F", 1e308, -1e308),
            ],
            frontier: true,
            ..Default::default()
        }
        .into(),
        ScatterPlot {
            points: vec![
                Point::new("tiny", "F", 1e-310, 1.0),
                Point::new("huge", "F", 1e300, 2.0),
            ],
            log_x: true,
            ..Default::default()
        }
        .into(),
        Histogram::new("many bins", usize::MAX, vec![1.0, 2.0, 3.0]).into(),
        Heatmap::new("huge", vec![], vec![], vec![vec![f32::MAX, f32::MIN]]).into(),
    ];
    for plot in &extreme {
        let (w, h) = plot.default_size();
        png_stats(&plot.render_png(w, h).unwrap());
        plot.render_svg(w, h).unwrap();
    }
    // Smallest allowed size still renders.
    common::accuracy_vs_macs(true).render_png(64, 64).unwrap();
    common::se_gates(10, 1280).render_svg(64, 64).unwrap();
}

#[test]
fn heatmap_with_1280_columns() {
    let heat = common::se_gates(10, 1280);
    let (stats, svg) = check_chart(&heat, 500, 0.6);
    assert!(svg.contains("class 9"));
    assert!(svg.contains(">\n1200\n<"), "column ticks every 100");
    // Columns are averaged down to at most one cell per pixel.
    let rects = svg.matches("<rect").count();
    let (w, _) = heat.default_size();
    assert!(rects < 10 * w as usize + 1000, "{rects} rects");
    assert!(stats.width == w);

    // Many rows too: 2000 rows × 1280 columns.
    let big = Heatmap::new(
        "big",
        vec![],
        vec![],
        (0..2000)
            .map(|r| (0..1280).map(|c| ((r * c) % 97) as f32).collect())
            .collect(),
    );
    let (w, h) = big.default_size();
    let stats = png_stats(&big.render_png(w, h).unwrap());
    assert!(stats.distinct > 100);
}

#[test]
fn heatmap_ragged_and_range() {
    let heat = Heatmap {
        title: "ragged".into(),
        row_labels: vec!["a".into()],
        col_labels: vec![],
        values: vec![vec![0.0, 1.0, 2.0], vec![5.0], vec![f32::NAN, -1.0]],
        vmin: 2.0,
        vmax: 2.0, // invalid: the data range is used
    };
    assert_eq!(heat.data_range(), Some((-1.0, 5.0)));
    assert_eq!(heat.color_range(), Some((-1.0, 5.0)));
    let (stats, svg) = check_chart(&heat, 30, 0.3);
    // Missing labels become indices; NaN/missing cells are grey.
    assert!(svg.contains(">\n2\n<"));
    assert!(stats.colors.contains(&[0xd0, 0xd0, 0xd0]));
}

#[test]
fn histograms() {
    let grid = common::gate_histograms(17);
    assert_eq!(grid.shape(), (5, 4));
    let (stats, svg) = check_chart(&grid, 50, 0.05);
    assert!(stats.colors.contains(&rgb(0)));
    for b in 1..=17 {
        assert!(svg.contains(&format!("block {b}\n")));
    }
    assert!(svg.contains("gate value"));

    let h = Histogram::new("single", 4, vec![0.0, 0.1, 0.5, 0.9, 1.0, f64::NAN]);
    assert_eq!(h.counts(None), Some((0.0, 1.0, vec![2, 0, 1, 2])));
    assert_eq!(
        h.counts(Some((0.5, 2.0))),
        Some((0.5, 2.0, vec![1, 2, 0, 0]))
    );
    assert_eq!(h.counts(Some((5.0, 6.0))), None);
    check_chart(&h, 20, 0.02);
}

#[test]
fn line_plot() {
    let mut plot = common::training_curves();
    plot.series[0].1[10].1 = f64::NAN; // a gap
    let (stats, svg) = check_chart(&plot, 50, 0.02);
    for i in 0..3 {
        assert!(stats.colors.contains(&rgb(i)), "series colour {i}");
    }
    for (name, _) in &plot.series {
        assert!(svg.contains(&format!("{name}\n")));
    }
    assert!(svg.contains("epoch"));
}
