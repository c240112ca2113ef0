//! Statistics of squeeze-and-excitation gates over labelled images (Exercise 2.6, the SENet
//! paper's Fig. 6 question): per-block summaries, class means and class specificity against a
//! shuffled-label chance level. [`gate_infos`] reads the gates from the graph's SE modules,
//! [`capture_gates`] runs a model over images and collects them; `effcnn se-attention` reports.

use std::sync::Arc;

use effcnn_arch::{Graph, NodeId, Op};
use effcnn_data::rng::Rng;
use effcnn_data::{Dataset, Loader, LoaderConfig, Normalization};
use effcnn_nn::EffNet;

use crate::error::{Result, TrainError};
use crate::eval::argmax_rows;

/// A gate below this is counted as "closed" (the channel is suppressed).
pub const LOW: f32 = 0.05;
/// A gate above this is counted as "open" (the channel passes unchanged).
pub const HIGH: f32 = 0.95;
/// Label permutations averaged for the chance level of the class specificity.
const SHUFFLES: u64 = 8;

/// An SE gate of a graph, read from its block's SE module ([`effcnn_arch::graph::SeInfo`]).
#[derive(Debug, Clone)]
pub struct GateInfo {
    /// The gate node (the sigmoid / hard-sigmoid whose output scales the channels).
    pub node: NodeId,
    /// Its path, e.g. `layer1.0.se.gate`.
    pub path: String,
    /// The path of the block holding the SE module.
    pub block: String,
    /// Channels the gate recalibrates.
    pub channels: usize,
    /// Width of the module's bottleneck.
    pub squeeze: usize,
    /// The gate's activation (`sigmoid`, `hard_sigmoid`, …).
    pub act: &'static str,
    /// The activation between the module's two FC layers (`"activation"` if it has none).
    pub act_inner: &'static str,
}

/// Every SE gate of `graph`, in graph order.
pub fn gate_infos(graph: &Graph) -> Vec<GateInfo> {
    let act_name = |i: NodeId| match &graph.nodes[i].op {
        Op::Act { act } => Some(act.name()),
        _ => None,
    };
    graph
        .se_modules()
        .map(|(block, se)| {
            let gate = graph.se_gate(se);
            let n = &graph.nodes[gate];
            GateInfo {
                node: gate,
                path: n.path.clone(),
                block: block.path.clone(),
                channels: se.channels,
                squeeze: se.squeeze,
                act: act_name(gate).unwrap_or("gate"),
                // pool → fc1 → inner activation → fc2 → gate → scale.
                act_inner: se
                    .nodes
                    .clone()
                    .filter(|&i| i != gate)
                    .find_map(act_name)
                    .unwrap_or("activation"),
            }
        })
        .collect()
}

/// The gates captured from a model over a set of images.
#[derive(Debug, Clone)]
pub struct GateCapture {
    /// Per gate: `images × channels`, row-major.
    pub gates: Vec<Vec<f32>>,
    /// Label of each image.
    pub labels: Vec<usize>,
    /// Index of each image in the split it was drawn from.
    pub indices: Vec<usize>,
    /// Images whose top-1 prediction equals the label.
    pub correct: usize,
}

fn tensor_values<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| TrainError::Config(format!("cannot read a tensor: {e:?}")))
}

/// Runs `model` (in eval mode, on its device) over `images` and collects every gate of
/// `gates`. `indices[i]` is the index in the original split of `images`' image `i`.
pub fn capture_gates(
    model: &EffNet,
    gates: &[GateInfo],
    images: Dataset,
    indices: &[usize],
    norm: Normalization,
    batch_size: usize,
) -> Result<GateCapture> {
    let model = burn::module::Module::valid(model);
    let device = model
        .convs
        .first()
        .map_or_else(effcnn_nn::cpu, |c| c.weight.val().device());
    let ids: Vec<NodeId> = gates.iter().map(|g| g.node).collect();
    let loader = Loader::new(
        Arc::new(images),
        LoaderConfig::eval(batch_size.max(1), norm),
    )?;
    let mut cap = GateCapture {
        gates: vec![Vec::new(); gates.len()],
        labels: Vec::new(),
        indices: Vec::new(),
        correct: 0,
    };
    for batch in loader.epoch(0) {
        let shape = batch.shape();
        let x = burn::tensor::Tensor::<4>::from_data(
            burn::tensor::TensorData::new(batch.images, shape),
            &device,
        );
        let (logits, caps) = model.forward_with_capture(x, &ids);
        let logits = tensor_values(logits)?;
        let k = logits.len() / batch.n.max(1);
        for (pred, &l) in argmax_rows(&logits, k.max(1)).iter().zip(&batch.labels) {
            cap.correct += usize::from(*pred == l as usize);
        }
        for ((t, g), out) in caps.into_iter().zip(gates).zip(&mut cap.gates) {
            let dims = t.dims();
            if dims != [batch.n, g.channels, 1, 1] {
                return Err(TrainError::Config(format!(
                    "gate {} has shape {dims:?}, expected [{}, {}, 1, 1]",
                    g.path, batch.n, g.channels
                )));
            }
            out.extend(tensor_values(t)?);
        }
        cap.labels.extend(batch.labels.iter().map(|&l| l as usize));
        cap.indices.extend(
            batch
                .indices
                .iter()
                .map(|&i| indices.get(i).copied().unwrap_or(i)),
        );
    }
    Ok(cap)
}

