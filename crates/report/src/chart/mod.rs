//! Plots rendered to PNG (bitmap) and SVG with the same drawing code.
//!
//! Every plot type implements [`Chart`]. Text is drawn with the DejaVu Sans
//! font embedded in the crate, so rendering needs no system font libraries.
//! Rendering is deterministic: the same plot gives the same bytes.

mod axes;
mod canvas;
mod heatmap;
mod histogram;
mod line;
mod scatter;

use std::io::Cursor;
use std::path::Path;

use plotters::prelude::*;

pub use heatmap::Heatmap;
pub use histogram::{Histogram, HistogramGrid, DEFAULT_BINS, MAX_BINS};
pub use line::LinePlot;
pub use scatter::{CostPoint, Point, ScatterPlot};

use crate::ReportError;

/// Smallest accepted image side, in pixels.
pub const MIN_SIZE: u32 = 64;
/// Largest accepted image side, in pixels.
pub const MAX_SIZE: u32 = 8192;

pub(crate) mod sealed {
    use plotters::coord::Shift;
    use plotters::prelude::{DrawingArea, DrawingBackend};

    use super::canvas::Canvas;

    /// What drawing a plot returns.
    pub type Drawn = Result<(), crate::ReportError>;

    /// The kind of image being drawn.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Target {
        /// Pixels (PNG).
        Bitmap,
        /// Vector graphics (SVG).
        Svg,
    }

    /// The backend-generic drawing routine behind [`super::Chart`]: the title on top, the plot
    /// below it.
    pub trait Draw {
        /// The plot's title.
        fn title(&self) -> &str;

        /// Draws the plot below the title, whose bottom edge is at `top`.
        fn draw_below<DB: DrawingBackend>(&self, canvas: &Canvas<DB>, top: i32) -> Drawn;

        /// Draws the whole plot onto `area` (already filled white).
        fn draw<DB: DrawingBackend>(
            &self,
            area: &DrawingArea<DB, Shift>,
            target: Target,
        ) -> Result<(), crate::ReportError> {
            let canvas = Canvas::new(area, target);
            let top = canvas.title(self.title())?;
            self.draw_below(&canvas, top)
        }
    }
}

/// A plot that renders to PNG and SVG.
///
/// Plots without drawable data (no points, only NaN values) render a frame
/// with a "No data" message instead of failing.
pub trait Chart: sealed::Draw {
    /// The image size `(width, height)` in pixels used when none is given.
    fn default_size(&self) -> (u32, u32);

    /// Renders a PNG image of `width` × `height` pixels
    /// (each side between [`MIN_SIZE`] and [`MAX_SIZE`]).
    fn render_png(&self, width: u32, height: u32) -> Result<Vec<u8>, ReportError> {
        check_size(width, height)?;
        crate::font::ensure_registered()?;
        let mut buf = vec![255u8; width as usize * height as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
            root.fill(&WHITE).map_err(ReportError::draw)?;
            self.draw(&root, sealed::Target::Bitmap)?;
            root.present().map_err(ReportError::draw)?;
        }
        let img = image::RgbImage::from_raw(width, height, buf)
            .ok_or_else(|| ReportError::Encode("pixel buffer has the wrong size".into()))?;
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .map_err(|e| ReportError::Encode(e.to_string()))?;
        Ok(out)
    }

    /// Renders an SVG document of `width` × `height` pixels
    /// (each side between [`MIN_SIZE`] and [`MAX_SIZE`]).
    fn render_svg(&self, width: u32, height: u32) -> Result<String, ReportError> {
        check_size(width, height)?;
        crate::font::ensure_registered()?;
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
            root.fill(&WHITE).map_err(ReportError::draw)?;
            self.draw(&root, sealed::Target::Svg)?;
            root.present().map_err(ReportError::draw)?;
        }
        Ok(out)
    }

    /// Renders at the default size and writes a PNG file atomically.
    fn write_png(&self, path: &Path) -> Result<(), ReportError> {
        let (w, h) = self.default_size();
        crate::files::write_file_atomic(path, &self.render_png(w, h)?)
    }

    /// Renders at the default size and writes an SVG file atomically.
    fn write_svg(&self, path: &Path) -> Result<(), ReportError> {
        let (w, h) = self.default_size();
        crate::files::write_file_atomic(path, self.render_svg(w, h)?.as_bytes())
    }
}

