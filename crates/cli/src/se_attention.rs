//! `effcnn se-attention` (curriculum Exercise 2.6): what the squeeze-and-excitation gates of a
//! model do, block by block.
//!
//! The model runs in eval mode on up to `--per-class` test images of each class; every SE gate
//! (the sigmoid / hard-sigmoid output, one value in [0, 1] per channel and image) is captured
//! with [`EffNet::forward_with_capture`]. Per block the command reports the gate distribution
//! (mean, spread, saturation) and how class-specific the gates are, and draws heatmaps of the
//! gates of a few sample images and of the class means. The SENet paper's finding is that early
//! blocks excite channels in a class-agnostic way while late blocks become class-specific.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use effcnn_arch::{Graph, NodeId, Op, Options, Profile};
use effcnn_data::{Dataset, LoadOptions, Loader, LoaderConfig, Normalization};
use effcnn_nn::{load_weights, EffNet, InitConfig};
use effcnn_report::{
    write_file_atomic, write_report, Cell, Column, Figure, Heatmap, Histogram, HistogramGrid,
    LinePlot, Report, Table,
};
use serde_json::{json, Value};

use effcnn_train::se_gates::{
    class_means, gate_stats, pick_samples, select_per_class, GateStats, HIGH, LOW,
};

use crate::common::{out, render, Format, ProfileArg};
use crate::weights_cmds::LayoutArg;

/// `effcnn se-attention`: SE gate statistics, heatmaps and class specificity per block.
#[derive(Debug, Clone, Args)]
pub struct SeAttentionArgs {
    /// A run folder (from `effcnn train`) or a weights file (.safetensors, .pth); leave out with
    /// --random-init.
    #[arg(
        required_unless_present = "random_init",
        conflicts_with = "random_init"
    )]
    pub source: Option<PathBuf>,
    /// Dataset whose test split is analysed: `synthetic[:N[:M]]`, a CIFAR-10 folder or archive,
    /// or an image folder [default: the run's own data].
    #[arg(long)]
    pub data: Option<String>,
    /// Output folder: report.md, report.html, PNG/SVG figures, gates.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Zoo model: required with --random-init; for a weights file outside a run folder the
    /// default is the model recorded in the file.
    #[arg(long)]
    pub model: Option<String>,
    /// Width multiplier (--random-init or a weights file outside a run folder).
    #[arg(long)]
    pub width: Option<f64>,
    /// Depth multiplier (EfficientNet-style families; --random-init or a bare weights file).
    #[arg(long)]
    pub depth: Option<f64>,
    /// Architecture profile (--random-init or a bare weights file) [default: cifar].
    #[arg(long, value_enum)]
    pub profile: Option<ProfileArg>,
    /// Resize every image to this side length [default: the run's, else the native size].
    #[arg(long)]
    pub image_size: Option<u32>,
    /// Use the run folder's best.safetensors instead of last.safetensors.
    #[arg(long)]
    pub best: bool,
    /// Analyse a freshly initialised, untrained model (no weights); the outputs say so.
    #[arg(long)]
    pub random_init: bool,
    /// Seed of the --random-init weights.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Sample images shown in the per-block heatmaps (taken round-robin over the classes).
    #[arg(long, default_value_t = 8)]
    pub images: usize,
    /// Test images per class used for the statistics and class means.
    #[arg(long, default_value_t = 50)]
    pub per_class: usize,
    /// Checkpoint key layout of a weights file (default: detected from the keys).
    #[arg(long, value_enum)]
    pub layout: Option<LayoutArg>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Format of the summary table printed on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// What a run folder's `config.json` says (read loosely: only the keys used here).
#[derive(Debug, Clone, Default)]
struct RunConfig {
    model: String,
    width: Option<f64>,
    profile: Option<Profile>,
    classes: Option<usize>,
    data: Option<String>,
    image_size: Option<u32>,
    seed: u64,
    normalization: Option<Normalization>,
}

