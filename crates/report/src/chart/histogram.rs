//! Histograms, alone or as a grid of small multiples.

use plotters::prelude::*;

use super::axes::{Axis, AxisText, Frame};
use super::canvas::{Canvas, Rect, CENTER_TOP, INK, LABEL_SIZE, SMALL_SIZE, TICK_SIZE};
use super::sealed::Drawn;
use super::{palette, sealed, Chart};
use crate::ReportError;

/// Number of bins used when `bins` is 0.
pub const DEFAULT_BINS: usize = 20;
/// Most bins a histogram uses; larger `bins` values are capped.
pub const MAX_BINS: usize = 10_000;

/// A histogram of `values` with `bins` equal-width bins.
///
/// NaN and infinite values are skipped. Without an explicit range the bins
/// span the data range.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Title of the plot (or of its panel in a [`HistogramGrid`]).
    pub title: String,
    /// Number of bins (0 means [`DEFAULT_BINS`], at most [`MAX_BINS`]).
    pub bins: usize,
    /// The samples.
    pub values: Vec<f64>,
}

impl Histogram {
    /// A histogram.
    pub fn new(title: impl Into<String>, bins: usize, values: Vec<f64>) -> Self {
        Histogram {
            title: title.into(),
            bins,
            values,
        }
    }

    /// The bin range and counts: over `range` when given (values outside it
    /// are not counted, the upper edge belongs to the last bin), else over the
    /// finite data range. `None` when no finite value falls in the range.
    pub fn counts(&self, range: Option<(f64, f64)>) -> Option<(f64, f64, Vec<u64>)> {
        let bins = if self.bins == 0 {
            DEFAULT_BINS
        } else {
            self.bins.min(MAX_BINS)
        };
        let (lo, hi) = match range {
            Some((lo, hi)) if lo.is_finite() && hi.is_finite() && lo < hi => (lo, hi),
            _ => {
                let a = Axis::from_data(self.values.iter().copied(), false, 0.0)?;
                (a.lo, a.hi)
            }
        };
        let mut counts = vec![0u64; bins];
        let mut any = false;
        for &v in &self.values {
            if v.is_finite() && v >= lo && v <= hi {
                let b = (((v - lo) / (hi - lo)) * bins as f64) as usize;
                counts[b.min(bins - 1)] += 1;
                any = true;
            }
        }
        any.then_some((lo, hi, counts))
    }
}

/// Histograms drawn as small multiples in a grid, e.g. one panel per block.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramGrid {
    /// Title above the grid.
    pub title: String,
    /// Label of the horizontal axes, drawn once below the grid.
    pub x_label: String,
    /// The panels, filled row by row.
    pub panels: Vec<Histogram>,
    /// Panels per row (0 chooses about the square root of the panel count).
    pub columns: usize,
    /// Bin range shared by all panels; `None` gives each panel its data range.
    pub range: Option<(f64, f64)>,
}

impl HistogramGrid {
    /// An empty grid.
    pub fn new(title: impl Into<String>, x_label: impl Into<String>) -> Self {
        HistogramGrid {
            title: title.into(),
            x_label: x_label.into(),
            ..Default::default()
        }
    }

    /// `(columns, rows)` of the grid.
    pub fn shape(&self) -> (usize, usize) {
        let n = self.panels.len();
        if n == 0 {
            return (0, 0);
        }
        let cols = if self.columns > 0 {
            self.columns.min(n)
        } else {
            (n as f64).sqrt().ceil() as usize
        };
        (cols, n.div_ceil(cols))
    }
}

/// Font sizes of a histogram panel.
struct PanelText {
    title: f64,
    ticks: f64,
}