/// The first `per_class` images of each class, in dataset order.
pub fn select_per_class(labels: &[u16], classes: usize, per_class: usize) -> Vec<usize> {
    let mut taken = vec![0usize; classes];
    let mut out = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        let l = l as usize;
        if l < classes && taken[l] < per_class {
            taken[l] += 1;
            out.push(i);
        }
    }
    out
}

/// `n` positions of `labels`, round-robin over the classes (the first image of class 0, of
/// class 1, …, then the second of each), so the samples cover as many classes as possible.
pub fn pick_samples(labels: &[usize], classes: usize, n: usize) -> Vec<usize> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        if l < classes {
            by_class[l].push(i);
        }
    }
    let mut out = Vec::new();
    let rounds = by_class.iter().map(Vec::len).max().unwrap_or(0);
    'outer: for r in 0..rounds {
        for c in &by_class {
            if out.len() == n {
                break 'outer;
            }
            if let Some(&i) = c.get(r) {
                out.push(i);
            }
        }
    }
    out
}

/// Summary statistics of one block's gates.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GateStats {
    /// Mean gate value over images and channels.
    pub mean: f64,
    /// Standard deviation (population) of all gate values of the block.
    pub std: f64,
    /// Share of gate values below [`LOW`].
    pub low_share: f64,
    /// Share of gate values above [`HIGH`].
    pub high_share: f64,
    /// `low_share + high_share`.
    pub saturated_share: f64,
    /// Standard deviation across classes of the class-mean gate, averaged over channels.
    pub between_class_std: f64,
    /// `between_class_std / std`: 0 when every class excites the channels alike.
    pub class_specificity: f64,
    /// The same with the labels shuffled (mean of several permutations): the level that
    /// sampling noise alone reaches with this many images per class.
    pub chance_specificity: f64,
}

/// Mean gate per class (`None` for a class without images); `values` is `n × channels`,
/// row-major.
pub fn class_means(
    values: &[f32],
    channels: usize,
    labels: &[usize],
    classes: usize,
) -> Vec<Option<Vec<f64>>> {
    let mut sum = vec![vec![0f64; channels]; classes];
    let mut count = vec![0usize; classes];
    for (row, &l) in values.chunks_exact(channels).zip(labels) {
        if l >= classes {
            continue;
        }
        count[l] += 1;
        for (s, &v) in sum[l].iter_mut().zip(row) {
            *s += f64::from(v);
        }
    }
    sum.into_iter()
        .zip(count)
        .map(|(s, n)| (n > 0).then(|| s.into_iter().map(|v| v / n as f64).collect()))
        .collect()
}

/// Standard deviation across classes of the class-mean gate, averaged over channels.
fn between_class_std(values: &[f32], channels: usize, labels: &[usize], classes: usize) -> f64 {
    let means: Vec<Vec<f64>> = class_means(values, channels, labels, classes)
        .into_iter()
        .flatten()
        .collect();
    if means.len() < 2 || channels == 0 {
        return 0.0;
    }
    let k = means.len() as f64;
    let mut total = 0.0;
    for c in 0..channels {
        let m = means.iter().map(|r| r[c]).sum::<f64>() / k;
        let var = means.iter().map(|r| (r[c] - m).powi(2)).sum::<f64>() / k;
        total += var.sqrt();
    }
    total / channels as f64
}

