//! `effcnn bench`: inference latency (median, p90) and throughput of zoo models, next to the
//! analyzer's params/MACs/activations.

use anyhow::{bail, Result};
use clap::Args;
use effcnn_nn::latency::{measure, profile, BenchResult, LayerProfile, LayerTime, Timing};
use effcnn_report::{Cell, Column, Table};
use indicatif::{ProgressBar, ProgressStyle};

use crate::common::{out, render, DeviceArgs, EngineArgs, Format, ModelArgs};

#[derive(Args)]
pub struct BenchArgs {
    /// Zoo models to time.
    #[arg(required = true)]
    pub models: Vec<String>,
    /// Batch sizes (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub batch: Vec<usize>,
    #[command(flatten)]
    pub m: ModelArgs,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Untimed warm-up runs.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed runs: at least this many …
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// … and at least this many seconds of timing per (model, batch).
    #[arg(long, default_value_t = 2.0)]
    pub min_seconds: f64,
    /// Also time every node (eval mode, at each batch size) and print a per-layer profile per
    /// model: ms, share of time and of MACs, GMAC/s, and totals per op kind. Each node's output
    /// is read back to force completion, which adds a small sync cost per node.
    #[arg(long)]
    pub per_layer: bool,
    /// With --per-layer: list only the N slowest nodes (0 = every node, in graph order).
    #[arg(long, default_value_t = 0)]
    pub top: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub fn bench(a: BenchArgs) -> Result<()> {
    if a.batch.contains(&0) {
        bail!("--batch sizes must be at least 1");
    }
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let threads = effcnn_nn::configure_threads(a.threads)?;
    let device = a.device.get();
    device.open()?;
    let mut results = Vec::new();
    let total = (a.models.len() * a.batch.len()) as u64;
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for name in &a.models {
        for &b in &a.batch {
            pb.set_message(format!("{name} batch {b}"));
            let t = Timing {
                warmup: a.warmup,
                runs: a.runs,
                min_seconds: a.min_seconds,
            };
            let engine = a.engine.engine.into();
            let mut r = measure(name, &a.m.options(), b, threads, device, engine, t)?;
            if a.per_layer {
                r.profile = Some(profile(name, &a.m.options(), b, device, engine, t)?);
            }
            results.push(r);
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    if a.format == Format::Json {
        return out(&serde_json::to_string_pretty(&results)?);
    }
    let mut text = render(&bench_table(&results), a.format);
    for r in &results {
        if let Some(p) = &r.profile {
            for t in profile_tables(r, p, a.top) {
                text.push('\n');
                text.push_str(&render(&t, a.format));
            }
        }
    }
    out(&text)
}

/// The per-node table (every node in graph order, or the `top` slowest) and the per-kind totals.
pub fn profile_tables(r: &BenchResult, p: &LayerProfile, top: usize) -> [Table; 2] {
    let head = format!("{} batch {} threads {}", r.model, r.batch, r.threads);
    let mut rows: Vec<&LayerTime> = p.layers.iter().collect();
    if top > 0 {
        rows.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        rows.truncate(top);
    }
    let title = if top > 0 {
        format!("Per-layer profile: {head} (top {top} by time)")
    } else {
        format!("Per-layer profile: {head}")
    };
    let cols = |first: &str, second: Column| {
        vec![
            Column::left(first),
            second,
            Column::right("MACs"),
            Column::right("ms"),
            Column::right("% time"),
            Column::right("% MACs"),
            Column::right("GMAC/s"),
        ]
    };
    let gm = |g: f64| {
        if g > 0.0 {
            Cell::float(g, 2)
        } else {
            Cell::Empty
        }
    };
    let mut t = Table::new(title, cols("path", Column::left("op")));
    for l in rows {
        let _ = t.push_row(vec![
            Cell::text(&l.path),
            Cell::text(&l.op),
            Cell::mega(l.macs as f64),
            Cell::float(l.ms, 3),
            Cell::percent(l.time_share, 1),
            Cell::percent(l.mac_share, 1),
            gm(l.gmacs_per_s),
        ]);
    }
    let how = if r.device.contains("effcnn plan") {
        "one row per plan step, a fused chain named by all of its nodes"
    } else {
        "burn's forward: each node is run and read back on its own, unfused"
    };
    t.push_note(format!(
        "median per step over {} profiled runs; sum {:.2} ms vs {:.2} ms unprofiled median \
         ({how}); MACs per image",
        p.runs, p.total_ms, r.median_ms
    ));
    let mut k = Table::new(
        format!("Per-op-kind totals: {head}"),
        cols("kind", Column::right("nodes")),
    );
    for x in &p.kinds {
        let _ = k.push_row(vec![
            Cell::text(&x.kind),
            Cell::int(x.nodes as i64),
            Cell::mega(x.macs as f64),
            Cell::float(x.ms, 3),
            Cell::percent(x.time_share, 1),
            Cell::percent(x.mac_share, 1),
            gm(x.gmacs_per_s),
        ]);
    }
    [t, k]
}

pub fn bench_table(r: &[BenchResult]) -> Table {
    let mut t = Table::new(
        "Inference latency (eval mode)",
        vec![
            Column::left("model"),
            Column::right("batch"),
            Column::right("threads"),
            Column::right("resolution"),
            Column::right("median ms"),
            Column::right("p90 ms"),
            Column::right("img/s"),
            Column::right("GMAC/s"),
            Column::right("params"),
            Column::right("MACs"),
            Column::right("activations"),
            Column::right("peak RSS MiB"),
        ],
    );
    for x in r {
        let _ = t.push_row(vec![
            Cell::text(&x.model),
            Cell::int(x.batch as i64),
            Cell::int(x.threads as i64),
            Cell::int(x.resolution as i64),
            Cell::float(x.median_ms, 2),
            Cell::float(x.p90_ms, 2),
            Cell::float(x.img_per_s, 1),
            Cell::float(x.gmacs_per_s, 2),
            Cell::count(x.params),
            Cell::mega(x.macs as f64),
            Cell::mega(x.activations as f64),
            x.peak_rss_mib.map_or(Cell::Empty, |m| Cell::float(m, 0)),
        ]);
    }
    let mut devices: Vec<&str> = r.iter().map(|x| x.device.as_str()).collect();
    devices.dedup();
    t.push_note(format!(
        "device: {}; median and p90 over the timed runs after warm-up",
        devices.join(", ")
    ));
    t
}
