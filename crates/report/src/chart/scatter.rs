//! Labelled scatter plots with an optional Pareto frontier.

use std::collections::BTreeSet;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::axes::{draw_legend, legend_width, Axis, AxisText, Frame, LegendEntry, Swatch};
use super::canvas::{Anchor, Canvas, Rect, INK, LABEL_SIZE, SMALL_SIZE, TICK_SIZE};
use super::sealed::Drawn;
use super::{palette, sealed, Chart};
use crate::pareto::pareto_frontier;

/// One labelled point of a [`ScatterPlot`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Point {
    /// Text drawn next to the point (e.g. `MobileNetV2 0.75`); may be empty.
    pub label: String,
    /// Family the point belongs to (e.g. `MobileNetV2`): decides colour, marker and legend entry.
    pub family: String,
    /// Horizontal value (e.g. MACs).
    pub x: f64,
    /// Vertical value (e.g. top-1 accuracy).
    pub y: f64,
}

impl Point {
    /// A point.
    pub fn new(label: impl Into<String>, family: impl Into<String>, x: f64, y: f64) -> Self {
        Point {
            label: label.into(),
            family: family.into(),
            x,
            y,
        }
    }
}

/// One model of [`ScatterPlot::accuracy_vs_cost`]: costs in millions, accuracy in percent.
#[derive(Clone, Debug, PartialEq)]
pub struct CostPoint {
    pub label: String,
    pub family: String,
    /// Multiply-accumulates, millions.
    pub macs_m: f64,
    /// Parameters, millions.
    pub params_m: f64,
    /// Accuracy, percent.
    pub accuracy: f64,
}

/// A scatter plot of labelled points, coloured by family, e.g. accuracy vs MACs.
///
/// Families get palette colours and marker shapes in sorted name order, so
/// plots over the same families use the same colours. Points with a NaN or
/// infinite coordinate (or `x <= 0` with `log_x`) are skipped. With
/// `frontier`, the Pareto frontier (lower `x`, higher `y`, see
/// [`crate::pareto_frontier`]) is drawn as a dashed line and its points are ringed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScatterPlot {
    /// Title above the plot.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// Logarithmic horizontal axis.
    pub log_x: bool,
    /// The points.
    pub points: Vec<Point>,
    /// Draw the Pareto frontier.
    pub frontier: bool,
}

impl ScatterPlot {
    /// An empty plot with the given title and axis labels.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        ScatterPlot {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            ..Default::default()
        }
    }

    /// An accuracy-vs-cost plot: log-scale `x`, the Pareto frontier drawn, these points.
    pub fn cost_plot(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
        points: Vec<Point>,
    ) -> Self {
        ScatterPlot {
            log_x: true,
            frontier: true,
            points,
            ..ScatterPlot::new(title, x_label, y_label)
        }
    }

    /// The two accuracy-vs-cost plots of a comparison: accuracy against MACs and against
    /// parameters (millions, log scale), each as `(key, what, plot)` with key `macs` / `params`
    /// and `what` `MACs` / `parameters`, titled `title(what)`; `frontier` draws the Pareto
    /// frontier.
    pub fn accuracy_vs_cost(
        models: &[CostPoint],
        title: impl Fn(&str) -> String,
        y_label: &str,
        frontier: bool,
    ) -> [(&'static str, &'static str, ScatterPlot); 2] {
        let plot = |what: &str, x: fn(&CostPoint) -> f64| {
            let points = models
                .iter()
                .map(|m| Point::new(m.label.clone(), m.family.clone(), x(m), m.accuracy))
                .collect();
            let mut p = ScatterPlot::cost_plot(
                title(what),
                format!("{what} (millions, log)"),
                y_label,
                points,
            );
            p.frontier = frontier;
            p
        };
        [
            ("macs", "MACs", plot("MACs", |m| m.macs_m)),
            ("params", "parameters", plot("parameters", |m| m.params_m)),
        ]
    }

    /// The distinct families in the order of their colours (sorted by name).
    pub fn families(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.points.iter().map(|p| p.family.as_str()).collect();
        set.into_iter().map(str::to_string).collect()
    }

    fn drawable(&self, p: &Point) -> bool {
        p.x.is_finite() && p.y.is_finite() && (!self.log_x || p.x > 0.0)
    }

    /// Indices into `points` of the Pareto-optimal drawable points (lower `x`,
    /// higher `y`), sorted by `x`.
    pub fn frontier_indices(&self) -> Vec<usize> {
        let idx: Vec<usize> = (0..self.points.len())
            .filter(|&i| self.drawable(&self.points[i]))
            .collect();
        let xy: Vec<(f64, f64)> = idx
            .iter()
            .map(|&i| (self.points[i].x, self.points[i].y))
            .collect();
        pareto_frontier(&xy, true, true)
            .into_iter()
            .map(|k| idx[k])
            .collect()
    }
}

const MARKER_R: i32 = 5;
/// Radius of the ring around frontier points.
const RING_R: i32 = MARKER_R + 4;

impl sealed::Draw for ScatterPlot {
    fn title(&self) -> &str {
        &self.title
    }

