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
