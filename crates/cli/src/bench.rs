//! `effcnn bench`: inference latency (median, p90) and throughput of zoo models, next to the
//! analyzer's params/MACs/activations.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use burn::tensor::{Tensor, TensorData};
use clap::Args;
use effcnn_arch::{cost, Op};
use effcnn_nn::engine::{Engine, Inference, PlanOptions};
use effcnn_nn::{ComputeDevice, EffNet, InitConfig};
use effcnn_report::{Cell, Column, Table};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

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

/// One (model, batch) measurement.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub model: String,
    pub batch: usize,
    pub threads: usize,
    pub resolution: usize,
    pub device: String,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub img_per_s: f64,
    pub runs: usize,
    pub params: u64,
    pub macs: u64,
    pub activations: u64,
    /// Achieved multiply-accumulates per second (GMAC/s) at the median.
    pub gmacs_per_s: f64,
    /// Peak resident memory of the process so far (MiB), Linux only.
    pub peak_rss_mib: Option<f64>,
    /// Per-node profile (`--per-layer` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<LayerProfile>,
}

/// Per-node latency of one (model, batch), from [`EffNet::forward_profiled`].
#[derive(Debug, Clone, Serialize)]
pub struct LayerProfile {
    /// Profiled forward passes (each node's time is its median over these).
    pub runs: usize,
    /// Sum of the per-node medians (includes the per-node sync overhead).
    pub total_ms: f64,
    /// Nodes in graph order.
    pub layers: Vec<LayerTime>,
    /// Totals per op kind, slowest first.
    pub kinds: Vec<KindTotal>,
}

/// One node's share of a profiled forward pass.
#[derive(Debug, Clone, Serialize)]
pub struct LayerTime {
    pub path: String,
    /// The op as `effcnn show` names it (dwconv, pwconv, bn, relu6, …).
    pub op: String,
    /// The group it is totalled under (dwconv, pwconv, conv, bn, act, se/scale, add, …).
    pub kind: String,
    /// MACs per image.
    pub macs: u64,
    /// Median wall time of the node over the profiled runs, for the whole batch.
    pub ms: f64,
    pub time_share: f64,
    pub mac_share: f64,
    /// Achieved GMAC/s of the node (0 for nodes without MACs).
    pub gmacs_per_s: f64,
}

/// All nodes of one op kind.
#[derive(Debug, Clone, Serialize)]
pub struct KindTotal {
    pub kind: String,
    pub nodes: usize,
    /// MACs per image.
    pub macs: u64,
    pub ms: f64,
    pub time_share: f64,
    pub mac_share: f64,
    pub gmacs_per_s: f64,
}

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Median and 90th percentile of durations in milliseconds.
pub fn percentiles(times: &mut [Duration]) -> (f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let n = times.len();
    let median = if n % 2 == 1 {
        ms(times[n / 2])
    } else {
        (ms(times[n / 2 - 1]) + ms(times[n / 2])) / 2.0
    };
    let p90 = ms(times[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1]);
    (median, p90)
}

pub fn set_threads(threads: Option<usize>) -> Result<usize> {
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if n == 0 {
        bail!("--threads must be at least 1");
    }
    // The global pool can only be built once per process; later calls keep the first setting.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    Ok(rayon::current_num_threads())
}

pub fn bench(a: BenchArgs) -> Result<()> {
    if a.batch.contains(&0) {
        bail!("--batch sizes must be at least 1");
    }
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let threads = set_threads(a.threads)?;
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

/// The deterministic benchmark input of `dims` (values in [-1, 1]).
fn bench_input(dims: [usize; 4]) -> Vec<f32> {
    let n: usize = dims.iter().product();
    (0..n).map(|i| ((i % 255) as f32 / 127.5) - 1.0).collect()
}

/// How long to time one (model, batch).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warmup: usize,
    pub runs: usize,
    pub min_seconds: f64,
}

