//! `effcnn se-attention` driven through the real binary: the gates it reports equal a hand
//! computation from the model's weights, planted gates come back exactly, the report's files are
//! written and readable, and a model without SE blocks is a clear error.

use std::collections::HashSet;
use std::path::Path;

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use effcnn_arch::{Act, Graph, NodeId, Op, Options};
use effcnn_data::{LoadOptions, Normalization};
use effcnn_nn::{EffNet, InitConfig};
use serde_json::Value;

mod common;
use common::{fails, ok, tmp};

const DATA: &str = "synthetic:40:40";

fn gates_json(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("gates.json")).expect("gates.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn opts() -> Options {
    Options {
        classes: Some(10),
        resolution: Some(32),
        ..Options::cifar()
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

/// Index in `EffNet::convs` of conv node `id` (convolutions are stored in graph order).
fn conv_index(g: &Graph, id: NodeId) -> usize {
    assert!(
        matches!(g.nodes[id].op, Op::Conv(_)),
        "{}",
        g.nodes[id].path
    );
    g.nodes[..id]
        .iter()
        .filter(|n| matches!(n.op, Op::Conv(_)))
        .count()
}

/// The nodes of one SE module, found by walking back from its gate:
/// `(input x, fc1, inner activation, fc2)`.
fn se_nodes(g: &Graph, gate: NodeId) -> (NodeId, NodeId, Act, NodeId) {
    let gnode = &g.nodes[gate];
    assert!(matches!(gnode.op, Op::Act { act: Act::Sigmoid }));
    let fc2 = gnode.inputs[0];
    let inner = g.nodes[fc2].inputs[0];
    let Op::Act { act } = g.nodes[inner].op else {
        panic!("{}: expected an activation", g.nodes[inner].path)
    };
    let fc1 = g.nodes[inner].inputs[0];
    let pool = g.nodes[fc1].inputs[0];
    assert!(matches!(g.nodes[pool].op, Op::GlobalAvgPool));
    let x = g.nodes[pool].inputs[0];
    let scale = g
        .nodes
        .iter()
        .find(|n| matches!(n.op, Op::Scale) && n.inputs[1] == gate)
        .expect("the gate scales something");
    assert_eq!(scale.inputs[0], x, "the gate scales its own input");
    (x, fc1, act, fc2)
}

fn conv_params(model: &EffNet, i: usize) -> (Vec<f32>, Vec<f32>) {
    let c = &model.convs[i];
    let w = values(c.weight.val());
    let b = values(c.bias.as_ref().expect("SE convs have a bias").val());
    (w, b)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Normalized NCHW pixels of test images `indices`, computed here from the raw u8 HWC data.
fn inputs(indices: &[usize], norm: Normalization) -> Tensor<4> {
    let splits = effcnn_data::load(DATA, &LoadOptions::default()).unwrap();
    let t = &splits.test;
    let (h, w) = (t.height as usize, t.width as usize);
    let mut x = Vec::new();
    for &i in indices {
        let img = t.image(i);
        for c in 0..3 {
            for p in 0..h * w {
                let v = f32::from(img[p * 3 + c]) / 255.0;
                x.push((v - norm.mean[c]) / norm.std[c]);
            }
        }
    }
    Tensor::from_data(
        TensorData::new(x, [indices.len(), 3, h, w]),
        &effcnn_nn::cpu(),
    )
}

#[test]
fn captured_gates_equal_a_hand_computation_from_the_block_input() {
    let out = tmp("hand");
    let o = out.to_str().unwrap();
    ok(&[
        "se-attention",
        "--random-init",
        "--model",
        "se_resnet20",
        "--seed",
        "7",
        "--data",
        DATA,
        "--images",
        "5",
        "--per-class",
        "2",
        "--out",
        o,
    ]);
    let j = gates_json(&out);
    // The normalization must be the training split's statistics.
    let splits = effcnn_data::load(DATA, &LoadOptions::default()).unwrap();
    let norm = splits.train.normalization();
    let f = |v: &Value| -> [f32; 3] {
        let a: Vec<f32> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        [a[0], a[1], a[2]]
    };
    assert_eq!(f(&j["normalization"]["mean"]), norm.mean);
    assert_eq!(f(&j["normalization"]["std"]), norm.std);
    let samples: Vec<usize> = j["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["index"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(samples.len(), 5);
    for s in j["samples"].as_array().unwrap() {
        let i = s["index"].as_u64().unwrap() as usize;
        assert_eq!(
            s["label"].as_u64().unwrap() as u16,
            splits.test.labels[i],
            "sample labels are the dataset's"
        );
    }

    // The same model, built here; every SE gate recomputed by hand from its block's input.
    let graph = effcnn_arch::resolve("se_resnet20", &opts()).unwrap();
    let model = EffNet::new(&graph, &effcnn_nn::cpu(), InitConfig { seed: 7 }).unwrap();
    let gates = graph.se_gates();
    assert_eq!(gates.len(), 9);
    let se: Vec<_> = gates.iter().map(|&g| se_nodes(&graph, g)).collect();
    let xs: Vec<NodeId> = se.iter().map(|s| s.0).collect();
    let (_, feats) = model.forward_with_capture(inputs(&samples, norm), &xs);
    let blocks = j["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 9);
    let mut varied = 0;
    for (b, ((x, fc1, act, fc2), feat)) in se.into_iter().zip(feats).enumerate() {
        assert_eq!(act, Act::Relu);
        assert_eq!(blocks[b]["path"], graph.nodes[gates[b]].path.as_str());
        let [n, c, h, w] = feat.dims();
        assert_eq!((n, c), (5, graph.nodes[x].shape.c));
        let feat = values(feat);
        let (w1, b1) = conv_params(&model, conv_index(&graph, fc1));
        let (w2, b2) = conv_params(&model, conv_index(&graph, fc2));
        let s = b1.len();
        let reported = blocks[b]["sample_gates"].as_array().unwrap();
        assert_eq!(reported.len(), 5);
        let mut all = Vec::new();
        for (i, row) in reported.iter().enumerate() {
            let z: Vec<f64> = (0..c)
                .map(|ch| {
                    let plane = &feat[(i * c + ch) * h * w..(i * c + ch + 1) * h * w];
                    plane.iter().map(|&v| f64::from(v)).sum::<f64>() / (h * w) as f64
                })
                .collect();
            let hidden: Vec<f64> = (0..s)
                .map(|k| {
                    let v = f64::from(b1[k])
                        + (0..c)
                            .map(|ch| f64::from(w1[k * c + ch]) * z[ch])
                            .sum::<f64>();
                    v.max(0.0)
                })
                .collect();
            let row = row.as_array().unwrap();
            assert_eq!(row.len(), c);
            for ch in 0..c {
                let e = f64::from(b2[ch])
                    + (0..s)
                        .map(|k| f64::from(w2[ch * s + k]) * hidden[k])
                        .sum::<f64>();
                let want = sigmoid(e);
                let got = row[ch].as_f64().unwrap();
                assert!(
                    (got - want).abs() < 1e-4,
                    "block {b} image {i} channel {ch}: reported {got}, by hand {want}"
                );
                all.push(got);
            }
        }
        let spread = all.iter().cloned().fold(f64::MIN, f64::max)
            - all.iter().cloned().fold(f64::MAX, f64::min);
        varied += usize::from(spread > 0.05);
    }
    assert!(varied >= 5, "the check needs gates that vary");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn random_init_writes_a_labelled_report_with_decodable_figures() {
    let out = tmp("random");
    let o = out.to_str().unwrap();
    let stdout = ok(&[
        "se-attention",
        "--random-init",
        "--model",
        "se_resnet20",
        "--data",
        DATA,
        "--images",
        "4",
        "--per-class",
        "3",
        "--out",
        o,
    ]);
    assert!(stdout.contains("UNTRAINED"), "{stdout}");
    assert!(stdout.contains("blocks.2.2") && stdout.contains("class spec."));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("Untrained model"), "{md}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("data:image/png;base64,"));
    let mut names = vec![
        "gate_histograms".to_string(),
        "class_specificity".to_string(),
        "gate_stats".to_string(),
    ];
    for b in 1..=9 {
        names.push(format!("block{b:02}_samples"));
        names.push(format!("block{b:02}_classes"));
    }
    for name in &names {
        let svg = std::fs::read_to_string(out.join(format!("{name}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") || svg.starts_with("<?xml"),
            "{name}.svg"
        );
        let img = image::open(out.join(format!("{name}.png")))
            .unwrap_or_else(|e| panic!("{name}.png: {e}"))
            .to_rgb8();
        assert!(img.width() >= 300 && img.height() >= 200, "{name}.png size");
        let colours: HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        let ink = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(
            colours.len() > 20,
            "{name}.png has {} colours",
            colours.len()
        );
        assert!(
            ink * 20 > (img.width() * img.height()) as usize,
            "{name}.png is nearly blank"
        );
        assert!(md.contains(&format!("{name}.png")), "report links {name}");
    }
    let j = gates_json(&out);
    assert_eq!(j["untrained"], true);
    assert_eq!(j["model"], "se_resnet20");
    let n = j["images"].as_u64().unwrap() as usize;
    assert!(n > 10 && n <= 30, "{n} images");
    assert_eq!(j["labels"].as_array().unwrap().len(), n);
    let blocks = j["blocks"].as_array().unwrap();
    let channels: Vec<u64> = blocks
        .iter()
        .map(|b| b["channels"].as_u64().unwrap())
        .collect();
    assert_eq!(channels, [16, 16, 16, 32, 32, 32, 64, 64, 64]);
    for b in blocks {
        let c = b["channels"].as_u64().unwrap() as usize;
        let rows = b["sample_gates"].as_array().unwrap();
        assert_eq!(rows.len(), 4);
        let means = b["class_mean_gates"].as_array().unwrap();
        assert_eq!(means.len(), 10);
        for row in rows.iter().chain(means.iter().filter(|m| !m.is_null())) {
            let row = row.as_array().unwrap();
            assert_eq!(row.len(), c);
            for v in row {
                let v = v.as_f64().unwrap();
                assert!(v > 0.0 && v < 1.0, "{}: gate {v}", b["path"]);
            }
        }
        let st = &b["stats"];
        for key in ["mean", "saturated_share", "low_share", "high_share"] {
            let v = st[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
        assert!(st["class_specificity"].as_f64().unwrap() >= 0.0);
        assert!(st["chance_specificity"].as_f64().unwrap() >= 0.0);
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// se_resnet20 with the gates of block `blocks.1.1` forced: fc2 weights 0, bias +6 on the first
/// half of the channels and −6 on the second, so those gates are σ(±6) for every image.
fn planted_model() -> (EffNet, usize) {
    let graph = effcnn_arch::resolve("se_resnet20", &opts()).unwrap();
    let mut model = EffNet::new(&graph, &effcnn_nn::cpu(), InitConfig::default()).unwrap();
    let gates = graph.se_gates();
    let b = gates
        .iter()
        .position(|&g| graph.nodes[g].block == "blocks.1.1")
        .unwrap();
    let (_, _, _, fc2) = se_nodes(&graph, gates[b]);
    let conv = &mut model.convs[conv_index(&graph, fc2)];
    let [cout, cin, kh, kw] = conv.weight.val().dims();
    let device = effcnn_nn::cpu();
    conv.weight = Param::from_data(
        TensorData::new(vec![0f32; cout * cin * kh * kw], [cout, cin, kh, kw]),
        &device,
    );
    let bias: Vec<f32> = (0..cout)
        .map(|c| if c < cout / 2 { 6.0 } else { -6.0 })
        .collect();
    conv.bias = Some(Param::from_data(TensorData::new(bias, [cout]), &device));
    (model, b)
}

#[test]
fn planted_gates_of_a_weights_file_come_back_exactly() {
    let dir = tmp("planted");
    std::fs::create_dir_all(&dir).unwrap();
    let (model, b) = planted_model();
    let weights = dir.join("planted.safetensors");
    effcnn_nn::save_safetensors(&model, &weights, None).unwrap();
    let out = dir.join("report");
    // No --model: the file's metadata names it.
    ok(&[
        "se-attention",
        weights.to_str().unwrap(),
        "--data",
        DATA,
        "--images",
        "3",
        "--per-class",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    let j = gates_json(&out);
    assert_eq!(j["untrained"], false);
    assert!(j["weights"]
        .as_str()
        .unwrap()
        .ends_with("planted.safetensors"));
    let blk = &j["blocks"][b];
    assert_eq!(blk["block"], "blocks.1.1");
    let st = &blk["stats"];
    assert_eq!(st["saturated_share"].as_f64().unwrap(), 1.0);
    assert_eq!(st["low_share"].as_f64().unwrap(), 0.5);
    assert_eq!(st["high_share"].as_f64().unwrap(), 0.5);
    assert!((st["mean"].as_f64().unwrap() - 0.5).abs() < 1e-6);
    assert_eq!(st["class_specificity"].as_f64().unwrap(), 0.0);
    let (hi, lo) = (sigmoid(6.0), sigmoid(-6.0));
    for row in blk["sample_gates"].as_array().unwrap() {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), 32);
        for (c, v) in row.iter().enumerate() {
            let want = if c < 16 { hi } else { lo };
            assert!(
                (v.as_f64().unwrap() - want).abs() < 1e-6,
                "channel {c}: {v}"
            );
        }
    }
    // The neighbouring blocks are untouched.
    for other in [b - 1, b + 1] {
        let s = j["blocks"][other]["stats"]["saturated_share"]
            .as_f64()
            .unwrap();
        assert!(s < 0.5, "block {other}: saturated share {s}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_run_folder_supplies_model_data_and_normalization() {
    let dir = tmp("run");
    std::fs::create_dir_all(&dir).unwrap();
    let (model, b) = planted_model();
    effcnn_nn::save_safetensors(&model, dir.join("last.safetensors"), None).unwrap();
    // The config.json a training run writes: the recipe and the data it resolved to.
    let mut config =
        effcnn_train::TrainConfig::recommended("se_resnet20", effcnn_train::Profile::Cifar, DATA);
    config.resolved = Some(effcnn_train::ResolvedData {
        source: DATA.to_string(),
        classes: ('a'..='j').map(String::from).collect(),
        normalization: effcnn_data::Normalization {
            mean: [0.5; 3],
            std: [0.25; 3],
        },
        image_size: (32, 32),
        train_images: 10,
        val_images: 0,
        test_images: 10,
    });
    let config = serde_json::to_string(&config).unwrap();
    std::fs::write(dir.join("config.json"), &config).unwrap();
    let out = dir.join("report");
    ok(&[
        "se-attention",
        dir.to_str().unwrap(),
        "--per-class",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let j = gates_json(&out);
    assert_eq!(j["normalization"]["mean"][0], 0.5);
    assert_eq!(j["normalization"]["std"][2], 0.25);
    assert_eq!(j["images"], 10);
    assert_eq!(j["blocks"][b]["stats"]["saturated_share"], 1.0);
    // A different model than the run's is refused.
    fails(
        &[
            "se-attention",
            dir.to_str().unwrap(),
            "--model",
            "se_resnet56",
            "--out",
            out.to_str().unwrap(),
        ],
        &["trains se_resnet20"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn models_without_se_and_bad_arguments_are_clear_errors() {
    let out = tmp("nose");
    let o = out.to_str().unwrap();
    for model in ["resnet20", "mobilenet_v2", "efficientnet_lite0"] {
        fails(
            &[
                "se-attention",
                "--random-init",
                "--model",
                model,
                "--data",
                DATA,
                "--out",
                o,
            ],
            &["no squeeze-and-excitation"],
        );
    }
    assert!(!out.exists(), "nothing is written on error");
    fails(
        &["se-attention", "--random-init", "--data", DATA, "--out", o],
        &["--random-init needs --model"],
    );
    fails(
        &[
            "se-attention",
            "--random-init",
            "--model",
            "se_resnet20",
            "--out",
            o,
        ],
        &["--data is required"],
    );
    fails(&["se-attention", "--data", DATA, "--out", o], &["required"]);
    fails(
        &[
            "se-attention",
            "/nonexistent/run",
            "--data",
            DATA,
            "--out",
            o,
        ],
        &["no such run folder"],
    );
    assert!(!out.exists());
}
