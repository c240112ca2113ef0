//! effcnn's compiled training step (`effcnn_engine::TrainPlan`) against burn's autodiff: loss,
//! logits, the gradient of every trainable tensor and the batch statistics of every batch norm,
//! over the zoo's families (CIFAR profile, batch 3, random weights and random batch-norm affine
//! parameters, dropout and drop-path 0, kinked activations made smooth — see [`smooth`]); and
//! one whole training step (the plan's gradients
//! through burn's SGD with its no-decay group, its batch statistics into the running
//! statistics) against burn's step: loss and every tensor after the step within 1e-5.
//!
//! The reference is burn in f32, each gradient within 1e-4 (relative L2). Some gradients are not
//! known to f32 that well, by burn either: those that are mathematically zero (a bias or scale
//! whose effect a later batch norm cancels) and, in the deep depthwise nets at batch 3, early
//! batch-norm scales and shifts whose f32 value moves by 10⁻³–10⁻² with the order of a sum. For
//! those the tensor passes if the plan is as close to the exact gradient (burn in f64) as burn's
//! f32 gradient is, within 3×; a gradient far below its share of the model's gradient norm is
//! measured against a tenth of that share rather than its own tiny norm.
//!
//! Every instruction set this CPU has is checked, and the default one gives the same bits on 1
//! and 2 threads.
//!
//! burn runs on its own ops here (`EFFCNN_KERNELS=burn`, set before any tensor exists): effcnn's
//! training kernels compute in f32 whatever the tensors' dtype, which the f64 reference cannot use.

mod common;

use std::sync::Once;

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{FloatDType, Int, Tensor, TensorData};
use effcnn_arch::{Act, Graph, Layout, Op};
use effcnn_nn::checkpoint::model_tensors;
use effcnn_nn::engine::{engine_weights, Isa, PlanOptions, WeightMap};
use effcnn_nn::parity::rel_l2;
use effcnn_nn::train_step::{
    apply_batch_stats, gradients_from_map, gradients_to_map, StepInput, StepOutput, TrainPlan,
};
use effcnn_nn::EffNet;

use common::*;

/// The zoo's families, each with its activations made smooth (see [`smooth`]).
const PLAN_MODELS: [&str; 9] = [
    "plain_cnn",
    "dwsep_cnn",
    "resnet20",
    "se_resnet20",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "shufflenet_v1_g3",
    "shufflenet_v2_x1_0",
    "efficientnet_b0",
];

/// `name`'s graph with every kinked activation replaced by a smooth one (ReLU, ReLU6 and
/// hard-swish by SiLU, hard-sigmoid by sigmoid), for the gradient comparison.
///
/// With the real activations the comparison is a coin toss rather than a test: in these nets'
/// float64 forward, ReLU6/ReLU inputs lie within 1–5·10⁻⁶ of a kink in most layers (CIFAR
/// MobileNetV2: 1.1e-6 in `blocks.4.0.bn1`, 2.0e-6 in `blocks.4.2.bn2`), so two float32
/// implementations can take different sides of one, and every gradient upstream of it then moves
/// by ~10⁻³ — which nets "fail" depends on the seed and on FMA rounding, not on a bug. Smooth
/// activations keep every other op exactly as the zoo builds it (convolutions of every kind,
/// batch norm, residual adds, SE, shuffles, splits, pooling, the classifier); the kinked
/// activations' own backward is tested per kernel in effcnn-engine (`train_grad.rs`), and the
/// real nets' whole step against PyTorch in float64 in `train_fixtures.rs`.
fn smooth(name: &str) -> Graph {
    let mut g = graph(name);
    for n in &mut g.nodes {
        if let Op::Act { act } = &mut n.op {
            *act = match *act {
                Act::Relu | Act::Relu6 | Act::HardSwish | Act::Silu => Act::Silu,
                Act::HardSigmoid | Act::Sigmoid => Act::Sigmoid,
            };
        }
    }
    g
}

/// burn's own ops for every model of this process (read once, at the first kernel call).
fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::env::set_var("EFFCNN_KERNELS", "burn"));
}

