//! Line plots of one or more named series.

use plotters::prelude::*;

use super::axes::{draw_legend, legend_width, Axis, AxisText, Frame, LegendEntry, Swatch};
use super::canvas::{Canvas, Px, Rect, LABEL_SIZE, SMALL_SIZE, TICK_SIZE};
use super::sealed::Drawn;
use super::{palette, sealed, Chart};

/// Series with at most this many points also get point markers.
pub const MARKER_LIMIT: usize = 60;

/// Named `(x, y)` series drawn as lines, e.g. training curves or per-depth
/// statistics.
///
/// Series `i` uses palette colour `i`. A NaN or infinite point breaks the
/// line; points are joined in the given order (sort them by `x` for curves).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinePlot {
    /// Title above the plot.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// `(name, points)` of each series; the name is shown in the legend.
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

impl LinePlot {
    /// An empty plot with the given title and axis labels.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        LinePlot {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
        }
    }

    /// Adds a series (builder style).
    pub fn with_series(mut self, name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        self.series.push((name.into(), points));
        self
    }
}

fn finite(p: &(f64, f64)) -> bool {
    p.0.is_finite() && p.1.is_finite()
}

impl sealed::Draw for LinePlot {
    fn title(&self) -> &str {
        &self.title
    }

    fn draw_below<DB: DrawingBackend>(&self, canvas: &Canvas<DB>, top: i32) -> Drawn {
        let all = || {
            self.series
                .iter()
                .flat_map(|(_, p)| p.iter())
                .filter(|p| finite(p))
        };
        let (Some(x), Some(y)) = (
            Axis::from_data(all().map(|p| p.0), false, 0.02),
            Axis::from_data(all().map(|p| p.1), false, 0.06),
        ) else {
            let r = Rect::new(10, top, canvas.width - 10, canvas.height - 8);
            return canvas.no_data(r, "No data");
        };
        let entries: Vec<LegendEntry> = if self.series.iter().all(|(n, _)| n.is_empty()) {
            Vec::new()
        } else {
            self.series
                .iter()
                .enumerate()
                .map(|(i, (name, _))| LegendEntry {
                    label: name.clone(),
                    color: palette(i),
                    swatch: Swatch::Line,
                })
                .collect()
        };
        let lw = if entries.is_empty() {
            0
        } else {
            legend_width(canvas, &entries, SMALL_SIZE, canvas.width * 3 / 10) + 14
        };
        let outer = Rect::new(10, top, canvas.width - lw - 10, canvas.height - 8);
        let text = AxisText {
            x_label: &self.x_label,
            y_label: &self.y_label,
            tick_size: TICK_SIZE,
            label_size: LABEL_SIZE,
        };
        let frame = Frame::layout(canvas, outer, x, y, &text);
        frame.draw(canvas, outer, &text)?;
        for (i, (_, points)) in self.series.iter().enumerate() {
            let color = palette(i);
            let mut segment: Vec<Px> = Vec::new();
            for p in points.iter().chain(std::iter::once(&(f64::NAN, f64::NAN))) {
                if finite(p) {
                    segment.push(frame.px(p.0, p.1));
                } else if !segment.is_empty() {
                    canvas.polyline(&segment, color, 2)?;
                    if segment.len() == 1 {
                        canvas.circle(segment[0], 3, color, true)?;
                    }
                    segment.clear();
                }
            }
            if points.len() <= MARKER_LIMIT {
                for p in points.iter().filter(|p| finite(p)) {
                    canvas.circle(frame.px(p.0, p.1), 3, color, true)?;
                }
            }
        }
        if !entries.is_empty() {
            draw_legend(
                canvas,
                &entries,
                (outer.x1 + 14, frame.rect.y0),
                lw - 14,
                SMALL_SIZE,
            )?;
        }
        Ok(())
    }
}

impl Chart for LinePlot {
    fn default_size(&self) -> (u32, u32) {
        (900, 540)
    }
}
