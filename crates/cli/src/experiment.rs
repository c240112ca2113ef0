//! `effcnn experiment dwsep|se|zoo`: the curriculum's training experiments (Exercises 1.6, 2.5, 4),
//! each a set of training runs with one recipe, measured latency, and a report.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use effcnn_arch::{cost, resolve, Options};
use effcnn_report::{
    write_report, Cell, Column, Figure, LinePlot, Point, Report, ScatterPlot, Table,
};
use effcnn_train::results::{mean_std, se_pair_verdict};
use effcnn_train::{
    recipe, resume, train, Profile, ProgressMode, RunFolder, RunOptions, RunSummary, TrainConfig,
};

use crate::common::out;
use crate::train_cmds::SampleArgs;
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

struct Plan {
    models: Vec<String>,
    width: Option<f64>,
    data: String,
    epochs: usize,
    seeds: usize,
}

fn plan(a: &ExperimentArgs) -> Plan {
    let (models, data, epochs, seeds): (&[&str], &str, usize, usize) = match a.which {
        Which::Dwsep => (&["plain_cnn", "dwsep_cnn"], "synthetic:2000:500", 3, 1),
        Which::Se => (&["resnet20", "se_resnet20"], "synthetic:1000:300", 3, 3),
        Which::Zoo => (
            &[
                "mobilenet_v1",
                "mobilenet_v2",
                "mobilenet_v3_small",
                "mobilenet_v3_large",
                "shufflenet_v1_g3",
                "shufflenet_v2_x1_0",
                "efficientnet_b0",
            ],
            "synthetic:1000:200",
            2,
            1,
        ),
    };
    Plan {
        width: a.width,
        models: if a.models.is_empty() {
            models.iter().map(|s| s.to_string()).collect()
        } else {
            a.models.clone()
        },
        data: a.data.clone().unwrap_or_else(|| data.to_string()),
        epochs: a.epochs.unwrap_or(epochs),
        seeds: a.seeds.unwrap_or(seeds),
    }
}

/// Results of one model over its seeds.
struct ModelResult {
    model: String,
    family: String,
    params: u64,
    macs: u64,
    accs: Vec<f64>,
    latency_ms: f64,
    wall_seconds: f64,
    img_per_s: f64,
}

/// What a run folder of a resumed experiment holds.
enum Existing {
    None,
    Finished(RunSummary),
    Interrupted,
}

/// The run in `dir`, if any; an error if it was trained with another recipe than `want`.
fn existing_run(dir: &std::path::Path, want: &TrainConfig) -> Result<Existing> {
    if !RunFolder::is_run(dir) {
        return Ok(Existing::None);
    }
    let have = RunFolder::open(dir)?;
    if have.recipe(&[])? != recipe(want, &[])? {
        bail!(
            "{} holds a run with another recipe than these flags (compare its config.json); \
             use another --out or drop --resume to retrain it",
            dir.display()
        );
    }
    Ok(match have.finished() {
        Some(s) => Existing::Finished(s.clone()),
        None => Existing::Interrupted,
    })
}

/// The `width` a run of `model` records for the experiment's `--width`: the multiplier itself,
/// or none for an entry whose width is fixed and equal to it (e.g. `shufflenet_v2_x0_5` in a 0.5×
/// zoo); an entry of another fixed width is an error naming it.
fn width_for(model: &str, width: Option<f64>) -> Result<Option<f64>> {
    let Some(w) = width else { return Ok(None) };
    if effcnn_arch::entry(model)?.has_width {
        return Ok(Some(w));
    }
    let fixed = resolve(model, &Options::cifar())?.meta.width;
    if (fixed - w).abs() > 1e-9 {
        bail!(
            "--width {w}: {model} has a fixed width ({fixed}); list its sibling at {w} in --models \
             (`effcnn list`)"
        );
    }
    Ok(None)
}

