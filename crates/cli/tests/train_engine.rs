//! `effcnn train --train-engine plan|burn` and `EFFCNN_TRAIN_ENGINE`: which engine computes the
//! training step, recorded in config.json (the flag) and summary.json (what trained).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{assert_fails, s, tmp};

/// `effcnn train` of a tiny run into `out`, with `extra` flags and `EFFCNN_TRAIN_ENGINE` set to
/// `env` (unset for `None`).
fn train(out: &Path, extra: &[&str], env: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_effcnn"));
    cmd.args([
        "train",
        "dwsep_cnn",
        "--width",
        "0.5",
        "--data",
        "synthetic:40:16",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--progress",
        "quiet",
        "--out",
        s(out),
    ])
    .args(extra);
    match env {
        Some(v) => cmd.env("EFFCNN_TRAIN_ENGINE", v),
        None => cmd.env_remove("EFFCNN_TRAIN_ENGINE"),
    };
    cmd.output().expect("run effcnn")
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn succeeded(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn the_flag_and_the_environment_pick_the_training_engine() {
    // The flag: recorded in the config, and what trained in the summary.
    let flag = tmp("engine-flag");
    let stdout = succeeded(
        &train(&flag, &["--train-engine", "burn"], Some("plan")),
        "flag",
    );
    assert!(stdout.contains("(burn training step)"), "{stdout}");
    assert_eq!(json(&flag.join("config.json"))["train_engine"], "burn");
    assert_eq!(json(&flag.join("summary.json"))["train_engine"], "burn");

    // The environment variable, for a run that leaves the engine open (not written).
    let env = tmp("engine-env");
    succeeded(&train(&env, &[], Some("burn")), "env");
    assert!(json(&env.join("config.json")).get("train_engine").is_none());
    assert_eq!(json(&env.join("summary.json"))["train_engine"], "burn");

    // Neither: the compiled plan.
    let default = tmp("engine-default");
    succeeded(&train(&default, &[], None), "default");
    assert_eq!(json(&default.join("summary.json"))["train_engine"], "plan");

    // A bad value is refused before anything is written.
    let bad = tmp("engine-bad");
    assert_fails(
        train(&bad, &[], Some("gpu")),
        "train with EFFCNN_TRAIN_ENGINE=gpu",
        &["EFFCNN_TRAIN_ENGINE=gpu", "plan", "burn"],
    );
    assert!(!bad.exists(), "a refused run leaves no folder behind");
    assert_fails(
        train(&bad, &["--train-engine", "gpu"], None),
        "train --train-engine gpu",
        &["--train-engine"],
    );

    // A run resumes with its own engine.
    assert_fails(
        train(&flag, &["--resume", "--train-engine", "plan"], None),
        "train --resume --train-engine plan",
        &["--train-engine burn", "drop --train-engine"],
    );
    succeeded(
        &train(&flag, &["--resume", "--train-engine", "burn"], None),
        "resume",
    );

    for d in [flag, env, default] {
        let _ = std::fs::remove_dir_all(d);
    }
}
