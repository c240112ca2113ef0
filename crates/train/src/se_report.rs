//! The SE-attention analysis of `effcnn se-attention` (Exercise 2.6) as data: per-block gate
//! statistics, class means and sample gates ([`SeAnalysis::new`]), and from them the summary
//! table, the report (figures of class specificity by depth, gate histograms, per-block
//! heatmaps) and the `gates.json` record. The command resolves the model, weights and images and
//! captures the gates ([`crate::se_gates::capture_gates`]); everything after that lives here.

use effcnn_data::Normalization;
use effcnn_report::{
    Cell, Column, Figure, Heatmap, Histogram, HistogramGrid, LinePlot, Report, ReportError, Table,
};
use serde_json::{json, Value};

use crate::se_gates::{
    class_means, gate_stats, pick_samples, GateCapture, GateInfo, GateStats, HIGH, LOW,
};

/// Where the analysed weights come from.
#[derive(Debug, Clone, PartialEq)]
pub enum SeWeights {
    /// A fresh random initialisation with this seed (untrained).
    Random { seed: u64 },
    /// A checkpoint file (its path as shown to the user).
    File(String),
}

impl SeWeights {
    /// How the report names the weights.
    pub fn describe(&self) -> String {
        match self {
            SeWeights::Random { seed } => format!("random init, seed {seed} (untrained)"),
            SeWeights::File(path) => path.clone(),
        }
    }

    /// True for a random initialisation.
    pub fn untrained(&self) -> bool {
        matches!(self, SeWeights::Random { .. })
    }
}

/// What was analysed: the model, its weights and the images.
#[derive(Debug, Clone)]
pub struct SeSubject {
    /// The graph's name, e.g. `se_resnet20`.
    pub model: String,
    pub weights: SeWeights,
    /// The dataset the test images come from.
    pub data_source: String,
    /// Class names of the dataset.
    pub classes: Vec<String>,
    /// Images per class asked for.
    pub per_class: usize,
    pub norm: Normalization,
    /// Where the normalization comes from (the run's config, the dataset's statistics).
    pub norm_source: &'static str,
}

/// One SE block's results.
#[derive(Debug, Clone)]
pub struct BlockResult {
    pub info: GateInfo,
    pub stats: GateStats,
    /// Per class: the mean gate of each channel (`None` for a class without images).
    pub class_means: Vec<Option<Vec<f64>>>,
    /// The gates of the sample images, one row per sample.
    pub samples: Vec<Vec<f32>>,
}

/// The analysis of every SE block of a model over a set of labelled images.
#[derive(Debug, Clone)]
pub struct SeAnalysis {
    pub subject: SeSubject,
    pub capture: GateCapture,
    pub blocks: Vec<BlockResult>,
    /// Positions (in the capture) of the sample images shown in the heatmaps.
    pub sample_pos: Vec<usize>,
}

fn f3(v: f64) -> String {
    format!("{v:.3}")
}

impl SeAnalysis {
    /// Statistics of each gate of `gates` (in the order of `capture.gates`), with `samples`
    /// sample images picked round-robin over the classes.
    pub fn new(
        subject: SeSubject,
        gates: &[GateInfo],
        capture: GateCapture,
        samples: usize,
    ) -> Self {
        let classes = subject.classes.len();
        let sample_pos = pick_samples(&capture.labels, classes, samples);
        let blocks = gates
            .iter()
            .zip(&capture.gates)
            .map(|(info, values)| {
                let c = info.channels;
                BlockResult {
                    info: info.clone(),
                    stats: gate_stats(values, c, &capture.labels, classes),
                    class_means: class_means(values, c, &capture.labels, classes),
                    samples: sample_pos
                        .iter()
                        .map(|&p| values[p * c..(p + 1) * c].to_vec())
                        .collect(),
                }
            })
            .collect();
        SeAnalysis {
            subject,
            capture,
            blocks,
            sample_pos,
        }
    }

    fn untrained(&self) -> bool {
        self.subject.weights.untrained()
    }

    /// Top-1 accuracy of the model on the analysed images (a fraction).
    pub fn top1(&self) -> f64 {
        self.capture.correct as f64 / self.capture.labels.len().max(1) as f64
    }

