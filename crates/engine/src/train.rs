//! A compiled CPU training step: the forward pass with batch statistics, softmax cross-entropy
//! and the backward pass of every op, over NHWC buffers allocated once at compile time.
//!
//! [`TrainPlan::compile`] resolves every node's shape for one batch size and allocates the
//! activations and gradients; [`TrainPlan::step`] then reads the current weights (packing them
//! into the GEMM panels each kernel streams), runs forward and backward, and returns the loss,
//! the logits, the gradient of every trainable tensor (PyTorch layout, canonical keys) and the
//! batch statistics of every batch norm. The optimizer, the running statistics and the
//! checkpoints stay with the caller (effcnn-nn / effcnn-train keep them in burn).
//!
//! Dense and grouped convolutions run as GEMMs: forward `im2col(x) · W`; input gradient of a
//! stride-1 convolution as the forward convolution `im2col(dy) · flip(W)ᵀ`, of a strided one
//! `dy · Wᵀ` scattered back (col2im) per image; weight gradient `dyᵀ · im2col(x)` in blocks of
//! rows, `dyᵀ` read in place. 3×3 stride-1 convolutions with at least 8 input and output
//! channels run all three as Winograd transforms instead ([`crate::kernels::wino`]: F(2×2, 3×3)
//! for the forward and the input gradient, F(3×3, 2×2) for the weight gradient).
//! Depthwise convolutions, pooling and the element-wise ops have their own kernels.
//! Every sum over the batch is split into a fixed set of chunks added in order, and every
//! other write belongs to exactly one task, so a step gives the same bits on any thread count.

use effcnn_arch::graph::tensor_suffixes;
use effcnn_arch::liveness::Uses;
use effcnn_arch::{Act, Graph, NodeId, Op, Shape};
use rayon::prelude::*;

use crate::error::EngineError;
use crate::kernels::dw::{self, DwJob, PoolJob, Window};
use crate::kernels::elem::{self, GapJob, GateJob, MapJob};
use crate::kernels::gemm::{self, ASrc, GemmJob, Im2col, PackedB};
use crate::kernels::grad::{self, WinImage};
use crate::kernels::wino::{self, WinoJob};
use crate::kernels::Geom;
use crate::plan::{check_compile, fetch_tensor, split_gemm, PlanOptions, WeightMap, Weights};
use crate::shapes::spatial_shapes;
use crate::simd::Isa;

/// Rows per chunk of a sum over the batch (fixed, so sums do not depend on the thread count).
const CHUNK_ROWS: usize = 1024;
/// Partial sums of a convolution's weight gradient (fixed for the same reason).
const PARTS: usize = 8;
/// Floats of one im2col block of the weight gradient / input gradient (fits in L2).
const BLOCK_FLOATS: usize = 32 * 1024;

/// One training step's inputs.
#[derive(Debug, Clone, Copy)]
pub struct StepInput<'a> {
    /// NCHW float32 images of exactly the compiled dims.
    pub images: &'a [f32],
    /// One class index per image.
    pub labels: &'a [i64],
    /// Label smoothing ε of the cross-entropy (PyTorch semantics).
    pub label_smoothing: f32,
    /// Seed of this step's dropout / drop-path masks.
    pub seed: u64,
}

/// What one training step computed.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// Mean cross-entropy over the batch.
    pub loss: f32,
    /// `batch × classes` logits, row-major.
    pub logits: Vec<f32>,
    /// d loss / d tensor for every trainable tensor, by canonical key, PyTorch shapes.
    pub grads: WeightMap,
    /// For every batch norm: `<path>.running_mean` = this batch's mean and
    /// `<path>.running_var` = this batch's unbiased variance, per channel.
    pub batch_stats: WeightMap,
}

#[derive(Debug, Clone)]
enum TOp {
    Input,
    Conv {
        conv: effcnn_arch::Conv,
        geom: Geom,
        depthwise: bool,
        /// 1×1, stride 1, no padding: the GEMM reads the input rows in place.
        direct: bool,
        /// Stride 1 (not direct): the input gradient as a forward convolution of `dy` with the
        /// flipped, transposed kernel, over this geometry (no col2im scatter).
        flip: Option<Box<Geom>>,
        /// F(2×2, 3×3) Winograd for the forward and (over the flipped geometry) the input
        /// gradient.
        wino: Option<Box<Geom>>,
    },
    Linear {
        fin: usize,
        fout: usize,
        bias: bool,
        /// Pixels of the flattened input (features are NCHW-ordered in PyTorch's weight).
        hw: usize,
        cx: usize,
    },
    Bn {
        eps: f64,
    },
    Act(Act),
    Pool {
        geom: Geom,
        max: bool,
        include_pad: bool,
    },
    Gap,
    Add,
    Scale,
    Concat,
    Slice {
        start: usize,
    },
    Shuffle {
        groups: usize,
    },
    /// Dropout (per element) or drop-path (per sample) with keep probability `1 − p`.
    Drop {
        p: f64,
        per_sample: bool,
    },
}

impl TOp {
    /// The op's name in step profiles.
    fn kind(&self) -> &'static str {
        match self {
            TOp::Input => "input",
            TOp::Conv {
                depthwise: true, ..
            } => "depthwise conv",
            TOp::Conv { wino: Some(_), .. } => "conv, Winograd",
            TOp::Conv { .. } => "conv",
            TOp::Linear { .. } => "linear",
            TOp::Bn { .. } => "batch norm",
            TOp::Act(_) => "activation",
            TOp::Pool { max: true, .. } => "max pool",
            TOp::Pool { .. } => "avg pool",
            TOp::Gap => "global pool",
            TOp::Add => "add",
            TOp::Scale => "scale",
            TOp::Concat => "concat",
            TOp::Slice { .. } => "slice",
            TOp::Shuffle { .. } => "shuffle",
            TOp::Drop { .. } => "dropout",
        }
    }
}

#[derive(Debug, Clone)]
struct TNode {
    id: NodeId,
    op: TOp,
    /// Root nodes of the inputs (aliases resolved).
    inputs: Vec<usize>,
    /// Per input: add to its gradient (another consumer wrote it first) rather than write it.
    acc: Vec<bool>,
    shape: Shape,
    /// A batch norm fused with the ReLU / ReLU6 that is its only consumer: that activation and
    /// its node, whose output (and output gradient) this batch norm writes (and reads).
    fused: Option<(Act, NodeId)>,
    /// An activation fused into the batch norm before it: no step of its own.
    absorbed: bool,
}

/// Per-step state of a node.
#[derive(Debug, Default)]
struct Aux {
    /// Convolution / linear: GEMM panels of `W` (forward) and `Wᵀ` (input gradient) per group.
    fwd: Vec<PackedB>,
    bwd: Vec<PackedB>,
    /// Winograd convolution: the 16 packings of the forward's and the input gradient's
    /// transformed kernels.
    wf: Vec<PackedB>,
    wb: Vec<PackedB>,
    /// Depthwise weights `[kh·kw][c]`.
    dw: Vec<f32>,
    bias: Vec<f32>,
    /// Batch norm: batch mean, 1/√(var + ε), unbiased variance, γ.
    mean: Vec<f32>,
    invstd: Vec<f32>,
    var_unbiased: Vec<f32>,
    gamma: Vec<f32>,
    /// Batch norm: this step's `γ / σ` and `β − mean · γ / σ` (what the forward applied).
    scale: Vec<f32>,
    shift: Vec<f32>,
    /// Dropout: the mask, already divided by the keep probability.
    mask: Vec<f32>,
    /// This step's gradients of the weight (PyTorch layout; the linear layer's in NHWC feature
    /// order, `fin × fout`) and of the bias (or β); γ's for batch norm.
    gw: Vec<f32>,
    gb: Vec<f32>,
}

