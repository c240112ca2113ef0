//! Deterministic-weight parity fixtures: the splitmix64 value formula and the fixture file format
//! (`fixtures/parity/<model>.json`, see `fixtures/README.md`).
//!
//! A fixture lists every tensor of a PyTorch `state_dict` by key, shape and seed; its values are
//! regenerated here, loaded through the same key mapping as real checkpoints
//! ([`crate::checkpoint::apply_tensors`]), and the model's logits compared with PyTorch's.

use std::path::Path;

use serde::Deserialize;

use crate::checkpoint::{RawTensor, TensorMap};
use crate::error::NnError;

/// splitmix64 (all arithmetic wrapping).
pub fn splitmix64(x: u64) -> u64 {
    let x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let z = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `u(s, i) = ((splitmix64(s·2³² + i) >> 11) · 2⁻⁵³) · 2 − 1`, in [−1, 1).
pub fn unit(seed: u64, i: u64) -> f64 {
    let x = seed.wrapping_mul(1u64 << 32).wrapping_add(i);
    ((splitmix64(x) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)) * 2.0 - 1.0
}

/// `n` values `offset + scale · u(seed, i)`, computed in f64 and stored as f32.
pub fn fill(seed: u64, scale: f64, offset: f64, n: usize) -> Vec<f32> {
    (0..n as u64)
        .map(|i| (offset + scale * unit(seed, i)) as f32)
        .collect()
}

/// One tensor of a fixture.
#[derive(Debug, Clone, Deserialize)]
pub struct FixtureTensor {
    /// PyTorch state-dict key.
    pub key: String,
    /// PyTorch shape.
    pub shape: Vec<usize>,
    /// Seed of the value formula.
    pub seed: u64,
    /// Scale of the value formula.
    pub scale: f64,
    /// Offset of the value formula.
    pub offset: f64,
}

/// One input case of a fixture with PyTorch's logits.
#[derive(Debug, Clone, Deserialize)]
pub struct FixtureCase {
    /// `[N, 3, H, W]`.
    pub shape: Vec<usize>,
    /// Seed of the value formula.
    pub seed: u64,
    /// Scale of the value formula.
    pub scale: f64,
    /// Offset of the value formula.
    pub offset: f64,
    /// `N × classes`.
    pub logits: Vec<Vec<f64>>,
}

/// A parity fixture (only the fields effcnn uses).
#[derive(Debug, Clone, Deserialize)]
pub struct Fixture {
    /// The reference model's name.
    pub model: String,
    /// Trainable parameters of the reference model.
    #[serde(default)]
    pub params: Option<u64>,
    /// Every floating-point state-dict tensor, in state-dict order.
    pub tensors: Vec<FixtureTensor>,
    /// Inputs with the reference logits.
    pub cases: Vec<FixtureCase>,
}

impl Fixture {
    /// Read a fixture file.
    pub fn read(path: impl AsRef<Path>) -> Result<Fixture, NnError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| NnError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| NnError::format(path, e.to_string()))
    }

    /// The fixture's state dict with its generated values, as a checkpoint would be read.
    pub fn tensor_map(&self) -> TensorMap {
        self.tensors
            .iter()
            .map(|t| {
                let n = t.shape.iter().product();
                (
                    t.key.clone(),
                    RawTensor::new(t.shape.clone(), fill(t.seed, t.scale, t.offset, n)),
                )
            })
            .collect()
    }
}

impl FixtureCase {
    /// The generated input, row-major `[N, C, H, W]`.
    pub fn input(&self) -> Vec<f32> {
        let n = self.shape.iter().product();
        fill(self.seed, self.scale, self.offset, n)
    }
    /// Reference logits, flattened row-major.
    pub fn logits_flat(&self) -> Vec<f32> {
        self.logits.iter().flatten().map(|&v| v as f32).collect()
    }
}

/// Relative L2 error ‖a − b‖ / ‖b‖ (computed in f64).
pub fn rel_l2(ours: &[f32], reference: &[f32]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (&a, &b) in ours.iter().zip(reference) {
        num += (a as f64 - b as f64).powi(2);
        den += (b as f64).powi(2);
    }
    if ours.len() != reference.len() {
        return f64::INFINITY;
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_test_vectors() {
        let want = [
            (0, 0, 0.7666216164272852),
            (0, 1, 0.1331231503445618),
            (0, 2, 0.18237946839615882),
            (1, 0, 0.532603514678172),
            (1, 1, -0.7479379591580257),
        ];
        for (s, i, v) in want {
            assert_eq!(unit(s, i), v, "u({s}, {i})");
        }
    }
}
