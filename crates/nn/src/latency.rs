//! Latency of a model's eval-mode forward pass: [`measure`] (median and p90 over timed runs,
//! throughput, GMAC/s) and [`profile`] (per plan step or per graph node, with totals per op
//! kind) — what `effcnn bench` and `effcnn experiment` report.

use std::time::{Duration, Instant};

use burn::tensor::{Tensor, TensorData};
use effcnn_arch::{cost, Op};
use serde::Serialize;

use crate::engine::{Engine, Inference, PlanOptions};
use crate::{ComputeDevice, EffNet, InitConfig, NnError};

type Result<T> = std::result::Result<T, NnError>;

/// One (model, batch) measurement.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Zoo model name.
    pub model: String,
    /// Images per forward pass.
    pub batch: usize,
    /// Threads of the compute pool.
    pub threads: usize,
    /// Input resolution (square).
    pub resolution: usize,
    /// What ran the forward pass, e.g. `cpu (effcnn plan, avx2)`.
    pub device: String,
    /// Median wall time of one forward pass of the whole batch (ms).
    pub median_ms: f64,
    /// 90th percentile of the same (ms).
    pub p90_ms: f64,
    /// Images per second at the median.
    pub img_per_s: f64,
    /// Timed runs.
    pub runs: usize,
    /// Parameters (the cost analyzer's count).
    pub params: u64,
    /// Multiply-accumulates per image.
    pub macs: u64,
    /// Activation elements per image (node outputs).
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
    /// The node's path, or a fused chain's paths joined by ` + `.
    pub path: String,
    /// The op as `effcnn show` names it (dwconv, pwconv, bn, relu6, …).
    pub op: String,
    /// The group it is totalled under (dwconv, pwconv, conv, bn, act, se/scale, add, …).
    pub kind: String,
    /// MACs per image.
    pub macs: u64,
    /// Median wall time of the node over the profiled runs, for the whole batch.
    pub ms: f64,
    /// Share of the profile's total time.
    pub time_share: f64,
    /// Share of the model's MACs.
    pub mac_share: f64,
    /// Achieved GMAC/s of the node (0 for nodes without MACs).
    pub gmacs_per_s: f64,
}

/// All nodes of one op kind.
#[derive(Debug, Clone, Serialize)]
pub struct KindTotal {
    /// The group ([`op_group`]).
    pub kind: String,
    /// Rows in the group.
    pub nodes: usize,
    /// MACs per image.
    pub macs: u64,
    /// Summed median time (ms).
    pub ms: f64,
    /// Share of the profile's total time.
    pub time_share: f64,
    /// Share of the model's MACs.
    pub mac_share: f64,
    /// Achieved GMAC/s of the group.
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

/// The deterministic benchmark input of `dims` (values in [-1, 1]).
fn bench_input(dims: [usize; 4]) -> Vec<f32> {
    let n: usize = dims.iter().product();
    (0..n).map(|i| ((i % 255) as f32 / 127.5) - 1.0).collect()
}

/// How long to time one (model, batch).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Untimed runs first (at least one).
    pub warmup: usize,
    /// Timed runs: at least this many …
    pub runs: usize,
    /// … and at least this many seconds of timing.
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
        inference.logits(&data, dims)?;
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

/// The group node `id` is totalled under: conv kinds as `effcnn show` names them, every
/// activation as `act`, the nodes of squeeze-and-excitation modules (and any gate multiply) as
/// `se/scale`.
pub fn op_group(g: &effcnn_arch::Graph, id: usize) -> &'static str {
    let node = &g.nodes[id];
    if g.in_se(id) || matches!(node.op, Op::Scale) {
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
        let mut plan = crate::engine::compile_plan(&model, dims, PlanOptions::default())?;
        for step in plan.steps() {
            rows.push((
                step.label.clone(),
                step.op.to_string(),
                op_group(&g, step.nodes[0]).to_string(),
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
        for (id, node) in g.nodes.iter().enumerate() {
            rows.push((
                node.path.clone(),
                node.op.kind().to_string(),
                op_group(&g, id).to_string(),
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
    fn se_nodes_are_grouped_by_the_graphs_se_modules() {
        let opts = effcnn_arch::Options {
            profile: effcnn_arch::Profile::Cifar,
            ..effcnn_arch::Options::default()
        };
        let g = effcnn_arch::resolve("se_resnet20", &opts).unwrap();
        let se: Vec<usize> = (0..g.nodes.len())
            .filter(|&i| op_group(&g, i) == "se/scale")
            .collect();
        // Nine SE modules of pool, fc1, relu, fc2, gate, scale — every node under an `.se.` path.
        assert_eq!(se.len(), 9 * 6);
        assert!(se.iter().all(|&i| g.nodes[i].path.contains(".se.")));
        let plain = effcnn_arch::resolve("resnet20", &opts).unwrap();
        assert!((0..plain.nodes.len()).all(|i| op_group(&plain, i) != "se/scale"));
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
