//! Time the compiled training step of a zoo model on random weights (CIFAR profile, 32²):
//! `cargo run -p effcnn-engine --example train_step -- resnet20 128 10 [WIDTH]` (model, batch,
//! steps, width multiplier).
//! Prints img/s and the per-phase split; `perf record` on it profiles the kernels alone.

use std::time::Instant;

use effcnn_arch::graph::tensor_suffixes;
use effcnn_arch::{resolve, Options};
use effcnn_engine::{PlanOptions, StepInput, TrainPlan, WeightMap};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("resnet20", String::as_str);
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(128);
    let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let width: Option<f64> = args.get(4).and_then(|s| s.parse().ok());
    let opts = Options {
        width,
        ..Options::cifar()
    };
    let g = resolve(name, &opts).expect("a zoo model");
    let mut w = WeightMap::new();
    let mut seed = 1u64;
    for (_, node) in g.param_nodes() {
        for (suffix, shape, _) in tensor_suffixes(&node.op) {
            let count: usize = shape.iter().product();
            let v = (0..count)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let u = (seed >> 40) as f32 / (1u64 << 24) as f32;
                    if suffix == "running_var" || (suffix == "weight" && shape.len() == 1) {
                        1.0
                    } else {
                        (u - 0.5) * 0.2
                    }
                })
                .collect();
            w.insert(format!("{}.{suffix}", node.path), (shape, v));
        }
    }
    let images: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|i| ((i * 7919) % 255) as f32 / 128.0 - 1.0)
        .collect();
    let labels: Vec<i64> = (0..n).map(|i| (i % 10) as i64).collect();
    let mut plan =
        TrainPlan::compile(&g, [n, 3, 32, 32], PlanOptions::default()).expect("compiles");
    let input = StepInput {
        images: &images,
        labels: &labels,
        label_smoothing: 0.0,
        seed: 0,
    };
    plan.step(&w, &input).expect("warm-up step");
    let t0 = Instant::now();
    for _ in 0..steps {
        plan.step(&w, &input).expect("step");
    }
    let s = t0.elapsed().as_secs_f64();
    println!(
        "{name}: batch {n}, {steps} steps, {:.1} ms/step, {:.1} img/s ({} threads, {:?}), buffers {:.0} MB",
        1e3 * s / steps as f64,
        (n * steps) as f64 / s,
        rayon::current_num_threads(),
        effcnn_engine::Isa::detect(),
        plan.buffer_bytes() as f64 / 1e6
    );
}
