//! Thin pixel-coordinate drawing helpers over a plotters drawing area.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use super::sealed::Target;
use crate::font::FAMILY;
use crate::ReportError;

pub type Px = (i32, i32);

pub const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
pub const MUTED: RGBColor = RGBColor(0x55, 0x55, 0x55);
pub const GRID: RGBColor = RGBColor(0xe4, 0xe4, 0xe4);
pub const FRAME: RGBColor = RGBColor(0x88, 0x88, 0x88);

/// Font sizes (plotters units: pixel height of the glyph box).
pub const TITLE_SIZE: f64 = 22.0;
pub const LABEL_SIZE: f64 = 16.0;
pub const TICK_SIZE: f64 = 14.0;
pub const SMALL_SIZE: f64 = 13.0;

/// A rectangle in pixels, `x1`/`y1` exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x0: i32,
    pub y0: i32,
    pub x1: i32,
    pub y1: i32,
}

impl Rect {
    pub fn new(x0: i32, y0: i32, x1: i32, y1: i32) -> Self {
        Rect { x0, y0, x1, y1 }
    }
    pub fn width(&self) -> i32 {
        self.x1 - self.x0
    }
    pub fn height(&self) -> i32 {
        self.y1 - self.y0
    }
    pub fn overlap_area(&self, o: &Rect) -> i64 {
        let w = (self.x1.min(o.x1) - self.x0.max(o.x0)).max(0) as i64;
        let h = (self.y1.min(o.y1) - self.y0.max(o.y0)).max(0) as i64;
        w * h
    }
    pub fn contains(&self, o: &Rect) -> bool {
        o.x0 >= self.x0 && o.x1 <= self.x1 && o.y0 >= self.y0 && o.y1 <= self.y1
    }
}

/// Text placement: anchor and optional rotation (reading bottom to top).
#[derive(Clone, Copy)]
pub struct Anchor {
    pub h: HPos,
    pub v: VPos,
    pub vertical: bool,
}

impl Anchor {
    pub const fn new(h: HPos, v: VPos) -> Self {
        Anchor {
            h,
            v,
            vertical: false,
        }
    }
    pub const fn vertical(h: HPos, v: VPos) -> Self {
        Anchor {
            h,
            v,
            vertical: true,
        }
    }
}

pub const LEFT_MID: Anchor = Anchor::new(HPos::Left, VPos::Center);
pub const RIGHT_MID: Anchor = Anchor::new(HPos::Right, VPos::Center);
pub const CENTER_TOP: Anchor = Anchor::new(HPos::Center, VPos::Top);
pub const CENTER_MID: Anchor = Anchor::new(HPos::Center, VPos::Center);

pub struct Canvas<'a, DB: DrawingBackend> {
    area: &'a DrawingArea<DB, Shift>,
    /// Place bitmap glyphs one by one (see [`Canvas::text`]).
    bitmap: bool,
    pub width: i32,
    pub height: i32,
}

fn err<E: std::fmt::Display>(e: E) -> ReportError {
    ReportError::draw(e)
}

impl<'a, DB: DrawingBackend> Canvas<'a, DB> {
    pub fn new(area: &'a DrawingArea<DB, Shift>, target: Target) -> Self {
        let (w, h) = area.dim_in_pixel();
        Canvas {
            area,
            bitmap: target == Target::Bitmap,
            width: w as i32,
            height: h as i32,
        }
    }

