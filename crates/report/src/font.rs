//! The embedded font (DejaVu Sans, Bitstream Vera license, see
//! `assets/LICENSE-DejaVu.txt`), registered with plotters on first use.

use std::sync::OnceLock;

use plotters::style::FontStyle;

use crate::ReportError;

static DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The family name plots use; SVG output names it too, so viewers fall back
/// to their own sans-serif font.
pub(crate) const FAMILY: &str = "sans-serif";

/// Registers the embedded font once per process.
pub(crate) fn ensure_registered() -> Result<(), ReportError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ReportError::Invalid(
            "the embedded font cannot be loaded".into(),
        ))
    }
}

/// Left edge of each glyph's outline, for placing glyphs one by one in
/// bitmaps (the bitmap text renderer starts every glyph's pixels at the pen
/// position, dropping this offset, which spaces narrow letters unevenly).
struct GlyphOffsets {
    /// Font units per pixel of the plotters font size (ascent − descent).
    height_units: f64,
    /// Outline `xMin` in font units, per character.
    x_min: std::collections::HashMap<char, i16>,
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn read_i16(b: &[u8], at: usize) -> Option<i16> {
    read_u16(b, at).map(|v| v as i16)
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

fn table(font: &[u8], tag: &[u8; 4]) -> Option<usize> {
    let n = read_u16(font, 4)? as usize;
    (0..n)
        .map(|i| 12 + 16 * i)
        .find(|&rec| font.get(rec..rec + 4) == Some(tag.as_slice()))
        .and_then(|rec| read_u32(font, rec + 8).map(|o| o as usize))
}

/// Reads the character map (format 4 subtable), the vertical metrics used
/// for scaling, and each glyph's `xMin` from `glyf`.
fn parse_offsets(font: &[u8]) -> Option<GlyphOffsets> {
    let head = table(font, b"head")?;
    let long_loca = read_i16(font, head + 50)? != 0;
    let hhea = table(font, b"hhea")?;
    let (mut ascent, mut descent) = (read_i16(font, hhea + 4)?, read_i16(font, hhea + 6)?);
    if let Some(os2) = table(font, b"OS/2") {
        // USE_TYPO_METRICS: the rasteriser then scales by the typographic metrics.
        if read_u16(font, os2 + 62)? & (1 << 7) != 0 {
            ascent = read_i16(font, os2 + 68)?;
            descent = read_i16(font, os2 + 70)?;
        }
    }
    let loca = table(font, b"loca")?;
    let glyf = table(font, b"glyf")?;
    let glyph_x_min = |g: u16| -> Option<i16> {
        let (start, end) = if long_loca {
            (
                read_u32(font, loca + 4 * g as usize)? as usize,
                read_u32(font, loca + 4 * g as usize + 4)? as usize,
            )
        } else {
            (
                read_u16(font, loca + 2 * g as usize)? as usize * 2,
                read_u16(font, loca + 2 * g as usize + 2)? as usize * 2,
            )
        };
        // Empty glyphs (spaces) have no outline and draw nothing.
        (end > start)
            .then(|| read_i16(font, glyf + start + 2))
            .flatten()
    };

    let cmap = table(font, b"cmap")?;
    let subtables = read_u16(font, cmap + 2)? as usize;
    let sub = (0..subtables).find_map(|i| {
        let rec = cmap + 4 + 8 * i;
        let (platform, encoding) = (read_u16(font, rec)?, read_u16(font, rec + 2)?);
        let at = cmap + read_u32(font, rec + 4)? as usize;
        let unicode = platform == 0 || (platform == 3 && encoding == 1);
        (unicode && read_u16(font, at)? == 4).then_some(at)
    })?;
    let seg_count = read_u16(font, sub + 6)? as usize / 2;
    let ends = sub + 14;
    let starts = ends + 2 * seg_count + 2;
    let deltas = starts + 2 * seg_count;
    let range_offsets = deltas + 2 * seg_count;
    let mut x_min = std::collections::HashMap::new();
    for s in 0..seg_count {
        let end = read_u16(font, ends + 2 * s)?;
        let start = read_u16(font, starts + 2 * s)?;
        let delta = read_u16(font, deltas + 2 * s)?;
        let ro_at = range_offsets + 2 * s;
        let ro = read_u16(font, ro_at)? as usize;
        if start == 0xffff {
            continue;
        }
        for code in start..=end {
            let glyph = if ro == 0 {
                code.wrapping_add(delta)
            } else {
                let g = read_u16(font, ro_at + ro + 2 * (code - start) as usize)?;
                if g == 0 {
                    continue;
                }
                g.wrapping_add(delta)
            };
            if let (Some(c), Some(xm)) = (char::from_u32(code as u32), glyph_x_min(glyph)) {
                x_min.insert(c, xm);
            }
        }
    }
    Some(GlyphOffsets {
        height_units: (ascent as f64 - descent as f64).max(1.0),
        x_min,
    })
}

fn offsets() -> Option<&'static GlyphOffsets> {
    static OFFSETS: OnceLock<Option<GlyphOffsets>> = OnceLock::new();
    OFFSETS.get_or_init(|| parse_offsets(DEJAVU_SANS)).as_ref()
}

/// Horizontal offset in pixels from the pen position to the first pixel of
/// `c` drawn at plotters font `size`; 0 for characters without an outline.
pub(crate) fn ink_offset(c: char, size: f64) -> i32 {
    offsets()
        .and_then(|o| {
            let x_min = *o.x_min.get(&c)?;
            Some((x_min as f64 * size / o.height_units).floor() as i32)
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyph_offsets_are_read() {
        let o = offsets().expect("embedded font parses");
        assert!(o.x_min.len() > 1000, "{} characters", o.x_min.len());
        assert!((2000.0..3000.0).contains(&o.height_units));
        // Narrow letters sit further from the pen than round ones.
        assert!(ink_offset('i', 100.0) > ink_offset('o', 100.0));
        assert!(o.x_min.contains_key(&'×') && o.x_min.contains_key(&'A'));
        assert!(!o.x_min.contains_key(&' '));
        assert_eq!(ink_offset('\u{10FFFF}', 14.0), 0);
    }
}
