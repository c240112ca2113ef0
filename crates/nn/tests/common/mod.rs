//! Helpers shared by the training-step tests: zoo models with random weights and batch-norm
//! parameters, burn's training step (loss, logits, gradients, batch statistics), effcnn-train's
//! loss and optimizers.
#![allow(dead_code)]

use burn::module::{ParamGroup, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use effcnn_arch::{Graph, Layout, NodeId, Op, Options};
use effcnn_nn::checkpoint::model_tensors;
use effcnn_nn::engine::WeightMap;
use effcnn_nn::parity::fill;
use effcnn_nn::train_step::param_ids;
use effcnn_nn::{apply_tensors, EffNet, InitConfig};

pub const BATCH: usize = 4;
pub const SMOOTHING: f64 = 0.1;

pub fn device() -> Device {
    effcnn_nn::cpu().autodiff()
}

/// The CIFAR-profile graph of `name` with every dropout and drop-path at p = 0.
pub fn graph(name: &str) -> Graph {
    let mut g =
        effcnn_arch::resolve(name, &Options::cifar()).unwrap_or_else(|e| panic!("{name}: {e}"));
    for n in &mut g.nodes {
        if let Op::Dropout { p } | Op::DropPath { p } = &mut n.op {
            *p = 0.0;
        }
    }
    g
}

/// Random conv / linear weights (the seeded initialisation) and random batch-norm γ, β, running
/// mean and variance, biases included, on the autodiff device (training mode).
pub fn model(g: &Graph, seed: u64) -> EffNet {
    let mut m = EffNet::new(g, &device(), InitConfig { seed }).unwrap();
    randomize_bn_and_biases(&mut m, seed);
    m
}

/// Give `m` random batch-norm γ (1 ± 0.3), β, running mean (± 0.1), running variance (1 ± 0.4)
/// and biases (± 0.1), so that no test depends on the identity statistics of an initialisation.
pub fn randomize_bn_and_biases(m: &mut EffNet, seed: u64) {
    let mut map = model_tensors(m, Layout::Canonical).unwrap();
    for (i, (key, t)) in map.iter_mut().enumerate() {
        let n = t.data.len();
        let s = seed * 1000 + i as u64;
        if key.ends_with("running_var") {
            t.data = fill(s, 0.4, 1.0, n);
        } else if key.ends_with("running_mean") || (key.ends_with("bias") && t.shape.len() == 1) {
            t.data = fill(s, 0.1, 0.0, n);
        } else if t.shape.len() == 1 && key.ends_with("weight") {
            t.data = fill(s, 0.3, 1.0, n);
        }
    }
    apply_tensors(m, &map, Some(Layout::Canonical), false).unwrap();
}

/// A model with the same tensors as `m` and its own running statistics (clones of a burn
/// module share them) and parameter ids.
pub fn copy(m: &EffNet) -> EffNet {
    let mut c = EffNet::new(m.graph(), &device(), InitConfig { seed: 0 }).unwrap();
    let map = model_tensors(m, Layout::Canonical).unwrap();
    apply_tensors(&mut c, &map, Some(Layout::Canonical), false).unwrap();
    c
}

pub fn images(seed: u64, n: usize) -> Vec<f32> {
    fill(seed, 1.0, 0.0, n * 3 * 32 * 32)
}

pub fn labels(n: usize, classes: usize) -> Vec<i64> {
    (0..n).map(|i| ((i * 7 + 3) % classes) as i64).collect()
}

/// effcnn-train's label-smoothed cross-entropy (PyTorch semantics), mean over the batch.
pub fn cross_entropy(logits: Tensor<2>, labels: &[i64], smoothing: f64) -> Tensor<1> {
    let [n, k] = logits.dims();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [n]), &logits.device());
    let target = y
        .one_hot::<2>(k)
        .float()
        .mul_scalar(1.0 - smoothing)
        .add_scalar(smoothing / k as f64);
    log_softmax(logits, 1).mul(target).sum_dim(1).mean().neg()
}

/// Every batch norm's input node, in graph order.
pub fn bn_inputs(g: &Graph) -> Vec<NodeId> {
    g.nodes
        .iter()
        .filter(|n| matches!(n.op, Op::BatchNorm { .. }))
        .map(|n| n.inputs[0])
        .collect()
}

