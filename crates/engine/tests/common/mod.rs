//! What the engine's tests share: deterministic values and random weights for a graph.

use effcnn_arch::graph::tensor_suffixes;
use effcnn_arch::Graph;
use effcnn_engine::WeightMap;

/// Deterministic values in [-1, 1).
pub fn fill(seed: u64, n: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

/// Every tensor of `g` with values in [-1, 1) (batch-norm scales and variances in [0.6, 1.4)).
pub fn weights(g: &Graph, seed: u64) -> WeightMap {
    let mut w = WeightMap::new();
    for (i, n) in g.param_nodes() {
        for (j, (suffix, shape, _)) in tensor_suffixes(&n.op).into_iter().enumerate() {
            let count: usize = shape.iter().product();
            let mut v = fill(seed * 100 + (i * 4 + j) as u64, count);
            if suffix == "running_var" || (suffix == "weight" && shape.len() == 1) {
                v.iter_mut().for_each(|x| *x = 1.0 + 0.4 * *x);
            }
            w.insert(format!("{}.{suffix}", n.path), (shape, v));
        }
    }
    w
}