fn read_run_config(dir: &Path) -> Result<RunConfig> {
    let c = effcnn_train::RunFolder::open(dir)?.config;
    let resolved = c.resolved.as_ref();
    Ok(RunConfig {
        width: c.width,
        profile: Some(c.profile),
        classes: resolved.map(|r| r.classes.len()).or(c.classes),
        data: Some(c.data.clone()),
        image_size: c.image_size,
        seed: c.seed,
        normalization: resolved.map(|r| r.normalization).filter(|n| n.is_valid()),
        model: c.model,
    })
}

/// Reads the `effcnn.model` entry of a `.safetensors` file's metadata.
fn safetensors_model(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 {
        return None;
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).ok()?;
    let v: Value = serde_json::from_slice(&header).ok()?;
    v["__metadata__"]["effcnn.model"]
        .as_str()
        .map(str::to_string)
}

/// Where the weights come from.
enum Weights {
    /// Freshly initialised (untrained).
    Random { seed: u64 },
    /// A checkpoint file, with the run configuration when it lies in a run folder.
    File {
        path: PathBuf,
        run: Option<RunConfig>,
    },
}

impl Weights {
    fn describe(&self) -> String {
        match self {
            Weights::Random { seed } => format!("random init, seed {seed} (untrained)"),
            Weights::File { path, .. } => path.display().to_string(),
        }
    }
    fn untrained(&self) -> bool {
        matches!(self, Weights::Random { .. })
    }
}

fn weights_of(a: &SeAttentionArgs) -> Result<Weights> {
    let Some(src) = &a.source else {
        return Ok(Weights::Random { seed: a.seed });
    };
    if !src.exists() {
        bail!("{}: no such run folder or weights file", src.display());
    }
    if src.is_dir() {
        let name = if a.best {
            "best.safetensors"
        } else {
            "last.safetensors"
        };
        let path = src.join(name);
        if !path.is_file() {
            bail!(
                "{}: weights file missing (is {} a run folder that has completed an epoch?)",
                path.display(),
                src.display()
            );
        }
        return Ok(Weights::File {
            path,
            run: Some(read_run_config(src)?),
        });
    }
    if a.best {
        bail!("--best applies to a run folder, not to a weights file");
    }
    let run = match src.parent().filter(|p| p.join("config.json").is_file()) {
        Some(dir) => Some(read_run_config(dir)?),
        None => None,
    };
    Ok(Weights::File {
        path: src.clone(),
        run,
    })
}

/// The SE gate nodes of `graph` with what the report says about them.
#[derive(Debug, Clone)]
struct GateInfo {
    node: NodeId,
    path: String,
    block: String,
    channels: usize,
    act: &'static str,
    /// Activation between the two FC layers (`"activation"` when the graph is unusual).
    act_inner: &'static str,
}

fn gate_infos(graph: &Graph) -> Vec<GateInfo> {
    graph
        .se_gates()
        .into_iter()
        .map(|g| {
            let n = &graph.nodes[g];
            GateInfo {
                node: g,
                path: n.path.clone(),
                block: if n.block.is_empty() {
                    n.path.clone()
                } else {
                    n.block.clone()
                },
                channels: n.shape.c,
                act: match &n.op {
                    Op::Act { act } => act.name(),
                    _ => "gate",
                },
                // gate ← fc2 ← inner activation.
                act_inner: n
                    .inputs
                    .first()
                    .and_then(|&fc2| graph.nodes[fc2].inputs.first())
                    .and_then(|&i| match &graph.nodes[i].op {
                        Op::Act { act } => Some(act.name()),
                        _ => None,
                    })
                    .unwrap_or("activation"),
            }
        })
        .collect()
}

/// Everything captured from the model.
struct Capture {
    /// Per gate: `images × channels`, row-major.
    gates: Vec<Vec<f32>>,
    /// Label of each image.
    labels: Vec<usize>,
    /// Test-split index of each image.
    indices: Vec<usize>,
    /// Images whose top-1 prediction equals the label.
    correct: usize,
}

fn tensor_values<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read a tensor: {e:?}"))
}

