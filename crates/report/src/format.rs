//! Number formatting helpers shared by tables and plots.
//!
//! All helpers are pure functions of their input and never panic; non-finite
//! floating-point values are rendered as `n/a`, `inf` or `-inf`.
//!
//! ```
//! use effcnn_report::format::{format_giga, format_mega, format_percent, format_si, format_thousands};
//! assert_eq!(format_thousands(3_504_872_u64), "3,504,872");
//! assert_eq!(format_mega(300_774_272.0), "300.77 M");
//! assert_eq!(format_giga(1_200_000_000.0), "1.20 G");
//! assert_eq!(format_si(3_504_872.0), "3.50 M");
//! assert_eq!(format_percent(0.7123, 1), "71.2%");
//! ```

/// Integer types accepted by [`format_thousands`].
pub trait Integer: Copy {
    /// The value widened to `i128`.
    fn to_i128(self) -> i128;
}

macro_rules! impl_integer {
    ($($t:ty),*) => {
        $(impl Integer for $t {
            fn to_i128(self) -> i128 {
                self as i128
            }
        })*
    };
}
impl_integer!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, usize);

/// Formats an integer with `,` thousands separators: `3504872` → `3,504,872`.
pub fn format_thousands<T: Integer>(n: T) -> String {
    let n = n.to_i128();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    // Digits left before the next separator.
    let mut until_comma = match digits.len() % 3 {
        0 => 3,
        r => r,
    };
    for c in digits.chars() {
        if until_comma == 0 {
            out.push(',');
            until_comma = 3;
        }
        out.push(c);
        until_comma -= 1;
    }
    out
}

/// Most decimals the helpers print.
pub const MAX_DECIMALS: usize = 30;

