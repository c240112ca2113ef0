//! The comparison of Exercise 4 (`effcnn compare`): one row per model with its exact costs,
//! published ImageNet accuracy, CIFAR-10 accuracy from effcnn runs and measured latency; the
//! tables, the report with accuracy-vs-cost plots and their Pareto frontiers, and a short analysis
//! of what each technique changes, computed from the analyzer.

use std::collections::BTreeMap;
use std::path::Path;

use effcnn_arch::cost::{self, ModelCost};
use effcnn_arch::{entries, entry, resolve, Options};
use effcnn_report::{
    pareto_frontier, Cell, Column, CostPoint, Figure, Point, Report, ScatterPlot, Table,
};

use crate::error::{Result, TrainError};
use crate::results::{se_pair_verdict, RunGroup};

/// The models `effcnn compare` shows by default: every zoo entry with a published ImageNet
/// top-1 (CIFAR-native study nets excluded).
pub fn default_models() -> Vec<String> {
    entries()
        .into_iter()
        .filter(|e| e.reported.is_some() && !e.cifar_native)
        .map(|e| e.name.to_string())
        .collect()
}

/// One row of the comparison.
#[derive(Debug, Clone)]
pub struct Row {
    pub model: String,
    pub family: String,
    pub cost: ModelCost,
    pub imagenet_top1: Option<(f64, String)>,
    pub cifar_acc: Option<f64>,
    pub latency_ms: Option<f64>,
}

/// The CIFAR-10 table: one row per model and recipe, mean ± std over seeds.
pub fn runs_table(groups: &[RunGroup]) -> Table {
    let mut t = Table::new(
        "CIFAR-10 test accuracy of effcnn training runs",
        vec![
            Column::left("model"),
            Column::left("family"),
            Column::right("width"),
            Column::right("params"),
            Column::right("MACs"),
            Column::right("epochs"),
            Column::right("seeds"),
            Column::right("test acc (mean)"),
            Column::right("± std"),
            Column::left("per seed"),
            Column::right("train min/run"),
        ],
    );
    for g in groups {
        let (m, sd) = g.mean_std();
        let per: Vec<String> = g
            .seeds
            .iter()
            .zip(&g.accs)
            .map(|(s, a)| format!("s{s} {:.2}", a * 100.0))
            .collect();
        let _ = t.push_row(vec![
            Cell::text(&g.model),
            Cell::text(&g.family),
            Cell::float(g.width, 2),
            Cell::count(g.params),
            Cell::mega(g.macs as f64),
            Cell::int(g.epochs as i64),
            Cell::int(g.accs.len() as i64),
            Cell::percent(m, 2),
            if g.accs.len() > 1 {
                Cell::percent(sd, 2)
            } else {
                Cell::Empty
            },
            Cell::text(per.join(", ")),
            Cell::float(
                g.wall_seconds.iter().sum::<f64>() / g.wall_seconds.len() as f64 / 60.0,
                0,
            ),
        ]);
    }
    // Every distinct value across the rows (sorted), so mixed recipes are not hidden.
    let distinct = |f: &dyn Fn(&RunGroup) -> String| -> String {
        let mut v: Vec<String> = groups.iter().map(f).collect();
        v.sort();
        v.dedup();
        v.join(", ")
    };
    t.push_note(format!(
        "Accuracy after the last epoch on the test split; std is the sample standard deviation over seeds. \
         Profile {}, batch {}, data {}; params and MACs of each model as trained (32²); devices: {}.",
        distinct(&|g| g.profile.clone()),
        distinct(&|g| g.batch_size.to_string()),
        distinct(&|g| format!("`{}`", g.data)),
        distinct(&|g| g.device.clone())
    ));
    t
}

/// Batch-1 median latency per model from the JSON of `effcnn bench --format json`.
pub fn bench_latency(path: &Path) -> Result<BTreeMap<String, f64>> {
    let s = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let format = |message: String| TrainError::Format {
        path: path.to_path_buf(),
        message,
    };
    let v: serde_json::Value =
        serde_json::from_str(&s).map_err(|e| format(format!("not valid JSON: {e}")))?;
    let items = v.as_array().ok_or_else(|| {
        format("expected a JSON array from `effcnn bench --format json`".to_string())
    })?;
    let mut out = BTreeMap::new();
    for it in items {
        if let (Some(m), Some(b), Some(ms)) = (
            it["model"].as_str(),
            it["batch"].as_u64(),
            it["median_ms"].as_f64(),
        ) {
            if b == 1 {
                out.insert(m.to_string(), ms);
            }
        }
    }
    Ok(out)
}