fn draw_panel<DB: DrawingBackend>(
    canvas: &Canvas<DB>,
    r: Rect,
    title: &str,
    hist: &Histogram,
    range: Option<(f64, f64)>,
    sizes: &PanelText,
) -> Result<(), ReportError> {
    let (title_size, tick_size) = (sizes.title, sizes.ticks);
    let mut top = r.y0;
    if !title.is_empty() {
        let t = canvas.fit_text(title, title_size, r.width());
        canvas.text(&t, ((r.x0 + r.x1) / 2, top), title_size, INK, CENTER_TOP)?;
        top += canvas.text_size(&t, title_size).1 + 6;
    }
    let inner = Rect::new(r.x0, top, r.x1, r.y1);
    let Some((lo, hi, counts)) = hist.counts(range) else {
        return canvas.no_data(inner, "No data");
    };
    let max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let text = AxisText {
        x_label: "",
        y_label: "",
        tick_size,
        label_size: LABEL_SIZE,
    };
    let frame = Frame::layout(
        canvas,
        inner,
        Axis::linear(lo, hi),
        Axis::linear(0.0, max * 1.08),
        &text,
    );
    frame.draw(canvas, inner, &text)?;
    let n = counts.len();
    let color = palette(0);
    for (b, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let left = lo + (hi - lo) * b as f64 / n as f64;
        let right = lo + (hi - lo) * (b + 1) as f64 / n as f64;
        let (x0, y) = frame.px(left, c as f64);
        let (x1, base) = frame.px(right, 0.0);
        let gap = if x1 - x0 >= 5 { 1 } else { 0 };
        canvas.fill_rect(Rect::new(x0 + gap, y, x1.max(x0 + 1), base), color)?;
    }
    Ok(())
}

impl sealed::Draw for Histogram {
    fn title(&self) -> &str {
        &self.title
    }

    fn draw_below<DB: DrawingBackend>(&self, canvas: &Canvas<DB>, top: i32) -> Drawn {
        let r = Rect::new(12, top, canvas.width - 16, canvas.height - 8);
        let sizes = PanelText {
            title: LABEL_SIZE,
            ticks: TICK_SIZE,
        };
        draw_panel(canvas, r, "", self, None, &sizes)
    }
}

impl Chart for Histogram {
    fn default_size(&self) -> (u32, u32) {
        (720, 460)
    }
}

impl sealed::Draw for HistogramGrid {
    fn title(&self) -> &str {
        &self.title
    }

    fn draw_below<DB: DrawingBackend>(&self, canvas: &Canvas<DB>, top: i32) -> Drawn {
        let (cols, rows) = self.shape();
        let label_h = if self.x_label.is_empty() {
            0
        } else {
            canvas.text_size(&self.x_label, LABEL_SIZE).1 + 12
        };
        let grid = Rect::new(8, top, canvas.width - 8, canvas.height - 6 - label_h);
        if cols == 0 {
            return canvas.no_data(grid, "No data");
        }
        let cw = grid.width() / cols as i32;
        let rh = grid.height() / rows as i32;
        for (k, hist) in self.panels.iter().enumerate() {
            let (c, r) = ((k % cols) as i32, (k / cols) as i32);
            let cell = Rect::new(
                grid.x0 + c * cw + 4,
                grid.y0 + r * rh + 2,
                grid.x0 + (c + 1) * cw - 10,
                grid.y0 + (r + 1) * rh - 10,
            );
            draw_panel(
                canvas,
                cell,
                &hist.title,
                hist,
                self.range,
                &PanelText {
                    title: SMALL_SIZE + 1.0,
                    ticks: SMALL_SIZE - 1.0,
                },
            )?;
        }
        if !self.x_label.is_empty() {
            let s = canvas.fit_text(&self.x_label, LABEL_SIZE, grid.width());
            canvas.text(
                &s,
                (canvas.width / 2, grid.y1 + 6),
                LABEL_SIZE,
                INK,
                CENTER_TOP,
            )?;
        }
        Ok(())
    }
}

impl Chart for HistogramGrid {
    fn default_size(&self) -> (u32, u32) {
        let (cols, rows) = self.shape();
        let (cols, rows) = (cols.max(1) as u32, rows.max(1) as u32);
        let w = (cols * 250).clamp(420, 1400);
        let h = 70 + rows * 210 + if self.x_label.is_empty() { 0 } else { 30 };
        (w, h.min(super::MAX_SIZE))
    }
}
