//! Tables, plots and reports of effcnn.
//!
//! This crate takes plain data (numbers, strings, vectors) and turns it into
//! result documents; it knows nothing about models or training.
//!
//! * [`Table`]: aligned plain text, Markdown, CSV (RFC 4180) and JSON, with
//!   number formatting helpers in [`format`](mod@format).
//! * Plots implementing [`Chart`], rendered to PNG and SVG by the same
//!   drawing code: [`ScatterPlot`] (labelled points by family, optional
//!   Pareto frontier), [`Heatmap`] (with colour bar, any number of columns),
//!   [`Histogram`] / [`HistogramGrid`] (small multiples) and [`LinePlot`].
//! * [`pareto_frontier`]: the non-dominated points of a cost/quality trade-off.
//! * [`Report`]: sections of text, tables and figures written by
//!   [`write_report`] as `report.md`, a self-contained `report.html` and the
//!   figure files, each written atomically.
//!
//! Text in images uses the embedded DejaVu Sans font, so no system font
//! libraries are needed. All output is deterministic: the same input gives
//! the same bytes.
//!
//! ```
//! use effcnn_report::{Chart, Point, ScatterPlot};
//! let mut plot = ScatterPlot::new("Accuracy vs MACs", "MACs", "Top-1 (%)");
//! plot.points.push(Point::new("MobileNetV2 1.0", "MobileNetV2", 300e6, 72.0));
//! plot.points.push(Point::new("ShuffleNetV2 1.0", "ShuffleNetV2", 146e6, 69.4));
//! plot.frontier = true;
//! let svg = plot.render_svg(800, 500).unwrap();
//! assert!(svg.contains("MobileNetV2 1.0"));
//! ```

mod calc;
mod chart;
mod error;
mod files;
mod font;
pub mod format;
mod markup;
mod pareto;
mod report;
mod table;

pub use calc::calc_table;
pub use chart::{
    Chart, CostPoint, Heatmap, Histogram, HistogramGrid, LinePlot, Plot, Point, ScatterPlot,
    DEFAULT_BINS, MAX_BINS, MAX_SIZE, MIN_SIZE, PALETTE,
};
pub use error::ReportError;
pub use files::write_file_atomic;
pub use pareto::pareto_frontier;
pub use report::{
    render_report, write_report, Block, Figure, OutputFile, Report, Section, HTML_NAME,
    MARKDOWN_NAME,
};
pub use table::{Align, Cell, Column, Table};
