//! Heatmaps with a colour bar (e.g. SE gates, channels × classes).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::axes::{nice_step, Axis};
use super::canvas::{Anchor, Canvas, Rect, FRAME, MUTED, SMALL_SIZE, TICK_SIZE};
use super::sealed::Drawn;
use super::{sealed, viridis, Chart};

/// A heatmap of `values[row][col]` with a viridis colour scale and colour bar.
///
/// Values are mapped linearly from `vmin` (dark) to `vmax` (bright) and
/// clamped; when `vmin`/`vmax` are not finite or `vmin >= vmax`, the data
/// range is used instead. NaN values are drawn grey; rows shorter than the
/// longest row are padded with NaN. Missing labels are replaced by the index.
///
/// Any number of rows and columns fits the image: when there are more
/// columns (rows) than pixels, neighbouring columns (rows) are averaged, and
/// only as many labels are drawn as fit without overlapping.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Heatmap {
    /// Title above the plot.
    pub title: String,
    /// One label per row, drawn on the left.
    pub row_labels: Vec<String>,
    /// One label per column, drawn below.
    pub col_labels: Vec<String>,
    /// The values, row-major.
    pub values: Vec<Vec<f32>>,
    /// Value drawn with the darkest colour.
    pub vmin: f32,
    /// Value drawn with the brightest colour.
    pub vmax: f32,
}

impl Heatmap {
    /// A heatmap whose colour range is the range of the data.
    pub fn new(
        title: impl Into<String>,
        row_labels: Vec<String>,
        col_labels: Vec<String>,
        values: Vec<Vec<f32>>,
    ) -> Self {
        let mut h = Heatmap {
            title: title.into(),
            row_labels,
            col_labels,
            values,
            vmin: f32::NAN,
            vmax: f32::NAN,
        };
        if let Some((lo, hi)) = h.data_range() {
            h.vmin = lo;
            h.vmax = hi;
        }
        h
    }

    /// Minimum and maximum of the finite values, `None` when there are none.
    pub fn data_range(&self) -> Option<(f32, f32)> {
        let mut it = self
            .values
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite());
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v))))
    }

    /// The colour range actually used: `(vmin, vmax)` when valid, else the data range.
    pub fn color_range(&self) -> Option<(f64, f64)> {
        let (lo, hi) = if self.vmin.is_finite() && self.vmax.is_finite() && self.vmin < self.vmax {
            (self.vmin, self.vmax)
        } else {
            self.data_range()?
        };
        let (lo, hi) = (lo as f64, hi as f64);
        Some(if hi > lo {
            (lo, hi)
        } else {
            (lo - 0.5, hi + 0.5)
        })
    }

    fn n_cols(&self) -> usize {
        self.values.iter().map(Vec::len).max().unwrap_or(0)
    }

    fn row_label(&self, i: usize) -> String {
        self.row_labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| i.to_string())
    }

    fn col_label(&self, i: usize) -> String {
        self.col_labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| i.to_string())
    }

    /// Mean of the finite values in rows `r0..r1`, columns `c0..c1`.
    fn block_mean(&self, r0: usize, r1: usize, c0: usize, c1: usize) -> f64 {
        let (mut sum, mut n) = (0.0f64, 0usize);
        for row in &self.values[r0..r1] {
            for &v in row.get(c0..c1.min(row.len())).unwrap_or(&[]) {
                if v.is_finite() {
                    sum += v as f64;
                    n += 1;
                }
            }
        }
        if n == 0 {
            f64::NAN
        } else {
            sum / n as f64
        }
    }
}

const NAN_COLOR: RGBColor = RGBColor(0xd0, 0xd0, 0xd0);
const BAR_W: i32 = 18;

/// Label indices `0, k, 2k, ...` with `k` a 1-2-5 step so that labels are at
/// least `min_gap` pixels apart when cells are `cell` pixels wide.
fn label_step(cell: f64, min_gap: f64) -> usize {
    if cell >= min_gap {
        1
    } else {
        nice_step(min_gap / cell.max(1e-9)).round().max(1.0) as usize
    }
}

impl sealed::Draw for Heatmap {
    fn title(&self) -> &str {
        &self.title
    }

