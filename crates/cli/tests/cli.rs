//! Drives the real `effcnn` binary: the commands that need no weights or data, and their
//! bad-input behaviour (clear message, exit code 2, no panic, nothing written).

use std::path::{Path, PathBuf};

use effcnn_arch::{cost, resolve, Options};

mod common;
use common::{fails, ok, tmp};

#[test]
fn show_json_has_totals_and_layers_equal_to_the_analyzer_and_reference() {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["show", "mobilenet_v2", "--format", "json"])).unwrap();
    // REFERENCE.md §2 / torchvision.
    assert_eq!(v["params"], 3_504_872);
    assert_eq!(v["macs"], 300_774_272u64);
    assert_eq!(v["flops"], 601_548_544u64);
    let c = cost::analyze(&resolve("mobilenet_v2", &Options::default()).unwrap());
    assert_eq!(v["activations"], c.activations);
    // 52 convolutions + 1 linear, as in the torchvision fixture's layers_224.
    assert_eq!(v["layers"].as_array().unwrap().len(), 53);
    let layer_macs: u64 = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["macs"].as_u64().unwrap())
        .sum();
    assert_eq!(layer_macs, 300_774_272);
}

#[test]
fn show_reproduces_other_tools_totals() {
    let out = ok(&[
        "show",
        "resnet18",
        "--convention",
        "all",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let totals: Vec<u64> = v["conventions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["total"].as_u64().unwrap())
        .collect();
    // REFERENCE.md §1: torchvision, fvcore, ptflops.
    assert_eq!(totals, [1_814_073_344, 1_819_065_856, 1_825_313_768]);
    let text = ok(&["show", "mobilenet_v2", "--explain-diff"]);
    assert!(
        text.contains("314,193,216") && text.contains("320,300,008"),
        "{text}"
    );
    assert!(text.contains("batch norm"));
}

#[test]
fn show_at_other_width_resolution_and_profile() {
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "show",
        "mobilenet_v1",
        "--width",
        "0.5",
        "--resolution",
        "160",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(v["params"], 1_331_592);
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "show",
        "mobilenet_v2",
        "--profile",
        "cifar",
        "--format",
        "json",
    ]))
    .unwrap();
    // chenyaofo/pytorch-cifar-models mobilenetv2_x1_0: 2.24 M params, 87.98 M MACs.
    assert_eq!(v["params"], 2_236_682);
    assert_eq!((v["macs"].as_f64().unwrap() / 1e4).round() / 100.0, 87.98);
    let d = ok(&["show", "shufflenet_v2_x1_0", "--diagram"]);
    assert!(d.contains("shuffle g2") && d.contains("split"), "{d}");
}

#[test]
fn list_formats_agree_with_the_analyzer() {
    let v: serde_json::Value = serde_json::from_str(&ok(&["list", "--format", "json"])).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), effcnn_arch::entries().len());
    for r in rows {
        let name = r["model"].as_str().unwrap();
        let e = effcnn_arch::entry(name).unwrap();
        let opts = if e.cifar_native {
            Options::cifar()
        } else {
            Options::default()
        };
        let c = cost::analyze(&resolve(name, &opts).unwrap());
        assert_eq!(r["params"].as_u64().unwrap(), c.params, "{name}");
        assert_eq!(r["MACs"].as_u64().unwrap(), c.macs, "{name}");
    }
    let csv = ok(&["list", "--format", "csv"]);
    assert!(csv
        .lines()
        .any(|l| l.starts_with("mobilenet_v2,") && l.contains("3504872")));
    assert!(ok(&["list", "--format", "md"]).contains("| mobilenet_v2 "));
}