/// The rows of the comparison: `names` in order, then every model of `groups` not among them.
/// A model's CIFAR-10 accuracy is that of its recipe with the most seeds, from runs of the model
/// at its own width (the table's costs are of that model); `latency` is batch-1 milliseconds.
pub fn comparison_rows(
    names: &[String],
    groups: &[RunGroup],
    latency: &BTreeMap<String, f64>,
) -> Result<Vec<Row>> {
    let mut runs: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for g in groups {
        let own = resolve(&g.model, &Options::default())?.meta.width;
        if (own - g.width).abs() > 1e-9 {
            continue;
        }
        let n = g.accs.len();
        let e = runs.entry(g.model.clone()).or_insert((n, g.mean_std().0));
        if n > e.0 {
            *e = (n, g.mean_std().0);
        }
    }
    let mut rows = Vec::new();
    for n in names
        .iter()
        .chain(runs.keys().filter(|k| !names.contains(k)))
    {
        let e = entry(n)?;
        let opts = if e.cifar_native {
            Options::cifar()
        } else {
            Options::default()
        };
        let g = resolve(n, &opts)?;
        rows.push(Row {
            model: n.clone(),
            family: e.family.to_string(),
            cost: cost::analyze(&g),
            // CIFAR-native entries report CIFAR-10 accuracy, never ImageNet.
            imagenet_top1: e
                .reported
                .filter(|_| !e.cifar_native)
                .map(|r| (r.top1, r.source.to_string())),
            cifar_acc: runs.get(n).map(|r| r.1),
            latency_ms: latency.get(n).copied(),
        });
    }
    Ok(rows)
}

/// The comparison table (each model at its default resolution).
pub fn comparison_table(rows: &[Row]) -> Table {
    let mut t = Table::new(
        "Efficient CNNs compared (costs at each model's default resolution)",
        vec![
            Column::left("model"),
            Column::left("family"),
            Column::right("resolution"),
            Column::right("params"),
            Column::right("MACs"),
            Column::right("FLOPs"),
            Column::right("activations"),
            Column::right("ImageNet top-1 %"),
            Column::left("source"),
            Column::right("CIFAR-10 acc (effcnn run)"),
            Column::right("latency b1 ms"),
        ],
    );
    for r in rows {
        let _ = t.push_row(vec![
            Cell::text(&r.model),
            Cell::text(&r.family),
            Cell::int(r.cost.resolution as i64),
            Cell::count(r.cost.params),
            Cell::mega(r.cost.macs as f64),
            Cell::mega(r.cost.flops as f64),
            Cell::mega(r.cost.activations as f64),
            r.imagenet_top1
                .as_ref()
                .map_or(Cell::Empty, |(a, _)| Cell::float(*a, 2)),
            r.imagenet_top1
                .as_ref()
                .map_or(Cell::Empty, |(_, s)| Cell::text(s)),
            r.cifar_acc.map_or(Cell::Empty, |a| Cell::percent(a, 2)),
            r.latency_ms.map_or(Cell::Empty, |l| Cell::float(l, 2)),
        ]);
    }
    t.push_note(cost::CONVENTION);
    t.push_note("ImageNet top-1: published numbers (torchvision weights or the paper), not measured by effcnn; CIFAR-10 accuracy: mean over seeds of the effcnn training runs given with --runs (CIFAR profile, 32²) of the model at this width; runs at other widths are in the CIFAR-10 table");
    t
}

/// Models on the accuracy/cost Pareto frontier (lower cost, higher accuracy).
pub fn pareto_models(rows: &[(&str, f64, f64)]) -> Vec<String> {
    let pts: Vec<(f64, f64)> = rows.iter().map(|r| (r.1, r.2)).collect();
    pareto_frontier(&pts, true, true)
        .into_iter()
        .map(|i| rows[i].0.to_string())
        .collect()
}

