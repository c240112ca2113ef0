//! `list`, `show`, `cost`, `shuffle`: the commands that need no tensors.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use effcnn_arch::calc::{self, Dims};
use effcnn_arch::cost::{self, Convention, ModelCost};
use effcnn_arch::{diagram, entries, resolve, Options};
use effcnn_report::{calc_table, Cell, Column, Table};

use crate::common::{out, render, Format, ModelArgs, ProfileArg};

#[derive(Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Cost in this profile (cifar: 32², 10 classes).
    #[arg(long, value_enum, default_value_t = ProfileArg::Imagenet)]
    pub profile: ProfileArg,
}

pub fn list(a: ListArgs) -> Result<()> {
    let mut t = Table::new(
        "effcnn model zoo",
        vec![
            Column::left("model"),
            Column::left("family"),
            Column::right("resolution"),
            Column::right("params"),
            Column::right("MACs"),
            Column::right("FLOPs"),
            Column::right("published top-1 %"),
            Column::left("source"),
            Column::left("paper"),
        ],
    );
    let opts = Options {
        profile: a.profile.into(),
        ..Options::default()
    };
    for e in entries() {
        let g = resolve(e.name, &opts)?;
        let c = cost::analyze(&g);
        t.push_row(vec![
            Cell::text(e.name),
            Cell::text(e.family),
            Cell::int(c.resolution as i64),
            Cell::count(c.params),
            Cell::mega(c.macs as f64),
            Cell::mega(c.flops as f64),
            e.reported.map_or(Cell::Empty, |r| Cell::float(r.top1, 2)),
            e.reported.map_or(Cell::Empty, |r| Cell::text(r.source)),
            Cell::text(e.paper),
        ])?;
    }
    t.push_note(cost::CONVENTION);
    t.push_note("published top-1: ImageNet-1k, or CIFAR-10 for the CIFAR-native nets (see source); not measured by effcnn");
    out(&render(&t, a.format))
}

#[derive(Args)]
pub struct ShowArgs {
    /// Zoo model name (see `effcnn list`).
    pub model: String,
    #[command(flatten)]
    pub m: ModelArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Every node (batch norm, activations, pooling, adds…), not only conv/linear layers.
    #[arg(long)]
    pub all: bool,
    /// Also give the totals other tools report for this graph: torchvision, fvcore, ptflops or all.
    #[arg(long)]
    pub convention: Option<String>,
    /// Itemise why fvcore/ptflops totals differ from the conv+linear MACs.
    #[arg(long)]
    pub explain_diff: bool,
    /// A block diagram of the network instead of the cost table.
    #[arg(long)]
    pub diagram: bool,
}

fn conventions(sel: &Option<String>, explain: bool) -> Result<Vec<Convention>> {
    match sel.as_deref() {
        None if explain => Ok(Convention::ALL.to_vec()),
        None => Ok(vec![]),
        Some("all") => Ok(Convention::ALL.to_vec()),
        Some(s) => match Convention::parse(s) {
            Some(c) => Ok(vec![c]),
            None => {
                bail!("--convention: unknown convention '{s}' (torchvision, fvcore, ptflops, all)")
            }
        },
    }
}

pub fn show(a: ShowArgs) -> Result<()> {
    let g = resolve(&a.model, &a.m.options())?;
    let convs = conventions(&a.convention, a.explain_diff)?;
    if a.diagram {
        return out(&diagram::render(&g));
    }
    let c = cost::analyze(&g);
    if a.format == Format::Json {
        let mut v = serde_json::to_value(&c)?;
        let totals: Vec<_> = convs
            .iter()
            .map(|&k| cost::convention_total(&g, k))
            .collect();
        v["conventions"] = serde_json::to_value(totals)?;
        v["profile"] = serde_json::to_value(g.meta.profile)?;
        v["width"] = serde_json::to_value(g.meta.width)?;
        if !a.all {
            let rows: Vec<_> = c.conv_linear_layers().cloned().collect();
            v["layers"] = serde_json::to_value(rows)?;
        }
        return out(&serde_json::to_string_pretty(&v)?);
    }
    let t = layer_table(&g.meta.name, &c, a.all);
    let mut s = render(&t, a.format);
    if a.format == Format::Table || a.format == Format::Md {
        s.push('\n');
        s.push_str(&totals_text(&c));
        for k in &convs {
            let tot = cost::convention_total(&g, *k);
            s.push_str(&format!(
                "\n{:<12} total {:>15}",
                k.name(),
                fmt_int(tot.total)
            ));
            if a.explain_diff {
                s.push_str(&format!("  = conv+linear MACs {}", fmt_int(tot.base_macs)));
                for d in &tot.added {
                    s.push_str(&format!(
                        "\n{:>14}+ {:<42} {:>13}",
                        "",
                        d.what,
                        fmt_int(d.count)
                    ));
                }
                if !tot.skipped.is_empty() {
                    s.push_str(&format!(
                        "\n{:>16}not counted: {}",
                        "",
                        tot.skipped.join(", ")
                    ));
                }
            }
        }
        if !convs.is_empty() {
            s.push('\n');
        }
    }
    out(&s)
}

