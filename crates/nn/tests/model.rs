//! Model behaviour: train/eval mode (BatchNorm statistics, dropout), SE-gate capture, input
//! checks, initialisation.

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use effcnn_arch::builder::GraphBuilder;
use effcnn_arch::graph::{ModelMeta, Profile};
use effcnn_arch::{Graph, Options, Shape};
use effcnn_nn::parity::fill;
use effcnn_nn::{EffNet, InitConfig, NnError};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec().unwrap()
}

/// input → BN → dropout(0.5) → GAP → flatten → linear: the BN sees the raw input.
fn tiny(dropout: f64) -> Graph {
    let (mut g, x) = GraphBuilder::new(Shape::new(3, 4, 4));
    let y = g.bn(x, "bn", 1e-5, vec![]).unwrap();
    let y = g.dropout(y, "drop", dropout);
    let y = g.global_avg_pool(y, "gap");
    let y = g.flatten(y, "flatten");
    let y = g.linear(y, "fc", 2, true, vec![]).unwrap();
    g.finish(
        ModelMeta {
            name: "tiny".into(),
            family: "test".into(),
            profile: Profile::Cifar,
            width: 1.0,
            depth: 1.0,
            resolution: 4,
            classes: 2,
            norm_mean: [0.0; 3],
            norm_std: [1.0; 3],
            init: effcnn_arch::graph::InitScheme::Torchvision,
        },
        y,
    )
    .unwrap()
}

#[test]
fn batch_norm_trains_like_pytorch_and_evaluates_with_running_stats() {
    let graph = tiny(0.0);
    let device = effcnn_nn::cpu().autodiff();
    let model = EffNet::new(&graph, &device, InitConfig::default()).unwrap();
    let (n, c, hw) = (2, 3, 16);
    let data = fill(9, 2.0, 0.5, n * c * hw);
    let x = Tensor::<4>::from_data(TensorData::new(data.clone(), [n, c, 4, 4]), &device);
    assert!(model.is_training(&x));
    let _ = values(model.forward(x.clone()));
    let mean = values(model.bns[0].running_mean.value_sync());
    let var = values(model.bns[0].running_var.value_sync());
    for ch in 0..c {
        let xs: Vec<f64> = (0..n)
            .flat_map(|b| (0..hw).map(move |i| (b, i)))
            .map(|(b, i)| data[(b * c + ch) * hw + i] as f64)
            .collect();
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
        // PyTorch: momentum 0.1, unbiased batch variance.
        assert!((mean[ch] as f64 - 0.1 * m).abs() < 1e-5, "mean {ch}");
        assert!((var[ch] as f64 - (0.9 + 0.1 * v)).abs() < 1e-5, "var {ch}");
    }
    // Eval (valid) uses the running statistics: the output changes with them, batch-independently.
    let eval = model.valid();
    let xe = x.clone().without_autodiff();
    assert!(!eval.is_training(&xe));
    let full = values(eval.forward(xe.clone()));
    let first = values(eval.forward(xe.narrow(0, 0, 1)));
    assert_eq!(&full[..2], &first[..]);
}

#[test]
fn dropout_only_in_training() {
    let graph = tiny(0.5);
    let device = effcnn_nn::cpu().autodiff();
    let model = EffNet::new(&graph, &device, InitConfig::default()).unwrap();
    let x = Tensor::<4>::from_data(
        TensorData::new(fill(3, 1.0, 0.0, 2 * 3 * 16), [2, 3, 4, 4]),
        &device,
    );
    let eval = model.valid();
    let a = values(eval.forward(x.clone().without_autodiff()));
    let b = values(eval.forward(x.clone().without_autodiff()));
    assert_eq!(a, b, "eval is deterministic");
    let outs: Vec<Vec<f32>> = (0..4).map(|_| values(model.forward(x.clone()))).collect();
    assert!(
        outs.windows(2).any(|w| w[0] != w[1]),
        "training dropout is random"
    );
}