/// A raw pointer that may cross threads (tasks write disjoint parts).
#[derive(Clone, Copy)]
struct P(*mut f32);
unsafe impl Send for P {}
unsafe impl Sync for P {}
impl P {
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

struct Scratch {
    b: Vec<f32>,
    packed: Option<PackedB>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = const {
        std::cell::RefCell::new(Scratch { b: Vec::new(), packed: None })
    };
}

/// A graph compiled into a training step for one input size.
pub struct TrainPlan {
    graph: Graph,
    isa: Isa,
    threads: usize,
    dims: [usize; 4],
    nodes: Vec<TNode>,
    /// Node index → position in `nodes` (roots only).
    pos: Vec<Option<usize>>,
    output: usize,
    vals: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
    aux: Vec<Aux>,
    /// Partial sums of weight gradients, reused by every layer and step.
    wbuf: Vec<f32>,
}

impl std::fmt::Debug for TrainPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainPlan")
            .field("model", &self.graph.meta.name)
            .field("isa", &self.isa)
            .field("dims", &self.dims)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

/// The input gradient of a stride-1 convolution as a forward convolution over its output
/// gradient: `dx[i] = Σ dy[i + pt − ky·d] · W[ky]` is a correlation with the flipped kernel and
/// top/left padding `(k − 1)·d − pad`. Its GEMM has `cin_g` output columns: `None` where they
/// leave most of a panel of `nr` empty (narrower layers keep the col2im GEMM, whose columns are
/// all `kh·kw·cin_g`), for strides > 1 and for a padding wider than the kernel's reach.
fn flipped(g: &Geom, cin_g: usize, nr: usize) -> Option<Geom> {
    let reach = |k: usize| (k - 1) * g.dilation;
    let fills = cin_g.is_multiple_of(nr) || cin_g >= 4 * nr;
    let fits = g.pt <= reach(g.kh) && g.pl <= reach(g.kw);
    (fills && fits && g.sh == 1 && g.sw == 1).then(|| Geom {
        h: g.oh,
        w: g.ow,
        oh: g.h,
        ow: g.w,
        kh: g.kh,
        kw: g.kw,
        sh: 1,
        sw: 1,
        pt: reach(g.kh) - g.pt,
        pl: reach(g.kw) - g.pl,
        dilation: g.dilation,
    })
}

/// `EFFCNN_WINOGRAD`: unset, `on` or `1` run 3×3 stride-1 layers as Winograd transforms;
/// `off` or `0` keep them on the im2col GEMMs (for A/B runs); any other value is an error, so a
/// misspelt switch cannot silently measure the wrong path.
fn winograd_switch(value: Option<&str>) -> Result<bool, EngineError> {
    match value {
        None | Some("on" | "1") => Ok(true),
        Some("off" | "0") => Ok(false),
        Some(other) => Err(EngineError::Setting(format!(
            "EFFCNN_WINOGRAD={other:?}: expected on, off, 1 or 0"
        ))),
    }
}

/// Check the environment switches the training step reads (`EFFCNN_WINOGRAD`), so a caller can
/// refuse a bad value before it starts writing a run.
pub fn check_switches() -> Result<(), EngineError> {
    winograd_switch(std::env::var("EFFCNN_WINOGRAD").ok().as_deref()).map(|_| ())
}

/// The flipped geometry of a convolution that runs as Winograd F(2×2, 3×3) in the training
/// step, or `None`. Layers with few channels (a 3-channel stem) keep the im2col GEMM, whose
/// short rows cost less than the transforms (measured: dwsep_cnn's stem 4.5 → 5.8 ms forward
/// and 4.3 → 9.0 ms backward as Winograd).
fn winograd(c: &effcnn_arch::Conv, g: &Geom, enabled: bool) -> Option<Geom> {
    let wide = c.cin >= 8 && c.cout >= 8;
    (enabled && wide && wino::applies(c, g)).then(|| Geom {
        h: g.oh,
        w: g.ow,
        oh: g.h,
        ow: g.w,
        pt: 2 - g.pt,
        pl: 2 - g.pl,
        ..*g
    })
}

/// Ops that are views of their input in training: flatten, and dropout or drop-path that drop
/// nothing.
fn is_alias(op: &Op) -> bool {
    match op {
        Op::Flatten => true,
        Op::Dropout { p } | Op::DropPath { p } => *p == 0.0,
        _ => false,
    }
}

impl TrainPlan {
    /// Compile `graph` for training batches of `dims` = `[batch, channels, height, width]`.
    pub fn compile(
        graph: &Graph,
        dims: [usize; 4],
        opts: PlanOptions,
    ) -> Result<TrainPlan, EngineError> {
        check_compile(graph, dims, opts.isa)?;
        let use_wino = winograd_switch(std::env::var("EFFCNN_WINOGRAD").ok().as_deref())?;
        let [n, _, h, w] = dims;
        let shapes = spatial_shapes(graph, h, w)?;
        let nn = graph.nodes.len();
        let uses = Uses::with_views(graph, is_alias);
        let root: Vec<NodeId> = (0..nn).map(|i| uses.root(i)).collect();
        let mut nodes = Vec::new();
        let mut pos = vec![None; nn];
        for (i, node) in graph.nodes.iter().enumerate() {
            if is_alias(&node.op) {
                continue;
            }
            let inputs: Vec<usize> = node.inputs.iter().map(|&j| root[j]).collect();
            let s = shapes[i];
            let inp = inputs.first().map(|&j| shapes[j]);
            let op = match &node.op {
                Op::Input => TOp::Input,
                Op::Conv(cv) => {
                    let x = inp.expect("a conv has an input");
                    let geom = Geom::conv(cv, (x.h, x.w), (s.h, s.w));
                    let (t, l) = (geom.pt, geom.pl);
                    let direct = cv.k == (1, 1) && cv.stride == (1, 1) && t == 0 && l == 0;
                    TOp::Conv {
                        conv: *cv,
                        geom,
                        depthwise: cv.groups == cv.cin && cv.cout == cv.cin && cv.groups > 1,
                        direct,
                        flip: if direct {
                            None
                        } else {
                            flipped(&geom, cv.cin / cv.groups, opts.isa.nr()).map(Box::new)
                        },
                        wino: winograd(cv, &geom, use_wino).map(Box::new),
                    }
                }
                Op::Linear { fin, fout, bias } => {
                    let x = inp.expect("a linear layer has an input");
                    if x.c * x.h * x.w != *fin {
                        return Err(EngineError::Unsupported {
                            path: node.path.clone(),
                            what: format!("a linear layer of {fin} inputs over {x:?}"),
                        });
                    }
                    TOp::Linear {
                        fin: *fin,
                        fout: *fout,
                        bias: *bias,
                        hw: x.h * x.w,
                        cx: x.c,
                    }
                }
                Op::BatchNorm { eps, .. } => TOp::Bn { eps: *eps },
                Op::Act { act } => TOp::Act(*act),
                Op::MaxPool { k, stride, pad, .. } | Op::AvgPool { k, stride, pad, .. } => {
                    let x = inp.expect("a pool has an input");
                    let geom = Geom::pool(*k, *stride, *pad, (x.h, x.w), (s.h, s.w));
                    let (max, include_pad) = match node.op {
                        Op::AvgPool {
                            count_include_pad, ..
                        } => (false, count_include_pad),
                        _ => (true, false),
                    };
                    TOp::Pool {
                        geom,
                        max,
                        include_pad,
                    }
                }
                Op::GlobalAvgPool => TOp::Gap,
                Op::Add => TOp::Add,
                Op::Scale => TOp::Scale,
                Op::Concat => TOp::Concat,
                Op::Slice { start, .. } => TOp::Slice { start: *start },
                Op::Shuffle { groups } => TOp::Shuffle { groups: *groups },
                Op::Dropout { p } => TOp::Drop {
                    p: *p,
                    per_sample: false,
                },
                Op::DropPath { p } => TOp::Drop {
                    p: *p,
                    per_sample: true,
                },
                Op::Flatten => unreachable!("flatten is an alias"),
            };
            pos[i] = Some(nodes.len());
            nodes.push(TNode {
                id: i,
                op,
                acc: vec![false; inputs.len()],
                inputs,
                shape: s,
                fused: None,
                absorbed: false,
            });
        }
        let output = root[graph.output];
        let out_shape = shapes[output];
        if out_shape.h * out_shape.w != 1 {
            return Err(EngineError::Unsupported {
                path: graph.nodes[output].path.clone(),
                what: "a loss over a spatial output".into(),
            });
        }
        // Batch norm → ReLU/ReLU6 as one step when the activation is the batch norm's only
        // consumer: the forward writes the activation's output, the backward masks by it.
        if opts.fuse {
            let mut consumers = vec![Vec::new(); nn];
            for (t, node) in nodes.iter().enumerate() {
                for &j in &node.inputs {
                    consumers[j].push(t);
                }
            }
            for t in 0..nodes.len() {
                let id = nodes[t].id;
                if !matches!(nodes[t].op, TOp::Bn { .. }) || id == output {
                    continue;
                }
                if let [a] = consumers[id].as_slice() {
                    let a = *a;
                    if let TOp::Act(act @ (Act::Relu | Act::Relu6)) = nodes[a].op {
                        if nodes[a].inputs.len() == 1 {
                            nodes[t].fused = Some((act, nodes[a].id));
                            nodes[a].absorbed = true;
                        }
                    }
                }
            }
        }
        // Which consumer writes each gradient first: the backward pass runs in reverse order.
        let mut written = vec![false; nn];
        written[output] = true;
        for t in (0..nodes.len()).rev() {
            let id = nodes[t].id;
            if !written[id] {
                continue; // no gradient reaches this node
            }
            for s in 0..nodes[t].inputs.len() {
                let j = nodes[t].inputs[s];
                nodes[t].acc[s] = written[j];
                written[j] = true;
            }
        }
        let fused_bn: Vec<bool> = (0..nn)
            .map(|i| pos[i].is_some_and(|t| nodes[t].fused.is_some()))
            .collect();
        let vals = (0..nn)
            .map(|i| {
                if pos[i].is_some() && !fused_bn[i] {
                    let s = shapes[i];
                    vec![0.0f32; n * s.c * s.h * s.w]
                } else {
                    Vec::new()
                }
            })
            .collect();
        let grads = (0..nn)
            .map(|i| {
                let needs = pos[i].is_some()
                    && written[i]
                    && !fused_bn[i]
                    && !matches!(graph.nodes[i].op, Op::Input);
                if needs {
                    let s = shapes[i];
                    vec![0.0f32; n * s.c * s.h * s.w]
                } else {
                    Vec::new()
                }
            })
            .collect();
        let aux = (0..nn).map(|_| Aux::default()).collect();
        Ok(TrainPlan {
            graph: graph.clone(),
            isa: opts.isa,
            threads: opts.threads.max(1),
            dims,
            pos,
            nodes,
            output,
            vals,
            grads,
            aux,
            wbuf: Vec::new(),
        })
    }

