//! `effcnn bench`: inference latency (median, p90) and throughput of zoo models, next to the
//! analyzer's params/MACs/activations.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use burn::tensor::{Tensor, TensorData};
use clap::Args;
use effcnn_arch::cost;
use effcnn_nn::{EffNet, InitConfig};
use effcnn_report::{Cell, Column, Table};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::common::{out, render, Format, ModelArgs};

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
    /// Device: cpu (burn flex).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Untimed warm-up runs.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed runs: at least this many …
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// … and at least this many seconds of timing per (model, batch).
    #[arg(long, default_value_t = 2.0)]
    pub min_seconds: f64,
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
    if a.device != "cpu" {
        bail!(
            "--device {}: this build runs on cpu only (CUDA needs the `cuda` feature)",
            a.device
        );
    }
    if a.batch.iter().any(|&b| b == 0) {
        bail!("--batch sizes must be at least 1");
    }
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let threads = set_threads(a.threads)?;
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
            results.push(measure(name, &a.m.options(), b, threads, t)?);
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    if a.format == Format::Json {
        return out(&serde_json::to_string_pretty(&results)?);
    }
    out(&render(&bench_table(&results), a.format))
}

/// How long to time one (model, batch).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warmup: usize,
    pub runs: usize,
    pub min_seconds: f64,
}

/// Time the eval-mode forward pass of a zoo model (random init, weights do not change speed).
pub fn measure(
    name: &str,
    opts: &effcnn_arch::Options,
    b: usize,
    threads: usize,
    t: Timing,
) -> Result<BenchResult> {
    let device = effcnn_nn::cpu();
    let model = EffNet::from_zoo(name, opts, &device, InitConfig::default())?;
    let g = model.graph().clone();
    let c = cost::analyze(&g);
    let s = g.input_shape();
    let n = b * s.c * s.h * s.w;
    let data: Vec<f32> = (0..n).map(|i| ((i % 255) as f32 / 127.5) - 1.0).collect();
    let x = Tensor::<4>::from_data(TensorData::new(data, [b, s.c, s.h, s.w]), &device);
    let run = || -> Result<()> {
        let y = model.forward(x.clone());
        let v = y.into_data();
        v.as_slice::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .context("reading the logits")?;
        Ok(())
    };
    for _ in 0..t.warmup {
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
    let (median_ms, p90_ms) = percentiles(&mut times);
    Ok(BenchResult {
        model: name.to_string(),
        batch: b,
        threads,
        resolution: s.h,
        device: "cpu (burn flex)".into(),
        median_ms,
        p90_ms,
        img_per_s: b as f64 / (median_ms / 1e3),
        runs: times.len(),
        params: c.params,
        macs: c.macs,
        activations: c.activations,
        gmacs_per_s: (c.macs * b as u64) as f64 / (median_ms / 1e3) / 1e9,
        peak_rss_mib: peak_rss_mib(),
    })
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
    t.push_note("device: cpu (burn flex); median and p90 over the timed runs after warm-up");
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
}
