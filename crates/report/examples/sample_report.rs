//! Writes a sample effcnn report built from published ImageNet numbers.
//!
//! `cargo run -p effcnn-report --example sample_report -- OUT_DIR`

#[path = "../tests/common/mod.rs"]
mod common;

use effcnn_report::{write_report, Cell, Column, Figure, Point, Report, ScatterPlot, Table};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: sample_report OUT_DIR")?;
    let mut table = Table::new(
        "ImageNet models",
        vec![
            Column::left("Model"),
            Column::left("Family"),
            Column::right("Params"),
            Column::right("MACs"),
            Column::right("Top-1"),
        ],
    );
    for &(label, family, macs, params, acc) in &common::MODELS {
        table.push_row(vec![
            Cell::text(label),
            Cell::text(family),
            Cell::count(params as u64),
            Cell::mega(macs),
            Cell::percent(acc / 100.0, 1),
        ])?;
    }
    table.push_note("MACs for one 224×224 image; accuracies as published.");

    let mut by_params = ScatterPlot::new(
        "Top-1 accuracy vs parameters",
        "parameters",
        "Top-1 accuracy (%)",
    );
    by_params.frontier = true;
    by_params.points = common::MODELS
        .iter()
        .map(|&(l, f, _, p, a)| Point::new(l, f, p, a))
        .collect();

    let mut report = Report::new("effcnn sample report");
    report
        .section("Models")
        .text("Published numbers of **efficient CNNs**; the dashed line is the *Pareto frontier*.\n\n- costs use `MACs`\n- see [effcnn](https://example.org/effcnn)")
        .table(table)
        .figure(Figure::new("acc_vs_macs", "Top-1 accuracy vs MACs (log scale)", common::accuracy_vs_macs(true)))
        .figure(Figure::new("acc_vs_params", "Top-1 accuracy vs parameters", by_params));
    report
        .section("Squeeze-and-excitation")
        .figure(Figure::new(
            "se_gates",
            "SE gates of the last block, per class",
            common::se_gates(10, 1280),
        ))
        .figure(Figure::new(
            "se_hist",
            "Distribution of SE gates per block",
            common::gate_histograms(17),
        ))
        .figure(Figure::new(
            "curves",
            "Training curves",
            common::training_curves(),
        ));
    for path in write_report(std::path::Path::new(&dir), &report)? {
        println!("{}", path.display());
    }
    Ok(())
}