#[test]
fn calculators_give_the_curriculum_numbers() {
    let s = ok(&[
        "cost", "dwsep", "--k", "3", "--cin", "128", "--cout", "256", "--size", "56",
    ]);
    assert!(
        s.contains("8.69× fewer MACs") && s.contains("1/256 + 1/9"),
        "{s}"
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "cost", "conv", "--k", "3", "--cin", "512", "--cout", "512", "--size", "14", "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(v["macs"], 462_422_016u64); // MobileNetV1 Table 3: 462 M
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "cost", "se", "--c", "256", "--size", "56", "--r", "16", "--format", "json",
    ]))
    .unwrap();
    assert_eq!(v["params"], 2 * 256 * 16 + 16 + 256);
    for args in [
        vec!["cost", "depthwise", "--cin", "32", "--size", "112"],
        vec![
            "cost",
            "pointwise",
            "--cin",
            "32",
            "--cout",
            "64",
            "--size",
            "112",
        ],
        vec![
            "cost", "group", "--cin", "64", "--cout", "64", "--size", "28", "--groups", "4", "--k",
            "1",
        ],
        vec![
            "cost",
            "shuffle-unit",
            "--c",
            "240",
            "--size",
            "28",
            "--groups",
            "3",
        ],
        vec![
            "cost",
            "inverted-residual",
            "--cin",
            "24",
            "--cout",
            "24",
            "--size",
            "56",
            "--t",
            "6",
        ],
    ] {
        let s = ok(&args);
        assert!(s.contains("formula"), "{args:?}: {s}");
    }
    let s = ok(&["shuffle", "--groups", "2", "--per-group", "3"]);
    assert!(s.contains("a0 b0 a1 b1 a2 b2"), "{s}");
    for t in ["dwsep", "se", "shuffle", "inverted-residual"] {
        assert!(ok(&["explain", t]).len() > 200);
    }
    assert!(ok(&["explain", "se", "--model", "mobilenet_v3_large"]).contains("mobilenet_v3_large"));
}

#[test]
fn explain_takes_the_numbers_of_the_zoo_block_of_the_topics_kind() {
    // EfficientNet-B0's first MBConv (t = 1): depthwise 3×3 on 32 channels, projection to 16
    // (Tan & Le 2019, Table 1) — not the SE module's 8-channel FC between them.
    let s = ok(&["explain", "dwsep", "--model", "efficientnet_b0"]);
    assert!(
        s.contains("With K=3, C_in=32, C_out=16, 112×112 input"),
        "{s}"
    );
    // ShuffleNetV1 g=3: the first stride-1 unit has 240 channels at 28² (Zhang et al., Table 1).
    let s = ok(&["explain", "shuffle", "--model", "shufflenet_v1_g3"]);
    assert!(s.contains("With c=240, g=3, 28×28 input"), "{s}");
    // MobileNetV2's first expanding block: 16 → 96 (t = 6) → 24, stride 2 (Table 2, row 3).
    let s = ok(&["explain", "inverted-residual", "--model", "mobilenet_v2"]);
    assert!(s.contains("With d′=16, t=6, d″=24, k=3, stride 2"), "{s}");
    // SENet: r = 16 on the first SE-ResNet-50 block (256 channels).
    let s = ok(&["explain", "se", "--model", "se_resnet50"]);
    assert!(s.contains("With C=256, r=16"), "{s}");
    fails(
        &["explain", "inverted-residual", "--model", "mobilenet_v1"],
        &["no block of this kind in mobilenet_v1"],
    );
    fails(
        &[
            "explain",
            "se",
            "--model",
            "mobilenet_v2",
            "--block",
            "blocks.1.0",
        ],
        &["no block of this kind at blocks.1.0 in mobilenet_v2"],
    );
}