fn plan_step(
    g: &Graph,
    m: &EffNet,
    x: &[f32],
    y: &[i64],
    seed: u64,
    opts: PlanOptions,
) -> StepOutput {
    TrainPlan::compile(g, [y.len(), 3, 32, 32], opts)
        .unwrap_or_else(|e| panic!("{}: the training plan does not compile: {e}", g.meta.name))
        .step(
            &engine_weights(m).unwrap(),
            &StepInput {
                images: x,
                labels: y,
                label_smoothing: SMOOTHING as f32,
                seed,
            },
        )
        .unwrap_or_else(|e| panic!("{}: {e}", g.meta.name))
}

/// `m` in f64, a model of its own.
fn to_f64(m: &EffNet) -> EffNet {
    struct ToF64;
    impl ModuleMapper for ToF64 {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, t, mapper) = param.consume();
            let grad = t.is_require_grad();
            let t = t.inner().cast(FloatDType::F64).autodiff();
            let t = if grad { t.require_grad() } else { t };
            Param::from_mapped_value(id, t, mapper)
        }
    }
    copy(m).map(&mut ToF64)
}

/// burn's gradients in f64 (rounded to f32 at the end).
fn f64_grads(m: &EffNet, x: &[f32], y: &[i64]) -> WeightMap {
    let m = to_f64(m);
    let n = y.len();
    let t = Tensor::<4>::from_data(TensorData::new(x.to_vec(), [n, 3, 32, 32]), &device())
        .cast(FloatDType::F64);
    let logits = m.forward(t);
    let k = logits.dims()[1];
    let target = Tensor::<1, Int>::from_data(TensorData::new(y.to_vec(), [n]), &device())
        .one_hot::<2>(k)
        .float()
        .cast(FloatDType::F64)
        .mul_scalar(1.0 - SMOOTHING)
        .add_scalar(SMOOTHING / k as f64);
    let loss = log_softmax(logits, 1).mul(target).sum_dim(1).mean().neg();
    gradients_to_map(&m, &GradientsParams::from_grads(loss.backward(), &m)).unwrap()
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>().sqrt()
}

fn dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&p, &q)| (f64::from(p) - f64::from(q)).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Checks the plan's gradients (see the file's docs for the criterion), adding what fails to
/// `fails`.
fn check_grads(
    name: &str,
    plan: &WeightMap,
    burn: &WeightMap,
    exact: &WeightMap,
    fails: &mut Vec<String>,
) {
    assert_eq!(
        plan.keys().collect::<Vec<_>>(),
        burn.keys().collect::<Vec<_>>(),
        "{name}: gradient keys"
    );
    let n_all: usize = exact.values().map(|t| t.1.len()).sum();
    let all = exact
        .values()
        .map(|t| norm(&t.1).powi(2))
        .sum::<f64>()
        .sqrt();
    for (k, (shape, b)) in burn {
        let (s, p) = &plan[k];
        assert_eq!(s, shape, "{name}: {k} shape");
        let rel = rel_l2(p, b);
        if rel <= 1e-4 {
            continue;
        }
        let t = &exact[k].1;
        let share = all * (t.len() as f64 / n_all as f64).sqrt();
        let scale = norm(t).max(0.1 * share);
        let (e_plan, e_burn) = (dist(p, t) / scale, dist(b, t) / scale);
        if e_plan > (3.0 * e_burn).max(1e-4) {
            fails.push(format!(
                "{name}: gradient of {k}: rel-L2 {rel:.3e} to burn's f32; to the f64 gradient \
                 {e_plan:.3e}, burn's f32 {e_burn:.3e} (norm {:.3e} of a share {share:.3e})",
                norm(t)
            ));
        }
    }
}

