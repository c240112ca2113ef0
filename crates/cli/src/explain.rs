//! `effcnn explain`: the curriculum's explanations (Exercises 1.1, 2.1–2.2, 3.1–3.3, 4.7) with
//! numbers computed by the analyzer, optionally for a layer of a real zoo model.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use effcnn_arch::calc::{self, Dims};
use effcnn_arch::graph::BlockKind;
use effcnn_arch::{diagram, resolve, Graph, Options};

use effcnn_report::calc_table;

use crate::common::{out, render, Format};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Topic {
    /// Depthwise-separable convolution (MobileNet).
    Dwsep,
    /// Squeeze-and-excitation (SENet).
    Se,
    /// Channel shuffle with pointwise group convolutions (ShuffleNet).
    Shuffle,
    /// Inverted residual with linear bottleneck (MobileNetV2) vs MobileNetV1 and ResNet blocks.
    InvertedResidual,
}

#[derive(Args)]
pub struct ExplainArgs {
    pub topic: Topic,
    /// Take the numbers from this zoo model (default: the curriculum's example sizes).
    #[arg(long)]
    pub model: Option<String>,
    /// Block path in that model (e.g. blocks.3.0); default: the first block that fits the topic.
    #[arg(long)]
    pub block: Option<String>,
}

/// Find a block of the topic's kind in a graph (the graph's typed blocks) and return its dims,
/// the topic's extra number (SE ratio r, shuffle groups g, expansion t) and the block name.
fn pick(g: &Graph, topic: Topic, want: Option<&str>) -> Result<(String, Dims, usize)> {
    for b in &g.blocks {
        if want.is_some_and(|w| w != b.path) {
            continue;
        }
        let size = g.nodes[g.nodes[b.nodes.start].inputs[0]].shape.h;
        let dims = |k, cin, cout, size, stride| Dims {
            k,
            cin,
            cout,
            size,
            stride,
        };
        let found = match (topic, &b.kind) {
            (
                Topic::Dwsep,
                &BlockKind::DepthwiseSeparable {
                    cin,
                    cout,
                    k,
                    stride,
                },
            ) => Some((dims(k, cin, cout, size, stride), 0)),
            // An inverted residual without expansion is a depthwise conv and a 1×1 projection.
            (
                Topic::Dwsep,
                &BlockKind::InvertedResidual {
                    expand: false,
                    mid,
                    cout,
                    k,
                    stride,
                    ..
                },
            ) => Some((dims(k, mid, cout, size, stride), 0)),
            (Topic::Se, kind) => kind.se().map(|se| {
                let at = g.nodes[se.nodes.end - 1].shape.h;
                let r = (se.channels / se.squeeze.max(1)).max(1);
                (dims(1, se.channels, se.channels, at, 1), r)
            }),
            // The curriculum's unit: stride 1, c channels in and out.
            (
                Topic::Shuffle,
                &BlockKind::ShuffleV1 {
                    cin,
                    cout,
                    groups,
                    stride: 1,
                    ..
                },
            ) if cin == cout => Some((dims(3, cin, cout, size, 1), groups)),
            (
                Topic::InvertedResidual,
                &BlockKind::InvertedResidual {
                    cin,
                    mid,
                    cout,
                    k,
                    stride,
                    expand: true,
                    ..
                },
            ) => Some((dims(k, cin, cout, size, stride), (mid / cin.max(1)).max(1))),
            _ => None,
        };
        if let Some((d, extra)) = found {
            return Ok((b.path.clone(), d, extra));
        }
    }
    bail!(
        "no block of this kind{} in {}",
        want.map(|b| format!(" at {b}")).unwrap_or_default(),
        g.meta.name
    )
}

pub fn explain(a: ExplainArgs) -> Result<()> {
    let from_model = match &a.model {
        Some(m) => {
            let g = resolve(m, &Options::default())?;
            let (block, d, extra) =
                pick(&g, a.topic, a.block.as_deref()).with_context(|| format!("--model {m}"))?;
            let sub = diagram::render(&g)
                .lines()
                .filter(|l| l.split_whitespace().next() == Some(block.as_str()))
                .collect::<Vec<_>>()
                .join("\n");
            Some((format!("{m} {block}"), d, extra, sub))
        }
        None => None,
    };
    let mut s = String::new();
    match a.topic {
        Topic::Dwsep => {
            let d = from_model.as_ref().map(|f| f.1).unwrap_or(Dims {
                k: 3,
                cin: 128,
                cout: 256,
                size: 56,
                stride: 1,
            });
            s.push_str(DWSEP);
            let dw = calc::depthwise(&d)?;
            let sep = calc::dwsep(&d)?;
            s.push_str(&format!(
                "\nWith K={}, C_in={}, C_out={}, {}×{} input:\n  depthwise: {} filters (one per channel), output {}; {} params, {} MACs\n",
                d.k, d.cin, d.cout, d.size, d.size, d.cin, dw.stages[0].output, dw.params, dw.macs
            ));
            s.push_str(&render(&calc_table(&sep), Format::Table));
        }
        Topic::Se => {
            let (d, r) = from_model.as_ref().map(|f| (f.1, f.2)).unwrap_or((
                Dims {
                    k: 1,
                    cin: 256,
                    cout: 256,
                    size: 56,
                    stride: 1,
                },
                16,
            ));
            s.push_str(SE);
            s.push_str(&format!(
                "\nWith C={}, r={r}, {}×{} input:\n",
                d.cin, d.size, d.size
            ));
            s.push_str(&render(
                &calc_table(&calc::se(d.cin, d.size, r)?),
                Format::Table,
            ));
        }
        Topic::Shuffle => {
            let (d, g) = from_model.as_ref().map(|f| (f.1, f.2)).unwrap_or((
                Dims {
                    k: 3,
                    cin: 240,
                    cout: 240,
                    size: 28,
                    stride: 1,
                },
                3,
            ));
            s.push_str(SHUFFLE);
            s.push_str(&format!(
                "\nWith c={}, g={g}, {}×{} input:\n",
                d.cin, d.size, d.size
            ));
            s.push_str(&render(
                &calc_table(&calc::shuffle_unit(d.cin, d.size, g)?),
                Format::Table,
            ));
            s.push_str("\nThe permutation for G=2, N=3 (see `effcnn shuffle --groups 2 --per-group 3`): a0 a1 a2 | b0 b1 b2 → a0 b0 a1 b1 a2 b2\n");
        }
        Topic::InvertedResidual => {
            let (d, t) = from_model.as_ref().map(|f| (f.1, f.2)).unwrap_or((
                Dims {
                    k: 3,
                    cin: 24,
                    cout: 24,
                    size: 56,
                    stride: 1,
                },
                6,
            ));
            s.push_str(IR);
            s.push_str(&format!(
                "\nWith d′={}, t={t}, d″={}, k={}, stride {}, {}×{} input:\n",
                d.cin, d.cout, d.k, d.stride, d.size, d.size
            ));
            s.push_str(&render(
                &calc_table(&calc::inverted_residual_calc(&d, t)?),
                Format::Table,
            ));
        }
    }
    if let Some((name, _, _, sub)) = from_model {
        s.push_str(&format!("\nThe block in the zoo model ({name}):\n{sub}\n"));
    }
    out(&s)
}

