//! Axes: data ranges, tick selection and the framed plotting rectangle.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::canvas::{Anchor, Canvas, Px, Rect, FRAME, GRID, INK, MUTED, RIGHT_MID};
use crate::format::format_tick;
use crate::ReportError;

/// One axis: a data range, linear or logarithmic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
}

impl Axis {
    /// A linear axis over `[lo, hi]` (`hi > lo` is enforced by widening).
    pub fn linear(lo: f64, hi: f64) -> Self {
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            let d = (lo.abs() * 0.1).max(0.5);
            (lo - d, lo + d)
        };
        Axis { lo, hi, log: false }
    }

    /// The range of the finite values (positive ones when `log`), widened by
    /// `pad` of the span on both sides; `None` when there is no such value.
    pub fn from_data(values: impl IntoIterator<Item = f64>, log: bool, pad: f64) -> Option<Self> {
        let mut min = f64::INFINITY;
        let mut max = f64::NEG_INFINITY;
        for v in values {
            if v.is_finite() && (!log || v > 0.0) {
                min = min.min(v);
                max = max.max(v);
            }
        }
        if min > max {
            return None;
        }
        if log {
            let ratio = (max / min).ln();
            let (lo, hi) = if ratio > 1e-9 {
                let f = (pad * ratio).exp();
                (min / f, max * f)
            } else {
                (min / 1.5, max * 1.5)
            };
            Some(Axis { lo, hi, log: true })
        } else {
            let span = max - min;
            if span > 0.0 {
                Some(Axis::linear(min - pad * span, max + pad * span))
            } else {
                Some(Axis::linear(min, min))
            }
        }
    }

    /// Position of `v` along the axis, 0 at `lo` and 1 at `hi`.
    pub fn fraction(&self, v: f64) -> f64 {
        if self.log {
            (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }

    /// Up to `max` "nice" tick values with their labels.
    pub fn ticks(&self, max: usize) -> Vec<(f64, String)> {
        let max = max.max(2);
        if self.log {
            if let Some(t) = log_ticks(self.lo, self.hi, max) {
                return t;
            }
        }
        linear_ticks(self.lo, self.hi, max)
    }
}

/// The smallest of 1, 2, 5 × 10^k that is at least `raw`.
pub(crate) fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let base = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * base >= raw * (1.0 - 1e-9) {
            return m * base;
        }
    }
    10.0 * base
}

fn linear_ticks(lo: f64, hi: f64, max: usize) -> Vec<(f64, String)> {
    let span = hi - lo;
    if !(lo.is_finite() && hi.is_finite() && span.is_finite() && span > 0.0) {
        return Vec::new();
    }
    let mut step = nice_step(span / max as f64);
    loop {
        let first = (lo / step - 1e-9).ceil();
        let last = (hi / step + 1e-9).floor();
        if last - first < max as f64 || step > span * 10.0 {
            let magnitude = first.abs().max(last.abs()) * step;
            let count = (last - first + 1.0).clamp(0.0, max as f64) as usize;
            return (0..count)
                .map(|k| {
                    let v = (first + k as f64) * step;
                    (v, format_tick(v, step, magnitude))
                })
                .collect();
        }
        step = nice_step(step * 1.01);
    }
}

fn log_ticks(lo: f64, hi: f64, max: usize) -> Option<Vec<(f64, String)>> {
    const SETS: [&[f64]; 3] = [
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        &[1.0, 2.0, 5.0],
        &[1.0],
    ];
    if !(lo > 0.0 && lo.is_finite() && hi.is_finite() && hi > lo) {
        return None;
    }
    let d0 = lo.log10().floor() as i32;
    let d1 = hi.log10().ceil() as i32;
    if d1 - d0 > 700 {
        return None;
    }
    let within = |v: f64| v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9);
    for set in SETS {
        let ticks: Vec<f64> = (d0..=d1)
            .flat_map(|d| set.iter().map(move |m| m * 10f64.powi(d)))
            .filter(|&v| within(v))
            .collect();
        if ticks.len() < 2 {
            return None;
        }
        if ticks.len() <= max {
            return Some(label_log(ticks));
        }
    }
    // Even one tick per decade is too many: keep every k-th decade.
    let k = ((d1 - d0 + 1) as usize).div_ceil(max).max(1) as i32;
    let ticks: Vec<f64> = (d0..=d1)
        .filter(|d| d.rem_euclid(k) == 0)
        .map(|d| 10f64.powi(d))
        .filter(|&v| within(v))
        .collect();
    (ticks.len() >= 2).then(|| label_log(ticks))
}

