//! effcnn's ONNX exports run by a real ONNX runtime (tract): at least one entry of every zoo
//! family, exported with random weights (batch-norm statistics randomised too, so batch norm
//! and its folding are exercised), must give effcnn's eval-mode logits within relative L2 1e-4;
//! and the real EfficientNet-Lite0 weights (`../shared`, skipped with a note when absent) must
//! give effcnn's top-5 on the photo crops.

use std::path::PathBuf;

use burn::tensor::{Tensor as BurnTensor, TensorData};
use effcnn_arch::{Layout, Op, Options, Profile};
use effcnn_nn::checkpoint::model_tensors;
use effcnn_nn::parity::rel_l2;
use effcnn_nn::predict::{load_image, top_k};
use effcnn_nn::{apply_tensors, load_weights, EffNet, InitConfig};
use effcnn_onnx::proto::ModelProto;
use effcnn_onnx::{check, encode, export_model, Batch, ExportOptions, DEFAULT_OPSET};
use prost::Message;
use tract_onnx::prelude::*;

/// One export to check.
struct Case {
    model: &'static str,
    profile: Profile,
    resolution: usize,
    batch: usize,
    opts: ExportOptions,
}

fn case(model: &'static str, profile: Profile, resolution: usize) -> Case {
    Case {
        model,
        profile,
        resolution,
        batch: 2,
        opts: ExportOptions {
            batch: Batch::Fixed(2),
            ..ExportOptions::default()
        },
    }
}

fn opset(mut c: Case, opset: i64) -> Case {
    c.opts.opset = opset;
    c
}

/// A deterministic value in [-1, 1) for index `i` of stream `s`.
fn u(s: u64, i: u64) -> f32 {
    let mut z = (s << 32)
        .wrapping_add(i)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 11) as f64 * (1.0 / (1u64 << 53) as f64) * 2.0 - 1.0) as f32
}

/// A model with effcnn's random initialisation and randomised batch norms (γ, β, running mean
/// and variance), in eval mode.
fn random_model(c: &Case) -> EffNet {
    let opts = Options {
        profile: c.profile,
        resolution: Some(c.resolution),
        ..Options::default()
    };
    let device = effcnn_nn::cpu();
    let mut model = EffNet::from_zoo(c.model, &opts, &device, InitConfig { seed: 7 }).unwrap();
    let mut map = model_tensors(&model, Layout::Canonical).unwrap();
    let graph = model.graph().clone();
    for (k, key) in graph.tensor_keys(Layout::Canonical).iter().enumerate() {
        let is_bn = matches!(graph.nodes[key.node].op, Op::BatchNorm { .. });
        let f: fn(f32) -> f32 = match (is_bn, key.suffix) {
            (true, "weight") => |x| 1.0 + 0.3 * x,
            (true, "running_mean") => |x| 0.2 * x,
            (true, "running_var") => |x| 1.0 + 0.5 * x,
            (_, "bias") => |x| 0.1 * x,
            _ => continue,
        };
        let t = map.get_mut(&key.key).unwrap();
        for (i, v) in t.data.iter_mut().enumerate() {
            *v = f(u(k as u64 + 1, i as u64));
        }
    }
    apply_tensors(&mut model, &map, Some(Layout::Canonical), false).unwrap();
    model
}

fn input(shape: [usize; 4]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    (0..n as u64).map(|i| u(0, i)).collect()
}

fn effcnn_logits(model: &EffNet, data: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let x = BurnTensor::<4>::from_data(TensorData::new(data.to_vec(), shape), &effcnn_nn::cpu());
    model.forward(x).into_data().try_to_vec().unwrap()
}

/// Run ONNX bytes through tract (optimised plan) with the input fixed to `shape`.
fn tract_logits(bytes: &[u8], data: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let plan = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .expect("tract reads the export")
        .with_input_fact(0, f32::fact(shape).into())
        .unwrap()
        .into_optimized()
        .expect("tract optimises the export")
        .into_runnable()
        .unwrap();
    let x = tract_ndarray::Array4::from_shape_vec(shape, data.to_vec()).unwrap();
    let out = plan.run(tvec!(Tensor::from(x).into())).unwrap();
    out[0].as_slice::<f32>().unwrap().to_vec()
}

/// Export, decode again (prost), check, run in tract and in effcnn: the relative L2 error.
fn check_case(c: &Case) -> f64 {
    let model = random_model(c);
    let proto = export_model(&model, &c.opts).unwrap();
    let bytes = encode(&proto);
    let back = ModelProto::decode(bytes.as_slice()).unwrap();
    assert_eq!(back, proto, "{}: the protobuf round-trips", c.model);
    check(&back).unwrap();
    let s = model.graph().input_shape();
    let shape = [c.batch, s.c, s.h, s.w];
    let x = input(shape);
    let want = effcnn_logits(&model, &x, shape);
    let got = tract_logits(&bytes, &x, shape);
    assert_eq!(got.len(), want.len(), "{}: logits count", c.model);
    let err = rel_l2(&got, &want);
    let bn = if c.opts.fold_bn { "folded" } else { "bn" };
    eprintln!(
        "{:20} {:8} {:3}² opset {} batch {} ({}) {bn:6}: {} nodes, rel-L2 {err:.2e}",
        c.model,
        c.profile.name(),
        c.resolution,
        c.opts.opset,
        c.opts.batch,
        c.batch,
        back.graph.as_ref().unwrap().node.len()
    );
    assert!(
        err <= 1e-4,
        "{} ({:?}): tract vs effcnn rel-L2 {err:.3e}",
        c.model,
        c.opts
    );
    err
}