    fn style(size: f64, color: &RGBColor, anchor: Anchor) -> TextStyle<'_> {
        let style = TextStyle::from((FAMILY, size).into_font())
            .color(color)
            .pos(Pos::new(anchor.h, anchor.v));
        if anchor.vertical {
            style.transform(FontTransform::Rotate270)
        } else {
            style
        }
    }

    /// Width and height of `text` drawn horizontally at `size`.
    pub fn text_size(&self, text: &str, size: f64) -> (i32, i32) {
        if text.is_empty() {
            return (0, 0);
        }
        let style = TextStyle::from((FAMILY, size).into_font());
        match self.area.estimate_text_size(text, &style) {
            Ok((w, h)) => (w as i32, h as i32),
            // Fall back to a rough estimate; only layout depends on it.
            Err(_) => (
                (text.chars().count() as f64 * size * 0.55) as i32,
                size as i32,
            ),
        }
    }

    /// The bounding box of `text` anchored at `pos`.
    pub fn text_box(&self, text: &str, size: f64, pos: Px, anchor: Anchor) -> Rect {
        let (mut w, mut h) = self.text_size(text, size);
        if anchor.vertical {
            std::mem::swap(&mut w, &mut h);
        }
        let x0 = if anchor.vertical {
            // Rotated 270°: the text's top edge faces left.
            match anchor.v {
                VPos::Top => pos.0,
                VPos::Center => pos.0 - w / 2,
                VPos::Bottom => pos.0 - w,
            }
        } else {
            match anchor.h {
                HPos::Left => pos.0,
                HPos::Center => pos.0 - w / 2,
                HPos::Right => pos.0 - w,
            }
        };
        let y0 = if anchor.vertical {
            match anchor.h {
                HPos::Left => pos.1 - h,
                HPos::Center => pos.1 - h / 2,
                HPos::Right => pos.1,
            }
        } else {
            match anchor.v {
                VPos::Top => pos.1,
                VPos::Center => pos.1 - h / 2,
                VPos::Bottom => pos.1 - h,
            }
        };
        Rect::new(x0, y0, x0 + w, y0 + h)
    }

    pub fn text(
        &self,
        text: &str,
        pos: Px,
        size: f64,
        color: RGBColor,
        anchor: Anchor,
    ) -> Result<(), ReportError> {
        if text.is_empty() {
            return Ok(());
        }
        if !self.bitmap {
            return self
                .area
                .draw(&Text::new(
                    text.to_string(),
                    pos,
                    Self::style(size, &color, anchor),
                ))
                .map_err(err);
        }
        // The bitmap text renderer starts each glyph's pixels at the pen
        // position, ignoring the glyph's side bearing, and sits glyphs higher
        // than SVG viewers do. Drawing glyph by glyph at corrected positions
        // gives evenly spaced text aligned like the SVG output.
        let (w, h) = self.text_size(text, size);
        let dx = match anchor.h {
            HPos::Left => 0,
            HPos::Center => -w / 2,
            HPos::Right => -w,
        };
        let dy = match anchor.v {
            VPos::Top => 0,
            VPos::Center => -h / 2,
            VPos::Bottom => -h,
        } + (0.11 * size).round() as i32;
        let glyph_anchor = Anchor {
            h: HPos::Left,
            v: VPos::Top,
            vertical: anchor.vertical,
        };
        let mut prefix = String::with_capacity(text.len());
        for c in text.chars() {
            let pen = self.text_size(&prefix, size).0;
            prefix.push(c);
            if c.is_whitespace() {
                continue;
            }
            let (ox, oy) = (dx + pen + crate::font::ink_offset(c, size), dy);
            let at = if anchor.vertical {
                (pos.0 + oy, pos.1 - ox)
            } else {
                (pos.0 + ox, pos.1 + oy)
            };
            self.area
                .draw(&Text::new(
                    c.to_string(),
                    at,
                    Self::style(size, &color, glyph_anchor),
                ))
                .map_err(err)?;
        }
        Ok(())
    }

    /// `text` shortened with "…" so that it fits in `max_width` pixels.
    pub fn fit_text(&self, text: &str, size: f64, max_width: i32) -> String {
        if self.text_size(text, size).0 <= max_width {
            return text.to_string();
        }
        let chars: Vec<char> = text.chars().collect();
        let mut n = chars.len();
        while n > 0 {
            n -= 1;
            let s: String = chars[..n].iter().collect::<String>() + "…";
            if self.text_size(&s, size).0 <= max_width {
                return s;
            }
        }
        String::new()
    }

    pub fn fill_rect(&self, r: Rect, color: RGBColor) -> Result<(), ReportError> {
        if r.width() <= 0 || r.height() <= 0 {
            return Ok(());
        }
        self.area
            .draw(&Rectangle::new(
                [(r.x0, r.y0), (r.x1, r.y1)],
                color.filled(),
            ))
            .map_err(err)
    }

    /// Outline of `r` (drawn on its last row/column inclusive).
    pub fn stroke_rect(&self, r: Rect, color: RGBColor) -> Result<(), ReportError> {
        self.polyline(
            &[
                (r.x0, r.y0),
                (r.x1 - 1, r.y0),
                (r.x1 - 1, r.y1 - 1),
                (r.x0, r.y1 - 1),
                (r.x0, r.y0),
            ],
            color,
            1,
        )
    }

    pub fn polyline(&self, pts: &[Px], color: RGBColor, width: u32) -> Result<(), ReportError> {
        if pts.len() < 2 {
            return Ok(());
        }
        self.area
            .draw(&PathElement::new(pts.to_vec(), color.stroke_width(width)))
            .map_err(err)
    }

    /// A dashed straight segment.
    pub fn dashed(
        &self,
        a: Px,
        b: Px,
        color: RGBColor,
        width: u32,
        dash: f64,
        gap: f64,
    ) -> Result<(), ReportError> {
        let (dx, dy) = ((b.0 - a.0) as f64, (b.1 - a.1) as f64);
        let len = (dx * dx + dy * dy).sqrt();
        if len < 0.5 {
            return Ok(());
        }
        let mut t = 0.0;
        while t < len {
            let e = (t + dash).min(len);
            let p = |s: f64| {
                (
                    (a.0 as f64 + dx * s / len).round() as i32,
                    (a.1 as f64 + dy * s / len).round() as i32,
                )
            };
            self.polyline(&[p(t), p(e)], color, width)?;
            t += dash + gap;
        }
        Ok(())
    }

    pub fn polygon(&self, pts: &[Px], color: RGBColor) -> Result<(), ReportError> {
        self.area
            .draw(&Polygon::new(pts.to_vec(), color.filled()))
            .map_err(err)
    }

    pub fn circle(&self, c: Px, r: i32, color: RGBColor, filled: bool) -> Result<(), ReportError> {
        let style = if filled {
            color.filled()
        } else {
            color.stroke_width(2)
        };
        self.area
            .draw(&Circle::new(c, r.max(1), style))
            .map_err(err)
    }

    /// A filled marker of the given shape (0 circle, 1 square, 2 triangle,
    /// 3 diamond, cycling), with a thin white outline so overlaps stay visible.
    pub fn marker(&self, c: Px, r: i32, shape: usize, color: RGBColor) -> Result<(), ReportError> {
        let (x, y) = c;
        match shape % 4 {
            0 => {
                self.circle(c, r + 1, WHITE, true)?;
                self.circle(c, r, color, true)
            }
            1 => {
                let s = r - 1;
                self.fill_rect(Rect::new(x - s - 1, y - s - 1, x + s + 2, y + s + 2), WHITE)?;
                self.fill_rect(Rect::new(x - s, y - s, x + s + 1, y + s + 1), color)
            }
            2 => {
                let t = r + 1;
                self.polygon(
                    &[(x, y - t - 2), (x + t + 2, y + t), (x - t - 2, y + t)],
                    WHITE,
                )?;
                self.polygon(&[(x, y - t), (x + t, y + t - 1), (x - t, y + t - 1)], color)
            }
            _ => {
                let t = r + 1;
                self.polygon(
                    &[
                        (x, y - t - 1),
                        (x + t + 1, y),
                        (x, y + t + 1),
                        (x - t - 1, y),
                    ],
                    WHITE,
                )?;
                self.polygon(&[(x, y - t), (x + t, y), (x, y + t), (x - t, y)], color)
            }
        }
    }

    /// The plot title centred at the top; returns the y below it.
    pub fn title(&self, title: &str) -> Result<i32, ReportError> {
        let top = 12;
        if title.is_empty() {
            return Ok(top);
        }
        let t = self.fit_text(title, TITLE_SIZE, self.width - 20);
        self.text(&t, (self.width / 2, top), TITLE_SIZE, INK, CENTER_TOP)?;
        Ok(top + self.text_size(&t, TITLE_SIZE).1 + 12)
    }

    /// A "No data" message centred in `r`, with a light frame.
    pub fn no_data(&self, r: Rect, message: &str) -> Result<(), ReportError> {
        self.stroke_rect(r, GRID)?;
        self.text(
            message,
            ((r.x0 + r.x1) / 2, (r.y0 + r.y1) / 2),
            LABEL_SIZE,
            MUTED,
            CENTER_MID,
        )
    }
}