fn check_size(width: u32, height: u32) -> Result<(), ReportError> {
    let ok = |v: u32| (MIN_SIZE..=MAX_SIZE).contains(&v);
    if ok(width) && ok(height) {
        Ok(())
    } else {
        Err(ReportError::Invalid(format!(
            "image size {width}x{height}: each side must be between {MIN_SIZE} and {MAX_SIZE} pixels"
        )))
    }
}

/// Any of the plot types, for use in a [`crate::Figure`].
#[derive(Clone, Debug, PartialEq)]
pub enum Plot {
    /// A labelled scatter plot.
    Scatter(ScatterPlot),
    /// A heatmap with a colour bar.
    Heatmap(Heatmap),
    /// A single histogram.
    Histogram(Histogram),
    /// Histograms as small multiples.
    Histograms(HistogramGrid),
    /// Line series.
    Line(LinePlot),
}

impl sealed::Draw for Plot {
    fn title(&self) -> &str {
        match self {
            Plot::Scatter(p) => p.title(),
            Plot::Heatmap(p) => p.title(),
            Plot::Histogram(p) => p.title(),
            Plot::Histograms(p) => p.title(),
            Plot::Line(p) => p.title(),
        }
    }

    fn draw_below<DB: DrawingBackend>(
        &self,
        canvas: &canvas::Canvas<DB>,
        top: i32,
    ) -> sealed::Drawn {
        match self {
            Plot::Scatter(p) => p.draw_below(canvas, top),
            Plot::Heatmap(p) => p.draw_below(canvas, top),
            Plot::Histogram(p) => p.draw_below(canvas, top),
            Plot::Histograms(p) => p.draw_below(canvas, top),
            Plot::Line(p) => p.draw_below(canvas, top),
        }
    }
}

impl Chart for Plot {
    fn default_size(&self) -> (u32, u32) {
        match self {
            Plot::Scatter(p) => p.default_size(),
            Plot::Heatmap(p) => p.default_size(),
            Plot::Histogram(p) => p.default_size(),
            Plot::Histograms(p) => p.default_size(),
            Plot::Line(p) => p.default_size(),
        }
    }
}

macro_rules! impl_from_plot {
    ($($v:ident($t:ty)),*) => {
        $(impl From<$t> for Plot {
            fn from(p: $t) -> Self {
                Plot::$v(p)
            }
        })*
    };
}
impl_from_plot!(
    Scatter(ScatterPlot),
    Heatmap(Heatmap),
    Histogram(Histogram),
    Histograms(HistogramGrid),
    Line(LinePlot)
);

/// The categorical palette used for families and series (Tableau 10):
/// colour `i` of a plot is `PALETTE[i % PALETTE.len()]`.
pub const PALETTE: [(u8, u8, u8); 10] = [
    (0x4e, 0x79, 0xa7),
    (0xf2, 0x8e, 0x2b),
    (0xe1, 0x57, 0x59),
    (0x76, 0xb7, 0xb2),
    (0x59, 0xa1, 0x4f),
    (0xed, 0xc9, 0x48),
    (0xb0, 0x7a, 0xa1),
    (0xff, 0x9d, 0xa7),
    (0x9c, 0x75, 0x5f),
    (0xba, 0xb0, 0xac),
];

pub(crate) fn palette(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// Viridis colour map, `t` in `[0, 1]` (clamped).
pub(crate) fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ];
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let pos = t * (STOPS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(STOPS.len() - 2);
    let f = pos - i as f64;
    let lerp = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_ends_and_nan() {
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
        assert_eq!(viridis(7.0), RGBColor(253, 231, 37));
        assert_eq!(viridis(f64::NAN), RGBColor(68, 1, 84));
    }

    #[test]
    fn size_limits() {
        let p = Plot::Line(LinePlot::default());
        assert!(matches!(p.render_png(0, 100), Err(ReportError::Invalid(_))));
        assert!(matches!(
            p.render_svg(100, MAX_SIZE + 1),
            Err(ReportError::Invalid(_))
        ));
    }
}