    fn draw_below<DB: DrawingBackend>(&self, canvas: &Canvas<DB>, top: i32) -> Drawn {
        let families = self.families();
        let family_index = |f: &str| {
            families
                .binary_search_by(|g| g.as_str().cmp(f))
                .unwrap_or(0)
        };
        let shown: Vec<usize> = (0..self.points.len())
            .filter(|&i| self.drawable(&self.points[i]))
            .collect();
        let outer_all = Rect::new(10, top, canvas.width - 10, canvas.height - 8);
        if shown.is_empty() {
            return canvas.no_data(outer_all, "No data");
        }
        let frontier = if self.frontier {
            self.frontier_indices()
        } else {
            Vec::new()
        };

        let mut entries: Vec<LegendEntry> = families
            .iter()
            .enumerate()
            .map(|(i, f)| LegendEntry {
                label: if f.is_empty() {
                    "(none)".into()
                } else {
                    f.clone()
                },
                color: palette(i),
                swatch: Swatch::Marker(i),
            })
            .collect();
        if self.frontier {
            entries.push(LegendEntry {
                label: "Pareto frontier".into(),
                color: FRONTIER,
                swatch: Swatch::Dashed,
            });
        }
        let lw = legend_width(canvas, &entries, SMALL_SIZE, canvas.width * 3 / 10);
        let outer = Rect::new(10, top, canvas.width - lw - 24, canvas.height - 8);

        let pts = || shown.iter().map(|&i| &self.points[i]);
        let x =
            Axis::from_data(pts().map(|p| p.x), self.log_x, 0.07).unwrap_or(Axis::linear(0.0, 1.0));
        let y = Axis::from_data(pts().map(|p| p.y), false, 0.08).unwrap_or(Axis::linear(0.0, 1.0));
        let text = AxisText {
            x_label: &self.x_label,
            y_label: &self.y_label,
            tick_size: TICK_SIZE,
            label_size: LABEL_SIZE,
        };
        let frame = Frame::layout(canvas, outer, x, y, &text);
        frame.draw(canvas, outer, &text)?;

        let at = |i: usize| frame.px(self.points[i].x, self.points[i].y);
        for w in frontier.windows(2) {
            canvas.dashed(at(w[0]), at(w[1]), FRONTIER, 2, 7.0, 4.0)?;
        }
        for &i in &frontier {
            canvas.circle(at(i), RING_R, FRONTIER, false)?;
        }
        for &i in &shown {
            let f = family_index(&self.points[i].family);
            canvas.marker(at(i), MARKER_R, f, palette(f))?;
        }

        // Labels: frontier points first, then the rest, each placed at the
        // first candidate position that stays inside the plot and overlaps
        // no marker or earlier label.
        let mut obstacles: Vec<Rect> = shown
            .iter()
            .map(|&i| {
                let (x, y) = at(i);
                let r = if frontier.contains(&i) {
                    RING_R + 1
                } else {
                    MARKER_R + 2
                };
                Rect::new(x - r, y - r, x + r + 1, y + r + 1)
            })
            .collect();
        // The frontier line, as a chain of small boxes.
        for w in frontier.windows(2) {
            let (a, b) = (at(w[0]), at(w[1]));
            let len = (((b.0 - a.0) as f64).hypot((b.1 - a.1) as f64) / 4.0).ceil() as i32;
            for k in 0..=len {
                let t = k as f64 / len.max(1) as f64;
                let x = a.0 + ((b.0 - a.0) as f64 * t).round() as i32;
                let y = a.1 + ((b.1 - a.1) as f64 * t).round() as i32;
                obstacles.push(Rect::new(x - 2, y - 2, x + 3, y + 3));
            }
        }
        let mut order: Vec<usize> = frontier.clone();
        order.extend(shown.iter().filter(|i| !frontier.contains(i)));
        for i in order {
            let label = &self.points[i].label;
            if label.is_empty() {
                continue;
            }
            let (px, py) = at(i);
            // Keep clear of the marker, or of the ring around frontier points.
            let (g, d) = if frontier.contains(&i) {
                (RING_R + 4, RING_R - 2)
            } else {
                (MARKER_R + 4, MARKER_R + 1)
            };
            let candidates = [
                ((px + g, py), Anchor::new(HPos::Left, VPos::Center)),
                ((px - g, py), Anchor::new(HPos::Right, VPos::Center)),
                ((px, py - g), Anchor::new(HPos::Center, VPos::Bottom)),
                ((px, py + g), Anchor::new(HPos::Center, VPos::Top)),
                ((px + d, py - d), Anchor::new(HPos::Left, VPos::Bottom)),
                ((px + d, py + d), Anchor::new(HPos::Left, VPos::Top)),
                ((px - d, py - d), Anchor::new(HPos::Right, VPos::Bottom)),
                ((px - d, py + d), Anchor::new(HPos::Right, VPos::Top)),
            ];
            let own = obstacles_index(&shown, i);
            let mut best: Option<(i64, usize, Rect)> = None;
            for (k, (pos, anchor)) in candidates.iter().enumerate() {
                let b = canvas.text_box(label, SMALL_SIZE, *pos, *anchor);
                let mut score: i64 = obstacles
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| Some(*j) != own)
                    .map(|(_, o)| b.overlap_area(o))
                    .sum();
                if !frame.rect.contains(&b) {
                    score += 1_000_000 + (b.width() * b.height()) as i64;
                }
                if best.is_none_or(|(s, _, _)| score < s) {
                    best = Some((score, k, b));
                }
                if score == 0 {
                    break;
                }
            }
            if let Some((_, k, b)) = best {
                let (pos, anchor) = candidates[k];
                canvas.text(label, pos, SMALL_SIZE, INK, anchor)?;
                obstacles.push(b);
            }
        }

        draw_legend(
            canvas,
            &entries,
            (outer.x1 + 14, frame.rect.y0),
            lw,
            SMALL_SIZE,
        )
    }
}

fn obstacles_index(shown: &[usize], i: usize) -> Option<usize> {
    shown.iter().position(|&s| s == i)
}

const FRONTIER: RGBColor = RGBColor(0x55, 0x55, 0x55);

impl Chart for ScatterPlot {
    fn default_size(&self) -> (u32, u32) {
        (960, 640)
    }
}
