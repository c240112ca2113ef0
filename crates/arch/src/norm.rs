//! Per-channel input normalization: what a model's pretrained weights expect, what a training
//! run measured on its data, what a batch is built with — one type for all of them.

use serde::{Deserialize, Serialize};

use crate::graph::ModelMeta;
use crate::zoo::{IMAGENET_MEAN, IMAGENET_STD, TF127_MEAN, TF127_STD};

/// Per-channel affine normalization in `[0, 1]` pixel units: `x = (pixel / 255 − mean[c]) / std[c]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Channel means (R, G, B) in `[0, 1]` units.
    pub mean: [f32; 3],
    /// Channel standard deviations (R, G, B) in `[0, 1]` units; must be positive.
    pub std: [f32; 3],
}

impl Normalization {
    /// No normalization: pixels are only scaled to `[0, 1]`.
    pub const IDENTITY: Normalization = Normalization {
        mean: [0.0; 3],
        std: [1.0; 3],
    };

    /// Statistics of the CIFAR-10 training set.
    pub const CIFAR10: Normalization = Normalization {
        mean: [0.4914, 0.4822, 0.4465],
        std: [0.2470, 0.2435, 0.2616],
    };

    /// ImageNet mean/std (torchvision, most timm weights).
    pub const IMAGENET: Normalization = Normalization {
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
    };

    /// (x − 127)/128 in 0..255 units (TensorFlow EfficientNet-Lite weights).
    pub const TF127: Normalization = Normalization {
        mean: TF127_MEAN,
        std: TF127_STD,
    };

    /// `true` when every value is finite and every standard deviation positive.
    pub fn is_valid(&self) -> bool {
        self.mean.iter().all(|m| m.is_finite())
            && self.std.iter().all(|s| s.is_finite() && *s > 0.0)
    }
}

impl Default for Normalization {
    /// [`Normalization::IDENTITY`].
    fn default() -> Self {
        Normalization::IDENTITY
    }
}

impl ModelMeta {
    /// The meta of a model built as torchvision builds it: depth multiplier 1, ImageNet input
    /// normalization, torchvision's initialisation. Entries that differ override fields with
    /// struct update syntax (`ModelMeta { norm_mean, ..ModelMeta::torchvision(…) }`).
    pub fn torchvision(
        name: impl Into<String>,
        family: &str,
        profile: crate::Profile,
        width: f64,
        resolution: usize,
        classes: usize,
    ) -> ModelMeta {
        ModelMeta {
            name: name.into(),
            family: family.into(),
            profile,
            width,
            depth: 1.0,
            resolution,
            classes,
            norm_mean: IMAGENET_MEAN,
            norm_std: IMAGENET_STD,
            init: crate::graph::InitScheme::Torchvision,
        }
    }

    /// The normalization the model's zoo entry records for its pretrained weights.
    pub fn normalization(&self) -> Normalization {
        Normalization {
            mean: self.norm_mean,
            std: self.norm_std,
        }
    }
}
