//! Resuming a run gives exactly the weights and metrics of an uninterrupted run.
//!
//! One test in its own binary: flex's random generator (dropout masks) is process-global, so
//! no other training may run concurrently in this process.

use std::path::{Path, PathBuf};

use effcnn_train::{
    files, resume, train, EpochMetrics, OptimizerConfig, Profile, ProgressMode, RunOptions,
    ScheduleKind, TrainConfig,
};

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("effcnn-resume-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn opts(max_epochs: Option<usize>) -> RunOptions {
    RunOptions {
        progress: ProgressMode::Quiet,
        max_epochs_this_session: max_epochs,
        overwrite: false,
    }
}

/// Metrics without the timing fields.
fn learning_metrics(dir: &Path) -> Vec<(usize, f64, f64, f64, f64)> {
    let m: Vec<EpochMetrics> = files::read_jsonl(&dir.join("metrics.jsonl")).unwrap();
    m.iter()
        .map(|m| (m.epoch, m.loss, m.train_acc, m.test_acc, m.lr))
        .collect()
}

/// The tensors of a weights file (file bytes may differ in metadata order).
fn weights(dir: &Path, f: &str) -> effcnn_nn::TensorMap {
    effcnn_nn::read_checkpoint(dir.join(f)).unwrap()
}

fn check(config: TrainConfig, tag: &str) {
    let straight = scratch(&format!("{tag}-straight"));
    let again = scratch(&format!("{tag}-again"));
    let split = scratch(&format!("{tag}-split"));

    let full = train(config.clone(), &straight, &opts(None)).unwrap();
    assert!(full.finished);
    train(config.clone(), &again, &opts(None)).unwrap();

    let first = train(config, &split, &opts(Some(1))).unwrap();
    assert_eq!((first.epochs_completed, first.finished), (1, false));
    assert_eq!(learning_metrics(&split).len(), 1);
    let resumed = resume(&split, &opts(None)).unwrap();
    assert_eq!((resumed.epochs_completed, resumed.finished), (3, true));

    // Run-to-run determinism with the same seed and thread count.
    assert_eq!(
        learning_metrics(&straight),
        learning_metrics(&again),
        "{tag}"
    );
    assert!(weights(&straight, "last.safetensors") == weights(&again, "last.safetensors"));
    // Interrupted + resumed == uninterrupted, bit for bit.
    assert_eq!(
        learning_metrics(&straight),
        learning_metrics(&split),
        "{tag}"
    );
    assert!(
        weights(&straight, "last.safetensors") == weights(&split, "last.safetensors"),
        "{tag}: final weights differ after resume"
    );
    assert!(weights(&straight, "best.safetensors") == weights(&split, "best.safetensors"));
    assert_eq!(full.final_test_accuracy, resumed.final_test_accuracy);
    assert_eq!(full.best_test_accuracy, resumed.best_test_accuracy);

    // Resuming a finished run is a no-op that reports the same summary.
    let noop = resume(&split, &opts(None)).unwrap();
    assert_eq!(noop.final_test_accuracy, resumed.final_test_accuracy);
    assert_eq!(learning_metrics(&split).len(), 3);

    // Killed after an epoch's staged checkpoint was written but before state.json committed
    // it: the staged files are stale and dropped.
    for f in ["last.safetensors", "last.optim.bpk"] {
        std::fs::write(
            split.join(format!("{f}.next")),
            b"an epoch that never committed",
        )
        .unwrap();
    }
    resume(&split, &opts(None)).unwrap();
    assert!(!split.join("last.safetensors.next").exists());
    assert!(weights(&straight, "last.safetensors") == weights(&split, "last.safetensors"));
    // Killed after state.json committed the epoch, before the staged files were moved into
    // place: resuming completes the commit.
    for f in ["last.safetensors", "last.optim.bpk"] {
        std::fs::copy(split.join(f), split.join(format!("{f}.next"))).unwrap();
        std::fs::write(split.join(f), b"the previous epoch's checkpoint").unwrap();
    }
    let completed = resume(&split, &opts(None)).unwrap();
    assert_eq!(completed.final_test_accuracy, resumed.final_test_accuracy);
    assert!(!split.join("last.optim.bpk.next").exists());
    assert!(weights(&straight, "last.safetensors") == weights(&split, "last.safetensors"));

    // A checkpoint that does not match state.json is refused.
    std::fs::write(split.join("last.optim.bpk"), b"garbage").unwrap();
    let e = resume(&split, &opts(None)).unwrap_err();
    assert!(e.to_string().contains("does not match state.json"), "{e}");

    for d in [straight, again, split] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn resume_equals_uninterrupted_run() {
    // SGD + Nesterov + dropout (reseeded per step) + no-decay group + cosine warm-up.
    let mut sgd = TrainConfig::recommended("dwsep_cnn", Profile::Cifar, "synthetic:192:64");
    sgd.width = Some(0.5);
    sgd.epochs = 3;
    sgd.batch_size = 32;
    sgd.seed = 11;
    sgd.dropout = Some(0.3);
    sgd.schedule.warmup_epochs = 0.5;
    check(sgd.clone(), "sgd");

    // AdamW + one-cycle + label smoothing + a validation split.
    let mut adamw = sgd;
    adamw.dropout = None;
    adamw.optimizer = OptimizerConfig::Adamw {
        lr: 2e-3,
        weight_decay: 0.05,
        no_decay_bn_bias: true,
    };
    adamw.schedule.kind = ScheduleKind::Onecycle;
    adamw.label_smoothing = 0.1;
    adamw.val_split = 0.25;
    check(adamw, "adamw");
}