/// The report: the comparison table, accuracy vs MACs and vs parameters (ImageNet, and
/// CIFAR-10 when `groups` has runs) with their Pareto frontiers, latency vs MACs when measured,
/// and [`technique_analysis`].
pub fn comparison_report(rows: &[Row], groups: &[RunGroup]) -> Result<Report> {
    let mut rep = Report::new("effcnn: efficient CNN architectures compared");
    let table = comparison_table(rows);
    rep.section("Comparison table").text(
        "Parameters, multiply-accumulates (MACs), FLOPs (= 2 × MACs) and activations come from effcnn's \
         exact analyzer; each model at its own default ImageNet resolution (CIFAR-native study nets at 32²).",
    ).table(table);

    let imagenet: Vec<&Row> = rows.iter().filter(|r| r.imagenet_top1.is_some()).collect();
    if !imagenet.is_empty() {
        let acc = |r: &Row| r.imagenet_top1.as_ref().map(|x| x.0).unwrap_or(f64::NAN);
        let by_macs: Vec<(&str, f64, f64)> = imagenet
            .iter()
            .map(|r| (r.model.as_str(), r.cost.macs as f64 / 1e6, acc(r)))
            .collect();
        let by_params: Vec<(&str, f64, f64)> = imagenet
            .iter()
            .map(|r| (r.model.as_str(), r.cost.params as f64 / 1e6, acc(r)))
            .collect();
        let pm = pareto_models(&by_macs);
        let pp = pareto_models(&by_params);
        let models: Vec<CostPoint> = imagenet
            .iter()
            .map(|r| CostPoint {
                label: r.model.clone(),
                family: r.family.clone(),
                macs_m: r.cost.macs as f64 / 1e6,
                params_m: r.cost.params as f64 / 1e6,
                accuracy: acc(r),
            })
            .collect();
        let s = rep.section("Accuracy vs cost (ImageNet, published top-1)");
        let plots = ScatterPlot::accuracy_vs_cost(
            &models,
            |w| format!("ImageNet top-1 vs {w}"),
            "top-1 (%)",
            true,
        );
        for (key, what, plot) in plots {
            s.figure(Figure::new(
                format!("accuracy_vs_{key}"),
                format!("ImageNet top-1 vs {what} (log scale); the line is the Pareto frontier"),
                plot,
            ));
        }
        s.text(format!(
            "Pareto-optimal by MACs (no other model is both cheaper and more accurate): {}.",
            pm.join(", ")
        ));
        s.text(format!("Pareto-optimal by parameters: {}.", pp.join(", ")));
    }

    if !groups.is_empty() {
        let s = rep.section("CIFAR-10 accuracy from effcnn runs");
        s.text(
            "Trained by effcnn from scratch on CIFAR-10 (the run folders given with `--runs`); each row is \
             one model with one recipe, its seeds averaged. Rerun one with `effcnn train` and the run's \
             config.json to verify a number.",
        );
        s.table(runs_table(groups));
        let frontier = groups.len() > 2;
        let models: Vec<CostPoint> = groups
            .iter()
            .map(|g| CostPoint {
                label: g.model.clone(),
                family: g.family.clone(),
                macs_m: g.macs as f64 / 1e6,
                params_m: g.params as f64 / 1e6,
                accuracy: g.mean_std().0 * 100.0,
            })
            .collect();
        let plots = ScatterPlot::accuracy_vs_cost(
            &models,
            |w| format!("CIFAR-10 accuracy vs {w} (32²)"),
            "test accuracy (%)",
            frontier,
        );
        for (key, what, plot) in plots {
            s.figure(Figure::new(
                format!("cifar_accuracy_vs_{key}"),
                format!("CIFAR-10 test accuracy (mean over seeds) of effcnn runs vs {what} as trained; the line is the Pareto frontier"),
                plot,
            ));
        }
        let pairs: Vec<String> = groups
            .iter()
            .filter_map(|se| {
                let base = groups.iter().find(|b| {
                    effcnn_arch::se_baseline(&se.model) == Some(b.model.as_str())
                        && (b.epochs, &b.data, b.width) == (se.epochs, &se.data, se.width)
                })?;
                Some(se_pair_verdict(
                    (&base.model, base.params, base.macs, &base.accs),
                    (&se.model, se.params, se.macs, &se.accs),
                ))
            })
            .collect();
        if !pairs.is_empty() {
            s.text(format!(
                "Squeeze-and-excitation (runs of a model and its SE twin on the same data and schedule): {}",
                pairs.join(" ")
            ));
        }
        if frontier {
            let by = |x: &dyn Fn(&RunGroup) -> f64| -> Vec<String> {
                let v: Vec<(&str, f64, f64)> = groups
                    .iter()
                    .map(|g| (g.model.as_str(), x(g), g.mean_std().0))
                    .collect();
                pareto_models(&v)
            };
            s.text(format!(
                "Pareto-optimal on CIFAR-10 by MACs: {}; by parameters: {}.",
                by(&|g| g.macs as f64).join(", "),
                by(&|g| g.params as f64).join(", ")
            ));
        }
    }

    let timed: Vec<&Row> = rows.iter().filter(|r| r.latency_ms.is_some()).collect();
    if !timed.is_empty() {
        let s = rep.section("Latency vs MACs (FLOPs are not speed)");
        let pts: Vec<Point> = timed
            .iter()
            .map(|r| {
                Point::new(
                    r.model.clone(),
                    r.family.clone(),
                    r.cost.macs as f64 / 1e6,
                    r.latency_ms.unwrap_or(f64::NAN),
                )
            })
            .collect();
        let mut p = ScatterPlot::cost_plot(
            "Measured latency vs MACs",
            "MACs (millions, log)",
            "latency, batch 1 (ms)",
            pts,
        );
        p.frontier = false;
        s.figure(Figure::new(
            "latency_vs_macs",
            "Measured batch-1 latency vs MACs (from --bench)",
            p,
        ));
        let mut per: Vec<(f64, &str)> = timed
            .iter()
            .map(|r| {
                (
                    r.latency_ms.unwrap_or(0.0) / (r.cost.macs as f64 / 1e9),
                    r.model.as_str(),
                )
            })
            .collect();
        per.sort_by(|a, b| a.0.total_cmp(&b.0));
        s.text(format!(
            "Milliseconds per GMAC range from {:.1} ({}) to {:.1} ({}): equal MACs do not mean equal time — \
             depthwise convolutions, SE and element-wise ops are memory-bound (ShuffleNetV2's guidelines G1–G4).",
            per[0].0,
            per[0].1,
            per[per.len() - 1].0,
            per[per.len() - 1].1
        ));
    }

    rep.section("What each technique changes")
        .text(technique_analysis()?);
    Ok(rep)
}