const DWSEP: &str = "\
Depthwise-separable convolution (MobileNet, Howard et al. 2017)

  standard:   C_in×H×W ──[K×K conv, C_out filters of C_in×K×K]──► C_out×H′×W′

  separable:  C_in×H×W ──[depthwise K×K: C_in filters of 1×K×K, groups=C_in]──► C_in×H′×W′
                       ──[pointwise 1×1: C_out filters of C_in×1×1]──────────► C_out×H′×W′

1. Depthwise: one K×K filter per input channel, applied to that channel only; the output has the
   same number of channels as the input (C_in), so C_in filters in all. It filters spatially.
2. Pointwise: a 1×1 convolution that combines the C_in filtered channels into C_out new features.
   It mixes channels, which the depthwise step never does.
Cost (MACs, D_F = output size): standard D_K²·M·N·D_F²; separable D_K²·M·D_F² + M·N·D_F²;
ratio separable/standard = 1/N + 1/D_K² (≈ 8–9× fewer for 3×3).
";

const SE: &str = "\
Squeeze-and-excitation (SENet, Hu et al. 2018)

  X: N×C×H×W ──► squeeze: global average pool ──► z: N×C×1×1   (one descriptor per channel:
                                                                 the channel's mean response)
             ──► excitation: FC C→C/r ─ ReLU ─ FC C/r→C ─ sigmoid ──► s: N×C×1×1 in (0, 1)
                                                                 (how much each channel matters
                                                                  for this input)
  output = X ⊙ s   (channel-wise scaling: every H×W map of channel c is multiplied by s_c)

The gates depend on the input, so the block recalibrates channels per image. Cost: 2C²/r
params and MACs — tiny next to the convolutions it wraps; the scale multiply is memory-bound.
Width rules differ: SENet C/r; EfficientNet 0.25 × block input; MobileNetV3
make_divisible(0.25 × expanded, 8) with hard-sigmoid; timm SEModule make_divisible(C/16, 8).
";

const SHUFFLE: &str = "\
Channel shuffle with pointwise group convolutions (ShuffleNet, Zhang et al. 2018)

1×1 convolutions dominate the cost of MobileNet-style nets. Grouping them (g groups) divides
their cost by g, but stacked group convs keep each group's information inside that group: an
output channel only ever sees 1/g of the input channels, which weakens the representation.
Channel shuffle fixes this for free: reshape the C = G·N channels to (G, N), transpose to (N, G),
flatten. Each group of the next group conv then receives channels from every previous group.

  unit (stride 1): x ─► gpw 1×1 (g) ─ BN ─ ReLU ─► shuffle ─► dw 3×3 ─ BN ─► gpw 1×1 (g) ─ BN ─(+x)─ ReLU
  unit (stride 2): as above with dw stride 2, shortcut 3×3 avg-pool stride 2, concat instead of add.
";

const IR: &str = "\
Inverted residual with linear bottleneck (MobileNetV2, Sandler et al. 2018)

  ResNet bottleneck:  wide ─► 1×1 reduce ─► 3×3 conv ─► 1×1 expand ─► wide   (+ shortcut on wide)
  MobileNetV1 block:  dw 3×3 ─ BN ─ ReLU ─► pw 1×1 ─ BN ─ ReLU                 (no shortcut)
  Inverted residual:  narrow d′ ─► 1×1 expand ×t ─ ReLU6 ─► dw k×k ─ ReLU6 ─► 1×1 project ─► narrow d″
                      (+ shortcut on the narrow ends when stride 1 and d′ = d″)

It is \"inverted\" because the shortcut connects the thin bottlenecks and the expansion happens
inside; the projection has no activation (linear bottleneck) because ReLU on a low-dimensional
space destroys information. Cost: h·w·d′·t·(d′ + k² + d″).
";
