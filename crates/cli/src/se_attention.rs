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

use anyhow::{bail, Context, Result};
use clap::Args;
use effcnn_arch::{Options, Profile};
use effcnn_data::{Dataset, LoadOptions, Normalization};
use effcnn_nn::{load_weights, EffNet, InitConfig};
use effcnn_report::{write_file_atomic, write_report};
use effcnn_train::se_gates::{capture_gates, gate_infos, select_per_class, GateInfo};
use effcnn_train::se_report::{SeAnalysis, SeSubject, SeWeights};

use crate::common::LayoutArg;
use crate::common::{out, render, Format, ProfileArg};

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
    fn source(&self) -> SeWeights {
        match self {
            Weights::Random { seed } => SeWeights::Random { seed: *seed },
            Weights::File { path, .. } => SeWeights::File(path.display().to_string()),
        }
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
        (None, None, Weights::File { path, .. }) => effcnn_nn::checkpoint::recorded_model(path)
            .with_context(|| {
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
    let cap = capture_gates(&s.model, &s.gates, images, &selected, s.norm, a.batch_size)?;
    let subject = SeSubject {
        model: s.graph_name,
        weights: weights.source(),
        data_source: s.data_source,
        classes: s.test.classes,
        per_class: a.per_class,
        norm: s.norm,
        norm_source: s.norm_source,
    };
    let analysis = SeAnalysis::new(subject, &s.gates, cap, a.images);
    let table = analysis.summary_table()?;
    let report = analysis.report()?;
    let json = serde_json::to_string_pretty(&analysis.to_json())?;

    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("--out {}: cannot create directory", a.out.display()))?;
    let files =
        write_report(&a.out, &report).with_context(|| format!("--out {}", a.out.display()))?;
    let gates_path = a.out.join("gates.json");
    write_file_atomic(&gates_path, json.as_bytes())?;
    eprintln!("wrote {} files to {}", files.len() + 1, a.out.display());
    out(&render(&table, a.format))
}
