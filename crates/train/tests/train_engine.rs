//! The training step's engine: burn's autodiff or effcnn's compiled plan (falling back to burn,
//! for the whole run, where the plan cannot be compiled), recorded in `summary.json`.
//!
//! One test in its own binary: flex's random generator (dropout masks) is process-global, so
//! no other training may run concurrently in this process. The environment variable is tested
//! through the `effcnn` binary (crates/cli/tests/train_engine.rs), not by changing this
//! process's environment.

use std::path::PathBuf;

use effcnn_nn::engine::PlanOptions;
use effcnn_nn::train_step::TrainPlan;
use effcnn_train::{
    files, train, EpochMetrics, Profile, ProgressMode, RunOptions, RunSummary, TrainConfig,
    TrainEngine,
};

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("effcnn-engine-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn quiet() -> RunOptions {
    RunOptions {
        progress: ProgressMode::Quiet,
        ..RunOptions::default()
    }
}

/// 2 epochs of 3 steps, the last batch smaller (40 = 16 + 16 + 8), no dropout.
fn tiny(engine: Option<TrainEngine>) -> TrainConfig {
    let mut c = TrainConfig::recommended("dwsep_cnn", Profile::Cifar, "synthetic:40:16");
    c.width = Some(0.5);
    c.epochs = 2;
    c.batch_size = 16;
    c.seed = 5;
    c.dropout = Some(0.0);
    c.schedule.warmup_epochs = 0.0;
    c.train_engine = engine;
    c
}

fn run(config: TrainConfig, tag: &str) -> (RunSummary, Vec<EpochMetrics>, PathBuf) {
    let out = scratch(tag);
    let summary = train(config, &out, &quiet()).unwrap_or_else(|e| panic!("{tag}: {e}"));
    let metrics: Vec<EpochMetrics> = files::read_jsonl(&out.join("metrics.jsonl")).unwrap();
    let recorded: RunSummary = files::read_json(&out.join("summary.json")).unwrap();
    assert_eq!(recorded, summary, "{tag}");
    assert!(summary.finished, "{tag}");
    (summary, metrics, out)
}

#[test]
fn the_engine_that_trained_is_recorded() {
    let (burn, burn_metrics, burn_dir) = run(tiny(Some(TrainEngine::Burn)), "burn");
    assert_eq!(burn.train_engine, TrainEngine::Burn);
    let config: TrainConfig = files::read_json(&burn_dir.join("config.json")).unwrap();
    assert_eq!(config.train_engine, Some(TrainEngine::Burn));

    // The plan, or burn where the plan cannot be compiled for this model yet.
    let graph = effcnn_arch::resolve("dwsep_cnn", &tiny(None).arch_options(Some(32), 10)).unwrap();
    let plan_compiles = [16, 8]
        .iter()
        .all(|&n| TrainPlan::compile(&graph, [n, 3, 32, 32], PlanOptions::default()).is_ok());
    let (plan, plan_metrics, plan_dir) = run(tiny(Some(TrainEngine::Plan)), "plan");
    let want = if plan_compiles {
        TrainEngine::Plan
    } else {
        TrainEngine::Burn
    };
    assert_eq!(plan.train_engine, want, "plan compiles: {plan_compiles}");
    assert_eq!(plan_metrics.len(), 2);
    if plan_compiles {
        // The same recipe on both engines: float rounding apart, the same training.
        for (p, b) in plan_metrics.iter().zip(&burn_metrics) {
            let rel = (p.loss - b.loss).abs() / b.loss.abs();
            assert!(
                rel < 1e-3,
                "epoch {}: loss {} (plan) vs {} (burn)",
                p.epoch,
                p.loss,
                b.loss
            );
            assert_eq!(p.lr, b.lr);
        }
    } else {
        // The fallback is burn's path itself: bit for bit the burn run.
        let strip = |m: &[EpochMetrics]| -> Vec<(f64, f64, f64)> {
            m.iter()
                .map(|m| (m.loss, m.train_acc, m.test_acc))
                .collect()
        };
        assert_eq!(strip(&plan_metrics), strip(&burn_metrics));
        assert!(
            effcnn_nn::read_checkpoint(plan_dir.join("last.safetensors")).unwrap()
                == effcnn_nn::read_checkpoint(burn_dir.join("last.safetensors")).unwrap()
        );
    }

    // A summary written before the field existed reads as burn.
    let mut old: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(burn_dir.join("summary.json")).unwrap())
            .unwrap();
    old.as_object_mut().unwrap().remove("train_engine");
    let old: RunSummary = serde_json::from_value(old).unwrap();
    assert_eq!(old.train_engine, TrainEngine::Burn);

    for d in [burn_dir, plan_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}