fn label_log(ticks: Vec<f64>) -> Vec<(f64, String)> {
    ticks
        .into_iter()
        .map(|v| (v, format_tick(v, 10f64.powf(v.log10().floor()), v)))
        .collect()
}

/// A plotting rectangle with its two axes and ticks.
pub(crate) struct Frame {
    pub rect: Rect,
    pub x: Axis,
    pub y: Axis,
    pub x_ticks: Vec<(f64, String)>,
    pub y_ticks: Vec<(f64, String)>,
    tick_size: f64,
}

/// Axis labels and tick font size for [`Frame::layout`].
pub(crate) struct AxisText<'a> {
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub tick_size: f64,
    pub label_size: f64,
}

impl Frame {
    /// Fits the plotting rectangle, tick labels and axis labels into `outer`.
    pub fn layout<DB: DrawingBackend>(
        canvas: &Canvas<DB>,
        outer: Rect,
        x: Axis,
        y: Axis,
        text: &AxisText,
    ) -> Frame {
        let (_, th) = canvas.text_size("0123456789", text.tick_size);
        let label_h = |s: &str| {
            if s.is_empty() {
                0
            } else {
                canvas.text_size(s, text.label_size).1 + 8
            }
        };
        let bottom = th + 10 + label_h(text.x_label) + 4;
        let plot_h = (outer.height() - bottom - th / 2).max(10);
        let y_ticks = y.ticks((plot_h / (th * 3).max(1)) as usize + 1);
        let y_tick_w = y_ticks
            .iter()
            .map(|(_, s)| canvas.text_size(s, text.tick_size).0)
            .max()
            .unwrap_or(0);
        let left = label_h(text.y_label) + y_tick_w + 12;
        let rect = Rect::new(
            outer.x0 + left,
            outer.y0 + th / 2,
            outer.x1 - 4,
            outer.y0 + th / 2 + plot_h,
        );
        let rect = Rect::new(rect.x0, rect.y0, rect.x1.max(rect.x0 + 10), rect.y1);
        // As many x ticks as fit side by side.
        let mut max_x = 12usize;
        let x_ticks = loop {
            let ticks = x.ticks(max_x);
            let widest = ticks
                .iter()
                .map(|(_, s)| canvas.text_size(s, text.tick_size).0)
                .max()
                .unwrap_or(0);
            if max_x <= 2 || (widest + 16) * ticks.len() as i32 <= rect.width() {
                break ticks;
            }
            max_x -= 1;
        };
        Frame {
            rect,
            x,
            y,
            x_ticks,
            y_ticks,
            tick_size: text.tick_size,
        }
    }

    pub fn px_x(&self, x: f64) -> f64 {
        self.rect.x0 as f64 + self.x.fraction(x) * (self.rect.width() - 1) as f64
    }

    pub fn px_y(&self, y: f64) -> f64 {
        (self.rect.y1 - 1) as f64 - self.y.fraction(y) * (self.rect.height() - 1) as f64
    }

    pub fn px(&self, x: f64, y: f64) -> Px {
        (clamp_px(self.px_x(x)), clamp_px(self.px_y(y)))
    }