#[test]
fn capture_returns_se_gates() {
    let graph = effcnn_arch::resolve("mobilenet_v3_small", &Options::cifar()).unwrap();
    let gates = graph.se_gates();
    assert!(!gates.is_empty());
    let model = EffNet::new(&graph, &effcnn_nn::cpu(), InitConfig::default()).unwrap();
    let x = Tensor::<4>::from_data(
        TensorData::new(fill(0, 1.0, 0.0, 2 * 3 * 32 * 32), [2, 3, 32, 32]),
        &effcnn_nn::cpu(),
    );
    let plain = values(model.forward(x.clone()));
    let (logits, caps) = model.forward_with_capture(x, &gates);
    assert_eq!(values(logits), plain);
    assert_eq!(caps.len(), gates.len());
    for (g, t) in gates.iter().zip(caps) {
        let [n, ch, h, w] = t.dims();
        assert_eq!((n, ch, h, w), (2, graph.nodes[*g].shape.c, 1, 1));
        assert!(values(t).iter().all(|v| (0.0..=1.0).contains(v)));
    }
}

#[test]
fn bad_inputs_are_errors() {
    let model = EffNet::from_zoo(
        "mobilenet_v2",
        &Options::cifar(),
        &effcnn_nn::cpu(),
        InitConfig::default(),
    )
    .unwrap();
    assert!(model.check_input([1, 3, 32, 32]).is_ok());
    assert!(model.check_input([1, 3, 48, 40]).is_ok());
    let e = model.check_input([1, 1, 32, 32]).unwrap_err();
    assert!(matches!(e, NnError::BadInput(_)) && e.to_string().contains("3 input channels"));
    assert!(model.check_input([0, 3, 32, 32]).is_err());
    let resnet = EffNet::from_zoo(
        "resnet18",
        &Options::imagenet(),
        &effcnn_nn::cpu(),
        InitConfig::default(),
    )
    .unwrap();
    // PyTorch runs ResNet on tiny inputs too (padding keeps every window valid).
    assert!(resnet.check_input([1, 3, 2, 2]).is_ok());
    assert!(resnet.check_input([1, 3, 224, 224]).is_ok());
}

#[test]
fn init_is_seeded_and_torchvision_like() {
    let graph = effcnn_arch::resolve("mobilenet_v2", &Options::cifar()).unwrap();
    let d = effcnn_nn::cpu();
    let a = EffNet::new(&graph, &d, InitConfig { seed: 1 }).unwrap();
    let b = EffNet::new(&graph, &d, InitConfig { seed: 1 }).unwrap();
    let c = EffNet::new(&graph, &d, InitConfig { seed: 2 }).unwrap();
    let w = |m: &EffNet| values(m.convs[1].weight.val());
    assert_eq!(w(&a), w(&b));
    assert_ne!(w(&a), w(&c));
    // Kaiming normal, fan_out: std ≈ √(2 / (C_out·k·k)) on a large layer.
    let last = a.convs.last().unwrap();
    let [co, _, kh, kw] = last.weight.dims();
    let v = values(last.weight.val());
    let var = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64;
    let want = 2.0 / (co * kh * kw) as f64;
    assert!((var / want - 1.0).abs() < 0.05, "var {var} vs {want}");
    assert!(values(a.bns[0].gamma.val()).iter().all(|&g| g == 1.0));
    assert!(values(a.bns[0].beta.val()).iter().all(|&b| b == 0.0));
    assert_eq!(
        a.num_trainable_params() as u64,
        effcnn_arch::cost::analyze(&graph).params
    );
}

