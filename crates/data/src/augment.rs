//! Per-channel normalization and the random crop / flip augmentation.

use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;

pub use effcnn_arch::norm::Normalization;

impl Dataset {
    /// The normalization of this dataset's images: the mean and standard deviation of each
    /// channel ([`Dataset::channel_stats`]), a standard deviation below `1e-3` (a constant
    /// channel) raised to `1e-3`.
    pub fn normalization(&self) -> Normalization {
        let (mean, std) = self.channel_stats();
        Normalization {
            mean,
            std: std.map(|s| s.max(1e-3)),
        }
    }
}

/// Training-time augmentation: a random crop after zero padding, then a random horizontal flip
/// (the standard CIFAR recipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Augment {
    /// Pad every side with this many black pixels, then crop back to the original size at a
    /// uniformly random offset (a shift of up to `pad_crop` pixels each way). `0` disables it.
    pub pad_crop: u32,
    /// Mirror left–right with probability ½.
    pub hflip: bool,
}

impl Augment {
    /// No augmentation (evaluation).
    pub const NONE: Augment = Augment {
        pad_crop: 0,
        hflip: false,
    };

    /// `true` when the augmentation leaves every image unchanged.
    pub fn is_none(&self) -> bool {
        self.pad_crop == 0 && !self.hflip
    }
}

impl Default for Augment {
    /// `pad_crop = 4`, `hflip = true`.
    fn default() -> Self {
        Augment {
            pad_crop: 4,
            hflip: true,
        }
    }
}

/// Geometric transform of one sample: output pixel `(y, x)` reads source pixel
/// `(y + dy, x' + dx)` with `x' = w − 1 − x` when flipped, black when outside the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Transform {
    pub dy: i64,
    pub dx: i64,
    pub flip: bool,
}

/// Writes one HWC `u8` image as normalized CHW `f32` into `out` (`3 × h × w`).
pub(crate) fn write_chw(
    src: &[u8],
    h: usize,
    w: usize,
    t: Transform,
    norm: &Normalization,
    out: &mut [f32],
) {
    let plane = h * w;
    for c in 0..3 {
        let scale = 1.0 / (255.0 * norm.std[c]);
        let bias = -norm.mean[c] / norm.std[c];
        let dst = &mut out[c * plane..(c + 1) * plane];
        for y in 0..h {
            let sy = y as i64 + t.dy;
            let row = &mut dst[y * w..(y + 1) * w];
            if sy < 0 || sy >= h as i64 {
                row.fill(bias);
                continue;
            }
            let src_row = &src[sy as usize * w * 3..(sy as usize + 1) * w * 3];
            for (x, v) in row.iter_mut().enumerate() {
                let xx = if t.flip { w - 1 - x } else { x };
                let sx = xx as i64 + t.dx;
                *v = if sx < 0 || sx >= w as i64 {
                    bias
                } else {
                    f32::from(src_row[sx as usize * 3 + c]) * scale + bias
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_and_flip_move_pixels_as_documented() {
        // 2x3 image whose red channel holds 1..=6, row-major.
        let src: Vec<u8> = (1..=6u8).flat_map(|v| [v, 0, 0]).collect();
        let mut out = vec![0f32; 3 * 6];
        let id = Normalization::IDENTITY;
        let red = |out: &[f32]| {
            out[..6]
                .iter()
                .map(|v| (v * 255.0).round() as u8)
                .collect::<Vec<_>>()
        };

        write_chw(&src, 2, 3, Transform::default(), &id, &mut out);
        assert_eq!(red(&out), [1, 2, 3, 4, 5, 6]);

        write_chw(
            &src,
            2,
            3,
            Transform {
                dy: 0,
                dx: 1,
                flip: false,
            },
            &id,
            &mut out,
        );
        assert_eq!(red(&out), [2, 3, 0, 5, 6, 0]);

        write_chw(
            &src,
            2,
            3,
            Transform {
                dy: -1,
                dx: 0,
                flip: false,
            },
            &id,
            &mut out,
        );
        assert_eq!(red(&out), [0, 0, 0, 1, 2, 3]);

        write_chw(
            &src,
            2,
            3,
            Transform {
                dy: 0,
                dx: 0,
                flip: true,
            },
            &id,
            &mut out,
        );
        assert_eq!(red(&out), [3, 2, 1, 6, 5, 4]);
    }

    #[test]
    fn normalization_is_applied_per_channel() {
        let src = [255u8, 0, 51];
        let mut out = [0f32; 3];
        let norm = Normalization {
            mean: [0.5, 0.5, 0.1],
            std: [0.5, 0.25, 0.1],
        };
        write_chw(&src, 1, 1, Transform::default(), &norm, &mut out);
        assert!((out[0] - 1.0).abs() < 1e-6);
        assert!((out[1] + 2.0).abs() < 1e-6);
        assert!((out[2] - 1.0).abs() < 1e-5);
        assert!(norm.is_valid());
        assert!(!Normalization {
            mean: [0.0; 3],
            std: [1.0, 0.0, 1.0]
        }
        .is_valid());
    }

    #[test]
    fn serde_round_trip_and_defaults() {
        let a: Augment = serde_json::from_str("{}").unwrap();
        assert_eq!(a, Augment::default());
        let n: Normalization =
            serde_json::from_str(&serde_json::to_string(&Normalization::CIFAR10).unwrap()).unwrap();
        assert_eq!(n, Normalization::CIFAR10);
    }
}