/// Runs `model` (eval mode) over `images` and collects every gate in `gates`.
fn capture(
    model: &EffNet,
    gates: &[GateInfo],
    images: Dataset,
    indices: &[usize],
    norm: Normalization,
    batch_size: usize,
) -> Result<Capture> {
    let device = effcnn_nn::cpu();
    let ids: Vec<NodeId> = gates.iter().map(|g| g.node).collect();
    let loader = Loader::new(
        Arc::new(images),
        LoaderConfig::eval(batch_size.max(1), norm),
    )?;
    let mut cap = Capture {
        gates: vec![Vec::new(); gates.len()],
        labels: Vec::new(),
        indices: Vec::new(),
        correct: 0,
    };
    for batch in loader.epoch(0) {
        let shape = batch.shape();
        let x = burn::tensor::Tensor::<4>::from_data(
            burn::tensor::TensorData::new(batch.images, shape),
            &device,
        );
        if model.is_training(&x) {
            bail!("internal error: the model would run in training mode");
        }
        let (logits, caps) = model.forward_with_capture(x, &ids);
        let logits = tensor_values(logits)?;
        let k = logits.len() / batch.n.max(1);
        for (row, &l) in logits.chunks_exact(k.max(1)).zip(&batch.labels) {
            let best = (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0);
            cap.correct += usize::from(best as i64 == l);
        }
        for ((t, g), out) in caps.into_iter().zip(gates).zip(&mut cap.gates) {
            let dims = t.dims();
            if dims != [batch.n, g.channels, 1, 1] {
                bail!(
                    "gate {} has shape {dims:?}, expected [{}, {}, 1, 1]",
                    g.path,
                    batch.n,
                    g.channels
                );
            }
            out.extend(tensor_values(t)?);
        }
        cap.labels.extend(batch.labels.iter().map(|&l| l as usize));
        cap.indices.extend(
            batch
                .indices
                .iter()
                .map(|&i| indices.get(i).copied().unwrap_or(i)),
        );
    }
    Ok(cap)
}

/// The model, the test images and the normalization, resolved from the flags.
struct Setup {
    model: EffNet,
    graph_name: String,
    gates: Vec<GateInfo>,
    test: Dataset,
    data_source: String,
    norm: Normalization,
    norm_source: &'static str,
}