fn cost_of(name: &str, opts: &Options) -> Result<ModelCost> {
    Ok(cost::analyze(&resolve(name, opts)?))
}

fn top1(name: &str) -> Option<f64> {
    entry(name).ok()?.reported.map(|r| r.top1)
}

/// Family-internal comparisons computed from the analyzer (and published accuracy where known).
pub fn technique_analysis() -> Result<String> {
    let mut s = String::new();
    let m = |c: &ModelCost| c.macs as f64 / 1e6;
    let p = |c: &ModelCost| c.params as f64 / 1e6;

    let plain = cost_of("plain_cnn", &Options::cifar())?;
    let dw = cost_of("dwsep_cnn", &Options::cifar())?;
    s.push_str(&format!(
        "- **Depthwise-separable convolutions** (plain_cnn → dwsep_cnn, same depth and widths, 32²): params {:.2} M → {:.2} M ({:.1}× fewer), MACs {:.1} M → {:.1} M ({:.1}× fewer).\n",
        p(&plain), p(&dw), plain.params as f64 / dw.params as f64, m(&plain), m(&dw), plain.macs as f64 / dw.macs as f64
    ));

    let r50 = cost_of("resnet50", &Options::default())?;
    let se50 = cost_of("se_resnet50", &Options::default())?;
    s.push_str(&format!(
        "- **Squeeze-and-excitation** (resnet50 → se_resnet50): +{:.2} M params (+{:.1}%), +{:.2} M MACs (+{:.2}%); the SENet paper reports top-1 error 24.80 → 23.29 for this pair.\n",
        p(&se50) - p(&r50), 100.0 * (se50.params as f64 / r50.params as f64 - 1.0), m(&se50) - m(&r50), 100.0 * (se50.macs as f64 / r50.macs as f64 - 1.0)
    ));

    let mut g_line = Vec::new();
    for g in [1, 2, 3, 4, 8] {
        let c = cost_of(&format!("shufflenet_v1_g{g}"), &Options::default())?;
        g_line.push(format!("g={g}: {:.1} M MACs, {:.2} M params", m(&c), p(&c)));
    }
    s.push_str(&format!(
        "- **Group convolution + channel shuffle** (ShuffleNetV1 1.0×): at a similar budget, more groups allow wider layers — {}; paper top-1 error 33.6 (g=1) → 32.4 (g=8).\n",
        g_line.join("; ")
    ));

    let v1 = cost_of("mobilenet_v1", &Options::default())?;
    let v2 = cost_of("mobilenet_v2", &Options::default())?;
    s.push_str(&format!(
        "- **Inverted residuals with linear bottlenecks** (mobilenet_v1 → mobilenet_v2): MACs {:.0} M → {:.0} M, params {:.2} M → {:.2} M, top-1 {} → {}.\n",
        m(&v1), m(&v2), p(&v1), p(&v2),
        top1("mobilenet_v1").map_or("n/a".into(), |a| format!("{a:.1}")),
        top1("mobilenet_v2").map_or("n/a".into(), |a| format!("{a:.1}"))
    ));

    let mut e_line = Vec::new();
    for b in 0..8 {
        let n = format!("efficientnet_b{b}");
        let c = cost_of(&n, &Options::default())?;
        e_line.push(format!(
            "B{b} {:.2} G / {:.1}%",
            c.macs as f64 / 1e9,
            top1(&n).unwrap_or(f64::NAN)
        ));
    }
    s.push_str(&format!(
        "- **Compound scaling** (EfficientNet, width·depth·resolution together): {} — each step roughly doubles the MACs for diminishing accuracy gains.\n",
        e_line.join(", ")
    ));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_hand_made() {
        // b is dominated by a (cheaper and better); d by c.
        let rows = [
            ("a", 10.0, 70.0),
            ("b", 20.0, 65.0),
            ("c", 30.0, 75.0),
            ("d", 40.0, 74.0),
            ("e", 50.0, 80.0),
        ];
        assert_eq!(pareto_models(&rows), ["a", "c", "e"]);
    }
}
