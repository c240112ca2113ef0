//! The curriculum's training experiments (`effcnn experiment dwsep|se|zoo`, Exercises 1.6, 2.5
//! and 4) as data: what each study trains by default, how a resumed experiment treats the run
//! folders it finds, and the results table, report and analysis of a finished experiment.

use std::path::Path;

use effcnn_arch::{cost, resolve, Options};
use effcnn_report::{Cell, Column, CostPoint, Figure, LinePlot, Point, Report, ScatterPlot, Table};

use crate::error::{Result, TrainError};
use crate::results::{mean_std, se_pair_verdict};
use crate::{recipe, RunFolder, RunSummary, TrainConfig};

/// The three experiments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Study {
    /// Exercise 1.6: plain_cnn vs its depthwise-separable twin dwsep_cnn.
    Dwsep,
    /// Exercise 2.5: CIFAR ResNet with and without SE, several seeds (mean ± std).
    Se,
    /// Exercise 4: MobileNetV1/V2/V3, ShuffleNetV1/V2, EfficientNet-B0 in the CIFAR profile.
    Zoo,
}

/// What a study trains when the flags do not say: models, data, epochs, seeds.
#[derive(Debug, Clone, Copy)]
pub struct StudyDefaults {
    pub models: &'static [&'static str],
    /// A small synthetic set, so the experiment finishes in minutes on a CPU.
    pub data: &'static str,
    pub epochs: usize,
    pub seeds: usize,
}

impl Study {
    /// The study's defaults.
    pub fn defaults(self) -> StudyDefaults {
        let (models, data, epochs, seeds): (&'static [&'static str], _, _, _) = match self {
            Study::Dwsep => (&["plain_cnn", "dwsep_cnn"], "synthetic:2000:500", 3, 1),
            Study::Se => (&["resnet20", "se_resnet20"], "synthetic:1000:300", 3, 3),
            Study::Zoo => (
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
        StudyDefaults {
            models,
            data,
            epochs,
            seeds,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Study::Dwsep => "Experiment: standard vs depthwise-separable CNN (Exercise 1.6)",
            Study::Se => {
                "Experiment: ResNet with and without squeeze-and-excitation (Exercise 2.5)"
            }
            Study::Zoo => "Experiment: efficient architectures on the same recipe (Exercise 4)",
        }
    }
}

/// An experiment as run: the study and the recipe every run shares.
#[derive(Debug, Clone)]
pub struct Plan {
    pub study: Study,
    pub models: Vec<String>,
    /// The width multiplier of every model (`None`: each model's own).
    pub width: Option<f64>,
    pub data: String,
    pub epochs: usize,
    pub seeds: usize,
    pub batch_size: usize,
    /// CPU threads of the runs.
    pub threads: usize,
    /// Stratified training / test samples (`--train-limit`, `--test-limit`).
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
}

/// Results of one model over its seeds.
#[derive(Debug, Clone)]
pub struct ModelResult {
    pub model: String,
    pub family: String,
    pub params: u64,
    pub macs: u64,
    pub accs: Vec<f64>,
    pub latency_ms: f64,
    pub wall_seconds: f64,
    pub img_per_s: f64,
}

/// What a run folder of a resumed experiment holds.
#[derive(Debug, Clone)]
pub enum Existing {
    None,
    Finished(RunSummary),
    Interrupted,
}

/// The run in `dir`, if any; an error if it was trained with another recipe than `want`.
pub fn existing_run(dir: &Path, want: &TrainConfig) -> Result<Existing> {
    if !RunFolder::is_run(dir) {
        return Ok(Existing::None);
    }
    let have = RunFolder::open(dir)?;
    if have.recipe(&[])? != recipe(want, &[])? {
        return Err(TrainError::Config(format!(
            "{} holds a run with another recipe than these flags (compare its config.json); \
             use another --out or drop --resume to retrain it",
            dir.display()
        )));
    }
    Ok(match have.finished() {
        Some(s) => Existing::Finished(s.clone()),
        None => Existing::Interrupted,
    })
}

/// The `width` a run of `model` records for the experiment's `--width`: the multiplier itself,
/// or none for an entry whose width is fixed and equal to it (e.g. `shufflenet_v2_x0_5` in a 0.5×
/// zoo); an entry of another fixed width is an error naming it.
pub fn width_for(model: &str, width: Option<f64>) -> Result<Option<f64>> {
    let Some(w) = width else { return Ok(None) };
    if effcnn_arch::entry(model)?.has_width {
        return Ok(Some(w));
    }
    let fixed = resolve(model, &Options::cifar())?.meta.width;
    if (fixed - w).abs() > 1e-9 {
        return Err(TrainError::Config(format!(
            "--width {w}: {model} has a fixed width ({fixed}); list its sibling at {w} in --models \
             (`effcnn list`)"
        )));
    }
    Ok(None)
}

/// The results table: per model its costs, accuracy (mean ± std over seeds), latency and
/// training speed.
pub fn results_table(rs: &[ModelResult], p: &Plan) -> Table {
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

/// The report: the results table, accuracy vs MACs and vs parameters, latency vs MACs, the
/// learning curves (`curves`: one `(label, [(epoch, test accuracy %)])` per run) and the study's
/// analysis.
pub fn experiment_report(
    p: &Plan,
    rs: &[ModelResult],
    curves: &[(String, Vec<(f64, f64)>)],
) -> Report {
    let mut rep = Report::new(p.study.title());
    let s = rep.section("Results");
    s.text(format!(
        "Data: `{}`; {} epochs per run, batch {}, {} seed(s) per model, CPU ({} threads). Runs are in `runs/` \
         (config.json, metrics.jsonl, checkpoints, summary.json) and can be re-evaluated with `effcnn eval`.",
        p.data, p.epochs, p.batch_size, p.seeds, p.threads
    ));
    if p.train_limit.is_some() || p.test_limit.is_some() {
        let lim = |n: Option<usize>| n.map_or("all".to_string(), |n| n.to_string());
        s.text(format!(
            "Stratified samples: {} training and {} test images per run (`--train-limit`, `--test-limit`).",
            lim(p.train_limit),
            lim(p.test_limit)
        ));
    }
    s.table(results_table(rs, p));
    let models: Vec<CostPoint> = rs
        .iter()
        .map(|r| CostPoint {
            label: r.model.clone(),
            family: r.family.clone(),
            macs_m: r.macs as f64 / 1e6,
            params_m: r.params as f64 / 1e6,
            accuracy: mean_std(&r.accs).0 * 100.0,
        })
        .collect();
    let plots = ScatterPlot::accuracy_vs_cost(
        &models,
        |w| format!("Test accuracy vs {w}"),
        "test accuracy (%)",
        rs.len() > 2,
    );
    for (key, what, plot) in plots {
        s.figure(Figure::new(
            format!("accuracy_vs_{key}"),
            format!("Test accuracy vs {what}"),
            plot,
        ));
    }
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
    rep.section("What it shows").text(analysis(p.study, rs));
    rep
}

fn find<'a>(rs: &'a [ModelResult], m: &str) -> Option<&'a ModelResult> {
    rs.iter().find(|r| r.model == m)
}

fn analysis(study: Study, rs: &[ModelResult]) -> String {
    match study {
        Study::Dwsep => match (find(rs, "plain_cnn"), find(rs, "dwsep_cnn")) {
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
        Study::Se => {
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
        Study::Zoo => {
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