    /// Grid, frame, ticks, tick labels and axis labels.
    pub fn draw<DB: DrawingBackend>(
        &self,
        canvas: &Canvas<DB>,
        outer: Rect,
        text: &AxisText,
    ) -> Result<(), ReportError> {
        let r = self.rect;
        for (v, _) in &self.x_ticks {
            let x = clamp_px(self.px_x(*v));
            canvas.polyline(&[(x, r.y0), (x, r.y1 - 1)], GRID, 1)?;
        }
        for (v, _) in &self.y_ticks {
            let y = clamp_px(self.px_y(*v));
            canvas.polyline(&[(r.x0, y), (r.x1 - 1, y)], GRID, 1)?;
        }
        canvas.stroke_rect(r, FRAME)?;
        for (v, s) in &self.x_ticks {
            let x = clamp_px(self.px_x(*v));
            canvas.polyline(&[(x, r.y1), (x, r.y1 + 4)], FRAME, 1)?;
            canvas.text(
                s,
                (x, r.y1 + 7),
                self.tick_size,
                MUTED,
                Anchor::new(HPos::Center, VPos::Top),
            )?;
        }
        for (v, s) in &self.y_ticks {
            let y = clamp_px(self.px_y(*v));
            canvas.polyline(&[(r.x0 - 4, y), (r.x0, y)], FRAME, 1)?;
            canvas.text(s, (r.x0 - 7, y), self.tick_size, MUTED, RIGHT_MID)?;
        }
        let (_, th) = canvas.text_size("0123456789", self.tick_size);
        if !text.x_label.is_empty() {
            let s = canvas.fit_text(text.x_label, text.label_size, r.width());
            canvas.text(
                &s,
                ((r.x0 + r.x1) / 2, r.y1 + th + 14),
                text.label_size,
                INK,
                Anchor::new(HPos::Center, VPos::Top),
            )?;
        }
        if !text.y_label.is_empty() {
            let s = canvas.fit_text(text.y_label, text.label_size, r.height());
            let (_, lh) = canvas.text_size(&s, text.label_size);
            canvas.text(
                &s,
                (outer.x0 + 2 + lh / 2, (r.y0 + r.y1) / 2),
                text.label_size,
                INK,
                Anchor::vertical(HPos::Center, VPos::Center),
            )?;
        }
        Ok(())
    }
}

pub(crate) fn clamp_px(v: f64) -> i32 {
    if v.is_nan() {
        0
    } else {
        v.round().clamp(-1e6, 1e6) as i32
    }
}

/// What a legend entry shows next to its label.
#[derive(Clone, Copy)]
pub(crate) enum Swatch {
    Marker(usize),
    Line,
    Dashed,
}

pub(crate) struct LegendEntry {
    pub label: String,
    pub color: RGBColor,
    pub swatch: Swatch,
}

const SWATCH_W: i32 = 26;
const ROW_H: i32 = 22;

/// Width of the legend box, at most `max`.
pub(crate) fn legend_width<DB: DrawingBackend>(
    canvas: &Canvas<DB>,
    entries: &[LegendEntry],
    size: f64,
    max: i32,
) -> i32 {
    let widest = entries
        .iter()
        .map(|e| canvas.text_size(&e.label, size).0)
        .max()
        .unwrap_or(0);
    (widest + SWATCH_W + 24).min(max)
}