#[test]
fn every_family_runs_in_tract_like_effcnn() {
    use Profile::{Cifar, Imagenet};
    let mut cases = vec![
        case("plain_cnn", Cifar, 32),
        case("dwsep_cnn", Cifar, 32),
        case("mobilenet_v1", Imagenet, 64),
        case("mobilenet_v2", Cifar, 32),
        case("mobilenet_v3_small", Imagenet, 64),
        case("mobilenet_v3_large", Cifar, 32),
        case("shufflenet_v1_g3", Imagenet, 64),
        case("shufflenet_v2_x1_0", Imagenet, 64),
        case("efficientnet_b0", Cifar, 32),
        // TF "SAME" padding, asymmetric at stride 2.
        case("efficientnet_lite0", Imagenet, 64),
        case("resnet18", Imagenet, 64),
        case("se_resnet18", Imagenet, 64),
        // Max pooling with ceil_mode, and clipped windows at 65².
        case("legacy_se_resnet18", Imagenet, 65),
        case("resnet20", Cifar, 32),
        // Opsets at both ends of the range (HardSwish as HardSigmoid · x below 14).
        opset(
            case("mobilenet_v3_small", Imagenet, 64),
            effcnn_onnx::MIN_OPSET,
        ),
        opset(
            case("shufflenet_v2_x1_0", Imagenet, 64),
            effcnn_onnx::MAX_OPSET,
        ),
        opset(case("efficientnet_b0", Cifar, 32), 13),
    ];
    // Batch norm folded into the convolutions.
    for m in ["mobilenet_v3_small", "efficientnet_lite0", "resnet18"] {
        let mut c = case(m, Imagenet, 64);
        c.opts.fold_bn = true;
        cases.push(c);
    }
    // A dynamic batch dimension, run at batch 3.
    for m in ["efficientnet_lite0", "shufflenet_v2_x1_0"] {
        let mut c = case(m, Imagenet, 64);
        c.opts.batch = Batch::Dynamic;
        c.batch = 3;
        cases.push(c);
    }
    let mut worst = 0f64;
    for c in &cases {
        worst = worst.max(check_case(c));
    }
    eprintln!("{} exports, worst rel-L2 {worst:.2e}", cases.len());
}

#[test]
fn fixed_batch_is_recorded_in_the_input_and_output_shapes() {
    let c = Case {
        batch: 4,
        opts: ExportOptions {
            batch: Batch::Fixed(4),
            ..ExportOptions::default()
        },
        ..case("dwsep_cnn", Profile::Cifar, 32)
    };
    assert_eq!(c.opts.opset, DEFAULT_OPSET);
    check_case(&c);
}

fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    p.join("weights/efficientnet-lite0-57934424.pth")
        .exists()
        .then_some(p)
}

#[test]
fn efficientnet_lite0_real_weights_same_top5_in_tract() {
    let Some(shared) = shared() else {
        eprintln!("SKIPPED: ../shared/weights/efficientnet-lite0-57934424.pth not present");
        return;
    };
    let graph = effcnn_arch::resolve("efficientnet_lite0", &Options::imagenet()).unwrap();
    let device = effcnn_nn::cpu();
    let mut model = EffNet::new(&graph, &device, InitConfig::default()).unwrap();
    load_weights(
        &mut model,
        shared.join("weights/efficientnet-lite0-57934424.pth"),
        None,
        false,
    )
    .unwrap();
    let meta = &model.graph().meta;
    let norm = effcnn_nn::predict::Normalization {
        mean: meta.norm_mean,
        std: meta.norm_std,
    };
    let mut dir: Vec<PathBuf> = std::fs::read_dir(shared.join("fixtures/pretrained/crops"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dir.sort();
    assert!(!dir.is_empty());
    for fold_bn in [false, true] {
        let opts = ExportOptions {
            fold_bn,
            ..ExportOptions::default()
        };
        let bytes = encode(&export_model(&model, &opts).unwrap());
        for crop in &dir {
            let batch = load_image(crop, 224, norm).unwrap();
            let want = effcnn_logits(&model, &batch.data, batch.shape);
            let got = tract_logits(&bytes, &batch.data, batch.shape);
            let top = |l: &[f32]| top_k(l, 5).iter().map(|t| t.index).collect::<Vec<_>>();
            let err = rel_l2(&got, &want);
            eprintln!(
                "{} (fold_bn {fold_bn}): tract top-5 {:?}, effcnn {:?}, rel-L2 {err:.2e}",
                crop.file_name().unwrap().to_string_lossy(),
                top(&got),
                top(&want)
            );
            assert_eq!(top(&got), top(&want), "{}: top-5", crop.display());
            assert!(err <= 1e-4, "{}: rel-L2 {err:.3e}", crop.display());
        }
    }
}