pub fn experiment(a: ExperimentArgs) -> Result<()> {
    let device = a.device.get();
    // A device this build or machine cannot use fails before anything is written.
    device.open()?;
    let p = plan(&a);
    if p.epochs == 0 || p.seeds == 0 {
        bail!("--epochs and --seeds must be at least 1");
    }
    for m in &p.models {
        effcnn_arch::entry(m)?;
    }
    let threads = effcnn_nn::configure_threads(a.threads)?;
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
    let rep = report(&a, &p, &results, &curves, threads)?;
    let files = write_report(&a.out, &rep).with_context(|| format!("--out {}", a.out.display()))?;
    eprintln!("wrote {} report files to {}", files.len(), a.out.display());
    out(&table(&results, &p).to_text())
}

fn table(rs: &[ModelResult], p: &Plan) -> Table {
    let mut t = Table::new(
        format!(
            "{} epochs on {} (CIFAR profile{}, same recipe), {} seed(s) each",
            p.epochs,
            p.data,
            p.width.map_or(String::new(), |w| format!(", width {w}")),
            p.seeds
        ),
        vec![
            Column::left("model"),
            Column::right("params"),
            Column::right("MACs"),
            Column::right("test acc (mean)"),
            Column::right("± std"),
            Column::right("acc per M params"),
            Column::right("latency b1 ms"),
            Column::right("train img/s"),
            Column::right("train s"),
        ],
    );
    for r in rs {
        let (m, s) = mean_std(&r.accs);
        let _ = t.push_row(vec![
            Cell::text(&r.model),
            Cell::count(r.params),
            Cell::mega(r.macs as f64),
            Cell::percent(m, 2),
            Cell::percent(s, 2),
            Cell::float(m * 100.0 / (r.params as f64 / 1e6), 1),
            Cell::float(r.latency_ms, 2),
            Cell::float(r.img_per_s, 0),
            Cell::float(r.wall_seconds, 0),
        ]);
    }
    t.push_note(
        "test accuracy after the last epoch; std is the sample standard deviation over seeds",
    );
    t.push_note(cost::CONVENTION);
    t
}

fn report(
    a: &ExperimentArgs,
    p: &Plan,
    rs: &[ModelResult],
    curves: &[(String, Vec<(f64, f64)>)],
    threads: usize,
) -> Result<Report> {
    let title = match a.which {
        Which::Dwsep => "Experiment: standard vs depthwise-separable CNN (Exercise 1.6)",
        Which::Se => "Experiment: ResNet with and without squeeze-and-excitation (Exercise 2.5)",
        Which::Zoo => "Experiment: efficient architectures on the same recipe (Exercise 4)",
    };
    let mut rep = Report::new(title);
    let s = rep.section("Results");
    s.text(format!(
        "Data: `{}`; {} epochs per run, batch {}, {} seed(s) per model, CPU ({} threads). Runs are in `runs/` \
         (config.json, metrics.jsonl, checkpoints, summary.json) and can be re-evaluated with `effcnn eval`.",
        p.data, p.epochs, a.batch_size, p.seeds, threads
    ));
    if a.sample.train_limit.is_some() || a.sample.test_limit.is_some() {
        let lim = |n: Option<usize>| n.map_or("all".to_string(), |n| n.to_string());
        s.text(format!(
            "Stratified samples: {} training and {} test images per run (`--train-limit`, `--test-limit`).",
            lim(a.sample.train_limit),
            lim(a.sample.test_limit)
        ));
    }
    s.table(table(rs, p));
    let pts = |f: &dyn Fn(&ModelResult) -> f64| -> Vec<Point> {
        rs.iter()
            .map(|r| {
                Point::new(
                    r.model.clone(),
                    r.family.clone(),
                    f(r),
                    mean_std(&r.accs).0 * 100.0,
                )
            })
            .collect()
    };
    let frontier = rs.len() > 2;
    let mut acc_macs = ScatterPlot::cost_plot(
        "Test accuracy vs MACs",
        "MACs (millions, log)",
        "test accuracy (%)",
        pts(&|r| r.macs as f64 / 1e6),
    );
    acc_macs.frontier = frontier;
    let mut acc_params = ScatterPlot::cost_plot(
        "Test accuracy vs parameters",
        "parameters (millions, log)",
        "test accuracy (%)",
        pts(&|r| r.params as f64 / 1e6),
    );
    acc_params.frontier = frontier;
    let lat_pts = rs
        .iter()
        .map(|r| {
            Point::new(
                r.model.clone(),
                r.family.clone(),
                r.macs as f64 / 1e6,
                r.latency_ms,
            )
        })
        .collect();
    let mut lat = ScatterPlot::cost_plot(
        "Latency vs MACs",
        "MACs (millions, log)",
        "latency, batch 1 (ms)",
        lat_pts,
    );
    lat.frontier = false;
    s.figure(Figure::new(
        "accuracy_vs_macs",
        "Test accuracy vs MACs",
        acc_macs,
    ));
    s.figure(Figure::new(
        "accuracy_vs_params",
        "Test accuracy vs parameters",
        acc_params,
    ));
    s.figure(Figure::new(
        "latency_vs_macs",
        "Batch-1 CPU latency vs MACs",
        lat,
    ));
    let mut lc = LinePlot::new("Test accuracy per epoch", "epoch", "test accuracy (%)");
    lc.series = curves.to_vec();
    s.figure(Figure::new(
        "learning_curves",
        "Test accuracy after each epoch, one line per run (model and seed)",
        lc,
    ));
    rep.section("What it shows").text(analysis(a.which, rs));
    Ok(rep)
}

