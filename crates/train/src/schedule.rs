//! Learning-rate schedules as pure functions of the step: a resumed run needs no scheduler state.

use std::f64::consts::PI;

use crate::config::{ScheduleConfig, ScheduleKind};

/// One-cycle: the initial rate is `peak / ONECYCLE_DIV` (PyTorch's `div_factor`).
pub const ONECYCLE_DIV: f64 = 25.0;
/// One-cycle: the final rate is `peak / (ONECYCLE_DIV · ONECYCLE_FINAL_DIV)`.
pub const ONECYCLE_FINAL_DIV: f64 = 1e4;
/// One-cycle rise as a fraction of training when no warm-up is given (PyTorch's `pct_start`).
pub const ONECYCLE_PCT: f64 = 0.3;

/// Learning rate of (0-based) optimizer step `step` out of `total` steps, with
/// `steps_per_epoch` steps per epoch and peak rate `peak`.
///
/// * `cosine`: linear warm-up `peak·(step+1)/W` over the first `W = warmup_epochs ·
///   steps_per_epoch` steps, then `peak · ½(1 + cos(π·t/T))` over the remaining `T` steps.
/// * `onecycle`: cosine rise from `peak/25` to `peak` over the warm-up (30 % of training when
///   the warm-up is 0), then cosine decay to `peak/(25·10⁴)`.
/// * `constant`: the warm-up, then `peak`.
pub fn lr_at(
    schedule: &ScheduleConfig,
    peak: f64,
    step: u64,
    steps_per_epoch: usize,
    total: u64,
) -> f64 {
    let total = total.max(1) as f64;
    let s = step as f64;
    let warm = (schedule.warmup_epochs * steps_per_epoch as f64)
        .round()
        .min(total);
    let cos_from_to = |from: f64, to: f64, frac: f64| {
        to + (from - to) * 0.5 * (1.0 + (PI * frac.clamp(0.0, 1.0)).cos())
    };
    match schedule.kind {
        ScheduleKind::Cosine | ScheduleKind::Constant => {
            if s < warm {
                return peak * (s + 1.0) / warm;
            }
            if schedule.kind == ScheduleKind::Constant {
                return peak;
            }
            let rest = (total - warm).max(1.0);
            cos_from_to(peak, 0.0, (s - warm) / rest)
        }
        ScheduleKind::Onecycle => {
            let rise = if warm > 0.0 {
                warm
            } else {
                (ONECYCLE_PCT * total).round().max(1.0)
            };
            let start = peak / ONECYCLE_DIV;
            let end = start / ONECYCLE_FINAL_DIV;
            if s < rise {
                cos_from_to(start, peak, s / rise)
            } else {
                let rest = (total - rise).max(1.0);
                cos_from_to(peak, end, (s - rise) / rest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: ScheduleKind, warmup_epochs: f64) -> ScheduleConfig {
        ScheduleConfig {
            kind,
            warmup_epochs,
        }
    }

    #[test]
    fn cosine_with_warmup() {
        let c = cfg(ScheduleKind::Cosine, 1.0);
        // 10 steps per epoch, 100 steps.
        assert!((lr_at(&c, 0.1, 0, 10, 100) - 0.01).abs() < 1e-12);
        assert!((lr_at(&c, 0.1, 9, 10, 100) - 0.1).abs() < 1e-12);
        assert!((lr_at(&c, 0.1, 10, 10, 100) - 0.1).abs() < 1e-12);
        assert!((lr_at(&c, 0.1, 55, 10, 100) - 0.05).abs() < 1e-12);
        assert!(lr_at(&c, 0.1, 99, 10, 100) < 1e-3);
        let n = cfg(ScheduleKind::Cosine, 0.0);
        assert!((lr_at(&n, 0.1, 0, 10, 100) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn onecycle_shape() {
        let c = cfg(ScheduleKind::Onecycle, 0.0);
        assert!((lr_at(&c, 0.1, 0, 10, 100) - 0.1 / 25.0).abs() < 1e-12);
        assert!((lr_at(&c, 0.1, 30, 10, 100) - 0.1).abs() < 1e-12);
        assert!(lr_at(&c, 0.1, 99, 10, 100) < 1e-4);
        let k = cfg(ScheduleKind::Constant, 0.5);
        assert!((lr_at(&k, 0.2, 50, 10, 100) - 0.2).abs() < 1e-12);
    }
}