fn setup(a: &SeAttentionArgs, weights: &Weights) -> Result<Setup> {
    let run = match weights {
        Weights::File { run, .. } => run.as_ref(),
        Weights::Random { .. } => None,
    };
    let model_name = match (run, &a.model, weights) {
        (Some(r), Some(m), _) if *m != r.model => {
            bail!("--model {m}: the run folder trains {}", r.model)
        }
        (Some(r), _, _) => r.model.clone(),
        (None, Some(m), _) => m.clone(),
        (None, None, Weights::File { path, .. }) => safetensors_model(path).with_context(|| {
            format!(
                "{}: the file does not record its model; pass --model",
                path.display()
            )
        })?,
        (None, None, Weights::Random { .. }) => bail!("--random-init needs --model"),
    };
    if run.is_some() && (a.width.is_some() || a.depth.is_some() || a.profile.is_some()) {
        bail!("--width, --depth and --profile come from the run folder's config.json");
    }
    let mut opts = Options {
        width: run.map_or(a.width, |r| r.width),
        depth: a.depth,
        resolution: None,
        classes: run.and_then(|r| r.classes),
        profile: run
            .and_then(|r| r.profile)
            .unwrap_or_else(|| a.profile.map_or(Profile::Cifar, Into::into)),
        dropout: None,
    };
    // SE gates do not depend on the resolution: fail early, before any data is read.
    let probe = effcnn_arch::resolve(&model_name, &opts)?;
    if probe.se_gates().is_empty() {
        bail!(
            "{model_name} has no squeeze-and-excitation (SE) blocks, so there are no gates to \
             analyse; use a model with SE, e.g. se_resnet20, se_resnet56, se_resnet18, \
             mobilenet_v3_small, mobilenet_v3_large or efficientnet_b0"
        );
    }
    let data = match (&a.data, run.and_then(|r| r.data.as_ref())) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => bail!("--data is required unless the source is a run folder"),
    };
    let load_opts = LoadOptions {
        image_size: a.image_size.or(run.and_then(|r| r.image_size)),
        seed: run.map_or(0, |r| r.seed),
    };
    let splits = effcnn_data::load(&data, &load_opts).with_context(|| format!("--data {data}"))?;
    if splits.test.is_empty() {
        bail!("dataset '{data}' has no test images");
    }
    let (h, w) = (splits.test.height as usize, splits.test.width as usize);
    opts.resolution = Some(h);
    if opts.classes.is_none() {
        opts.classes = Some(splits.test.num_classes());
    }
    let graph = effcnn_arch::resolve(&model_name, &opts)?;
    let device = effcnn_nn::cpu();
    let init = match weights {
        Weights::Random { seed } => InitConfig { seed: *seed },
        Weights::File { .. } => InitConfig::default(),
    };
    let mut model = EffNet::new(&graph, &device, init)?;
    model
        .check_input([1, 3, h, w])
        .with_context(|| format!("images of {data}"))?;
    if let Weights::File { path, .. } = weights {
        load_weights(&mut model, path, a.layout.map(Into::into), false)
            .with_context(|| format!("loading {}", path.display()))?;
    }
    let model = burn::module::Module::valid(&model);
    let (norm, norm_source) = match run.and_then(|r| r.normalization) {
        Some(n) => (n, "the run's config.json"),
        None if !splits.train.is_empty() => (
            splits.train.normalization(),
            "the dataset's training-split statistics",
        ),
        None => (
            splits.test.normalization(),
            "the dataset's test-split statistics",
        ),
    };
    let gates = gate_infos(&graph);
    Ok(Setup {
        model,
        graph_name: graph.meta.name.clone(),
        gates,
        data_source: splits.test.source.clone(),
        test: splits.test,
        norm,
        norm_source,
    })
}

/// One block's results.
struct BlockResult {
    info: GateInfo,
    stats: GateStats,
    class_means: Vec<Option<Vec<f64>>>,
    samples: Vec<Vec<f32>>,
}

fn f3(v: f64) -> String {
    format!("{v:.3}")
}

fn summary_table(title: &str, blocks: &[BlockResult]) -> Result<Table> {
    let mut t = Table::new(
        title,
        vec![
            Column::right("#"),
            Column::left("block"),
            Column::left("gate"),
            Column::right("channels"),
            Column::right("mean"),
            Column::right("std"),
            Column::right("< 0.05"),
            Column::right("> 0.95"),
            Column::right("class spec."),
            Column::right("chance"),
        ],
    );
    for (i, b) in blocks.iter().enumerate() {
        t.push_row(vec![
            Cell::int(i as i64 + 1),
            Cell::text(&b.info.block),
            Cell::text(b.info.act),
            Cell::int(b.info.channels as i64),
            Cell::float(b.stats.mean, 3),
            Cell::float(b.stats.std, 3),
            Cell::percent(b.stats.low_share, 1),
            Cell::percent(b.stats.high_share, 1),
            Cell::float(b.stats.class_specificity, 3),
            Cell::float(b.stats.chance_specificity, 3),
        ])?;
    }
    t.push_note(
        "class spec. = std across classes of the class-mean gate (averaged over channels) / std \
         of all the block's gates; chance = the same with shuffled labels",
    );
    Ok(t)
}

