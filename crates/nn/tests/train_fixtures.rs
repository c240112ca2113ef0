//! effcnn's compiled training step against PyTorch in float64: torchvision models with the
//! deterministic weights of the parity fixtures, one training-mode step (batch statistics,
//! label-smoothed cross-entropy) at 4 × 3 × 64 × 64 (96 × 96 for MobileNetV2). Each fixture (`fixtures/train/*.json`, made
//! by `fixtures/gen/train_grads.py`) stores the loss, the logits and, per trainable tensor, the
//! gradient's norm and its dot products with two seeded probe tensors; likewise the batch mean
//! and unbiased variance of every batch norm.

use std::collections::BTreeMap;
use std::path::PathBuf;

use effcnn_arch::{Layout, Op, Options};
use effcnn_nn::engine::{PlanOptions, WeightMap};
use effcnn_nn::parity::{fill, rel_l2, unit, FixtureTensor};
use effcnn_nn::train_step::{StepInput, TrainPlan};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    shape: Vec<usize>,
    seed: u64,
    scale: f64,
    offset: f64,
}

#[derive(Deserialize)]
struct Summary {
    key: String,
    shape: Vec<usize>,
    norm: f64,
    probes: Vec<f64>,
    /// The same from PyTorch's float32 step.
    norm32: f64,
    probes32: Vec<f64>,
}

#[derive(Deserialize)]
struct TrainFixture {
    tensors: Vec<FixtureTensor>,
    input: Input,
    labels: Vec<i64>,
    label_smoothing: f64,
    loss: f64,
    logits: Vec<Vec<f64>>,
    grads: Vec<Summary>,
    batch_stats: Vec<Summary>,
}

/// Per tensor: within 1e-4 of float64, or within 10× PyTorch's own float32 error.
const TOL: f64 = 1e-4;
/// No tensor may be further off than this. Single gradients can exceed the per-tensor bound
/// legitimately: where an activation's input lies within float32 rounding of a ReLU/ReLU6 kink
/// (the generator's float64 run finds inputs 1e-7..1e-5 from 0 in most MobileNetV2 layers),
/// two float32 implementations may take different sides, and the bias gradient of a batch norm
/// over the small maps of 4 images (16–36 values per channel) moves by a visible fraction. So at most
/// 3% of the tensors may exceed the per-tensor bound, the median must meet 1e-4 or 3× PyTorch's float32 median, and none may
/// exceed this.
const GROSS: f64 = 5e-2;

/// The probe dot products of `v`.
fn probes(v: &[f32], seed: u64) -> (Vec<f64>, f64) {
    let mut out = Vec::new();
    let mut rnorm = 0f64;
    for j in 0..2 {
        let (mut dot, mut rr) = (0f64, 0f64);
        for (i, &x) in v.iter().enumerate() {
            let r = unit(seed + j, i as u64);
            dot += f64::from(x) * r;
            rr += r * r;
        }
        out.push(dot);
        rnorm = rr.sqrt();
    }
    (out, rnorm)
}

/// The error of a float32 result (its norm and probe dots) against the float64 reference,
/// relative to `scale`: the norm's error, and the probes' error relative to the size a random
/// probe's dot product has (‖r‖/√n), i.e. an estimate of ‖error‖ / scale.
fn error(norm: f64, dots: &[f64], want: &Summary, rnorm: f64, n: usize, scale: f64) -> f64 {
    let unit_dot = scale * rnorm / (n as f64).sqrt();
    let probe = dots
        .iter()
        .zip(&want.probes)
        .map(|(d, w)| (d - w).abs() / unit_dot)
        .fold(0f64, f64::max);
    ((norm - want.norm).abs() / scale).max(probe)
}