    /// The input dimensions this plan was compiled for.
    pub fn dims(&self) -> [usize; 4] {
        self.dims
    }

    /// Bytes of activations and gradients held between steps.
    pub fn buffer_bytes(&self) -> usize {
        4 * (self.vals.iter().map(Vec::len).sum::<usize>()
            + self.grads.iter().map(Vec::len).sum::<usize>())
    }

    /// Run one step with `weights` (read fresh every step).
    pub fn step(
        &mut self,
        weights: &dyn Weights,
        input: &StepInput,
    ) -> Result<StepOutput, EngineError> {
        let [n, c, h, w] = self.dims;
        if input.images.len() != n * c * h * w {
            return Err(EngineError::BadInput(format!(
                "this training plan of {} was compiled for batches {n}×{c}×{h}×{w} ({} values), \
                 got {} values",
                self.graph.meta.name,
                n * c * h * w,
                input.images.len()
            )));
        }
        let k = self.graph.nodes[self.output].shape.c;
        if input.labels.len() != n {
            return Err(EngineError::BadInput(format!(
                "{} labels for a batch of {n}",
                input.labels.len()
            )));
        }
        if let Some(&bad) = input.labels.iter().find(|&&l| l < 0 || l as usize >= k) {
            return Err(EngineError::BadInput(format!(
                "label {bad} is outside the model's {k} classes"
            )));
        }
        // EFFCNN_STEP_PROFILE=1: every step prints each node's forward and backward time.
        let mut prof = std::env::var_os("EFFCNN_STEP_PROFILE").map(|_| StepProfile::default());
        let t0 = std::time::Instant::now();
        self.load_weights(weights)?;
        if let Some(p) = prof.as_mut() {
            p.rows
                .push(("(load weights)".into(), "step", t0.elapsed().as_secs_f64()));
        }
        for t in 0..self.nodes.len() {
            if !self.nodes[t].absorbed {
                let t1 = std::time::Instant::now();
                self.forward(t, input);
                if let Some(p) = prof.as_mut() {
                    p.record(self, t, "forward", t1);
                }
            }
        }
        let (loss, logits) = self.loss(input);
        for t in (0..self.nodes.len()).rev() {
            let d = self.dy_node(t);
            if !self.nodes[t].absorbed && (!self.grads[d].is_empty() || d == self.output) {
                let t1 = std::time::Instant::now();
                self.backward(t);
                if let Some(p) = prof.as_mut() {
                    p.record(self, t, "backward", t1);
                }
            }
        }
        let t1 = std::time::Instant::now();
        let (grads, batch_stats) = self.collect(weights)?;
        if let Some(mut p) = prof {
            p.rows
                .push(("(collect)".into(), "step", t1.elapsed().as_secs_f64()));
            p.print(t0);
        }
        Ok(StepOutput {
            loss,
            logits,
            grads,
            batch_stats,
        })
    }

    /// The node whose output (and gradient) node `t`'s step writes (and reads): itself, or for a
    /// batch norm fused with its activation, the activation.
    fn dy_node(&self, t: usize) -> NodeId {
        self.nodes[t].fused.map_or(self.nodes[t].id, |(_, a)| a)
    }

    fn shape(&self, id: NodeId) -> Shape {
        self.nodes[self.pos[id].expect("a root node")].shape
    }

    /// Run `f(t)` for `t in 0..tasks`, split over the pool when it pays.
    fn par(&self, tasks: usize, f: impl Fn(usize) + Sync + Send) {
        if self.threads <= 1 || tasks <= 1 {
            (0..tasks).for_each(f);
        } else {
            (0..tasks).into_par_iter().for_each(f);
        }
    }

    /// Run `f(r0, r1)` over fixed chunks of `rows` rows, in parallel.
    fn par_rows(&self, rows: usize, f: impl Fn(usize, usize) + Sync + Send) {
        let chunks = rows.div_ceil(CHUNK_ROWS);
        self.par(chunks, |t| {
            let r0 = t * CHUNK_ROWS;
            f(r0, (r0 + CHUNK_ROWS).min(rows))
        });
    }

    /// Per-channel sums of `f(r0, r1, out)` over fixed row chunks, added in order in f64.
    fn chunk_sums(
        &self,
        rows: usize,
        c: usize,
        f: impl Fn(usize, usize, *mut f32) + Sync + Send,
    ) -> Vec<f64> {
        let chunks = rows.div_ceil(CHUNK_ROWS).max(1);
        let mut part = vec![0.0f32; chunks * c];
        let pp = P(part.as_mut_ptr());
        self.par(chunks, |t| {
            let r0 = t * CHUNK_ROWS;
            f(r0, (r0 + CHUNK_ROWS).min(rows), pp.at(t * c));
        });
        let mut out = vec![0.0f64; c];
        for ch_part in part.chunks(c) {
            for (o, &v) in out.iter_mut().zip(ch_part) {
                *o += v as f64;
            }
        }
        out
    }