fn find<'a>(rs: &'a [ModelResult], m: &str) -> Option<&'a ModelResult> {
    rs.iter().find(|r| r.model == m)
}

fn analysis(which: Which, rs: &[ModelResult]) -> String {
    match which {
        Which::Dwsep => match (find(rs, "plain_cnn"), find(rs, "dwsep_cnn")) {
            (Some(p), Some(d)) => {
                let (ap, ad) = (mean_std(&p.accs).0, mean_std(&d.accs).0);
                format!(
                    "dwsep_cnn has {:.1}× fewer parameters and {:.1}× fewer MACs than plain_cnn, at {:+.2} points of \
                     test accuracy ({:.2}% vs {:.2}%); its batch-1 latency is {:.2} ms vs {:.2} ms ({:.1}× — less than \
                     the MAC ratio, because depthwise convolutions are memory-bound). Accuracy per million \
                     parameters: {:.1} vs {:.1}.",
                    p.params as f64 / d.params as f64,
                    p.macs as f64 / d.macs as f64,
                    (ad - ap) * 100.0,
                    ad * 100.0,
                    ap * 100.0,
                    d.latency_ms,
                    p.latency_ms,
                    p.latency_ms / d.latency_ms,
                    ad * 100.0 / (d.params as f64 / 1e6),
                    ap * 100.0 / (p.params as f64 / 1e6)
                )
            }
            _ => "Run with plain_cnn and dwsep_cnn to compare them.".into(),
        },
        Which::Se => {
            let mut s = String::new();
            for r in rs {
                let base = effcnn_arch::se_baseline(&r.model);
                if let Some(b) = base.and_then(|b| find(rs, b)) {
                    s.push_str(&se_pair_verdict(
                        (&b.model, b.params, b.macs, &b.accs),
                        (&r.model, r.params, r.macs, &r.accs),
                    ));
                    s.push_str("\n\n");
                }
            }
            if s.is_empty() {
                s = "Run with pairs like resnet20,se_resnet20 to compare them.".into();
            }
            s
        }
        Which::Zoo => {
            let mut v: Vec<&ModelResult> = rs.iter().collect();
            v.sort_by(|a, b| mean_std(&b.accs).0.total_cmp(&mean_std(&a.accs).0));
            let best = v.first().map(|r| r.model.clone()).unwrap_or_default();
            let mut by_lat: Vec<&ModelResult> = rs.iter().collect();
            by_lat.sort_by(|a, b| {
                (a.latency_ms / a.macs as f64).total_cmp(&(b.latency_ms / b.macs as f64))
            });
            format!(
                "Most accurate on this data and recipe: {best}. Milliseconds per GMAC range from {:.1} ({}) to {:.1} ({}): \
                 MACs alone do not predict latency.",
                by_lat[0].latency_ms / (by_lat[0].macs as f64 / 1e9),
                by_lat[0].model,
                by_lat[by_lat.len() - 1].latency_ms / (by_lat[by_lat.len() - 1].macs as f64 / 1e9),
                by_lat[by_lat.len() - 1].model
            )
        }
    }
}
