//! `effcnn experiment dwsep|se|zoo`: the curriculum's training experiments (Exercises 1.6, 2.5, 4),
//! each a set of training runs with one recipe, measured latency, and a report
//! ([`effcnn_train::experiment`]).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use effcnn_arch::{cost, resolve, Options};
use effcnn_report::write_report;
use effcnn_train::experiment::{
    existing_run, experiment_report, results_table, width_for, Existing, ModelResult, Plan, Study,
};
use effcnn_train::{
    resume, train, Profile, ProgressMode, RunFolder, RunOptions, RunSummary, TrainConfig,
};

use crate::common::out;
use crate::common::SampleArgs;
use effcnn_nn::engine::Engine;
use effcnn_nn::latency::{measure, Timing};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// Exercise 1.6: plain_cnn vs its depthwise-separable twin dwsep_cnn.
    Dwsep,
    /// Exercise 2.5: CIFAR ResNet with and without SE, several seeds (mean ± std).
    Se,
    /// Exercise 4: MobileNetV1/V2/V3, ShuffleNetV1/V2, EfficientNet-B0 in the CIFAR profile.
    Zoo,
}

#[derive(Args)]
pub struct ExperimentArgs {
    pub which: Which,
    /// Dataset (`synthetic[:N[:M]]`, CIFAR-10 binary folder/.tar.gz, image folder/.tar.gz).
    /// Default: a small synthetic set so the experiment finishes in minutes on a CPU.
    #[arg(long)]
    pub data: Option<String>,
    /// Epochs per run (default: 3 for dwsep/se, 2 for zoo).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Seeds per model (default: 3 for se, 1 otherwise).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Override the models (comma-separated), e.g. resnet56,se_resnet56 for the se experiment.
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Width multiplier for every model (default: each model's own, 1.0 for the zoo).
    #[arg(long)]
    pub width: Option<f64>,
    #[command(flatten)]
    pub sample: SampleArgs,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub device: crate::common::DeviceArgs,
    /// Output directory: runs/ (one run folder per model and seed), report.md/html, plots.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the experiment already in --out: finished runs are kept, an interrupted run
    /// resumes from its last completed epoch (exactly), missing runs are trained. Every run
    /// folder found must hold the run these flags describe.
    #[arg(long)]
    pub resume: bool,
}

impl From<Which> for Study {
    fn from(w: Which) -> Self {
        match w {
            Which::Dwsep => Study::Dwsep,
            Which::Se => Study::Se,
            Which::Zoo => Study::Zoo,
        }
    }
}

fn plan(a: &ExperimentArgs, threads: usize) -> Plan {
    let study = Study::from(a.which);
    let d = study.defaults();
    Plan {
        study,
        models: if a.models.is_empty() {
            d.models.iter().map(|s| s.to_string()).collect()
        } else {
            a.models.clone()
        },
        width: a.width,
        data: a.data.clone().unwrap_or_else(|| d.data.to_string()),
        epochs: a.epochs.unwrap_or(d.epochs),
        seeds: a.seeds.unwrap_or(d.seeds),
        batch_size: a.batch_size,
        threads,
        train_limit: a.sample.train_limit,
        test_limit: a.sample.test_limit,
    }
}

pub fn experiment(a: ExperimentArgs) -> Result<()> {
    let device = a.device.get();
    // A device this build or machine cannot use fails before anything is written.
    device.open()?;
    let p = plan(&a, 0);
    if p.epochs == 0 || p.seeds == 0 {
        bail!("--epochs and --seeds must be at least 1");
    }
    for m in &p.models {
        effcnn_arch::entry(m)?;
    }
    let threads = effcnn_nn::configure_threads(a.threads)?;
    let p = Plan { threads, ..p };
    let config = |m: &str, seed: usize| -> Result<TrainConfig> {
        let mut c = TrainConfig::recommended(m, Profile::Cifar, &p.data);
        c.epochs = p.epochs;
        c.seed = seed as u64;
        c.batch_size = a.batch_size;
        c.width = width_for(m, a.width)?;
        a.sample.apply(&mut c);
        c.threads = Some(threads);
        c.device = device.to_string();
        c.validate().context("invalid experiment flags")?;
        Ok(c)
    };
    // Every run's flags are checked before anything is written.
    for m in &p.models {
        config(m, 0)?;
    }
    std::fs::create_dir_all(a.out.join("runs"))
        .with_context(|| format!("--out {}: cannot create directory", a.out.display()))?;
    // Seed by seed, every model, so that an experiment stopped part-way (and resumed with
    // --resume) already holds comparable pairs.
    let mut runs: Vec<Vec<RunSummary>> = vec![Vec::new(); p.models.len()];
    let mut curves: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for seed in 0..p.seeds {
        for (mi, m) in p.models.iter().enumerate() {
            let dir = a.out.join("runs").join(format!("{m}-s{seed}"));
            let config = config(m, seed)?;
            let opts = RunOptions {
                progress: ProgressMode::Auto,
                overwrite: true,
                ..RunOptions::default()
            };
            let s = match (a.resume, existing_run(&dir, &config)?) {
                (true, Existing::Finished(s)) => {
                    eprintln!("== {m} seed {seed}: finished in {}", dir.display());
                    Ok(s)
                }
                (true, Existing::Interrupted) => {
                    eprintln!("== {m} seed {seed}: resuming {}", dir.display());
                    resume(&dir, &opts)
                }
                _ => {
                    eprintln!("== {m} seed {seed} → {}", dir.display());
                    train(config, &dir, &opts)
                }
            }
            .with_context(|| format!("training {m} (seed {seed})"))?;
            let metrics = RunFolder::open(&dir)?.metrics()?;
            curves.push((
                format!("{m} s{seed}"),
                metrics
                    .iter()
                    .map(|e| (e.epoch as f64 + 1.0, e.test_acc * 100.0))
                    .collect(),
            ));
            runs[mi].push(s);
        }
    }
    let mut results = Vec::new();
    for (m, rs) in p.models.iter().zip(&runs) {
        let accs: Vec<f64> = rs.iter().map(|s| s.final_test_accuracy).collect();
        let wall: f64 = rs.iter().map(|s| s.wall_seconds).sum();
        let ips: Vec<f64> = rs.iter().map(|s| s.img_per_s).collect();
        let e = effcnn_arch::entry(m)?;
        // Costs and latency of the model as trained (profile, width, resolution).
        let opts = Options {
            width: width_for(m, a.width)?,
            ..Options::cifar()
        };
        let c = cost::analyze(&resolve(m, &opts)?);
        let lat = measure(
            m,
            &opts,
            1,
            threads,
            device,
            Engine::default(),
            Timing {
                warmup: 2,
                runs: 10,
                min_seconds: 0.5,
            },
        )?;
        results.push(ModelResult {
            model: m.clone(),
            family: e.family.to_string(),
            params: c.params,
            macs: c.macs,
            accs,
            latency_ms: lat.median_ms,
            wall_seconds: wall,
            img_per_s: ips.iter().sum::<f64>() / ips.len() as f64,
        });
    }
    let rep = experiment_report(&p, &results, &curves);
    let files = write_report(&a.out, &rep).with_context(|| format!("--out {}", a.out.display()))?;
    eprintln!("wrote {} report files to {}", files.len(), a.out.display());
    out(&results_table(&results, &p).to_text())
}