    fn load_weights(&mut self, weights: &dyn Weights) -> Result<(), EngineError> {
        let g = &self.graph;
        let nr = self.isa.nr();
        for t in 0..self.nodes.len() {
            let id = self.nodes[t].id;
            let aux = &mut self.aux[id];
            match &self.nodes[t].op {
                TOp::Conv {
                    conv,
                    depthwise,
                    direct,
                    flip,
                    wino,
                    ..
                } => {
                    // A direct convolution's input gradient is the 1×1 case of the flip.
                    let flip = &(flip.is_some() || *direct);
                    let wt = fetch_tensor(g, weights, id, "weight")?;
                    aux.bias = if conv.bias {
                        fetch_tensor(g, weights, id, "bias")?.to_vec()
                    } else {
                        vec![0.0; conv.cout]
                    };
                    let (kh, kw) = conv.k;
                    let taps = kh * kw;
                    if *depthwise {
                        let c = conv.cout;
                        aux.dw.resize(taps * c, 0.0);
                        for ch in 0..c {
                            for tap in 0..taps {
                                aux.dw[tap * c + ch] = wt[ch * taps + tap];
                            }
                        }
                    } else {
                        let (cin_g, cout_g) = (conv.cin / conv.groups, conv.cout / conv.groups);
                        let k = taps * cin_g;
                        let k_out = taps * (conv.cout / conv.groups);
                        let bias = &aux.bias;
                        // PyTorch's [co][ci][kh][kw], `ci` within the group.
                        let w =
                            |co: usize, ci: usize, tap: usize| wt[(co * cin_g + ci) * taps + tap];
                        if wino.is_some() {
                            // One group (`wino::applies`), 3×3: no im2col packings needed.
                            let (cin, cout) = (conv.cin, conv.cout);
                            let kernel = |co: usize, ci: usize, flip: bool| {
                                let tap = |t: usize| w(co, ci, if flip { 8 - t } else { t });
                                [0, 1, 2].map(|ky| [0, 1, 2].map(|kx| tap(ky * 3 + kx)))
                            };
                            wino::pack_weights(&mut aux.wf, nr, cin, cout, |co, ci| {
                                kernel(co, ci, false)
                            });
                            // The input gradient: from dy's channel `co` to dx's `ci`, the
                            // kernel flipped in both directions.
                            wino::pack_weights(&mut aux.wb, nr, cout, cin, |ci, co| {
                                kernel(co, ci, true)
                            });
                            continue;
                        }
                        aux.fwd.resize_with(conv.groups, || PackedB::empty(nr));
                        aux.bwd.resize_with(conv.groups, || PackedB::empty(nr));
                        for gi in 0..conv.groups {
                            aux.fwd[gi].pack_into(
                                k,
                                cout_g,
                                |col, kk| w(gi * cout_g + col, kk % cin_g, kk / cin_g),
                                |col| bias[gi * cout_g + col],
                            );
                            if *flip {
                                // B[(tap', co)][ci] = W[co][ci][taps − 1 − tap'] (the kernel
                                // flipped in both directions, cin and cout swapped).
                                aux.bwd[gi].pack_into(
                                    k_out,
                                    cin_g,
                                    |col, kk| {
                                        w(gi * cout_g + kk % cout_g, col, taps - 1 - kk / cout_g)
                                    },
                                    |_| 0.0,
                                );
                            } else {
                                aux.bwd[gi].pack_into(
                                    cout_g,
                                    k,
                                    |col, kk| w(gi * cout_g + kk, col % cin_g, col / cin_g),
                                    |_| 0.0,
                                );
                            }
                        }
                    }
                }
                TOp::Linear {
                    fin,
                    fout,
                    bias,
                    hw,
                    cx,
                } => {
                    let (fin, fout, hw, cx) = (*fin, *fout, *hw, *cx);
                    let wt = fetch_tensor(g, weights, id, "weight")?;
                    aux.bias = if *bias {
                        fetch_tensor(g, weights, id, "bias")?.to_vec()
                    } else {
                        vec![0.0; fout]
                    };
                    // Feature j of the NHWC rows is PyTorch's feature perm(j).
                    let perm = |j: usize| (j % cx) * hw + j / cx;
                    let b = &aux.bias;
                    aux.fwd.resize_with(1, || PackedB::empty(nr));
                    aux.bwd.resize_with(1, || PackedB::empty(nr));
                    aux.fwd[0].pack_into(
                        fin,
                        fout,
                        |col, kk| wt[col * fin + perm(kk)],
                        |col| b[col],
                    );
                    aux.bwd[0].pack_into(fout, fin, |col, kk| wt[kk * fin + perm(col)], |_| 0.0);
                }
                TOp::Bn { .. } => {
                    aux.gamma = fetch_tensor(g, weights, id, "weight")?.to_vec();
                    let beta = fetch_tensor(g, weights, id, "bias")?;
                    // `bias` holds β until the forward pass turns it into the shift.
                    aux.bias = beta.to_vec();
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn val_ptr(&self, id: NodeId) -> *mut f32 {
        self.vals[id].as_ptr() as *mut f32
    }

    fn grad_ptr(&self, id: NodeId) -> *mut f32 {
        self.grads[id].as_ptr() as *mut f32
    }

    fn forward(&mut self, t: usize, input: &StepInput) {
        let node = self.nodes[t].clone();
        let id = node.id;
        let s = node.shape;
        let n = self.dims[0];
        let rows = n * s.h * s.w;
        let isa = self.isa;
        let y = self.val_ptr(id);
        let x = node.inputs.first().map(|&j| self.val_ptr(j));
        // SAFETY (whole match): every buffer was sized at compile time for its node's shape at
        // the compiled batch; tasks write disjoint rows or channels of `y`.
        unsafe {
            match &node.op {
                TOp::Input => elem::nchw_to_nhwc(n, s.c, s.h * s.w, input.images.as_ptr(), y, s.c),
                TOp::Conv {
                    conv,
                    geom,
                    depthwise,
                    direct,
                    wino,
                    ..
                } => {
                    let x = x.expect("input");
                    let aux = &self.aux[id];
                    if wino.is_some() {
                        self.winograd(x, conv.cin, geom, &aux.wf, aux.bias.as_ptr(), y, s.c, false);
                    } else if *depthwise {
                        let job = DwJob {
                            g: Window {
                                x,
                                ldx: conv.cin,
                                y,
                                ldy: s.c,
                                n,
                                c: s.c,
                                s: *geom,
                            },
                            w: aux.dw.as_ptr(),
                            bias: aux.bias.as_ptr(),
                            act: None,
                        };
                        self.par(job.g.tasks(), |t| dw::dw_task(isa, &job, t));
                    } else {
                        let (cin_g, cout_g) = (conv.cin / conv.groups, conv.cout / conv.groups);
                        for (gi, b) in aux.fwd.iter().enumerate() {
                            let a = if *direct {
                                ASrc::Direct {
                                    a: x.add(gi * cin_g),
                                    lda: conv.cin,
                                }
                            } else {
                                ASrc::Im2col(Im2col {
                                    x,
                                    ldx: conv.cin,
                                    c0: gi * cin_g,
                                    cin: cin_g,
                                    s: *geom,
                                })
                            };
                            self.gemm(rows, a, b, y.add(gi * cout_g), s.c, false);
                        }
                    }
                }
                TOp::Linear { fin, .. } => {
                    let x = x.expect("input");
                    let a = ASrc::Direct { a: x, lda: *fin };
                    self.gemm(n, a, &self.aux[id].fwd[0], y, s.c, false);
                }
                TOp::Bn { eps } => {
                    let x = x.expect("input");
                    let c = s.c;
                    let xp = P(x);
                    let sums = self.col_sums(rows, c, x);
                    let m = rows as f64;
                    let mean: Vec<f32> = sums.iter().map(|v| (v / m) as f32).collect();
                    let mp = P(mean.as_ptr() as *mut f32);
                    let sq = self.chunk_sums(rows, c, |r0, r1, out| {
                        grad::col_sums(isa, r1 - r0, c, xp.at(r0 * c), c, mp.at(0), true, out)
                    });
                    let aux = &mut self.aux[id];
                    let var: Vec<f64> = sq.iter().map(|v| v / m).collect();
                    aux.invstd = var
                        .iter()
                        .map(|v| (1.0 / (v + eps).sqrt()) as f32)
                        .collect();
                    aux.var_unbiased = sq.iter().map(|v| (v / (m - 1.0).max(1.0)) as f32).collect();
                    let scale: Vec<f32> = (0..c).map(|ch| aux.gamma[ch] * aux.invstd[ch]).collect();
                    let shift: Vec<f32> = (0..c)
                        .map(|ch| aux.bias[ch] - mean[ch] * scale[ch])
                        .collect();
                    aux.mean = mean;
                    let (act, y) = match node.fused {
                        Some((a, out)) => (Some(a), self.val_ptr(out)),
                        None => (None, y),
                    };
                    self.map(rows, c, x, Some((&scale, &shift)), act, None, y);
                    let aux = &mut self.aux[id];
                    aux.scale = scale;
                    aux.shift = shift;
                }
                TOp::Act(a) => self.map(rows, s.c, x.expect("input"), None, Some(*a), None, y),
                TOp::Add => {
                    let mut acc = self.val_ptr(node.inputs[0]);
                    for &j in &node.inputs[1..] {
                        let r = self.val_ptr(j);
                        self.map(rows, s.c, acc, None, None, Some(r), y);
                        acc = y;
                    }
                }
                TOp::Pool {
                    geom,
                    max,
                    include_pad,
                } => {
                    let job = PoolJob {
                        g: Window {
                            x: x.expect("input"),
                            ldx: s.c,
                            y,
                            ldy: s.c,
                            n,
                            c: s.c,
                            s: *geom,
                        },
                        max: *max,
                        include_pad: *include_pad,
                    };
                    self.par(job.g.tasks(), |t| dw::pool_task(isa, &job, t));
                }
                TOp::Gap => {
                    let xs = self.shape(node.inputs[0]);
                    let job = GapJob {
                        n,
                        hw: xs.h * xs.w,
                        c: s.c,
                        x: x.expect("input"),
                        ldx: s.c,
                        y,
                        ldy: s.c,
                    };
                    self.par(n, |t| elem::gap_task(isa, &job, t));
                }
                TOp::Scale => {
                    let job = GateJob {
                        n,
                        hw: s.h * s.w,
                        c: s.c,
                        x: x.expect("input"),
                        ldx: s.c,
                        gate: self.val_ptr(node.inputs[1]),
                        ldg: s.c,
                        y,
                        ldy: s.c,
                        rc: CHUNK_ROWS,
                    };
                    self.par(job.tasks(), |t| elem::gate_task(isa, &job, t));
                }
                TOp::Concat => {
                    let mut coff = 0;
                    for &j in &node.inputs {
                        let cj = self.shape(j).c;
                        elem::copy_rows(rows, cj, self.val_ptr(j), cj, y.add(coff), s.c);
                        coff += cj;
                    }
                }
                TOp::Slice { start } => {
                    let cx = self.shape(node.inputs[0]).c;
                    elem::copy_rows(rows, s.c, x.expect("input").add(*start), cx, y, s.c);
                }
                TOp::Shuffle { groups } => {
                    elem::shuffle_rows(rows, s.c, *groups, x.expect("input"), s.c, y, s.c)
                }
                TOp::Drop { p, per_sample } => {
                    let total = rows * s.c;
                    let per = if *per_sample { total / n } else { 1 };
                    let keep = 1.0 - *p;
                    let seed = input.seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let mask: Vec<f32> = (0..total)
                        .map(|i| {
                            let u = unit(seed, (i / per) as u64);
                            if u < keep {
                                (1.0 / keep) as f32
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    let x = x.expect("input");
                    for (i, &m) in mask.iter().enumerate() {
                        *y.add(i) = *x.add(i) * m;
                    }
                    self.aux[id].mask = mask;
                }
            }
        }
    }

    /// `out[rows × ncols] (+)= A · B (+ bias)` split over the pool; `acc` adds to `out`.
    ///
    /// # Safety
    /// `a`, `out` must be valid for the GEMM's geometry.
    unsafe fn gemm(&self, m: usize, a: ASrc, b: &PackedB, out: *mut f32, ldc: usize, acc: bool) {
        let (mc, pc) = split_gemm(m, b.panels(), self.isa.mr(), self.threads);
        let job = GemmJob {
            m,
            a,
            b,
            out,
            ldc,
            act1: None,
            res: acc.then_some((out as *const f32, ldc)),
            act2: None,
            mc,
            pc,
        };
        let isa = self.isa;
        self.par(job.tasks(), |t| gemm::gemm_task(isa, &job, t));
    }

    /// `out (+)= conv(x) + bias` as Winograd F(2×2, 3×3) over the batch (`u` the 16 packings
    /// of the transformed kernel, `x` NHWC with `cin` channels, `out` with `cout`).
    ///
    /// # Safety
    /// `x`, `out` (and `bias`, unless null) must be valid for the geometry.
    #[allow(clippy::too_many_arguments)]
    unsafe fn winograd(
        &self,
        x: *const f32,
        cin: usize,
        geom: &Geom,
        u: &[PackedB],
        bias: *const f32,
        out: *mut f32,
        cout: usize,
        acc: bool,
    ) {
        let job = WinoJob {
            isa: self.isa,
            x,
            ldx: cin,
            cin,
            n: self.dims[0],
            s: *geom,
            u,
            bias,
            out,
            ldc: cout,
            cout,
            acc,
            tt: WinoJob::tile_block(cin, cout),
        };
        let isa = self.isa;
        self.par(job.tasks(), |t| wino::wino_task(isa, &job, t));
    }

    /// The weight gradient of a Winograd convolution (F(3×3, 2×2), [`wino::WinoGradJob`]) in
    /// PyTorch's `[co][ci][3][3]`.
    fn winograd_weight_grad(
        &mut self,
        conv: &effcnn_arch::Conv,
        geom: &Geom,
        x: *mut f32,
        dy: *mut f32,
    ) -> Vec<f32> {
        let (cin, cout) = (conv.cin, conv.cout);
        let mut job = wino::WinoGradJob {
            isa: self.isa,
            x,
            cin,
            dy,
            cout,
            n: self.dims[0],
            s: *geom,
            per: 0,
            tt: WinoJob::tile_block(cin, cout),
        };
        let tiles = job.tiles();
        let parts = PARTS.min(tiles.div_ceil(16)).max(1);
        job.per = tiles.div_ceil(parts);
        let isa = self.isa;
        // SAFETY: `x` and `dy` hold the layer's input and output gradient at the compiled batch;
        // each part writes its own sums.
        let sum = self.part_sums(parts, 16 * cout * cin, |p, out| unsafe {
            wino::wino_grad_part(isa, &job, p, out)
        });
        let mut dw = vec![0.0f32; cout * cin * 9];
        wino::grad_output_transform(&sum, cout, cin, &mut dw);
        dw
    }

    /// `y = act(x · scale + shift) + res` over `rows × c`, contiguous.
    #[allow(clippy::too_many_arguments)]
    unsafe fn map(
        &self,
        rows: usize,
        c: usize,
        x: *const f32,
        affine: Option<(&[f32], &[f32])>,
        act: Option<Act>,
        res: Option<*mut f32>,
        y: *mut f32,
    ) {
        let job = MapJob {
            rows,
            c,
            x,
            ldx: c,
            scale: affine.map_or(std::ptr::null(), |a| a.0.as_ptr()),
            shift: affine.map_or(std::ptr::null(), |a| a.1.as_ptr()),
            act1: act,
            res: res.map_or(std::ptr::null(), |r| r as *const f32),
            ldr: c,
            act2: None,
            y,
            ldy: c,
            rc: CHUNK_ROWS.max(1),
        };
        let isa = self.isa;
        self.par(job.tasks(), |t| elem::map_task(isa, &job, t));
    }

    /// Softmax cross-entropy (label smoothing, mean over the batch) and its gradient.
    fn loss(&mut self, input: &StepInput) -> (f32, Vec<f32>) {
        let n = self.dims[0];
        let k = self.graph.nodes[self.output].shape.c;
        let logits = self.vals[self.output].clone();
        let eps = input.label_smoothing as f64;
        let mut total = 0.0f64;
        let dl = &mut self.grads[self.output];
        for (r, (row, &label)) in logits.chunks(k).zip(input.labels).enumerate() {
            let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let z: f64 = row.iter().map(|&v| (v as f64 - mx).exp()).sum();
            let lz = z.ln() + mx;
            for (j, &v) in row.iter().enumerate() {
                let t = (1.0 - eps) * f64::from(u8::from(j as i64 == label)) + eps / k as f64;
                total -= t * (v as f64 - lz);
                let p = (v as f64 - lz).exp();
                dl[r * k + j] = ((p - t) / n as f64) as f32;
            }
        }
        ((total / n as f64) as f32, logits)
    }

    fn backward(&mut self, t: usize) {
        let node = self.nodes[t].clone();
        let id = node.id;
        let s = node.shape;
        let n = self.dims[0];
        let rows = n * s.h * s.w;
        let isa = self.isa;
        let dy = self.grad_ptr(self.dy_node(t));
        // The gradient buffer of input slot `i`, if that input takes one.
        let dx_of = |i: usize| -> Option<(*mut f32, bool)> {
            let j = node.inputs[i];
            (!self.grads[j].is_empty()).then(|| (self.grad_ptr(j), node.acc[i]))
        };
        // SAFETY (whole match): buffers are sized for their nodes at the compiled batch; tasks
        // write disjoint rows, images or chunk partials.
        unsafe {
            match &node.op {
                TOp::Input => {}
                TOp::Conv {
                    conv,
                    geom,
                    depthwise,
                    direct,
                    flip,
                    wino,
                } => {
                    let x = self.val_ptr(node.inputs[0]);
                    let dx = dx_of(0);
                    if *depthwise {
                        self.dw_backward(id, conv, geom, x, dy, dx);
                    } else {
                        let paths = ConvPaths {
                            direct: *direct,
                            flip: flip.as_deref(),
                            wino: wino.as_deref(),
                        };
                        self.conv_backward(id, conv, geom, paths, x, dy, dx);
                    }
                }
                TOp::Linear { fin, fout, .. } => {
                    let x = self.val_ptr(node.inputs[0]);
                    if let Some((dx, acc)) = dx_of(0) {
                        let a = ASrc::Direct { a: dy, lda: *fout };
                        self.gemm(n, a, &self.aux[id].bwd[0], dx, *fin, acc);
                    }
                    // dW (fin × fout, NHWC feature order) = xᵀ · dy, in one block.
                    // dW (fout × fin, NHWC feature order) = dyᵀ · x.
                    let src = WSrc::Rows { x, ld: *fin, c0: 0 };
                    let part = self.weight_grad(n, *fin, src, dy, *fout, 0, *fout);
                    let db = self.col_sum_f32(n, *fout, dy);
                    let aux = &mut self.aux[id];
                    aux.gw = part;
                    aux.gb = db;
                }
                TOp::Bn { .. } => {
                    let x = self.val_ptr(node.inputs[0]);
                    let c = s.c;
                    let aux = &self.aux[id];
                    let (mp, dyp, xp) = (P(aux.mean.as_ptr() as *mut f32), P(dy), P(x));
                    // A fused activation masks the output gradient where it cut its input.
                    let mask = node.fused.map(|(a, _)| grad::BnMask {
                        scale: aux.scale.as_ptr(),
                        shift: aux.shift.as_ptr(),
                        hi: if a == Act::Relu6 { 6.0 } else { f32::INFINITY },
                    });
                    let mask = &mask;
                    // Σ dy and Σ dy·(x − mean) side by side: one chunked sum of width 2c.
                    let sums = self.chunk_sums(rows, 2 * c, |r0, r1, out| {
                        grad::bn_back_sums(
                            isa,
                            r1 - r0,
                            c,
                            dyp.at(r0 * c),
                            xp.at(r0 * c),
                            mp.at(0),
                            mask.as_ref(),
                            out,
                            out.add(c),
                        )
                    });
                    let (sdy, sdyx) = sums.split_at(c);
                    let m = rows as f64;
                    let aux = &self.aux[id];
                    let a: Vec<f32> = (0..c).map(|ch| aux.gamma[ch] * aux.invstd[ch]).collect();
                    let b: Vec<f32> = sdy.iter().map(|v| (v / m) as f32).collect();
                    let kk: Vec<f32> = (0..c)
                        .map(|ch| {
                            let is = aux.invstd[ch] as f64;
                            (is * is * sdyx[ch] / m) as f32
                        })
                        .collect();
                    if let Some((dx, acc)) = dx_of(0) {
                        let (ap, bp, kp, dxp) = (
                            P(a.as_ptr() as *mut f32),
                            P(b.as_ptr() as *mut f32),
                            P(kk.as_ptr() as *mut f32),
                            P(dx),
                        );
                        self.par_rows(rows, |r0, r1| {
                            grad::bn_back_dx(
                                isa,
                                r1 - r0,
                                c,
                                dyp.at(r0 * c),
                                xp.at(r0 * c),
                                mp.at(0),
                                mask.as_ref(),
                                ap.at(0),
                                bp.at(0),
                                kp.at(0),
                                dxp.at(r0 * c),
                                acc,
                            )
                        });
                    }
                    let aux = &mut self.aux[id];
                    aux.gw = (0..c)
                        .map(|ch| (sdyx[ch] * aux.invstd[ch] as f64) as f32)
                        .collect();
                    aux.gb = sdy.iter().map(|&v| v as f32).collect();
                }
                TOp::Act(a) => {
                    if let Some((dx, acc)) = dx_of(0) {
                        let (xp, yp, dyp, dxp) = (
                            P(self.val_ptr(node.inputs[0])),
                            P(self.val_ptr(id)),
                            P(dy),
                            P(dx),
                        );
                        let c = s.c;
                        let a = *a;
                        self.par_rows(rows, |r0, r1| {
                            let o = r0 * c;
                            grad::act_back(
                                isa,
                                a,
                                (r1 - r0) * c,
                                xp.at(o),
                                yp.at(o),
                                dyp.at(o),
                                dxp.at(o),
                                acc,
                            )
                        });
                    }
                }
                TOp::Add => {
                    for i in 0..node.inputs.len() {
                        if let Some((dx, acc)) = dx_of(i) {
                            self.add_into(rows * s.c, dy, 1.0, dx, acc);
                        }
                    }
                }
                TOp::Pool {
                    geom,
                    max,
                    include_pad,
                } => {
                    if let Some((dx, acc)) = dx_of(0) {
                        let x = P(self.val_ptr(node.inputs[0]));
                        let (dyp, dxp) = (P(dy), P(dx));
                        let c = s.c;
                        let j = WinImage { c, s: *geom };
                        let (ihw, ohw) = (geom.h * geom.w * c, geom.oh * geom.ow * c);
                        let (max, include_pad) = (*max, *include_pad);
                        self.par(n, |img| {
                            let mut best = vec![0.0f32; c];
                            let mut arg = vec![0u32; c];
                            grad::pool_back(
                                isa,
                                &j,
                                max,
                                include_pad,
                                x.at(img * ihw),
                                dyp.at(img * ohw),
                                dxp.at(img * ihw),
                                acc,
                                best.as_mut_ptr(),
                                arg.as_mut_ptr(),
                            )
                        });
                    }
                }
                TOp::Gap => {
                    if let Some((dx, acc)) = dx_of(0) {
                        let xs = self.shape(node.inputs[0]);
                        let hw = xs.h * xs.w;
                        let c = s.c;
                        let (dyp, dxp) = (P(dy), P(dx));
                        let inv = 1.0 / hw as f32;
                        self.par(n, |img| {
                            for p in 0..hw {
                                grad::add_scaled(
                                    isa,
                                    c,
                                    dyp.at(img * c),
                                    inv,
                                    dxp.at((img * hw + p) * c),
                                    acc,
                                );
                            }
                        });
                    }
                }
                TOp::Scale => {
                    let hw = s.h * s.w;
                    let c = s.c;
                    let xp = P(self.val_ptr(node.inputs[0]));
                    let gp = P(self.val_ptr(node.inputs[1]));
                    let dyp = P(dy);
                    if let Some((dx, acc)) = dx_of(0) {
                        let dxp = P(dx);
                        self.par(n, |img| {
                            for p in 0..hw {
                                let o = (img * hw + p) * c;
                                grad::mul_grad(isa, c, dyp.at(o), gp.at(img * c), dxp.at(o), acc);
                            }
                        });
                    }
                    if let Some((dg, acc)) = dx_of(1) {
                        let dgp = P(dg);
                        self.par(n, |img| {
                            let out = dgp.at(img * c);
                            for ch in 0..c {
                                let mut sum = 0.0f32;
                                for p in 0..hw {
                                    let o = (img * hw + p) * c + ch;
                                    sum += *dyp.at(o) * *xp.at(o);
                                }
                                if acc {
                                    *out.add(ch) += sum;
                                } else {
                                    *out.add(ch) = sum;
                                }
                            }
                        });
                    }
                }
                TOp::Concat => {
                    let mut coff = 0;
                    for i in 0..node.inputs.len() {
                        let cj = self.shape(node.inputs[i]).c;
                        if let Some((dx, acc)) = dx_of(i) {
                            for r in 0..rows {
                                grad::add_scaled(
                                    isa,
                                    cj,
                                    dy.add(r * s.c + coff),
                                    1.0,
                                    dx.add(r * cj),
                                    acc,
                                );
                            }
                        }
                        coff += cj;
                    }
                }
                TOp::Slice { start } => {
                    if let Some((dx, acc)) = dx_of(0) {
                        let cx = self.shape(node.inputs[0]).c;
                        if !acc {
                            std::ptr::write_bytes(dx, 0, rows * cx);
                        }
                        for r in 0..rows {
                            grad::add_scaled(
                                isa,
                                s.c,
                                dy.add(r * s.c),
                                1.0,
                                dx.add(r * cx + start),
                                true,
                            );
                        }
                    }
                }
                TOp::Shuffle { groups } => {
                    if let Some((dx, acc)) = dx_of(0) {
                        let (c, g) = (s.c, *groups);
                        let cpg = c / g;
                        for r in 0..rows {
                            let (dr, xr) = (dy.add(r * c), dx.add(r * c));
                            for gi in 0..g {
                                for i in 0..cpg {
                                    let v = *dr.add(i * g + gi);
                                    let o = xr.add(gi * cpg + i);
                                    if acc {
                                        *o += v;
                                    } else {
                                        *o = v;
                                    }
                                }
                            }
                        }
                    }
                }
                TOp::Drop { .. } => {
                    if let Some((dx, acc)) = dx_of(0) {
                        let m = self.aux[id].mask.as_ptr();
                        grad::mul_grad(isa, rows * s.c, dy, m, dx, acc);
                    }
                }
            }
        }
    }

    /// `dx (+)= dy · s` over `len` floats, in parallel chunks.
    unsafe fn add_into(&self, len: usize, dy: *const f32, s: f32, dx: *mut f32, acc: bool) {
        let (dyp, dxp) = (P(dy as *mut f32), P(dx));
        let isa = self.isa;
        let chunk = CHUNK_ROWS * 16;
        self.par(len.div_ceil(chunk), |t| {
            let o = t * chunk;
            grad::add_scaled(isa, chunk.min(len - o), dyp.at(o), s, dxp.at(o), acc)
        });
    }

    /// Per-channel column sums of `rows × c` (contiguous), in fixed chunks.
    fn col_sums(&self, rows: usize, c: usize, x: *const f32) -> Vec<f64> {
        let (xp, isa) = (P(x as *mut f32), self.isa);
        self.chunk_sums(rows, c, |r0, r1, out| unsafe {
            grad::col_sums(
                isa,
                r1 - r0,
                c,
                xp.at(r0 * c),
                c,
                std::ptr::null(),
                false,
                out,
            )
        })
    }

    /// [`TrainPlan::col_sums`] rounded to f32 (bias gradients).
    fn col_sum_f32(&self, rows: usize, c: usize, x: *const f32) -> Vec<f32> {
        self.col_sums(rows, c, x)
            .into_iter()
            .map(|v| v as f32)
            .collect()
    }

    /// `Σ_p f(p)` over `parts` partial sums of `size` floats, added in order (so the result
    /// does not depend on which thread ran which part): `f(p, out)` adds part `p` into `out`
    /// (zeroed, or written whole). The partial sums reuse one buffer across layers and steps.
    fn part_sums(
        &mut self,
        parts: usize,
        size: usize,
        f: impl Fn(usize, *mut f32) + Sync + Send,
    ) -> Vec<f32> {
        let mut acc = std::mem::take(&mut self.wbuf);
        acc.clear();
        acc.resize(parts * size, 0.0);
        let ap = P(acc.as_mut_ptr());
        self.par(parts, |p| f(p, ap.at(p * size)));
        let mut sum = vec![0.0f32; size];
        for p in acc.chunks(size) {
            for (s, &v) in sum.iter_mut().zip(p) {
                *s += v;
            }
        }
        self.wbuf = acc;
        sum
    }

    /// The weight gradient `dyᵀ · A` (`m × k`) summed over `rows` rows, in [`PARTS`] fixed
    /// partial sums: `dy` columns `coff .. coff + m` (row stride `ldy`), `A` the layer's input
    /// rows or their im2col view ([`WSrc`]). Blocks of rows of `A` are read in place as GEMM
    /// panels (or packed) and `dyᵀ` is read from `dy` in place (a transposed `A`), so the GEMM
    /// streams contiguous memory; where that leaves panels partly empty and `dy`'s columns fill
    /// them, the roles swap.
    #[allow(clippy::too_many_arguments)]
    unsafe fn weight_grad(
        &mut self,
        rows: usize,
        k: usize,
        src: WSrc,
        dy: *const f32,
        ldy: usize,
        coff: usize,
        m: usize,
    ) -> Vec<f32> {
        let parts = PARTS.min(rows.div_ceil(16)).max(1);
        let per = rows.div_ceil(parts);
        let block = (BLOCK_FLOATS / k.max(1)).clamp(16, 512);
        let dyp = P(dy as *mut f32);
        let (isa, nr) = (self.isa, self.isa.nr());
        // Whichever of `dW` and `dWᵀ` fills whole panels: `dWᵀ = Aᵀ · dy` when `k` leaves a
        // panel partly empty and `m` does not (a 24-channel 1×1 input, a 3-channel stem's 27
        // columns).
        let swap = !k.is_multiple_of(nr) && m.is_multiple_of(nr);
        let src = &src;
        let mut sum = self.part_sums(parts, m * k, |part, out| {
            let (m0, m1) = (part * per, ((part + 1) * per).min(rows));
            SCRATCH.with(|sc| {
                let mut sc = sc.borrow_mut();
                let mut packed = sc.packed.take().unwrap_or_else(|| PackedB::empty(nr));
                if packed.nr != nr {
                    packed = PackedB::empty(nr);
                }
                let mut r0 = m0;
                while r0 < m1 {
                    let r1 = (r0 + block).min(m1);
                    let r = r1 - r0;
                    // The rows of `A` (the layer's input rows, or their im2col block).
                    let (a_rows, lda) = match src {
                        WSrc::Rows { x, ld, c0 } => (x.add(r0 * ld + c0), *ld),
                        WSrc::Im2col(im) => {
                            if sc.b.len() < r * k + nr {
                                sc.b.resize(r * k + nr, 0.0);
                            }
                            let cols = sc.b.as_mut_ptr();
                            gemm::im2col_gather(isa, im, r0, r, cols);
                            (cols as *const f32, k)
                        }
                    };
                    let dy_rows = dyp.at(r0 * ldy + coff) as *const f32;
                    let job = if swap {
                        // `Aᵀ · dy` (`k × m`): `dy`'s whole panels read in place.
                        packed.view_rows(r, m, dy_rows, ldy);
                        GemmJob {
                            m: k,
                            a: ASrc::Trans { a: a_rows, lda },
                            b: &packed,
                            out,
                            ldc: m,
                            act1: None,
                            res: Some((out as *const f32, m)),
                            act2: None,
                            mc: k,
                            pc: packed.panels(),
                        }
                    } else {
                        // `B` is read in place where its rows hold whole panels (the layer's
                        // input rows, or the im2col rows gathered with a panel of slack after
                        // them); only a channel slice narrower than its panels is packed.
                        match src {
                            WSrc::Rows { .. } if !k.is_multiple_of(nr) => {
                                packed.repack_rows(r, k, a_rows, lda)
                            }
                            _ => packed.view_rows(r, k, a_rows, lda),
                        }
                        GemmJob {
                            m,
                            a: ASrc::Trans {
                                a: dy_rows,
                                lda: ldy,
                            },
                            b: &packed,
                            out,
                            ldc: k,
                            act1: None,
                            res: Some((out as *const f32, k)),
                            act2: None,
                            mc: m,
                            pc: packed.panels(),
                        }
                    };
                    gemm::gemm_task(isa, &job, 0);
                    r0 = r1;
                }
                sc.packed = Some(packed);
            });
        });
        if swap {
            let mut t = vec![0.0f32; m * k];
            for kk in 0..k {
                for col in 0..m {
                    t[col * k + kk] = sum[kk * m + col];
                }
            }
            sum = t;
        }
        sum
    }

    #[allow(clippy::too_many_arguments)]
    unsafe fn conv_backward(
        &mut self,
        id: NodeId,
        conv: &effcnn_arch::Conv,
        geom: &Geom,
        paths: ConvPaths,
        x: *mut f32,
        dy: *mut f32,
        dx: Option<(*mut f32, bool)>,
    ) {
        let ConvPaths { direct, flip, wino } = paths;
        let n = self.dims[0];
        let (cin, cout) = (conv.cin, conv.cout);
        let (cin_g, cout_g) = (cin / conv.groups, cout / conv.groups);
        let taps = geom.kh * geom.kw;
        let k = taps * cin_g;
        let ohw = geom.oh * geom.ow;
        let rows = n * ohw;
        let isa = self.isa;
        // Input gradient.
        if let Some((dx, acc)) = dx {
            if let Some(fg) = wino {
                let wb = &self.aux[id].wb;
                self.winograd(dy, cout, fg, wb, std::ptr::null(), dx, cin, acc);
            } else if direct || flip.is_some() {
                for gi in 0..conv.groups {
                    let a = match flip {
                        Some(fg) => ASrc::Im2col(Im2col {
                            x: dy,
                            ldx: cout,
                            c0: gi * cout_g,
                            cin: cout_g,
                            s: *fg,
                        }),
                        None => ASrc::Direct {
                            a: dy.add(gi * cout_g),
                            lda: cout,
                        },
                    };
                    let b = &self.aux[id].bwd[gi];
                    self.gemm(n * geom.h * geom.w, a, b, dx.add(gi * cin_g), cin, acc);
                }
            } else {
                let bwd = &self.aux[id].bwd;
                let (dyp, dxp) = (P(dy), P(dx));
                let block = (BLOCK_FLOATS / k.max(1)).clamp(8, ohw.max(8));
                let win = WinImage { c: cin, s: *geom };
                let ihw = geom.h * geom.w;
                self.par(n, |img| {
                    let dxi = dxp.at(img * ihw * cin);
                    if !acc {
                        std::ptr::write_bytes(dxi, 0, ihw * cin);
                    }
                    SCRATCH.with(|sc| {
                        let mut sc = sc.borrow_mut();
                        if sc.b.len() < block * k {
                            sc.b.resize(block * k, 0.0);
                        }
                        let cols = sc.b.as_mut_ptr();
                        for (gi, b) in bwd.iter().enumerate() {
                            let mut o0 = 0;
                            while o0 < ohw {
                                let o1 = (o0 + block).min(ohw);
                                let job = GemmJob {
                                    m: o1 - o0,
                                    a: ASrc::Direct {
                                        a: dyp.at((img * ohw + o0) * cout + gi * cout_g),
                                        lda: cout,
                                    },
                                    b,
                                    out: cols,
                                    ldc: k,
                                    act1: None,
                                    res: None,
                                    act2: None,
                                    mc: o1 - o0,
                                    pc: b.panels(),
                                };
                                gemm::gemm_task(isa, &job, 0);
                                grad::col2im_add(isa, &win, cin_g, gi * cin_g, o0, o1, cols, dxi);
                                o0 = o1;
                            }
                        }
                    });
                });
            }
        }
        // Weight gradient, per group, in PyTorch's [co][ci][kh][kw].
        let dw = if wino.is_some() {
            self.winograd_weight_grad(conv, geom, x, dy)
        } else {
            let mut dw = vec![0.0f32; cout * k];
            for gi in 0..conv.groups {
                let src = if direct {
                    WSrc::Rows {
                        x,
                        ld: cin,
                        c0: gi * cin_g,
                    }
                } else {
                    WSrc::Im2col(Im2col {
                        x,
                        ldx: cin,
                        c0: gi * cin_g,
                        cin: cin_g,
                        s: *geom,
                    })
                };
                let part = self.weight_grad(rows, k, src, dy, cout, gi * cout_g, cout_g);
                for col in 0..cout_g {
                    let co = gi * cout_g + col;
                    for kk in 0..k {
                        let (tap, ci) = (kk / cin_g, kk % cin_g);
                        dw[(co * cin_g + ci) * taps + tap] = part[col * k + kk];
                    }
                }
            }
            dw
        };
        let db = if conv.bias {
            self.col_sum_f32(rows, cout, dy)
        } else {
            Vec::new()
        };
        let aux = &mut self.aux[id];
        aux.gw = dw;
        aux.gb = db;
    }

    unsafe fn dw_backward(
        &mut self,
        id: NodeId,
        conv: &effcnn_arch::Conv,
        geom: &Geom,
        x: *mut f32,
        dy: *mut f32,
        dx: Option<(*mut f32, bool)>,
    ) {
        let n = self.dims[0];
        let c = conv.cout;
        let taps = geom.kh * geom.kw;
        let win = WinImage { c, s: *geom };
        let (ihw, ohw) = (geom.h * geom.w * c, geom.oh * geom.ow * c);
        let isa = self.isa;
        let (xp, dyp) = (P(x), P(dy));
        if let Some((dx, acc)) = dx {
            let dxp = P(dx);
            let w = P(self.aux[id].dw.as_ptr() as *mut f32);
            self.par(n, |img| {
                grad::dw_back_dx(
                    isa,
                    &win,
                    w.at(0),
                    dyp.at(img * ohw),
                    dxp.at(img * ihw),
                    acc,
                )
            });
        }
        let parts = PARTS.min(n);
        let per = n.div_ceil(parts);
        let mut acc = vec![0.0f32; parts * taps * c];
        let ap = P(acc.as_mut_ptr());
        self.par(parts, |part| {
            for img in part * per..((part + 1) * per).min(n) {
                grad::dw_back_dw(
                    isa,
                    &win,
                    xp.at(img * ihw),
                    dyp.at(img * ohw),
                    ap.at(part * taps * c),
                )
            }
        });
        let mut dw = vec![0.0f32; c * taps];
        for p in acc.chunks(taps * c) {
            for tap in 0..taps {
                for ch in 0..c {
                    dw[ch * taps + tap] += p[tap * c + ch];
                }
            }
        }
        let db = if conv.bias {
            self.col_sum_f32(n * geom.oh * geom.ow, c, dy)
        } else {
            Vec::new()
        };
        let aux = &mut self.aux[id];
        aux.gw = dw;
        aux.gb = db;
    }

    /// The gradients and batch statistics of this step by canonical key.
    fn collect(&mut self, weights: &dyn Weights) -> Result<(WeightMap, WeightMap), EngineError> {
        let mut grads = WeightMap::new();
        let mut stats = WeightMap::new();
        for t in 0..self.nodes.len() {
            let id = self.nodes[t].id;
            let node = &self.graph.nodes[id];
            let reached = !self.grads[self.dy_node(t)].is_empty();
            let aux = &mut self.aux[id];
            for (suffix, shape, trainable) in tensor_suffixes(&node.op) {
                let key = format!("{}.{suffix}", node.path);
                let len: usize = shape.iter().product();
                let value = match (&self.nodes[t].op, suffix) {
                    (_, _) if !trainable => match suffix {
                        "running_mean" => Some(std::mem::take(&mut aux.mean)),
                        "running_var" => Some(std::mem::take(&mut aux.var_unbiased)),
                        _ => None,
                    },
                    _ if !reached => Some(vec![0.0; len]),
                    (
                        TOp::Linear {
                            fin, fout, hw, cx, ..
                        },
                        "weight",
                    ) => {
                        // gw holds (fout × fin) in NHWC feature order.
                        let perm = |j: usize| (j % cx) * hw + j / cx;
                        let mut g = vec![0.0f32; fout * fin];
                        for j in 0..*fin {
                            for o in 0..*fout {
                                g[o * fin + perm(j)] = aux.gw[o * fin + j];
                            }
                        }
                        Some(g)
                    }
                    (_, "weight") => Some(std::mem::take(&mut aux.gw)),
                    (_, "bias") => Some(std::mem::take(&mut aux.gb)),
                    _ => None,
                };
                let Some(v) = value else { continue };
                if v.len() != len {
                    // A statistic of a node the forward pass never reached cannot happen: every
                    // node runs forward. Keep the error explicit rather than silent.
                    let _ = weights;
                    return Err(EngineError::BadInput(format!(
                        "internal: {key} has {} values, expected {len}",
                        v.len()
                    )));
                }
                if trainable {
                    grads.insert(key, (shape, v));
                } else {
                    stats.insert(key, (shape, v));
                }
            }
        }
        Ok((grads, stats))
    }
}

/// How a dense convolution's backward runs (see [`TOp::Conv`]).
#[derive(Clone, Copy)]
struct ConvPaths<'a> {
    direct: bool,
    flip: Option<&'a Geom>,
    wino: Option<&'a Geom>,
}

/// Per-node times of one step, printed to stderr (`EFFCNN_STEP_PROFILE`).
#[derive(Default)]
struct StepProfile {
    rows: Vec<(String, &'static str, f64)>,
}

impl StepProfile {
    fn record(&mut self, plan: &TrainPlan, t: usize, phase: &'static str, t0: std::time::Instant) {
        let node = &plan.nodes[t];
        let kind = node.op.kind();
        let path = &plan.graph.nodes[node.id].path;
        self.rows.push((
            format!("{path} ({kind})"),
            phase,
            t0.elapsed().as_secs_f64(),
        ));
    }

    fn print(&self, t0: std::time::Instant) {
        for (node, phase, s) in &self.rows {
            eprintln!("{:9.3} ms  {phase:8}  {node}", s * 1e3);
        }
        eprintln!("{:9.3} ms  step", t0.elapsed().as_secs_f64() * 1e3);
    }
}

/// Where the rows of a weight gradient's `A` come from: a layer's input rows (channels
/// `c0 ..`, row stride `ld`) or their im2col view.
enum WSrc {
    Rows { x: *const f32, ld: usize, c0: usize },
    Im2col(Im2col),
}
// SAFETY: the weight-gradient tasks only read through these pointers.
unsafe impl Send for WSrc {}
unsafe impl Sync for WSrc {}

/// A uniform number in [0, 1) from (seed, index) (splitmix64), the same on every thread.
fn unit(seed: u64, i: u64) -> f64 {
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::winograd_switch;

    #[test]
    fn the_winograd_switch_takes_on_off_and_refuses_anything_else() {
        for (v, want) in [(None, true), (Some("on"), true), (Some("1"), true)] {
            assert_eq!(winograd_switch(v).unwrap(), want, "{v:?}");
        }
        for v in ["off", "0"] {
            assert!(!winograd_switch(Some(v)).unwrap(), "{v}");
        }
        for v in ["", "no", "OFF", "false"] {
            let e = winograd_switch(Some(v)).unwrap_err().to_string();
            assert!(
                e.contains("EFFCNN_WINOGRAD") && e.contains("on, off"),
                "{v}: {e}"
            );
        }
    }
}
