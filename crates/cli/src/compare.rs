//! `effcnn compare`: the comparison table of Exercise 4 with plots, the Pareto frontier and a short
//! analysis generated from the data ([`effcnn_train::comparison`]). Costs come from the analyzer;
//! accuracy from published numbers (ImageNet) and, when given, from training runs (CIFAR-10);
//! latency from `effcnn bench` output.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use effcnn_report::{write_file_atomic, write_report};
use effcnn_train::comparison::{
    bench_latency, comparison_report, comparison_rows, comparison_table, default_models, runs_table,
};
use effcnn_train::results::run_groups;

#[derive(Args)]
pub struct CompareArgs {
    /// Models to compare (comma-separated; default: every zoo model with a published ImageNet top-1).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Training run directories (with config.json and summary.json) whose CIFAR-10 accuracy to add.
    #[arg(long, num_args = 1..)]
    pub runs: Vec<PathBuf>,
    /// JSON written by `effcnn bench --format json`, for measured latency.
    #[arg(long)]
    pub bench: Option<PathBuf>,
    /// Output directory (report.md, report.html, plots, comparison.csv/json).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn compare(a: CompareArgs) -> Result<()> {
    let names = if a.models.is_empty() {
        default_models()
    } else {
        a.models.clone()
    };
    if names.is_empty() {
        bail!("--models: no models given");
    }
    let (groups, unfinished) = run_groups(&a.runs).context("--runs")?;
    for d in &unfinished {
        eprintln!("{}: run not finished, left out", d.display());
    }
    if groups.is_empty() && !a.runs.is_empty() {
        bail!("--runs: no finished run");
    }
    let lat = match &a.bench {
        Some(p) => bench_latency(p).context("--bench")?,
        None => BTreeMap::new(),
    };
    let rows = comparison_rows(&names, &groups, &lat)?;
    let report = comparison_report(&rows, &groups)?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("--out {}: cannot create directory", a.out.display()))?;
    let table = comparison_table(&rows);
    write_file_atomic(&a.out.join("comparison.csv"), table.to_csv().as_bytes())?;
    write_file_atomic(&a.out.join("comparison.json"), table.to_json().as_bytes())?;
    if !groups.is_empty() {
        let t = runs_table(&groups);
        write_file_atomic(&a.out.join("cifar10.csv"), t.to_csv().as_bytes())?;
        write_file_atomic(&a.out.join("cifar10.json"), t.to_json().as_bytes())?;
        write_file_atomic(&a.out.join("cifar10.md"), t.to_markdown().as_bytes())?;
    }
    let files =
        write_report(&a.out, &report).with_context(|| format!("--out {}", a.out.display()))?;
    eprintln!("wrote {} files to {}:", files.len() + 2, a.out.display());
    for f in files {
        eprintln!("  {}", f.display());
    }
    crate::common::out(&table.to_text())
}