/// Time the eval-mode forward pass of a zoo model (random init, weights do not change speed)
/// through `engine` (effcnn's compiled plan on the CPU, or burn's forward).
pub fn measure(
    name: &str,
    opts: &effcnn_arch::Options,
    b: usize,
    threads: usize,
    on: ComputeDevice,
    engine: Engine,
    t: Timing,
) -> Result<BenchResult> {
    let device = on.open()?;
    let model = EffNet::from_zoo(name, opts, &device, InitConfig::default())?;
    let g = model.graph().clone();
    let c = cost::analyze(&g);
    let s = g.input_shape();
    let dims = [b, s.c, s.h, s.w];
    let data = bench_input(dims);
    let mut inference = Inference::new(&model, engine, PlanOptions::default())?;
    let mut run = || -> Result<()> {
        inference.logits(&data, dims).context("running the model")?;
        Ok(())
    };
    for _ in 0..t.warmup.max(1) {
        run()?;
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < t.runs || start.elapsed().as_secs_f64() < t.min_seconds {
        let t0 = Instant::now();
        run()?;
        times.push(t0.elapsed());
        if times.len() >= 10_000 {
            break;
        }
    }
    let device_desc = match inference.plan(dims) {
        Some(p) => format!("cpu (effcnn plan, {})", p.isa().name()),
        None => on.describe(),
    };
    let (median_ms, p90_ms) = percentiles(&mut times);
    Ok(BenchResult {
        model: name.to_string(),
        batch: b,
        threads,
        resolution: s.h,
        device: device_desc,
        median_ms,
        p90_ms,
        img_per_s: b as f64 / (median_ms / 1e3),
        runs: times.len(),
        params: c.params,
        macs: c.macs,
        activations: c.activations,
        gmacs_per_s: (c.macs * b as u64) as f64 / (median_ms / 1e3) / 1e9,
        peak_rss_mib: peak_rss_mib(),
        profile: None,
    })
}

/// The group a node is totalled under: conv kinds as `effcnn show` names them, every
/// activation as `act`, squeeze-excitation nodes (any node under a `.se.` path, and the gate
/// multiply) as `se/scale`.
pub fn op_group(node: &effcnn_arch::Node) -> &'static str {
    if node.path.contains(".se.") || node.path.starts_with("se.") || matches!(node.op, Op::Scale) {
        return "se/scale";
    }
    match &node.op {
        Op::Conv(c) => c.kind(),
        Op::BatchNorm { .. } => "bn",
        Op::Act { .. } => "act",
        Op::Add => "add",
        Op::MaxPool { .. } | Op::AvgPool { .. } | Op::GlobalAvgPool => "pool",
        Op::Linear { .. } => "linear",
        Op::Concat | Op::Slice { .. } | Op::Shuffle { .. } => "concat/split/shuffle",
        Op::Input | Op::Flatten | Op::Dropout { .. } | Op::DropPath { .. } | Op::Scale => "other",
    }
}