/// Statistics of one block's gates (`values`: `labels.len() × channels`, row-major).
pub fn gate_stats(values: &[f32], channels: usize, labels: &[usize], classes: usize) -> GateStats {
    let n = values.len().max(1) as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let std = var.sqrt();
    let low = values.iter().filter(|&&v| v < LOW).count() as f64 / n;
    let high = values.iter().filter(|&&v| v > HIGH).count() as f64 / n;
    let ratio = |b: f64| if std > 0.0 { b / std } else { 0.0 };
    let between = between_class_std(values, channels, labels, classes);
    let mut chance = 0.0;
    let mut shuffled = labels.to_vec();
    for s in 0..SHUFFLES {
        let mut rng = Rng::new(s);
        for i in (1..shuffled.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            shuffled.swap(i, j);
        }
        chance += ratio(between_class_std(values, channels, &shuffled, classes));
    }
    GateStats {
        mean,
        std,
        low_share: low,
        high_share: high,
        saturated_share: low + high,
        between_class_std: between,
        class_specificity: ratio(between),
        chance_specificity: chance / SHUFFLES as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gates read from the SE modules are the nodes every scale multiplies in, with the
    /// activations found by walking back from the gate (gate ← fc2 ← inner activation).
    #[test]
    fn gate_infos_agree_with_the_scale_nodes() {
        let opts = effcnn_arch::Options {
            profile: effcnn_arch::Profile::Cifar,
            ..Default::default()
        };
        for name in [
            "se_resnet20",
            "mobilenet_v3_small",
            "efficientnet_b0",
            "resnet20",
        ] {
            let g = effcnn_arch::resolve(name, &opts).unwrap();
            let scales: Vec<NodeId> = g
                .nodes
                .iter()
                .filter(|n| matches!(n.op, Op::Scale))
                .map(|n| n.inputs[1])
                .collect();
            let infos = gate_infos(&g);
            assert_eq!(
                infos.iter().map(|i| i.node).collect::<Vec<_>>(),
                scales,
                "{name}"
            );
            assert_eq!(infos.is_empty(), name == "resnet20");
            for i in &infos {
                let n = &g.nodes[i.node];
                assert_eq!(i.path, n.path);
                assert_eq!(i.block, n.block);
                assert_eq!(i.channels, n.shape.c);
                let fc2 = n.inputs[0];
                let fc1 = g.nodes[fc2].inputs[0];
                assert!(matches!(g.nodes[fc2].op, Op::Conv(_)), "{name} {}", i.path);
                assert_eq!(g.nodes[fc2].shape.c, i.channels);
                assert_eq!(g.nodes[fc1].shape.c, i.squeeze, "{name} {}", i.path);
                let Op::Act { act } = &g.nodes[fc1].op else {
                    panic!("{name} {}: no inner activation", i.path)
                };
                assert_eq!(i.act_inner, act.name());
                let Op::Act { act } = &n.op else {
                    panic!("{name} {}: gate is not an activation", i.path)
                };
                assert_eq!(i.act, act.name());
            }
        }
        let v3 = gate_infos(&effcnn_arch::resolve("mobilenet_v3_small", &opts).unwrap());
        assert!(v3
            .iter()
            .all(|i| i.act == "hardsigmoid" && i.act_inner == "relu"));
    }

    #[test]
    fn selection_takes_the_first_images_of_each_class_and_samples_round_robin() {
        let labels = [2u16, 0, 0, 1, 2, 0, 1, 2, 9];
        let sel = select_per_class(&labels, 3, 2);
        assert_eq!(sel, vec![0, 1, 2, 3, 4, 6]);
        let l: Vec<usize> = sel.iter().map(|&i| labels[i] as usize).collect();
        // Labels of the selection: [2, 0, 0, 1, 2, 1].
        assert_eq!(pick_samples(&l, 3, 4), vec![1, 3, 0, 2]);
        assert_eq!(pick_samples(&l, 3, 100).len(), 6);
        assert!(pick_samples(&l, 3, 0).is_empty());
    }

    #[test]
    fn stats_match_a_hand_computation() {
        // 4 images × 2 channels; classes 0, 0, 1, 1.
        let v = [0.0f32, 0.5, 0.2, 0.5, 0.96, 0.5, 1.0, 0.5];
        let labels = [0, 0, 1, 1];
        let st = gate_stats(&v, 2, &labels, 2);
        let mean = (0.0 + 0.5 + 0.2 + 0.5 + 0.96 + 0.5 + 1.0 + 0.5) / 8.0;
        assert!((st.mean - mean).abs() < 1e-6);
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / 8.0;
        assert!((st.std - var.sqrt()).abs() < 1e-6);
        assert_eq!(st.low_share, 1.0 / 8.0);
        assert_eq!(st.high_share, 2.0 / 8.0);
        assert_eq!(st.saturated_share, 3.0 / 8.0);
        // Channel 0: class means 0.1 and 0.98 → std 0.44; channel 1: 0 → average 0.22.
        assert!((st.between_class_std - 0.22).abs() < 1e-6);
        assert!((st.class_specificity - 0.22 / var.sqrt()).abs() < 1e-6);
        let m = class_means(&v, 2, &labels, 3);
        assert!((m[0].as_ref().unwrap()[0] - 0.1).abs() < 1e-6);
        assert!((m[1].as_ref().unwrap()[0] - 0.98).abs() < 1e-6);
        assert!(m[2].is_none());
    }

    #[test]
    fn class_agnostic_gates_have_zero_specificity_and_specific_ones_beat_chance() {
        // Every image has the same gate profile: specificity 0.
        let same: Vec<f32> = (0..20).flat_map(|_| [0.1f32, 0.9, 0.5]).collect();
        let labels: Vec<usize> = (0..20).map(|i| i % 4).collect();
        let st = gate_stats(&same, 3, &labels, 4);
        assert_eq!(st.class_specificity, 0.0);
        assert_eq!(st.chance_specificity, 0.0);
        // Channel c is open exactly for class c: strongly class-specific, far above chance.
        let spec: Vec<f32> = labels
            .iter()
            .flat_map(|&l| (0..4).map(move |c| if c == l { 0.9f32 } else { 0.1 }))
            .collect();
        let st = gate_stats(&spec, 4, &labels, 4);
        assert!(st.class_specificity > 0.95, "{st:?}");
        assert!(st.chance_specificity < 0.6 * st.class_specificity, "{st:?}");
    }
}