fn fmt_int(n: u64) -> String {
    effcnn_report::format::format_thousands(n)
}

fn totals_text(c: &ModelCost) -> String {
    format!(
        "{} at {}², {} classes\n  params              {:>15}\n  MACs                {:>15}  ({:.2} M)\n  FLOPs (2×MACs)      {:>15}\n  activations         {:>15}\n  memory traffic      {:>15} elements\n  weights (float32)   {:>15} bytes\n  peak activations    {:>15} bytes (batch 1, float32)\n",
        c.model,
        c.resolution,
        c.classes,
        fmt_int(c.params),
        fmt_int(c.macs),
        c.macs as f64 / 1e6,
        fmt_int(c.flops),
        fmt_int(c.activations),
        fmt_int(c.traffic),
        fmt_int(c.weight_bytes),
        fmt_int(c.peak_activation_bytes),
    )
}

/// The per-layer table of `show`.
pub fn layer_table(model: &str, c: &ModelCost, all: bool) -> Table {
    let mut t = Table::new(
        format!("{model}: per-layer cost at {}²", c.resolution),
        vec![
            Column::left("path"),
            Column::left("op"),
            Column::left("in"),
            Column::left("out"),
            Column::left("k/s/g"),
            Column::right("params"),
            Column::right("MACs"),
            Column::right("MACs %"),
            Column::right("params %"),
            Column::right("activations"),
        ],
    );
    let rows: Vec<_> = if all {
        c.layers.iter().collect()
    } else {
        c.conv_linear_layers().collect()
    };
    for l in rows {
        let ks = match (l.k, l.stride, l.groups) {
            (Some(k), Some(s), Some(g)) => format!("{}×{}/{}/{}", k.0, k.1, s.0, g),
            _ => String::new(),
        };
        let inp = l
            .input
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(" + ");
        let _ = t.push_row(vec![
            Cell::text(&l.path),
            Cell::text(&l.op),
            Cell::text(inp),
            Cell::text(l.out.to_string()),
            Cell::text(ks),
            Cell::count(l.params),
            Cell::count(l.macs),
            Cell::percent(l.macs as f64 / c.macs.max(1) as f64, 2),
            Cell::percent(l.params as f64 / c.params.max(1) as f64, 2),
            Cell::count(l.out_elems),
        ]);
    }
    t.push_note(cost::CONVENTION);
    t
}

