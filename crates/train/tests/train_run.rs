//! A tiny end-to-end run on the synthetic set: artifacts, learning, evaluation, bad inputs.

use std::path::{Path, PathBuf};

use effcnn_train::{
    eval, files, train, EpochMetrics, EvalOptions, Profile, ProgressMode, RunOptions, RunSummary,
    TrainConfig, TrainError,
};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("effcnn-train-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn quiet() -> RunOptions {
    RunOptions {
        progress: ProgressMode::Quiet,
        ..RunOptions::default()
    }
}

fn tiny_config() -> TrainConfig {
    let mut c = TrainConfig::recommended("dwsep_cnn", Profile::Cifar, "synthetic:1000:200");
    c.epochs = 2;
    c.batch_size = 32;
    c.optimizer.set_lr(0.1);
    c.schedule.warmup_epochs = 0.0;
    c.seed = 3;
    c
}

fn read_summary(dir: &Path) -> RunSummary {
    files::read_json(&dir.join("summary.json")).unwrap()
}

#[test]
fn tiny_run_writes_artifacts_learns_and_evaluates() {
    let out = scratch("tiny");
    let t = std::time::Instant::now();
    let summary = train(tiny_config(), &out, &quiet()).unwrap();
    eprintln!("tiny run: {:.1} s, {summary:?}", t.elapsed().as_secs_f64());

    for f in [
        "config.json",
        "metrics.jsonl",
        "last.safetensors",
        "best.safetensors",
        "last.optim.bpk",
        "state.json",
        "summary.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // No temporary files left behind.
    for e in std::fs::read_dir(&out).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        assert!(!name.starts_with('.'), "leftover {name}");
    }
    let metrics: Vec<EpochMetrics> = files::read_jsonl(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.len(), 2);
    assert_eq!(summary, read_summary(&out));
    assert!(summary.finished && summary.epochs_completed == 2);
    for acc in [
        summary.best_test_accuracy,
        summary.final_test_accuracy,
        metrics[1].train_acc,
    ] {
        assert!((0.0..=1.0).contains(&acc), "{acc}");
    }
    assert_eq!(summary.final_test_accuracy, metrics[1].test_acc);
    let graph = effcnn_arch::resolve("dwsep_cnn", &effcnn_arch::Options::cifar()).unwrap();
    let cost = effcnn_arch::cost::analyze(&graph);
    assert_eq!((summary.params, summary.macs), (cost.params, cost.macs));
    // Ten balanced classes: chance is 10 %.
    assert!(
        summary.final_test_accuracy > 0.2,
        "accuracy {} not above chance",
        summary.final_test_accuracy
    );
    assert!(metrics
        .iter()
        .all(|m| m.loss.is_finite() && m.img_per_s > 0.0));

    let config: TrainConfig = files::read_json(&out.join("config.json")).unwrap();
    let resolved = config.resolved.expect("resolved data recorded");
    assert_eq!((resolved.train_images, resolved.test_images), (1000, 200));
    assert_eq!(resolved.classes.len(), 10);

    // Evaluating the final checkpoint reproduces the final test accuracy.
    let report = eval(&out, &EvalOptions::default()).unwrap();
    assert_eq!(report.images, 200);
    assert!(
        (report.accuracy - summary.final_test_accuracy).abs() < 1e-12,
        "eval {} vs summary {}",
        report.accuracy,
        summary.final_test_accuracy
    );
    let total: u32 = report.confusion.iter().flatten().sum();
    assert_eq!(total, 200);
    assert_eq!(report.per_class.len(), 10);
    // The weights file alone (inside the run folder) gives the same answer.
    let again = eval(&out.join("last.safetensors"), &EvalOptions::default()).unwrap();
    assert_eq!(again.accuracy, report.accuracy);

    // A second training into the same folder is refused.
    let e = train(tiny_config(), &out, &quiet()).unwrap_err();
    assert!(e.to_string().contains("already holds a run"), "{e}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_inputs_fail_clearly_before_training() {
    // Output folder below a regular file: cannot be created (even as root).
    let base = scratch("bad");
    std::fs::create_dir_all(&base).unwrap();
    let file = base.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let e = train(tiny_config(), &file.join("run"), &quiet()).unwrap_err();
    assert!(matches!(e, TrainError::OutDir { .. }), "{e}");
    assert!(e.to_string().contains("a-file"), "{e}");

    let mut c = tiny_config();
    c.model = "mobilenet_v9".into();
    let e = train(c, &base.join("run1"), &quiet()).unwrap_err();
    assert!(
        e.to_string().contains("unknown model 'mobilenet_v9'"),
        "{e}"
    );

    let mut c = tiny_config();
    c.data = "/no/such/dataset/dir".into();
    let e = train(c, &base.join("run2"), &quiet()).unwrap_err();
    assert!(e.to_string().contains("/no/such/dataset/dir"), "{e}");

    // A diverging run stops at the first non-finite loss, naming the epoch, step and a layer,
    // and keeps its configuration and the checkpoint of the last completed epoch, if any.
    let mut c = tiny_config();
    c.data = "synthetic:64:16".into();
    c.optimizer.set_lr(1e37);
    let out = base.join("diverged");
    let e = train(c.clone(), &out, &quiet()).unwrap_err();
    let epoch = match &e {
        TrainError::NonFinite {
            epoch, step, layer, ..
        } => {
            assert!(*epoch < c.epochs, "{e}");
            assert!(layer.is_some(), "{e}");
            assert!(
                e.to_string()
                    .contains(&format!("epoch {epoch}, step {step}")),
                "{e}"
            );
            *epoch
        }
        other => panic!("expected NonFinite, got {other}"),
    };
    assert!(out.join("config.json").is_file());
    assert_eq!(out.join("last.safetensors").exists(), epoch > 0);

    let e = eval(&base.join("missing-run"), &EvalOptions::default()).unwrap_err();
    assert!(e.to_string().contains("missing-run"), "{e}");

    let e = effcnn_train::resume(&base.join("run2"), &quiet()).unwrap_err();
    assert!(e.to_string().contains("cannot resume"), "{e}");
    let _ = std::fs::remove_dir_all(&base);
}