/// For every batch norm, `<path>.running_mean` = the batch mean and `<path>.running_var` = the
/// unbiased batch variance of its input (the engine's `batch_stats` convention), in f64.
pub fn stats_of(g: &Graph, captured: &[Tensor<4>]) -> WeightMap {
    let keys = g.tensor_keys(Layout::Canonical);
    let bns: Vec<NodeId> = (0..g.nodes.len())
        .filter(|&i| matches!(g.nodes[i].op, Op::BatchNorm { .. }))
        .collect();
    let mut out = WeightMap::new();
    for (&bn, x) in bns.iter().zip(captured) {
        let [n, c, h, w] = x.dims();
        let v: Vec<f32> = x
            .clone()
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap();
        let m = (n * h * w) as f64;
        let (mut mean, mut var) = (vec![0f32; c], vec![0f32; c]);
        for ch in 0..c {
            let vals = || (0..n).flat_map(|i| v[(i * c + ch) * h * w..][..h * w].iter());
            let mu = vals().map(|&a| f64::from(a)).sum::<f64>() / m;
            let ss = vals().map(|&a| (f64::from(a) - mu).powi(2)).sum::<f64>();
            mean[ch] = mu as f32;
            var[ch] = (if m > 1.0 { ss / (m - 1.0) } else { 0.0 }) as f32;
        }
        let key = |s: &str| {
            keys.iter()
                .find(|k| k.node == bn && k.suffix == s)
                .expect("batch norm key")
                .key
                .clone()
        };
        out.insert(key("running_mean"), (vec![c], mean));
        out.insert(key("running_var"), (vec![c], var));
    }
    out
}

/// burn's training step pieces: loss, logits, gradients and the batch statistics of its BNs.
pub struct BurnStep {
    pub loss: f32,
    pub logits: Vec<f32>,
    pub grads: GradientsParams,
    pub stats: WeightMap,
}

pub fn burn_step(m: &EffNet, x: &[f32], y: &[i64]) -> BurnStep {
    let n = y.len();
    let t = Tensor::<4>::from_data(TensorData::new(x.to_vec(), [n, 3, 32, 32]), &device());
    assert!(m.is_training(&t), "the test model trains");
    let (logits, captured) = m.forward_with_capture(t, &bn_inputs(m.graph()));
    let loss = cross_entropy(logits.clone(), y, SMOOTHING);
    let loss_v = loss.clone().into_scalar::<f32>();
    let grads = GradientsParams::from_grads(loss.backward(), m);
    BurnStep {
        loss: loss_v,
        logits: logits
            .detach()
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap(),
        grads,
        stats: stats_of(m.graph(), &captured),
    }
}

/// The ids of the BN γ/β and of every bias (effcnn-train's no-decay group).
pub fn no_decay(m: &EffNet) -> Vec<ParamId> {
    let bn_affine: Vec<String> = m
        .graph()
        .tensor_keys(Layout::Canonical)
        .into_iter()
        .filter(|k| matches!(m.graph().nodes[k.node].op, Op::BatchNorm { .. }))
        .map(|k| k.key)
        .collect();
    param_ids(m)
        .into_iter()
        .filter(|(k, _)| k.ends_with(".bias") || bn_affine.contains(k))
        .map(|(_, id)| id)
        .collect()
}

/// effcnn-train's optimizers: SGD (Nesterov, coupled weight decay, no-decay group) and AdamW.
pub fn optimizers(m: &EffNet) -> Vec<(&'static str, ModuleOptimizer)> {
    let sgd = |wd: f64| {
        SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new()
                    .with_momentum(0.9)
                    .with_dampening(0.0)
                    .with_nesterov(true),
            ))
            .with_weight_decay((wd > 0.0).then(|| WeightDecayConfig::new(wd as f32)))
            .build()
    };
    let adamw = |wd: f64| {
        AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(wd as f32)
            .build()
    };
    vec![
        (
            "sgd",
            ModuleOptimizer::from(sgd(5e-4)).with_group(
                ParamGroup::from_ids(no_decay(m)),
                sgd(0.0),
                None,
            ),
        ),
        (
            "adamw",
            ModuleOptimizer::from(adamw(0.05)).with_group(
                ParamGroup::from_ids(no_decay(m)),
                adamw(0.0),
                None,
            ),
        ),
    ]
}