#[test]
fn bad_model_and_flags_exit_2_with_a_clear_message() {
    fails(
        &["show", "mobilenet_v9"],
        &["unknown model 'mobilenet_v9'", "mobilenet_v2"],
    );
    fails(
        &["show", "mobilenet_v2", "--resolution", "0"],
        &["--resolution"],
    );
    fails(&["show", "mobilenet_v2", "--width=-1"], &["--width"]);
    fails(&["show", "mobilenet_v2", "--classes", "0"], &["--classes"]);
    fails(
        &["show", "mobilenet_v2", "--convention", "thop"],
        &["--convention", "thop"],
    );
    fails(&["show", "resnet18", "--width", "0.5"], &["fixed width"]);
    // A resolution too small for a layer names the layer.
    fails(
        &["show", "plain_cnn", "--resolution", "4"],
        &["layer blocks.2.pool", "raise the resolution"],
    );
    fails(
        &[
            "cost", "group", "--cin", "30", "--cout", "64", "--size", "8", "--groups", "4",
        ],
        &["groups=4"],
    );
    fails(
        &[
            "cost",
            "shuffle-unit",
            "--c",
            "240",
            "--size",
            "28",
            "--groups",
            "7",
        ],
        &["groups=7"],
    );
    fails(
        &["cost", "se", "--c", "8", "--size", "4", "--r", "16"],
        &["r=16"],
    );
    fails(
        &["shuffle", "--groups", "0", "--per-group", "3"],
        &["--groups"],
    );
    fails(&["list", "--format", "xml"], &["xml"]);
    fails(&["bench", "nope_net"], &["unknown model"]);
}