/// PyTorch's max pool by definition: window `o` covers `o·s − p ..= o·s − p + k − 1`, clipped to
/// the input; returns the maxima and, per output, the flat index of the (first) maximum.
fn naive_max_pool(
    x: &[f32],
    (nc, h, w): (usize, usize, usize),
    (k, s, p): (usize, usize, usize),
    (oh, ow): (usize, usize),
) -> (Vec<f32>, Vec<usize>) {
    let (mut out, mut arg) = (Vec::new(), Vec::new());
    let span = |o: usize, n: usize| (o * s).saturating_sub(p)..(o * s + k - p).min(n);
    for plane in 0..nc {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = (f32::NEG_INFINITY, usize::MAX);
                for y in span(oy, h) {
                    for xx in span(ox, w) {
                        let i = (plane * h + y) * w + xx;
                        if x[i] > best.0 {
                            best = (x[i], i);
                        }
                    }
                }
                assert!(best.1 != usize::MAX, "window without an input element");
                out.push(best.0);
                arg.push(best.1);
            }
        }
    }
    (out, arg)
}

#[test]
fn ceil_mode_max_pool_clips_windows_like_pytorch() {
    // (h, w, k, stride, pad, output h, output w): output sizes from PyTorch's ceil_mode=True.
    // 6 with 3/2/0 clips the last window to 2 rows; 8 with 3/2/1 clips it to 1; 5 with 2/2/1
    // drops the window that would start in the right padding.
    for (h, w, k, s, p, oh, ow) in [
        (6, 8, 3, 2, 0, 3, 4),
        (8, 6, 3, 2, 1, 5, 4),
        (5, 7, 2, 2, 1, 3, 4),
        (33, 33, 3, 2, 0, 16, 16),
    ] {
        let (mut g, x) = GraphBuilder::new(Shape::new(2, h, w));
        let pool = g.max_pool_with(x, "pool", k, s, p, true).unwrap();
        assert_eq!(g.shape(pool), Shape::new(2, oh, ow));
        let y = g.global_avg_pool(pool, "gap");
        let y = g.flatten(y, "flatten");
        let y = g.linear(y, "fc", 2, true, vec![]).unwrap();
        let meta = ModelMeta {
            name: "pool".into(),
            family: "test".into(),
            profile: Profile::Cifar,
            width: 1.0,
            depth: 1.0,
            resolution: h,
            classes: 2,
            norm_mean: [0.0; 3],
            norm_std: [1.0; 3],
            init: effcnn_arch::graph::InitScheme::Torchvision,
        };
        let graph = g.finish(meta, y).unwrap();
        let n = 2;
        let data = fill(3, 1.0, 0.0, n * 2 * h * w);
        let (want, arg) = naive_max_pool(&data, (n * 2, h, w), (k, s, p), (oh, ow));
        let case = format!("{h}×{w} k{k} s{s} p{p}");

        // Inference.
        let device = effcnn_nn::cpu();
        let model = EffNet::new(&graph, &device, InitConfig::default()).unwrap();
        model.check_input([n, 2, h, w]).unwrap();
        let x = Tensor::<4>::from_data(TensorData::new(data.clone(), [n, 2, h, w]), &device);
        let (_, caps) = model.forward_with_capture(x, &[pool]);
        assert_eq!(caps[0].dims(), [n, 2, oh, ow], "{case}");
        assert_eq!(values(caps[0].clone()), want, "{case}");

        // Training: the gradient of Σ outputs reaches each window's maximum once.
        let device = effcnn_nn::cpu().autodiff();
        let model = EffNet::new(&graph, &device, InitConfig::default()).unwrap();
        let x = Tensor::<4>::from_data(TensorData::new(data.clone(), [n, 2, h, w]), &device)
            .require_grad();
        let (_, caps) = model.forward_with_capture(x.clone(), &[pool]);
        assert_eq!(values(caps[0].clone()), want, "{case} (autodiff)");
        let grads = caps[0].clone().sum().backward();
        let mut expect = vec![0f32; data.len()];
        for i in arg {
            expect[i] += 1.0;
        }
        assert_eq!(values(x.grad(&grads).unwrap()), expect, "{case} gradient");
    }
}