/// Mean of `f` over the first and the last third of the blocks.
fn thirds(blocks: &[BlockResult], f: impl Fn(&GateStats) -> f64) -> (f64, f64) {
    let n = blocks.len();
    let k = n.div_ceil(3).max(1);
    let mean = |s: &[BlockResult]| s.iter().map(|b| f(&b.stats)).sum::<f64>() / s.len() as f64;
    (mean(&blocks[..k.min(n)]), mean(&blocks[n - k.min(n)..]))
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    a: &SeAttentionArgs,
    s: &Setup,
    weights: &Weights,
    cap: &Capture,
    blocks: &[BlockResult],
    sample_pos: &[usize],
    table: &Table,
) -> Report {
    let untrained = weights.untrained();
    let tag = if untrained { " (untrained)" } else { "" };
    let classes = &s.test.classes;
    let n = cap.labels.len();
    let mut report = Report::new(format!(
        "SE attention of {}{}",
        s.graph_name,
        if untrained {
            " — UNTRAINED, random initialisation"
        } else {
            ""
        }
    ));
    let sec = report.section("");
    if untrained {
        sec.text(format!(
            "**Untrained model.** The weights are a fresh random initialisation (seed {}), not \
             learned: these gates show where training starts, not what the network attends to. \
             Train a model (`effcnn train {} --data ...`) and pass its run folder to see learned \
             attention.",
            a.seed, s.graph_name
        ));
    }
    let norm = s.norm;
    sec.text(format!(
        "- model: `{}`, {} SE blocks\n- weights: {}\n- data: {} {} images: up to \
         {} per class over {} classes\n- normalization: mean [{:.4}, {:.4}, {:.4}], std [{:.4}, \
         {:.4}, {:.4}] (from {})\n- top-1 on these images: {:.1}%{}",
        s.graph_name,
        blocks.len(),
        weights.describe(),
        s.data_source,
        n,
        a.per_class,
        classes.len(),
        norm.mean[0],
        norm.mean[1],
        norm.mean[2],
        norm.std[0],
        norm.std[1],
        norm.std[2],
        s.norm_source,
        100.0 * cap.correct as f64 / n.max(1) as f64,
        if untrained {
            " (untrained: chance level expected)"
        } else {
            ""
        },
    ));
    sec.text(
        "A squeeze-and-excitation block pools each channel over the image (squeeze), passes the \
         C numbers through a small bottleneck (FC → activation → FC) and a sigmoid-like gate \
         (excitation), and multiplies every channel by its gate in [0, 1]. A gate near 1 passes \
         the channel, near 0 suppresses it. Hu et al. (SENet, 2018) found that the gates of \
         early blocks are almost the same for every class (class-agnostic feature selection), \
         while those of late blocks differ between classes (class-specific), and that the very \
         last blocks tend to saturate.\n\nClass specificity of a block = the standard deviation \
         across classes of the class-mean gate, averaged over channels, divided by the standard \
         deviation of all the block's gate values. 0 means every class excites the channels \
         alike. With few images per class, sampling noise alone gives a positive value; the \
         *chance* column repeats the computation with shuffled labels to show that level.",
    );
    sec.table(table.clone());
    let (early, late) = thirds(blocks, |st| st.class_specificity);
    let (early_c, late_c) = thirds(blocks, |st| st.chance_specificity);
    let verdict = if late > early * 1.25 && late > late_c * 1.25 {
        "rises with depth, above the chance level, as the SENet paper reports for trained networks"
    } else if late > early * 1.25 {
        "rises with depth, but the late blocks stay near the chance level of shuffled labels"
    } else {
        "does not rise clearly with depth"
    };
    sec.text(format!(
        "Class specificity {verdict}: {:.3} on average over the first third of the blocks and \
         {:.3} over the last third (chance levels {:.3} and {:.3}).{}",
        early,
        late,
        early_c,
        late_c,
        if untrained {
            " For an untrained model any difference reflects the input statistics propagated \
             through random weights, not learned attention."
        } else {
            ""
        }
    ));

    let depth = report.section("Across depth");
    let xs = |f: &dyn Fn(&GateStats) -> f64| -> Vec<(f64, f64)> {
        blocks
            .iter()
            .enumerate()
            .map(|(i, b)| ((i + 1) as f64, f(&b.stats)))
            .collect()
    };
    depth.figure(Figure::new(
        "class_specificity",
        "Class specificity of the SE gates per block, input (left) to output (right), and its \
         chance level with shuffled labels.",
        LinePlot::new(
            format!("Class specificity of SE gates by depth{tag}"),
            "SE block (input → output)",
            "std across classes / overall std",
        )
        .with_series("class specificity", xs(&|s| s.class_specificity))
        .with_series("chance (shuffled labels)", xs(&|s| s.chance_specificity)),
    ));
    depth.figure(Figure::new(
        "gate_stats",
        "Mean and standard deviation of the gate values and the share of saturated gates \
         (< 0.05 or > 0.95) per block.",
        LinePlot::new(
            format!("SE gate statistics by depth{tag}"),
            "SE block (input → output)",
            "value / share",
        )
        .with_series("mean", xs(&|s| s.mean))
        .with_series("std", xs(&|s| s.std))
        .with_series("saturated share", xs(&|s| s.saturated_share)),
    ));
    let mut grid = HistogramGrid::new(
        format!("SE gate values per block ({n} images × channels){tag}"),
        "gate value",
    );
    grid.range = Some((0.0, 1.0));
    for (i, b) in blocks.iter().enumerate() {
        grid.panels.push(Histogram::new(
            format!("{} {}", i + 1, b.info.block),
            20,
            cap.gates[i].iter().map(|&v| f64::from(v)).collect(),
        ));
    }
    depth.figure(Figure::new(
        "gate_histograms",
        "Distribution of all gate values (images × channels) of each SE block, on [0, 1].",
        grid,
    ));

    let sample_labels: Vec<String> = sample_pos
        .iter()
        .map(|&p| {
            let l = cap.labels[p];
            format!(
                "#{} {}",
                cap.indices[p],
                classes.get(l).map_or("?", String::as_str)
            )
        })
        .collect();
    for (i, b) in blocks.iter().enumerate() {
        let sec = report.section(format!(
            "Block {}: {} ({} channels, {})",
            i + 1,
            b.info.block,
            b.info.channels,
            b.info.act
        ));
        sec.text(format!(
            "Gate node `{}`: mean {}, std {}, {:.1}% below 0.05, {:.1}% above 0.95, class \
             specificity {} (chance {}).",
            b.info.path,
            f3(b.stats.mean),
            f3(b.stats.std),
            100.0 * b.stats.low_share,
            100.0 * b.stats.high_share,
            f3(b.stats.class_specificity),
            f3(b.stats.chance_specificity),
        ));
        if b.stats.std < 1e-3 {
            sec.text(format!(
                "The gates of this block hardly vary (std {:.1e} around {}): the excitation \
                 barely depends on the input (e.g. the bottleneck's {} outputs are zero or tiny \
                 for all images), so the block scales every channel by about the same constant \
                 and its class specificity describes negligible differences.",
                b.stats.std,
                f3(b.stats.mean),
                b.info.act_inner
            ));
        }
        let ch_labels: Vec<String> = (0..b.info.channels).map(|c| c.to_string()).collect();
        if !b.samples.is_empty() {
            let mut hm = Heatmap::new(
                format!(
                    "{} SE gates: {} sample images × {} channels{tag}",
                    b.info.block,
                    b.samples.len(),
                    b.info.channels
                ),
                sample_labels.clone(),
                ch_labels.clone(),
                b.samples.clone(),
            );
            hm.vmin = 0.0;
            hm.vmax = 1.0;
            sec.figure(Figure::new(
                format!("block{:02}_samples", i + 1),
                format!(
                    "Gates of block {} for {} test images (rows: test index and class; \
                     columns: channels; colour scale 0 to 1).",
                    b.info.block,
                    b.samples.len()
                ),
                hm,
            ));
        }
        let class_rows: Vec<Vec<f32>> = b
            .class_means
            .iter()
            .map(|m| match m {
                Some(v) => v.iter().map(|&x| x as f32).collect(),
                None => vec![f32::NAN; b.info.channels],
            })
            .collect();
        let hm = Heatmap::new(
            format!(
                "{} class-mean SE gates: {} classes × {} channels{tag}",
                b.info.block,
                classes.len(),
                b.info.channels
            ),
            classes.clone(),
            ch_labels,
            class_rows,
        );
        let range = hm.data_range().map_or(String::from("no data"), |(lo, hi)| {
            format!("{lo:.3} to {hi:.3}")
        });
        sec.figure(Figure::new(
            format!("block{:02}_classes", i + 1),
            format!(
                "Mean gate per class of block {} (rows: classes; columns: channels; colour \
                 scale {range}, the range of the class means, to show differences between \
                 classes).",
                b.info.block
            ),
            hm,
        ));
    }
    report
}