fn png_is_nontrivial(p: &Path) {
    let img = image::open(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .to_rgb8();
    assert!(img.width() >= 400 && img.height() >= 300);
    let mut colours = std::collections::HashSet::new();
    for px in img.pixels() {
        colours.insert(px.0);
    }
    assert!(colours.len() > 20, "{} looks blank", p.display());
}

#[test]
fn compare_writes_a_complete_report_from_reported_accuracy() {
    let dir = tmp("compare");
    let table = ok(&[
        "compare",
        "--models",
        "mobilenet_v2,shufflenet_v2_x1_0,efficientnet_b0",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(
        table.contains("300.77 M") && table.contains("144.91 M"),
        "{table}"
    );
    for f in [
        "report.md",
        "report.html",
        "comparison.csv",
        "comparison.json",
        "accuracy_vs_macs.png",
        "accuracy_vs_macs.svg",
        "accuracy_vs_params.png",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    png_is_nontrivial(&dir.join("accuracy_vs_macs.png"));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("data:image/png;base64,"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("comparison.json")).unwrap())
            .unwrap();
    let mnv2 = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "mobilenet_v2")
        .unwrap();
    assert_eq!(mnv2["params"], 3_504_872);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("Pareto"), "analysis lists the Pareto set");
    assert!(md.contains("Depthwise-separable") && md.contains("Squeeze-and-excitation"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compare_into_an_unusable_directory_fails_cleanly() {
    let dir = tmp("compare-bad");
    std::fs::write(&dir, b"a file, not a directory").unwrap();
    fails(
        &[
            "compare",
            "--models",
            "mobilenet_v2",
            "--out",
            dir.to_str().unwrap(),
        ],
        &["--out"],
    );
    assert!(dir.is_file());
    let _ = std::fs::remove_file(&dir);
}

#[test]
fn experiment_dwsep_trains_both_nets_and_writes_a_report() {
    let dir = tmp("exp-dwsep");
    let table = ok(&[
        "experiment",
        "dwsep",
        "--data",
        "synthetic:200:100",
        "--epochs",
        "1",
        "--batch-size",
        "50",
        "--train-limit",
        "120",
        "--test-limit",
        "30",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(
        table.contains("plain_cnn") && table.contains("dwsep_cnn"),
        "{table}"
    );
    // Costs in the table are the analyzer's (plain_cnn 295,290 params; dwsep_cnn 39,066).
    assert!(
        table.contains("295,290") && table.contains("39,066"),
        "{table}"
    );
    for f in [
        "report.md",
        "report.html",
        "accuracy_vs_macs.png",
        "latency_vs_macs.png",
        "runs/plain_cnn-s0/summary.json",
        "runs/dwsep_cnn-s0/best.safetensors",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("fewer parameters"), "{md}");
    // The limits are exact stratified samples, recorded in every run's configuration.
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("runs/dwsep_cnn-s0/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["resolved"]["train_images"], 120);
    assert_eq!(cfg["resolved"]["test_images"], 30);
    assert!(md.contains("120 training and 30 test images"), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
    // A zero limit is refused before anything is written.
    fails(
        &[
            "experiment",
            "se",
            "--test-limit",
            "0",
            "--out",
            dir.to_str().unwrap(),
        ],
        &["--test-limit", "at least 1"],
    );
    assert!(!dir.exists(), "nothing written for refused flags");
}

/// `../shared` beside the repository, when present (real weights and photos).
fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    p.join("weights/efficientnet-lite0-57934424.pth")
        .is_file()
        .then_some(p)
}

#[test]
fn predict_and_convert_with_the_real_lite0_weights() {
    let Some(sh) = shared() else {
        eprintln!("SKIPPED: ../shared with the EfficientNet-Lite0 weights is not present");
        return;
    };
    let w = sh.join("weights/efficientnet-lite0-57934424.pth");
    let photos = [
        sh.join("data/images/chelsea.png"),
        sh.join("data/images/coffee.png"),
    ];
    let out = ok(&[
        "predict",
        "efficientnet_lite0",
        "--weights",
        w.to_str().unwrap(),
        photos[0].to_str().unwrap(),
        photos[1].to_str().unwrap(),
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let top1 = |i: usize| v[i]["top"][0][0].as_u64().unwrap();
    // ImageNet cat classes are 281..=285; 967 is espresso.
    assert!((281..=285).contains(&top1(0)), "chelsea → {}", v[0]["top"]);
    assert_eq!(top1(1), 967, "coffee → {}", v[1]["top"]);
    assert_eq!(v[1]["logits"].as_array().unwrap().len(), 1000);

    // .pth → .safetensors with canonical keys gives the same top-5 on the exact 224² crop.
    let dir = tmp("convert");
    std::fs::create_dir_all(&dir).unwrap();
    let st = dir.join("lite0.safetensors");
    ok(&[
        "convert",
        w.to_str().unwrap(),
        st.to_str().unwrap(),
        "--canonical",
        "efficientnet_lite0",
    ]);
    let crop =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pretrained/crops/coffee.png");
    let a: serde_json::Value = serde_json::from_str(&ok(&[
        "predict",
        "efficientnet_lite0",
        "--weights",
        w.to_str().unwrap(),
        crop.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .unwrap();
    let b: serde_json::Value = serde_json::from_str(&ok(&[
        "predict",
        "efficientnet_lite0",
        "--weights",
        st.to_str().unwrap(),
        crop.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(a[0]["top"], b[0]["top"]);
    // PyTorch's top-5 on this crop (fixtures/pretrained/efficientnet_lite0_predictions.json, tf127).
    let refs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../fixtures/pretrained/efficientnet_lite0_predictions.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let want: Vec<u64> = find_top5(&refs, "coffee");
    let got: Vec<u64> = a[0]["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t[0].as_u64().unwrap())
        .collect();
    assert_eq!(got, want);
    // A checkpoint for another model is refused, naming tensors.
    fails(
        &[
            "predict",
            "mobilenet_v2",
            "--weights",
            st.to_str().unwrap(),
            crop.to_str().unwrap(),
        ],
        &["--weights"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The reference top-5 class indices of an image under the tf127 normalization.
fn find_top5(refs: &serde_json::Value, image: &str) -> Vec<u64> {
    refs["images"][image]["tf127"]["top5"]
        .as_array()
        .unwrap_or_else(|| panic!("no tf127 top-5 for {image}"))
        .iter()
        .map(|t| t[0].as_u64().unwrap())
        .collect()
}