/// Time every step of the eval-mode forward pass (median per step over the profiled runs): the
/// compiled plan's steps (a fused chain is one row, named by all of its nodes) or, with burn's
/// forward, every graph node.
pub fn profile(
    name: &str,
    opts: &effcnn_arch::Options,
    b: usize,
    on: ComputeDevice,
    engine: Engine,
    t: Timing,
) -> Result<LayerProfile> {
    let device = on.open()?;
    let model = EffNet::from_zoo(name, opts, &device, InitConfig::default())?;
    let g = model.graph().clone();
    let s = g.input_shape();
    let dims = [b, s.c, s.h, s.w];
    let data = bench_input(dims);
    // One row per step: (path, op, group, MACs per image) and its timings.
    let mut rows: Vec<(String, String, String, u64)> = Vec::new();
    let mut per_node: Vec<Vec<Duration>>;
    let mut runs = 0;
    let start = Instant::now();
    let more = |runs: usize| {
        runs < t.runs || (start.elapsed().as_secs_f64() < t.min_seconds && runs < 1000)
    };
    if engine == Engine::Plan && on.is_cpu() {
        let mut plan = effcnn_nn::engine::compile_plan(&model, dims, PlanOptions::default())?;
        for step in plan.steps() {
            let first = &g.nodes[step.nodes[0]];
            rows.push((
                step.label.clone(),
                step.op.to_string(),
                op_group(first).to_string(),
                step.macs / b as u64,
            ));
        }
        per_node = vec![Vec::new(); rows.len()];
        for _ in 0..t.warmup.max(1) {
            plan.run(&data)?;
        }
        while more(runs) {
            let (_, times) = plan.run_profiled(&data)?;
            for (v, d) in per_node.iter_mut().zip(times) {
                v.push(d);
            }
            runs += 1;
        }
    } else {
        for node in &g.nodes {
            rows.push((
                node.path.clone(),
                node.op.kind().to_string(),
                op_group(node).to_string(),
                cost::node_macs(&node.op, node.shape),
            ));
        }
        per_node = vec![Vec::new(); g.nodes.len()];
        let x = Tensor::<4>::from_data(TensorData::new(data, dims), &device);
        for _ in 0..t.warmup {
            let _ = model.forward_profiled(x.clone());
        }
        while more(runs) {
            let (_, times) = model.forward_profiled(x.clone());
            for (id, d) in times {
                per_node[id].push(d);
            }
            runs += 1;
        }
    }
    let ms: Vec<f64> = per_node.iter_mut().map(|v| percentiles(v).0).collect();
    let total_ms: f64 = ms.iter().sum();
    let total_macs: u64 = rows.iter().map(|r| r.3).sum();
    let share = |x: f64, total: f64| if total > 0.0 { x / total } else { 0.0 };
    let gmacs = |m: u64, ms: f64| {
        if ms > 0.0 {
            (m * b as u64) as f64 / (ms / 1e3) / 1e9
        } else {
            0.0
        }
    };
    let layers: Vec<LayerTime> = rows
        .into_iter()
        .zip(&ms)
        .map(|((path, op, kind, macs), &ms)| LayerTime {
            path,
            op,
            kind,
            macs,
            ms,
            time_share: share(ms, total_ms),
            mac_share: share(macs as f64, total_macs as f64),
            gmacs_per_s: gmacs(macs, ms),
        })
        .collect();
    let mut kinds: Vec<KindTotal> = Vec::new();
    for l in &layers {
        match kinds.iter_mut().find(|k| k.kind == l.kind) {
            Some(k) => {
                k.nodes += 1;
                k.macs += l.macs;
                k.ms += l.ms;
            }
            None => kinds.push(KindTotal {
                kind: l.kind.clone(),
                nodes: 1,
                macs: l.macs,
                ms: l.ms,
                time_share: 0.0,
                mac_share: 0.0,
                gmacs_per_s: 0.0,
            }),
        }
    }
    for k in &mut kinds {
        k.time_share = share(k.ms, total_ms);
        k.mac_share = share(k.macs as f64, total_macs as f64);
        k.gmacs_per_s = gmacs(k.macs, k.ms);
    }
    kinds.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    Ok(LayerProfile {
        runs,
        total_ms,
        layers,
        kinds,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_values() {
        let mut v: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        let (m, p) = percentiles(&mut v);
        assert!((m - 5.5).abs() < 1e-9);
        assert!((p - 9.0).abs() < 1e-9);
    }

    #[test]
    fn per_layer_profile_covers_every_node() {
        let opts = effcnn_arch::Options {
            profile: effcnn_arch::Profile::Cifar,
            ..effcnn_arch::Options::default()
        };
        let t = Timing {
            warmup: 0,
            runs: 2,
            min_seconds: 0.0,
        };
        let p = profile("dwsep_cnn", &opts, 2, ComputeDevice::Cpu, Engine::Burn, t).unwrap();
        let g = effcnn_arch::resolve("dwsep_cnn", &opts).unwrap();
        assert_eq!(p.runs, 2);
        assert_eq!(p.layers.len(), g.nodes.len());
        assert!(p.layers.iter().all(|l| l.ms >= 0.0 && l.time_share >= 0.0));
        let time: f64 = p.kinds.iter().map(|k| k.time_share).sum();
        let macs: f64 = p.kinds.iter().map(|k| k.mac_share).sum();
        assert!((time - 1.0).abs() < 1e-9 && (macs - 1.0).abs() < 1e-9);
        assert_eq!(
            p.kinds.iter().map(|k| k.nodes).sum::<usize>(),
            g.nodes.len()
        );
        assert!(p.kinds.iter().any(|k| k.kind == "dwconv"));
        // The plan's profile: one row per step, fewer rows than nodes (chains are fused), the
        // same MACs in all.
        let q = profile("dwsep_cnn", &opts, 2, ComputeDevice::Cpu, Engine::Plan, t).unwrap();
        assert!(q.layers.len() < g.nodes.len());
        let total = |p: &LayerProfile| p.layers.iter().map(|l| l.macs).sum::<u64>();
        assert_eq!(total(&q), total(&p));
        assert_eq!(total(&q), effcnn_arch::cost::analyze(&g).macs);
        assert!(q.layers.iter().any(|l| l.path.contains(" + ")));
    }
}