/// Runs `effcnn se-attention`.
pub fn se_attention(a: SeAttentionArgs) -> Result<()> {
    if a.per_class == 0 {
        bail!("--per-class must be at least 1");
    }
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let weights = weights_of(&a)?;
    let s = setup(&a, &weights)?;
    let classes = s.test.num_classes();
    let selected = select_per_class(&s.test.labels, classes, a.per_class);
    if selected.is_empty() {
        bail!("the test split of {} has no labelled images", s.data_source);
    }
    let images = s.test.subset(&selected)?;
    let cap = capture(&s.model, &s.gates, images, &selected, s.norm, a.batch_size)?;
    let sample_pos = pick_samples(&cap.labels, classes, a.images);
    let blocks: Vec<BlockResult> = s
        .gates
        .iter()
        .zip(&cap.gates)
        .map(|(info, values)| {
            let c = info.channels;
            BlockResult {
                info: info.clone(),
                stats: gate_stats(values, c, &cap.labels, classes),
                class_means: class_means(values, c, &cap.labels, classes),
                samples: sample_pos
                    .iter()
                    .map(|&p| values[p * c..(p + 1) * c].to_vec())
                    .collect(),
            }
        })
        .collect();
    let title = format!(
        "SE gates of {} on {} images of {}{}",
        s.graph_name,
        cap.labels.len(),
        s.data_source,
        if weights.untrained() {
            " — UNTRAINED (random init)"
        } else {
            ""
        }
    );
    let table = summary_table(&title, &blocks)?;
    let report = build_report(&a, &s, &weights, &cap, &blocks, &sample_pos, &table);
    let json = gates_json(&a, &s, &weights, &cap, &blocks, &sample_pos);
    let json = serde_json::to_string_pretty(&json)?;

    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("--out {}: cannot create directory", a.out.display()))?;
    let files =
        write_report(&a.out, &report).with_context(|| format!("--out {}", a.out.display()))?;
    let gates_path = a.out.join("gates.json");
    write_file_atomic(&gates_path, json.as_bytes())?;
    eprintln!("wrote {} files to {}", files.len() + 1, a.out.display());
    out(&render(&table, a.format))
}

