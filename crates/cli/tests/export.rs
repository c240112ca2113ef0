//! `effcnn export --onnx`, driven through the real binary: a successful export, then bad input
//! (unknown model, weights that do not fit, impossible opsets and batches, unwritable outputs),
//! each with exit code 2, a message naming the problem, and no file left behind.

use std::path::Path;

mod common;
use common::{fails, fresh, ok, s, trained_weights as weights};

/// The names of the entries of `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn exports_random_and_trained_weights() {
    let d = fresh("ok");
    let f = d.join("dwsep.onnx");
    let o = ok(&[
        "export",
        "dwsep_cnn",
        "--profile",
        "cifar",
        "--onnx",
        s(&f),
        "--batch",
        "dynamic",
        "--fold-bn",
        "--opset",
        "11",
    ]);
    assert!(o.contains("ONNX opset 11"), "{o}");
    assert!(o.contains("[dynamic, 3, 32, 32]"), "{o}");
    assert!(o.contains("random initialisation, seed 42"), "{o}");
    let bytes = std::fs::read(&f).unwrap();
    assert!(bytes.len() > 39_066 * 4, "the weights are in the file");
    for needle in ["effcnn.norm_mean", "dwsep_cnn", "input", "logits"] {
        assert!(
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} recorded"
        );
    }
    let f = d.join("plain.onnx");
    let o = ok(&[
        "export",
        "plain_cnn",
        "--profile",
        "cifar",
        "--weights",
        s(weights()),
        "--onnx",
        s(&f),
    ]);
    assert!(o.contains("effcnn layout"), "{o}");
    assert_eq!(listing(&d), ["dwsep.onnx", "plain.onnx"]);
}

#[test]
fn unknown_model() {
    let d = fresh("unknown");
    let f = d.join("m.onnx");
    fails(
        &["export", "mobilenet_v9", "--onnx", s(&f)],
        &["unknown model 'mobilenet_v9'", "mobilenet_v"],
    );
    assert!(listing(&d).is_empty());
}

#[test]
fn weights_that_do_not_fit() {
    let d = fresh("misfit");
    let f = d.join("m.onnx");
    // Trained with 10 classes, exported with 100: the classifier's tensors are named.
    let err = fails(
        &[
            "export",
            "plain_cnn",
            "--profile",
            "cifar",
            "--classes",
            "100",
            "--weights",
            s(weights()),
            "--onnx",
            s(&f),
        ],
        &[
            "--weights",
            "last.safetensors",
            "wrong shape",
            "expected [100",
        ],
    );
    assert!(err.contains(".weight"), "{err}");
    // Weights of another model altogether.
    fails(
        &[
            "export",
            "dwsep_cnn",
            "--profile",
            "cifar",
            "--weights",
            s(weights()),
            "--onnx",
            s(&f),
        ],
        &["--weights", "missing"],
    );
    assert!(listing(&d).is_empty());
}

#[test]
fn impossible_opset_or_batch() {
    let d = fresh("opset");
    let f = d.join("m.onnx");
    for opset in ["9", "22", "-1"] {
        fails(
            &[
                "export",
                "dwsep_cnn",
                "--profile",
                "cifar",
                "--opset",
                opset,
                "--onnx",
                s(&f),
            ],
            &[&format!("--opset {opset}"), "opsets 11 to 21"],
        );
    }
    fails(
        &["export", "dwsep_cnn", "--batch", "0", "--onnx", s(&f)],
        &["--batch 0", "at least 1"],
    );
    fails(
        &["export", "dwsep_cnn", "--batch", "many", "--onnx", s(&f)],
        &["--batch many", "dynamic"],
    );
    fails(
        &["export", "dwsep_cnn", "--onnx", s(&d.join("m.bin"))],
        &["m.bin", "must end in .onnx"],
    );
    assert!(listing(&d).is_empty());
}

#[test]
fn unwritable_output() {
    let d = fresh("unwritable");
    // A folder that does not exist.
    let missing = d.join("no-such-folder").join("m.onnx");
    fails(
        &[
            "export",
            "dwsep_cnn",
            "--profile",
            "cifar",
            "--onnx",
            s(&missing),
        ],
        &["no-such-folder/m.onnx"],
    );
    // A path below a regular file.
    std::fs::write(d.join("file"), "x").unwrap();
    let below = d.join("file").join("m.onnx");
    fails(
        &[
            "export",
            "dwsep_cnn",
            "--profile",
            "cifar",
            "--onnx",
            s(&below),
        ],
        &["file/m.onnx"],
    );
    // The output name taken by a folder: the rename fails, the temporary file is removed.
    std::fs::create_dir(d.join("taken.onnx")).unwrap();
    fails(
        &[
            "export",
            "dwsep_cnn",
            "--profile",
            "cifar",
            "--onnx",
            s(&d.join("taken.onnx")),
        ],
        &["taken.onnx"],
    );
    assert_eq!(listing(&d), ["file", "taken.onnx"]);
    assert!(listing(&d.join("taken.onnx")).is_empty());
}