#[test]
fn plan_gradients_match_burn_autodiff() {
    setup();
    const N: usize = 3;
    let mut fails = Vec::new();
    for (i, name) in PLAN_MODELS.into_iter().enumerate() {
        let g = smooth(name);
        let m = model(&g, 20 + i as u64);
        let x = images(30 + i as u64, N);
        let y = labels(N, g.meta.classes);
        let want = burn_step(&m, &x, &y);
        let burn = gradients_to_map(&m, &want.grads).unwrap();
        let exact = f64_grads(&m, &x, &y);
        for isa in Isa::available() {
            let what = format!("{name} ({})", isa.name());
            let opts = PlanOptions {
                isa,
                threads: 2,
                fuse: true,
            };
            let out = plan_step(&g, &m, &x, &y, 5, opts);
            let loss_err =
                (f64::from(out.loss) - f64::from(want.loss)).abs() / f64::from(want.loss).abs();
            assert!(
                loss_err <= 1e-5,
                "{what}: loss {} vs burn {} (rel {loss_err:.3e})",
                out.loss,
                want.loss
            );
            let logit_err = rel_l2(&out.logits, &want.logits);
            assert!(logit_err <= 1e-4, "{what}: logits rel-L2 {logit_err:.3e}");
            check_grads(&what, &out.grads, &burn, &exact, &mut fails);
            assert_eq!(
                out.batch_stats.keys().collect::<Vec<_>>(),
                want.stats.keys().collect::<Vec<_>>(),
                "{what}: batch-statistics keys"
            );
            for (k, (shape, s_ref)) in &want.stats {
                let (s, s_ours) = &out.batch_stats[k];
                assert_eq!(s, shape, "{what}: {k} shape");
                let err = rel_l2(s_ours, s_ref);
                assert!(err <= 1e-4, "{what}: batch statistic {k}: rel-L2 {err:.3e}");
            }
            // The same bits on any thread count (what exact resume and --threads rely on).
            if isa == Isa::detect() {
                let one = plan_step(&g, &m, &x, &y, 5, PlanOptions { threads: 1, ..opts });
                let bits = |o: &StepOutput| {
                    let maps = o.grads.values().chain(o.batch_stats.values());
                    let mut v: Vec<u32> =
                        maps.flat_map(|t| t.1.iter().map(|f| f.to_bits())).collect();
                    v.extend(o.logits.iter().map(|f| f.to_bits()));
                    v.push(o.loss.to_bits());
                    v
                };
                assert!(bits(&one) == bits(&out), "{what}: 1 and 2 threads differ");
            }
        }
    }
    let mut by_run = std::collections::BTreeMap::<&str, usize>::new();
    for f in &fails {
        *by_run.entry(f.split(':').next().unwrap_or("")).or_default() += 1;
    }
    let first: Vec<&str> = fails.iter().take(30).map(String::as_str).collect();
    assert!(
        fails.is_empty(),
        "{} gradients off ({by_run:?}), the first:\n{}",
        fails.len(),
        first.join("\n")
    );
}

#[test]
fn plan_step_matches_burn_step() {
    setup();
    const N: usize = 4;
    // Models whose f32 gradients are well conditioned at this batch (burn's f32 within ~10⁻⁵ of
    // its f64): a whole step is then compared with burn's to 10⁻⁵. The accuracy of every family's
    // gradients is the other test's.
    let models = ["plain_cnn", "resnet20", "se_resnet20", "mobilenet_v3_small"];
    for (i, name) in models.into_iter().enumerate() {
        let g = graph(name);
        let a = model(&g, 40 + i as u64);
        let b = copy(&a);
        let x = images(50 + i as u64, N);
        let y = labels(N, g.meta.classes);
        let lr = 0.1;

        // burn: forward (running statistics updated), backward, SGD.
        let (_, mut opt_a) = optimizers(&a).swap_remove(0);
        let want = burn_step(&a, &x, &y);
        let a = opt_a.step(lr, a, want.grads);

        // The plan: its gradients through the same optimizer, its batch statistics.
        let (_, mut opt_b) = optimizers(&b).swap_remove(0);
        let out = plan_step(&g, &b, &x, &y, 9, PlanOptions::default());
        let grads = gradients_from_map(&b, &out.grads).unwrap();
        let b = apply_batch_stats(b, &out.batch_stats).unwrap();
        let b = opt_b.step(lr, b, grads);

        let loss_err =
            (f64::from(out.loss) - f64::from(want.loss)).abs() / f64::from(want.loss).abs();
        assert!(loss_err <= 1e-5, "{name}: loss rel {loss_err:.3e}");
        let (ta, tb) = (
            model_tensors(&a, Layout::Canonical).unwrap(),
            model_tensors(&b, Layout::Canonical).unwrap(),
        );
        for (k, t) in &ta {
            let err = rel_l2(&tb[k].data, &t.data);
            assert!(err <= 1e-5, "{name}: {k} after the step: rel-L2 {err:.3e}");
        }
    }
}