    /// The per-block summary table (printed by the command and shown in the report).
    pub fn summary_table(&self) -> Result<Table, ReportError> {
        let title = format!(
            "SE gates of {} on {} images of {}{}",
            self.subject.model,
            self.capture.labels.len(),
            self.subject.data_source,
            if self.untrained() {
                " — UNTRAINED (random init)"
            } else {
                ""
            }
        );
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
        for (i, b) in self.blocks.iter().enumerate() {
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

    /// The report: the summary, class specificity by depth with a verdict against the chance
    /// level, gate statistics and histograms, and per block the heatmaps of sample images and
    /// of class means.
    pub fn report(&self) -> Result<Report, ReportError> {
        let untrained = self.untrained();
        let tag = if untrained { " (untrained)" } else { "" };
        let classes = &self.subject.classes;
        let cap = &self.capture;
        let n = cap.labels.len();
        let s = &self.subject;
        let blocks = &self.blocks;
        let sample_pos = &self.sample_pos;
        let mut report = Report::new(format!(
            "SE attention of {}{}",
            s.model,
            if untrained {
                " — UNTRAINED, random initialisation"
            } else {
                ""
            }
        ));
        let sec = report.section("");
        if let SeWeights::Random { seed } = s.weights {
            sec.text(format!(
            "**Untrained model.** The weights are a fresh random initialisation (seed {}), not \
             learned: these gates show where training starts, not what the network attends to. \
             Train a model (`effcnn train {} --data ...`) and pass its run folder to see learned \
             attention.",
            seed, s.model
        ));
        }
        let norm = s.norm;
        sec.text(format!(
            "- model: `{}`, {} SE blocks\n- weights: {}\n- data: {} {} images: up to \
         {} per class over {} classes\n- normalization: mean [{:.4}, {:.4}, {:.4}], std [{:.4}, \
         {:.4}, {:.4}] (from {})\n- top-1 on these images: {:.1}%{}",
            s.model,
            blocks.len(),
            s.weights.describe(),
            s.data_source,
            n,
            s.per_class,
            classes.len(),
            norm.mean[0],
            norm.mean[1],
            norm.mean[2],
            norm.std[0],
            norm.std[1],
            norm.std[2],
            s.norm_source,
            100.0 * self.top1(),
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
        sec.table(self.summary_table()?);
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
        Ok(report)
    }

    /// The `gates.json` record: every number of the report, the sample and class-mean gates.
    pub fn to_json(&self) -> Value {
        let s = &self.subject;
        let classes = &s.classes;
        let cap = &self.capture;
        let blocks: Vec<Value> = self
            .blocks
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
            "model": s.model,
            "weights": s.weights.describe(),
            "untrained": s.weights.untrained(),
            "init_seed": match s.weights {
                SeWeights::Random { seed } => json!(seed),
                SeWeights::File(_) => Value::Null,
            },
            "data": s.data_source,
            "split": "test",
            "classes": classes,
            "per_class": s.per_class,
            "images": cap.labels.len(),
            "image_indices": cap.indices,
            "labels": cap.labels,
            "top1": self.top1(),
            "normalization": {"mean": s.norm.mean, "std": s.norm.std, "source": s.norm_source},
            "thresholds": {"low": LOW, "high": HIGH},
            "samples": self.sample_pos.iter().map(|&p| json!({
                "index": cap.indices[p],
                "label": cap.labels[p],
                "class": classes.get(cap.labels[p]),
            })).collect::<Vec<_>>(),
            "blocks": blocks,
        })
    }
}

/// Mean of `f` over the first and the last third of the blocks.
fn thirds(blocks: &[BlockResult], f: impl Fn(&GateStats) -> f64) -> (f64, f64) {
    let n = blocks.len();
    let k = n.div_ceil(3).max(1);
    let mean = |s: &[BlockResult]| s.iter().map(|b| f(&b.stats)).sum::<f64>() / s.len() as f64;
    (mean(&blocks[..k.min(n)]), mean(&blocks[n - k.min(n)..]))
}