fn gates_json(
    a: &SeAttentionArgs,
    s: &Setup,
    weights: &Weights,
    cap: &Capture,
    blocks: &[BlockResult],
    sample_pos: &[usize],
) -> Value {
    let classes = &s.test.classes;
    let blocks: Vec<Value> = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({
                "index": i,
                "block": b.info.block,
                "path": b.info.path,
                "gate": b.info.act,
                "channels": b.info.channels,
                "stats": b.stats,
                "sample_gates": b.samples,
                "class_mean_gates": b.class_means.iter().map(|m| m.as_ref().map(|v| {
                    v.iter().map(|&x| x as f32).collect::<Vec<f32>>()
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "model": s.graph_name,
        "weights": weights.describe(),
        "untrained": weights.untrained(),
        "init_seed": if weights.untrained() { json!(a.seed) } else { Value::Null },
        "data": s.data_source,
        "split": "test",
        "classes": classes,
        "per_class": a.per_class,
        "images": cap.labels.len(),
        "image_indices": cap.indices,
        "labels": cap.labels,
        "top1": cap.correct as f64 / cap.labels.len().max(1) as f64,
        "normalization": {"mean": s.norm.mean, "std": s.norm.std, "source": s.norm_source},
        "thresholds": {"low": LOW, "high": HIGH},
        "samples": sample_pos.iter().map(|&p| json!({
            "index": cap.indices[p],
            "label": cap.labels[p],
            "class": classes.get(cap.labels[p]),
        })).collect::<Vec<_>>(),
        "blocks": blocks,
    })
}
