//! Helpers shared by the integration tests that drive the real `effcnn` binary.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn effcnn<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_effcnn"))
        .args(args)
        .output()
        .expect("run effcnn")
}

pub fn show<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn ok<S: AsRef<OsStr>>(args: &[S]) -> String {
    let o = effcnn(args);
    assert!(
        o.status.success(),
        "effcnn {} failed: {}",
        show(args),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8 stdout")
}

/// `effcnn ARGS…` with its virtual memory limited to `kib` KiB (`ulimit -v`, through `sh`).
pub fn effcnn_with_memory_limit<S: AsRef<OsStr>>(kib: u64, args: &[S]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v "$0" && exec "$@""#)
        .arg(kib.to_string())
        .arg(env!("CARGO_BIN_EXE_effcnn"))
        .args(args)
        .output()
        .expect("run effcnn under sh")
}

/// Exit code 2, no panic, nothing on stdout, and stderr mentions every `needle`.
pub fn fails<S: AsRef<OsStr>>(args: &[S], needles: &[&str]) -> String {
    assert_fails(effcnn(args), &show(args), needles)
}

/// [`fails`] for an `Output` already obtained (`cmd` names the command in messages).
pub fn assert_fails(o: Output, cmd: &str, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(
        o.status.code(),
        Some(2),
        "effcnn {cmd}: expected exit 2, stderr: {err}"
    );
    assert!(!err.contains("panicked"), "effcnn {cmd} panicked: {err}");
    assert!(
        o.stdout.is_empty(),
        "effcnn {cmd}: partial output on stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    for n in needles {
        assert!(err.contains(n), "effcnn {cmd}: stderr lacks {n:?}: {err}");
    }
    err
}

/// A temporary path unique to this test process (removed first, not created).
pub fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("effcnn-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    let _ = std::fs::remove_file(&p);
    p
}

/// A fresh, empty temporary folder unique to this test process.
pub fn fresh(name: &str) -> PathBuf {
    let d = tmp(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A path as the `&str` a command line takes.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Real weights of the 10-class CIFAR-profile `plain_cnn`, from one short `effcnn train` run
/// on the synthetic dataset (made once per test process).
pub fn trained_weights() -> &'static Path {
    static W: OnceLock<PathBuf> = OnceLock::new();
    W.get_or_init(|| {
        let run = fresh("fixture-run");
        ok(&[
            "train",
            "plain_cnn",
            "--data",
            "synthetic:20:10",
            "--epochs",
            "1",
            "--batch-size",
            "10",
            "--progress",
            "quiet",
            "--overwrite",
            "--out",
            s(&run),
        ]);
        let w = run.join("last.safetensors");
        assert!(w.is_file());
        w
    })
}
