//! A built-in, procedurally generated 10-class image dataset.
//!
//! Each class is a shape or texture drawn at a random position, scale and colour over a random
//! background gradient, with per-pixel noise. Image `i` of a split has label `i % 10`, so the
//! classes are balanced, and its pixels are a pure function of `(seed, split, i)`.

use crate::dataset::{Dataset, Splits};
use crate::parallel;
use crate::rng::Rng;

/// Class names of the [`synthetic`] dataset, in label order.
pub const SYNTHETIC_CLASSES: [&str; 10] = [
    "circle",
    "square",
    "triangle",
    "horizontal_stripes",
    "vertical_stripes",
    "checkerboard",
    "cross",
    "ring",
    "diagonal_stripes",
    "blob",
];

/// Side length in pixels of the [`synthetic`] images.
pub const SYNTHETIC_SIZE: u32 = 32;

/// Default number of training images of the `synthetic` spec.
pub const SYNTHETIC_TRAIN: usize = 5000;
/// Default number of test images of the `synthetic` spec.
pub const SYNTHETIC_TEST: usize = 1000;

/// Generates the synthetic dataset: `train_n` training and `test_n` test images of
/// [`SYNTHETIC_SIZE`]² RGB pixels in the ten [`SYNTHETIC_CLASSES`].
///
/// Deterministic: the same arguments always give the same bytes; train and test images are
/// drawn from independent streams. Generation runs on all available cores.
pub fn synthetic(train_n: usize, test_n: usize, seed: u64) -> Splits {
    Splits {
        train: split(train_n, seed, 0, "train"),
        test: split(test_n, seed, 1, "test"),
    }
}

fn split(n: usize, seed: u64, stream: u64, name: &str) -> Dataset {
    let side = SYNTHETIC_SIZE as usize;
    let item_len = side * side * 3;
    let mut images = vec![0u8; n * item_len];
    let indices: Vec<usize> = (0..n).collect();
    let filled = parallel::fill(&indices, &mut images, item_len, |_, &i, dst| {
        let mut rng = Rng::from_parts(&[seed, 0x5E7, stream, i as u64]);
        render(i % SYNTHETIC_CLASSES.len(), &mut rng, dst);
        Ok(())
    });
    debug_assert!(filled.is_ok(), "rendering cannot fail");
    Dataset {
        images,
        labels: (0..n)
            .map(|i| (i % SYNTHETIC_CLASSES.len()) as u16)
            .collect(),
        classes: SYNTHETIC_CLASSES.iter().map(|s| (*s).to_owned()).collect(),
        height: SYNTHETIC_SIZE,
        width: SYNTHETIC_SIZE,
        source: format!("synthetic(seed={seed}) {name}"),
    }
}

fn luminance(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

/// Anti-aliased coverage of a signed distance (negative inside).
fn cover(sd: f32) -> f32 {
    (0.5 - sd).clamp(0.0, 1.0)
}

/// Draws one image of class `class` into `out` (HWC, RGB).
fn render(class: usize, rng: &mut Rng, out: &mut [u8]) {
    let side = SYNTHETIC_SIZE as usize;
    let s = side as f32;
    let bg = [rng.unit(), rng.unit(), rng.unit()];
    let grad = [
        rng.range(-0.2, 0.2),
        rng.range(-0.2, 0.2),
        rng.range(-0.2, 0.2),
    ];
    let grad_dir = rng.range(0.0, std::f32::consts::TAU);
    let (gx, gy) = (grad_dir.cos(), grad_dir.sin());
    let mut fg = [rng.unit(), rng.unit(), rng.unit()];
    for _ in 0..8 {
        if (luminance(fg) - luminance(bg)).abs() >= 0.3 {
            break;
        }
        fg = [rng.unit(), rng.unit(), rng.unit()];
    }
    if (luminance(fg) - luminance(bg)).abs() < 0.3 {
        fg = bg.map(|v| {
            if luminance(bg) > 0.5 {
                v * 0.2
            } else {
                0.8 + 0.2 * v
            }
        });
    }
    let cx = rng.range(0.3 * s, 0.7 * s);
    let cy = rng.range(0.3 * s, 0.7 * s);
    let r = rng.range(0.18 * s, 0.34 * s);
    let period = rng.range(3.5, 7.0);
    let phase = rng.range(0.0, period);
    let anti_diagonal = rng.coin();
    let noise = rng.range(0.02, 0.12);

    for y in 0..side {
        for x in 0..side {
            let u = x as f32 + 0.5 - cx;
            let v = y as f32 + 0.5 - cy;
            let square = u.abs().max(v.abs()) - r;
            let stripe = |t: f32| {
                let w = (t + phase).rem_euclid(period) / period;
                if w < 0.5 {
                    1.0
                } else {
                    0.0
                }
            };
            let m = match class {
                0 => cover((u * u + v * v).sqrt() - r),
                1 => cover(u.abs().max(v.abs()) - 0.85 * r),
                2 => {
                    let k = 5f32.sqrt();
                    let bottom = v - 0.8 * r;
                    let left = (-2.0 * u - (v + r)) / k;
                    let right = (2.0 * u - (v + r)) / k;
                    cover(bottom.max(left).max(right))
                }
                3 => cover(square) * stripe(v),
                4 => cover(square) * stripe(u),
                5 => {
                    let p = period.max(4.0);
                    let parity =
                        ((u + phase) / p).floor() as i64 + ((v + phase) / p).floor() as i64;
                    cover(square) * if parity.rem_euclid(2) == 0 { 1.0 } else { 0.0 }
                }
                6 => {
                    let w = 0.3 * r;
                    cover(
                        (u.abs() - w)
                            .max(v.abs() - r)
                            .min((u.abs() - r).max(v.abs() - w)),
                    )
                }
                7 => cover(((u * u + v * v).sqrt() - 0.75 * r).abs() - 0.22 * r),
                8 => {
                    let t = if anti_diagonal { u - v } else { u + v };
                    cover(square) * stripe(t * std::f32::consts::FRAC_1_SQRT_2)
                }
                _ => {
                    let sigma = 0.5 * r;
                    (-(u * u + v * v) / (2.0 * sigma * sigma)).exp()
                }
            };
            let g = ((x as f32 / s - 0.5) * gx + (y as f32 / s - 0.5) * gy) * 2.0;
            let px = &mut out[(y * side + x) * 3..(y * side + x) * 3 + 3];
            for c in 0..3 {
                let back = bg[c] + grad[c] * g;
                let jitter = (rng.unit() + rng.unit() - 1.0) * noise * 1.7;
                let value = back * (1.0 - m) + fg[c] * m + jitter;
                px[c] = (value.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
}