fn run(name: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/train")
        .join(format!("{name}.json"));
    let fx: TrainFixture = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut g = effcnn_arch::resolve(name, &Options::imagenet()).unwrap();
    for n in &mut g.nodes {
        if let Op::Dropout { p } | Op::DropPath { p } = &mut n.op {
            *p = 0.0;
        }
    }
    // PyTorch key → canonical key, through the graph's two namings of each tensor.
    let canon: BTreeMap<(usize, &str), String> = g
        .tensor_keys(Layout::Canonical)
        .into_iter()
        .map(|k| ((k.node, k.suffix), k.key))
        .collect();
    let to_canon: BTreeMap<String, String> = g
        .tensor_keys(Layout::Torchvision)
        .into_iter()
        .map(|k| (k.key, canon[&(k.node, k.suffix)].clone()))
        .collect();
    let mut weights = WeightMap::new();
    let mut seeds = BTreeMap::new();
    for t in &fx.tensors {
        let key = to_canon
            .get(&t.key)
            .unwrap_or_else(|| panic!("{name}: no effcnn tensor for {}", t.key));
        let n = t.shape.iter().product();
        weights.insert(
            key.clone(),
            (t.shape.clone(), fill(t.seed, t.scale, t.offset, n)),
        );
        seeds.insert(key.clone(), t.seed);
    }
    let s = &fx.input.shape;
    let dims = [s[0], s[1], s[2], s[3]];
    let images = fill(
        fx.input.seed,
        fx.input.scale,
        fx.input.offset,
        dims.iter().product(),
    );
    let mut plan = TrainPlan::compile(&g, dims, PlanOptions::default()).unwrap();
    let out = plan
        .step(
            &weights,
            &StepInput {
                images: &images,
                labels: &fx.labels,
                label_smoothing: fx.label_smoothing as f32,
                seed: 0,
            },
        )
        .unwrap();
    let loss_err = (f64::from(out.loss) - fx.loss).abs() / fx.loss;
    assert!(
        loss_err <= 1e-5,
        "{name}: loss {} vs PyTorch {} ({loss_err:.2e})",
        out.loss,
        fx.loss
    );
    let want: Vec<f32> = fx.logits.iter().flatten().map(|&v| v as f32).collect();
    let logit_err = rel_l2(&out.logits, &want);
    assert!(logit_err <= TOL, "{name}: logits rel-L2 {logit_err:.2e}");
    let mut checked = 0;
    let mut over = 0;
    let mut errors = Vec::new();
    let mut torch_errors = Vec::new();
    let mut worst = (0f64, String::new());
    for (summaries, ours, base) in [
        (&fx.grads, &out.grads, 100_000u64),
        (&fx.batch_stats, &out.batch_stats, 200_000),
    ] {
        assert_eq!(summaries.len(), ours.len(), "{name}: tensor count");
        // Some gradients vanish analytically (the bias of a batch norm whose output feeds a
        // convolution and another batch norm, with no activation between): their reference is
        // rounding noise, so errors are measured against at least 1% of the norm the tensor
        // would have if the whole gradient were spread evenly over all values.
        let total: f64 = summaries.iter().map(|w| w.norm.powi(2)).sum::<f64>().sqrt();
        let count: usize = summaries
            .iter()
            .map(|w| w.shape.iter().product::<usize>())
            .sum();
        for w in summaries {
            let n: usize = w.shape.iter().product();
            let scale = w.norm.max(1e-2 * total * (n as f64 / count as f64).sqrt());
            let key = &to_canon[&w.key];
            let (shape, v) = &ours[key];
            assert_eq!(shape, &w.shape, "{name}: {key} shape");
            let norm = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
            let (dots, rnorm) = probes(v, base + 2 * seeds[key]);
            let ours = error(norm, &dots, w, rnorm, n, scale);
            let torch32 = error(w.norm32, &w.probes32, w, rnorm, n, scale);
            let bound = TOL.max(10.0 * torch32);
            if ours > worst.0 {
                worst = (ours, format!("{key}, PyTorch f32 {torch32:.1e}"));
            }
            if ours > bound {
                eprintln!("{name}: {key} (PyTorch {}): {ours:.2e} vs float64 (PyTorch's float32 {torch32:.2e})", w.key);
                over += 1;
            }
            assert!(
                ours <= GROSS,
                "{name}: {key} (PyTorch {}): error {ours:.2e} vs float64",
                w.key
            );
            errors.push(ours);
            torch_errors.push(torch32);
            checked += 1;
        }
    }
    errors.sort_by(f64::total_cmp);
    torch_errors.sort_by(f64::total_cmp);
    let median = errors[errors.len() / 2];
    let torch_median = torch_errors[torch_errors.len() / 2];
    assert!(
        median <= TOL.max(3.0 * torch_median),
        "{name}: median error {median:.2e} (PyTorch's float32 {torch_median:.2e})"
    );
    assert!(
        over * 100 <= 3 * checked,
        "{name}: {over} of {checked} tensors further from float64 than 10× PyTorch's float32"
    );
    eprintln!("{name}: {checked} tensors, median error {median:.1e} (PyTorch f32 {torch_median:.1e}), {over} beyond 10× PyTorch f32, loss {loss_err:.1e}, logits {logit_err:.1e}, worst {:.1e} ({})", worst.0, worst.1);
}

#[test]
fn mobilenet_v2_step_matches_pytorch_float64() {
    run("mobilenet_v2");
}

#[test]
fn mobilenet_v3_large_step_matches_pytorch_float64() {
    run("mobilenet_v3_large");
}

#[test]
fn shufflenet_v2_step_matches_pytorch_float64() {
    run("shufflenet_v2_x1_0");
}

#[test]
fn efficientnet_b0_step_matches_pytorch_float64() {
    run("efficientnet_b0");
}

#[test]
fn resnet18_step_matches_pytorch_float64() {
    run("resnet18");
}
