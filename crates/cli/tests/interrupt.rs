//! Interrupted training: a `effcnn train` process is killed with SIGKILL at random points, several
//! times, and resumed. The checkpoint on disk must always be loadable, at most the current epoch may
//! be lost, the metrics must continue where they stopped, and (CPU, fixed seed) the final weights
//! must equal an uninterrupted run's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const EPOCHS: usize = 4;

fn train_args(out: &Path) -> Vec<String> {
    [
        "train",
        "dwsep_cnn",
        "--data",
        "synthetic:320:80",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--threads",
        "2",
        "--seed",
        "3",
        "--progress",
        "quiet",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([out.display().to_string()])
    .collect()
}

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("effcnn-int-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every metrics line is complete JSON"))
        .collect()
}

/// The deterministic part of a metrics line (timings excluded).
fn learning(v: &serde_json::Value) -> String {
    format!(
        "{} {} {} {} {}",
        v["epoch"], v["loss"], v["train_acc"], v["test_acc"], v["lr"]
    )
}

fn weights(dir: &Path) -> effcnn_nn::TensorMap {
    effcnn_nn::read_checkpoint(dir.join("last.safetensors")).expect("last.safetensors loads")
}

#[test]
fn sigkill_at_random_points_then_resume_equals_an_uninterrupted_run() {
    let bin = env!("CARGO_BIN_EXE_effcnn");
    let reference = tmp("reference");
    let t_ref = Instant::now();
    let st = Command::new(bin)
        .args(train_args(&reference))
        .status()
        .unwrap();
    assert!(st.success());
    // Kill delays are fractions of the uninterrupted run's time, so a faster build or machine
    // still gets killed mid-run.
    let full = t_ref.elapsed();
    let want = metrics(&reference);
    assert_eq!(want.len(), EPOCHS);

    let run = tmp("killed");
    // Pseudo-random kill delays, different on every test run.
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut kills = 0;
    let mut seen_epochs = 0;
    let started = Instant::now();
    loop {
        let resuming = run.join("config.json").exists();
        let mut args = train_args(&run);
        if resuming {
            args.push("--resume".into());
        }
        let mut child = Command::new(bin)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let delay = full.mul_f64(0.1 + 0.6 * (next() % 1000) as f64 / 1000.0);
        let t = Instant::now();
        let mut finished = None;
        while t.elapsed() < delay {
            if let Some(s) = child.try_wait().unwrap() {
                finished = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        match finished {
            Some(s) => {
                let out = child.wait_with_output().unwrap();
                assert!(
                    s.success(),
                    "resumed run failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                break;
            }
            None if kills < 6 => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
            None => {
                assert!(child.wait().unwrap().success());
                break;
            }
        }
        // After every kill: what is on disk is complete and loadable, and it never goes back.
        let m = metrics(&run);
        assert!(
            m.len() >= seen_epochs,
            "metrics went back from {seen_epochs} to {}",
            m.len()
        );
        seen_epochs = m.len();
        for (got, want) in m.iter().zip(&want) {
            assert_eq!(
                learning(got),
                learning(want),
                "metrics continue where they stopped"
            );
        }
        if run.join("state.json").exists() {
            let w = weights(&run);
            assert!(!w.is_empty());
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "interrupted training did not finish"
        );
    }
    eprintln!("killed {kills} times");
    assert!(
        kills >= 1,
        "the run finished before the first kill; the test needs a slower run"
    );
    let got = metrics(&run);
    assert_eq!(
        got.iter().map(learning).collect::<Vec<_>>(),
        want.iter().map(learning).collect::<Vec<_>>()
    );
    let (a, b) = (weights(&reference), weights(&run));
    assert_eq!(a.len(), b.len());
    for (k, t) in &a {
        let u = &b[k];
        assert_eq!(t.shape, u.shape, "{k}");
        assert!(
            t.data == u.data,
            "{k}: weights differ from the uninterrupted run"
        );
    }
    let _ = std::fs::remove_dir_all(&reference);
    let _ = std::fs::remove_dir_all(&run);
}