#[derive(Args, Clone)]
pub struct DimArgs {
    /// Kernel size K.
    #[arg(long, default_value_t = 3)]
    pub k: usize,
    /// Input channels (M, C_in).
    #[arg(long)]
    pub cin: usize,
    /// Output channels (N, C_out).
    #[arg(long)]
    pub cout: Option<usize>,
    /// Input height = width.
    #[arg(long)]
    pub size: usize,
    #[arg(long, default_value_t = 1)]
    pub stride: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

impl DimArgs {
    fn dims(&self) -> Dims {
        Dims {
            k: self.k,
            cin: self.cin,
            cout: self.cout.unwrap_or(self.cin),
            size: self.size,
            stride: self.stride,
        }
    }
}

#[derive(Subcommand)]
pub enum CostCmd {
    /// Standard K×K convolution (Exercise 1.2).
    Conv(DimArgs),
    /// Depthwise convolution: one K×K filter per input channel (Exercise 1.3).
    Depthwise(DimArgs),
    /// Pointwise 1×1 convolution (Exercise 1.3).
    Pointwise(DimArgs),
    /// Depthwise-separable = depthwise + pointwise, vs the standard conv (Exercise 1.3-1.4).
    Dwsep(DimArgs),
    /// Group convolution with G groups (Exercise 3.1).
    Group {
        #[command(flatten)]
        d: DimArgs,
        #[arg(long)]
        groups: usize,
    },
    /// Squeeze-and-excitation on a C×size×size map with reduction r (Exercise 2).
    Se {
        /// Channels C.
        #[arg(long)]
        c: usize,
        #[arg(long)]
        size: usize,
        /// Reduction ratio r.
        #[arg(long, default_value_t = 16)]
        r: usize,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// ShuffleNet unit (grouped 1×1 → shuffle → DW 3×3 → grouped 1×1) vs ResNet/ResNeXt bottlenecks (Exercise 3).
    ShuffleUnit {
        /// Channels c (bottleneck m = c/4).
        #[arg(long)]
        c: usize,
        #[arg(long)]
        size: usize,
        #[arg(long)]
        groups: usize,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// MobileNetV2 inverted residual d′ → t·d′ → d″ (Exercise 4.7).
    InvertedResidual {
        #[command(flatten)]
        d: DimArgs,
        /// Expansion factor t.
        #[arg(long, default_value_t = 6)]
        t: usize,
    },
}

pub fn cost(c: CostCmd) -> Result<()> {
    let (calc, f) = match c {
        CostCmd::Conv(d) => (calc::standard_conv(&d.dims())?, d.format),
        CostCmd::Depthwise(d) => (calc::depthwise(&d.dims())?, d.format),
        CostCmd::Pointwise(d) => (calc::pointwise(&d.dims())?, d.format),
        CostCmd::Dwsep(d) => (calc::dwsep(&d.dims())?, d.format),
        CostCmd::Group { d, groups } => (calc::group_conv(&d.dims(), groups)?, d.format),
        CostCmd::Se { c, size, r, format } => (calc::se(c, size, r)?, format),
        CostCmd::ShuffleUnit {
            c,
            size,
            groups,
            format,
        } => (calc::shuffle_unit(c, size, groups)?, format),
        CostCmd::InvertedResidual { d, t } => {
            (calc::inverted_residual_calc(&d.dims(), t)?, d.format)
        }
    };
    if f == Format::Json {
        let mut v = serde_json::to_value(&calc)?;
        v["mac_ratio_vs_standard"] = serde_json::to_value(calc.mac_ratio())?;
        v["param_ratio_vs_standard"] = serde_json::to_value(calc.param_ratio())?;
        return out(&serde_json::to_string_pretty(&v)?);
    }
    out(&render(&calc_table(&calc), f))
}

#[derive(Args)]
pub struct ShuffleArgs {
    /// Number of groups G.
    #[arg(long)]
    pub groups: usize,
    /// Channels per group N.
    #[arg(long)]
    pub per_group: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Channel label: group letter + index within the group.
fn ch_label(ch: usize, per_group: usize) -> String {
    let g = ch / per_group;
    let letter = if g < 26 {
        ((b'a' + g as u8) as char).to_string()
    } else {
        format!("g{g}_")
    };
    format!("{letter}{}", ch % per_group)
}

pub fn shuffle(a: ShuffleArgs) -> Result<()> {
    if a.groups == 0 || a.per_group == 0 {
        bail!("--groups and --per-group must be at least 1");
    }
    if a.groups * a.per_group > 4096 {
        bail!(
            "--groups × --per-group = {} channels is too many to draw (at most 4096)",
            a.groups * a.per_group
        );
    }
    let (g, n) = (a.groups, a.per_group);
    let perm = calc::shuffle_permutation(g, n);
    let labels: Vec<String> = (0..g * n).map(|c| ch_label(c, n)).collect();
    let after: Vec<String> = perm.iter().map(|&i| labels[i].clone()).collect();
    if a.format == Format::Json {
        let v = serde_json::json!({
            "groups": g, "per_group": n,
            "input": labels, "output": after, "permutation": perm,
        });
        return out(&serde_json::to_string_pretty(&v)?);
    }
    let mut s = format!(
        "channel shuffle, G={g} groups × N={n} channels ({} in all)\n\n",
        g * n
    );
    s.push_str("input (grouped):      ");
    for gi in 0..g {
        s.push_str(&labels[gi * n..(gi + 1) * n].join(" "));
        if gi + 1 < g {
            s.push_str(" | ");
        }
    }
    s.push_str(&format!("\n1. reshape to ({g}, {n}):\n"));
    for gi in 0..g {
        s.push_str(&format!(
            "       [{}]\n",
            labels[gi * n..(gi + 1) * n].join(" ")
        ));
    }
    s.push_str(&format!("2. transpose to ({n}, {g}):\n"));
    for j in 0..n {
        s.push_str(&format!(
            "       [{}]\n",
            after[j * g..(j + 1) * g].join(" ")
        ));
    }
    s.push_str(&format!("3. flatten:           {}\n", after.join(" ")));
    s.push_str("\nEach group of the next group convolution now sees one channel from every previous group.\n");
    s.push_str("Cost: 0 MACs; one full read and write of the feature map (a memory-bound op).\n");
    out(&s)
}
