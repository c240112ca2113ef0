//! The committed CIFAR-10 results (`results/cifar10/<experiment>/<run>/`): each run folder is
//! consistent in itself, the runs of one experiment share one recipe, and the README's table is
//! what `effcnn compare --runs results/cifar10` makes of them.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{ok, s, tmp};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn results() -> PathBuf {
    root().join("results/cifar10")
}

fn read(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `(experiment, run folder)` of every committed run.
fn runs() -> Vec<(String, PathBuf)> {
    let mut v = Vec::new();
    for exp in std::fs::read_dir(results()).expect("results/cifar10") {
        let exp = exp.unwrap().path();
        if !exp.is_dir() {
            continue;
        }
        for run in std::fs::read_dir(&exp).unwrap() {
            let run = run.unwrap().path();
            if run.join("config.json").is_file() {
                let name = exp.file_name().unwrap().to_string_lossy().into_owned();
                v.push((name, run));
            }
        }
    }
    v.sort();
    assert!(!v.is_empty(), "no committed runs under results/cifar10");
    v
}

#[test]
fn every_committed_run_is_finished_and_consistent() {
    for (_, run) in runs() {
        let cfg = read(&run.join("config.json"));
        let sum = read(&run.join("summary.json"));
        let name = run.display().to_string();
        assert_eq!(sum["model"], cfg["model"], "{name}");
        assert_eq!(sum["finished"], Value::Bool(true), "{name}");
        assert_eq!(sum["epochs_completed"], cfg["epochs"], "{name}");
        // The real CIFAR-10 splits, whole.
        let res = &cfg["resolved"];
        assert_eq!(res["train_images"], 50_000, "{name}");
        assert_eq!(res["test_images"], 10_000, "{name}");
        assert_eq!(res["classes"].as_array().map(Vec::len), Some(10), "{name}");
        // One metrics line per epoch; the summary's final accuracy is the last epoch's.
        let metrics: Vec<Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(Some(metrics.len() as u64), cfg["epochs"].as_u64(), "{name}");
        let last = metrics.last().unwrap()["test_acc"].as_f64().unwrap();
        assert_eq!(sum["final_test_accuracy"].as_f64(), Some(last), "{name}");
        let best = metrics
            .iter()
            .map(|m| m["test_acc"].as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert_eq!(sum["best_test_accuracy"].as_f64(), Some(best), "{name}");
    }
}

#[test]
fn the_runs_of_each_experiment_share_one_recipe() {
    // What may differ between the runs of one experiment: the model and the seed; the keys a
    // run adds (resolved data, version) and those that do not change its result beyond float
    // rounding (threads, engine of the steps). The width is compared as trained below (a
    // fixed-width entry such as shufflenet_v2_x0_5 records none).
    let recipe = |run: &Path| -> Value {
        let mut v = read(&run.join("config.json"));
        for k in [
            "model",
            "seed",
            "width",
            "resolved",
            "effcnn_version",
            "threads",
            "train_engine",
        ] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    let mut by_exp: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for (exp, run) in runs() {
        by_exp.entry(exp).or_default().push(run);
    }
    let out = tmp("results-widths");
    ok(&["compare", "--runs", s(&results()), "--out", s(&out)]);
    let table = read(&out.join("cifar10.json"));
    let width_of = |model: &str| -> f64 {
        let rows = table.as_array().unwrap();
        let row = rows.iter().find(|r| r["model"] == model).unwrap();
        row["width"].as_f64().unwrap()
    };
    for (exp, runs) in by_exp {
        let models: Vec<String> = runs
            .iter()
            .map(|r| {
                read(&r.join("config.json"))["model"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        for m in &models {
            assert_eq!(
                width_of(m),
                width_of(&models[0]),
                "{exp}: {m} has another width"
            );
        }
        let first = recipe(&runs[0]);
        for r in &runs[1..] {
            assert_eq!(
                recipe(r),
                first,
                "{exp}: {} and {} differ in more than the model and the seed",
                runs[0].display(),
                r.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn compare_reproduces_the_summaries_and_the_readme_table() {
    let out = tmp("results-compare");
    ok(&["compare", "--runs", s(&results()), "--out", s(&out)]);
    // The accuracy column: the mean over seeds of each model's summaries, computed here.
    let mut want: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (_, run) in runs() {
        let sum = read(&run.join("summary.json"));
        want.entry(sum["model"].as_str().unwrap().to_string())
            .or_default()
            .push(sum["final_test_accuracy"].as_f64().unwrap());
    }
    let table = read(&out.join("cifar10.json"));
    let rows = table.as_array().expect("cifar10.json is an array of rows");
    assert_eq!(rows.len(), want.len(), "one row per model");
    for row in rows {
        let model = row["model"].as_str().unwrap();
        let accs = &want[model];
        let mean = accs.iter().sum::<f64>() / accs.len() as f64;
        let got = row["test acc (mean)"].as_f64().unwrap();
        assert!((got - mean).abs() < 1e-12, "{model}: {got} vs {mean}");
        assert_eq!(row["seeds"].as_u64(), Some(accs.len() as u64), "{model}");
    }
    // The README shows exactly that table.
    let md = std::fs::read_to_string(out.join("cifar10.md")).unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let (begin, end) = (
        "<!-- compare --runs results/cifar10: begin -->",
        "<!-- compare --runs results/cifar10: end -->",
    );
    let a = readme.find(begin).expect("README has the results block") + begin.len();
    let b = readme.find(end).expect("README closes the results block");
    assert_eq!(
        readme[a..b].trim(),
        md.trim(),
        "README's CIFAR-10 table differs from `effcnn compare --runs results/cifar10` \
         (regenerate it: the block is the file cifar10.md)"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn rerun_reproduces_a_recorded_run_and_refuses_what_is_not_one() {
    // A run recorded by `effcnn train` (synthetic data, one epoch) trained again from its
    // folder: the same recipe and seed give the same accuracy, to the bit.
    let weights = common::trained_weights();
    let recorded = weights.parent().unwrap();
    let out = tmp("rerun");
    let text = ok(&[
        "rerun",
        s(recorded),
        "--out",
        s(&out),
        "--progress",
        "quiet",
    ]);
    let a = read(&recorded.join("summary.json"));
    let b = read(&out.join("summary.json"));
    assert_eq!(a["final_test_accuracy"], b["final_test_accuracy"]);
    assert_eq!(a["best_test_accuracy"], b["best_test_accuracy"]);
    assert!(text.contains("(+0.00 points)"), "{text}");
    // The recorded folder itself, and a folder that holds no run, are refused.
    common::fails(&["rerun", s(recorded), "--out", s(recorded)], &["new one"]);
    // Also when spelled differently, and with --overwrite: the recorded run stays untouched.
    let name = recorded.file_name().unwrap().to_str().unwrap();
    let other = format!("{}/../{name}", s(recorded));
    common::fails(
        &["rerun", s(recorded), "--out", &other, "--overwrite"],
        &["new one"],
    );
    assert_eq!(read(&recorded.join("summary.json")), a);
    let empty = common::fresh("rerun-empty");
    common::fails(
        &["rerun", s(&empty), "--out", s(&out)],
        &["not a run folder"],
    );
    let _ = std::fs::remove_dir_all(&out);
}