    fn draw_below<DB: DrawingBackend>(&self, canvas: &Canvas<DB>, top: i32) -> Drawn {
        let (n_rows, n_cols) = (self.values.len(), self.n_cols());
        let range = self.color_range();
        let (lo, hi) = match range {
            Some(r) if n_rows > 0 && n_cols > 0 => r,
            _ => {
                let r = Rect::new(10, top, canvas.width - 10, canvas.height - 8);
                return canvas.no_data(r, "No data");
            }
        };
        let (_, th) = canvas.text_size("0123456789", SMALL_SIZE);

        // Colour bar ticks decide the right margin.
        let bar_ticks = Axis::linear(lo, hi).ticks(6);
        let bar_label_w = bar_ticks
            .iter()
            .map(|(_, s)| canvas.text_size(s, SMALL_SIZE).0)
            .max()
            .unwrap_or(0);
        let right = 24 + BAR_W + 8 + bar_label_w + 12;

        // Row labels decide the left margin.
        let max_label_w = canvas.width / 4;
        let row_w = (0..n_rows)
            .map(|i| canvas.text_size(&self.row_label(i), SMALL_SIZE).0)
            .max()
            .unwrap_or(0)
            .min(max_label_w);
        let x0 = 12 + row_w + 10;
        let x1 = (canvas.width - right).max(x0 + 10);
        let plot_w = x1 - x0;

        // Column labels: horizontal when short, else rotated.
        let cell_w = plot_w as f64 / n_cols as f64;
        let col_w = (0..n_cols)
            .map(|i| canvas.text_size(&self.col_label(i), SMALL_SIZE).0)
            .max()
            .unwrap_or(0)
            .min(140);
        let rotated = col_w > 48 && cell_w < (col_w + 8) as f64;
        let col_step = if rotated {
            label_step(cell_w, (th + 6) as f64)
        } else {
            label_step(cell_w, (col_w + 12) as f64)
        };
        let bottom = 8 + if rotated { col_w } else { th } + 10;
        let y0 = top + 4;
        let y1 = (canvas.height - bottom).max(y0 + 10);
        let plot_h = y1 - y0;
        let cell_h = plot_h as f64 / n_rows as f64;
        let row_step = label_step(cell_h, (th + 4) as f64);

        // Cells, averaged down to at most one per pixel.
        let d_cols = n_cols.min(plot_w as usize).max(1);
        let d_rows = n_rows.min(plot_h as usize).max(1);
        let edge = |i: usize, n: usize, len: usize| i * len / n;
        for r in 0..d_rows {
            let (r0, r1) = (edge(r, d_rows, n_rows), edge(r + 1, d_rows, n_rows));
            let py0 = y0 + edge(r, d_rows, plot_h as usize) as i32;
            let py1 = y0 + edge(r + 1, d_rows, plot_h as usize) as i32;
            for c in 0..d_cols {
                let (c0, c1) = (edge(c, d_cols, n_cols), edge(c + 1, d_cols, n_cols));
                let px0 = x0 + edge(c, d_cols, plot_w as usize) as i32;
                let px1 = x0 + edge(c + 1, d_cols, plot_w as usize) as i32;
                let v = self.block_mean(r0, r1.max(r0 + 1), c0, c1.max(c0 + 1));
                let color = if v.is_nan() {
                    NAN_COLOR
                } else {
                    viridis((v - lo) / (hi - lo))
                };
                canvas.fill_rect(Rect::new(px0, py0, px1, py1), color)?;
            }
        }
        canvas.stroke_rect(Rect::new(x0 - 1, y0 - 1, x1 + 1, y1 + 1), FRAME)?;

        // Row labels (centred on their row), every `row_step`-th.
        for i in (0..n_rows).step_by(row_step) {
            let cy = y0 + ((i as f64 + 0.5) * cell_h) as i32;
            let s = canvas.fit_text(&self.row_label(i), SMALL_SIZE, max_label_w);
            if row_step > 1 {
                canvas.polyline(&[(x0 - 5, cy), (x0 - 1, cy)], FRAME, 1)?;
            }
            canvas.text(
                &s,
                (x0 - 7, cy),
                SMALL_SIZE,
                MUTED,
                Anchor::new(HPos::Right, VPos::Center),
            )?;
        }
        // Column labels, every `col_step`-th.
        for i in (0..n_cols).step_by(col_step) {
            let cx = x0 + ((i as f64 + 0.5) * cell_w) as i32;
            if col_step > 1 {
                canvas.polyline(&[(cx, y1), (cx, y1 + 4)], FRAME, 1)?;
            }
            let s = canvas.fit_text(&self.col_label(i), SMALL_SIZE, 140);
            if rotated {
                canvas.text(
                    &s,
                    (cx, y1 + 6),
                    SMALL_SIZE,
                    MUTED,
                    Anchor::vertical(HPos::Right, VPos::Center),
                )?;
            } else {
                canvas.text(
                    &s,
                    (cx, y1 + 6),
                    SMALL_SIZE,
                    MUTED,
                    Anchor::new(HPos::Center, VPos::Top),
                )?;
            }
        }

        // Colour bar: one line per pixel row, brightest at the top.
        let bx0 = x1 + 24;
        let bar = Rect::new(bx0, y0, bx0 + BAR_W, y1);
        let bar_h = bar.height().max(1);
        for k in 0..bar_h {
            let t = 1.0 - k as f64 / (bar_h - 1).max(1) as f64;
            canvas.fill_rect(
                Rect::new(bar.x0, bar.y0 + k, bar.x1, bar.y0 + k + 1),
                viridis(t),
            )?;
        }
        canvas.stroke_rect(
            Rect::new(bar.x0 - 1, bar.y0 - 1, bar.x1 + 1, bar.y1 + 1),
            FRAME,
        )?;
        for (v, s) in &bar_ticks {
            let t = (v - lo) / (hi - lo);
            let y = bar.y1 - 1 - (t * (bar_h - 1) as f64).round() as i32;
            canvas.polyline(&[(bar.x1, y), (bar.x1 + 4, y)], FRAME, 1)?;
            canvas.text(
                s,
                (bar.x1 + 7, y),
                TICK_SIZE.min(SMALL_SIZE),
                MUTED,
                Anchor::new(HPos::Left, VPos::Center),
            )?;
        }
        Ok(())
    }
}

impl Chart for Heatmap {
    fn default_size(&self) -> (u32, u32) {
        let rows = self.values.len() as u32;
        let plot_h = (rows * 22).clamp(200, 640);
        (1000, plot_h + 190)
    }
}