/// Formats a float with a fixed number of decimals (`-0.00` is shown as `0.00`).
/// At most [`MAX_DECIMALS`] decimals are shown.
pub fn format_float(value: f64, decimals: usize) -> String {
    if let Some(s) = non_finite(value) {
        return s.to_string();
    }
    let decimals = decimals.min(MAX_DECIMALS);
    let s = format!("{value:.decimals$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// Formats a value in millions with two decimals: `300774272` → `300.77 M`.
pub fn format_mega(value: f64) -> String {
    scaled(value, 1e6, "M")
}

/// Formats a value in billions with two decimals: `1.2e9` → `1.20 G`.
pub fn format_giga(value: f64) -> String {
    scaled(value, 1e9, "G")
}

/// Formats a value with the SI suffix (K, M, G, T) that fits its magnitude
/// and two decimals: `3504872` → `3.50 M`, `512` → `512.00`.
pub fn format_si(value: f64) -> String {
    if let Some(s) = non_finite(value) {
        return s.to_string();
    }
    const UNITS: [(f64, &str); 4] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")];
    for &(scale, unit) in &UNITS {
        // Compare the rounded value so that 999_999 becomes "1.00 M", not "1000.00 K".
        if (value.abs() / scale * 100.0).round() / 100.0 >= 1.0 {
            return scaled(value, scale, unit);
        }
    }
    format_float(value, 2)
}

/// Formats a fraction as a percentage: `0.7123` with 2 decimals → `71.23%`.
pub fn format_percent(fraction: f64, decimals: usize) -> String {
    if let Some(s) = non_finite(fraction) {
        return s.to_string();
    }
    format!("{}%", format_float(fraction * 100.0, decimals))
}

fn scaled(value: f64, scale: f64, unit: &str) -> String {
    if let Some(s) = non_finite(value) {
        return s.to_string();
    }
    format!("{} {unit}", format_float(value / scale, 2))
}

fn non_finite(value: f64) -> Option<&'static str> {
    if value.is_nan() {
        Some("n/a")
    } else if value == f64::INFINITY {
        Some("inf")
    } else if value == f64::NEG_INFINITY {
        Some("-inf")
    } else {
        None
    }
}

/// Compact axis tick label: `step` is the tick spacing and decides the
/// number of decimals; `magnitude` (the largest tick of the axis) decides the
/// SI suffix of large values (`300M`, `1.5G`).
pub(crate) fn format_tick(value: f64, step: f64, magnitude: f64) -> String {
    if !value.is_finite() {
        return non_finite(value).unwrap_or("").to_string();
    }
    let step = if step.is_finite() && step > 0.0 {
        step
    } else {
        value.abs().max(1.0)
    };
    let magnitude = magnitude.abs().max(step);
    const UNITS: [(f64, &str); 5] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"), (1.0, "")];
    let mut k = UNITS
        .iter()
        .position(|&(scale, _)| magnitude >= scale.max(1e4) || scale == 1.0)
        .unwrap_or(UNITS.len() - 1);
    // Prefer whole-number labels (200M rather than 0.2G) while they stay short.
    if k + 1 < UNITS.len() && step < UNITS[k].0 && magnitude / UNITS[k + 1].0 < 1e4 {
        k += 1;
    }
    let (scale, unit) = UNITS[k];
    let scaled_step = step / scale;
    let decimals = if scaled_step >= 1.0 {
        0
    } else {
        ((-scaled_step.log10()).ceil().max(0.0) as usize).min(8)
    };
    // 0.25-style steps need one more digit than their order of magnitude says.
    let decimals =
        if decimals < 8 && ((scaled_step * 10f64.powi(decimals as i32)).fract()).abs() > 1e-6 {
            decimals + 1
        } else {
            decimals
        };
    let s = format_float(value / scale, decimals);
    if value == 0.0 {
        "0".to_string()
    } else {
        format!("{s}{unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands() {
        assert_eq!(format_thousands(0), "0");
        assert_eq!(format_thousands(999), "999");
        assert_eq!(format_thousands(1000), "1,000");
        assert_eq!(format_thousands(3_504_872_usize), "3,504,872");
        assert_eq!(format_thousands(-1_234_567_i64), "-1,234,567");
        assert_eq!(format_thousands(i64::MIN), "-9,223,372,036,854,775,808");
    }

    #[test]
    fn scaled_units() {
        assert_eq!(format_mega(300_774_272.0), "300.77 M");
        assert_eq!(format_mega(569_000_000.0), "569.00 M");
        assert_eq!(format_giga(4_100_000_000.0), "4.10 G");
        assert_eq!(format_si(999_999.0), "1.00 M");
        assert_eq!(format_si(1_500.0), "1.50 K");
        assert_eq!(format_si(12.0), "12.00");
        assert_eq!(format_si(-2.5e9), "-2.50 G");
        assert_eq!(format_si(f64::NAN), "n/a");
        assert_eq!(format_mega(f64::INFINITY), "inf");
    }

    #[test]
    fn percent_and_float() {
        assert_eq!(format_percent(0.7123, 2), "71.23%");
        assert_eq!(format_percent(1.0, 0), "100%");
        assert_eq!(format_float(-0.0001, 2), "0.00");
        assert_eq!(format_float(-1.5, 1), "-1.5");
        assert_eq!(format_float(f64::NAN, 1), "n/a");
    }

    #[test]
    fn ticks() {
        assert_eq!(format_tick(300e6, 100e6, 500e6), "300M");
        assert_eq!(format_tick(1.5e9, 0.5e9, 2e9), "1500M");
        assert_eq!(format_tick(1.5e12, 0.5e12, 2e12), "1500G");
        assert_eq!(format_tick(2e13, 1e13, 4e13), "20T");
        assert_eq!(format_tick(0.5e9, 0.5e9, 2e9), "500M");
        assert_eq!(format_tick(2e9, 1e9, 4e9), "2G");
        assert_eq!(format_tick(0.5, 0.5, 2.0), "0.5");
        assert_eq!(format_tick(0.0, 0.2, 1.0), "0");
        assert_eq!(format_tick(0.4, 0.2, 1.0), "0.4");
        assert_eq!(format_tick(0.75, 0.25, 1.0), "0.75");
        assert_eq!(format_tick(70.0, 5.0, 80.0), "70");
        assert_eq!(format_tick(2500.0, 500.0, 3000.0), "2500");
        assert_eq!(format_tick(20000.0, 5000.0, 20000.0), "20K");
    }
}