/// Draws the legend box with its top-left corner at `(x, y)`.
pub(crate) fn draw_legend<DB: DrawingBackend>(
    canvas: &Canvas<DB>,
    entries: &[LegendEntry],
    (x, y): Px,
    width: i32,
    size: f64,
) -> Result<(), ReportError> {
    if entries.is_empty() {
        return Ok(());
    }
    let rows = entries.len() as i32;
    let h = rows * ROW_H + 10;
    canvas.fill_rect(
        Rect::new(x, y, x + width, y + h),
        RGBColor(0xfa, 0xfa, 0xfa),
    )?;
    canvas.stroke_rect(Rect::new(x, y, x + width, y + h), GRID)?;
    for (i, e) in entries.iter().enumerate() {
        let cy = y + 5 + ROW_H / 2 + i as i32 * ROW_H;
        let sx = x + 8;
        match e.swatch {
            Swatch::Marker(shape) => canvas.marker((sx + SWATCH_W / 2, cy), 5, shape, e.color)?,
            Swatch::Line => {
                canvas.polyline(&[(sx, cy), (sx + SWATCH_W, cy)], e.color, 2)?;
            }
            Swatch::Dashed => canvas.dashed((sx, cy), (sx + SWATCH_W, cy), e.color, 2, 6.0, 4.0)?,
        }
        let label = canvas.fit_text(&e.label, size, width - SWATCH_W - 22);
        canvas.text(
            &label,
            (sx + SWATCH_W + 8, cy),
            size,
            INK,
            super::canvas::LEFT_MID,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: &[(f64, String)]) -> Vec<f64> {
        t.iter().map(|(v, _)| *v).collect()
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(0.13), 0.2);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(nice_step(100.0), 100.0);
    }

    #[test]
    fn linear() {
        let t = Axis::linear(0.0, 1.0).ticks(6);
        assert_eq!(
            values(&t),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(t[1].1, "0.2");
        let t = Axis::linear(61.3, 78.9).ticks(5);
        assert_eq!(values(&t), vec![65.0, 70.0, 75.0]);
        let labels = |t: Vec<(f64, String)>| t.into_iter().map(|(_, s)| s).collect::<Vec<_>>();
        assert_eq!(
            labels(Axis::linear(0.0, 1e9).ticks(6)),
            ["0", "200M", "400M", "600M", "800M", "1000M"]
        );
        assert_eq!(labels(Axis::linear(0.0, 4e9).ticks(3)), ["0", "2G", "4G"]);
    }

    #[test]
    fn logarithmic() {
        let a = Axis {
            lo: 40e6,
            hi: 700e6,
            log: true,
        };
        let t = a.ticks(8);
        assert_eq!(values(&t), vec![50e6, 100e6, 200e6, 500e6]);
        assert_eq!(t[0].1, "50M");
        // Narrow range inside a decade: falls back to linear ticks.
        let a = Axis {
            lo: 310e6,
            hi: 390e6,
            log: true,
        };
        assert!(a.ticks(6).len() >= 2);
        // Many decades: thinned.
        let a = Axis {
            lo: 1.0,
            hi: 1e12,
            log: true,
        };
        assert!(a.ticks(5).len() <= 5);
    }

    #[test]
    fn extreme_ranges_do_not_hang_or_panic() {
        assert!(Axis::linear(-1e308, 1e308).ticks(5).len() <= 5);
        assert!(Axis::linear(f64::NEG_INFINITY, f64::INFINITY)
            .ticks(5)
            .is_empty());
        assert!(Axis::linear(f64::NAN, f64::NAN).ticks(5).is_empty());
        let a = Axis {
            lo: 1e-320,
            hi: 1e300,
            log: true,
        };
        assert!(a.ticks(6).len() <= 6);
        let a = Axis::from_data([f64::MIN_POSITIVE / 1e10, 1e300], true, 0.5).unwrap();
        assert!(a.ticks(6).len() <= 6);
    }

    #[test]
    fn data_ranges() {
        assert!(Axis::from_data([f64::NAN], false, 0.1).is_none());
        assert!(Axis::from_data([-1.0, 0.0], true, 0.1).is_none());
        let a = Axis::from_data([2.0, 2.0], false, 0.1).unwrap();
        assert!(a.lo < 2.0 && a.hi > 2.0);
        let a = Axis::from_data([1.0, 100.0, f64::INFINITY], true, 0.0).unwrap();
        assert!((a.lo - 1.0).abs() < 1e-9 && (a.hi - 100.0).abs() < 1e-9);
        assert!((a.fraction(10.0) - 0.5).abs() < 1e-9);
    }
}
