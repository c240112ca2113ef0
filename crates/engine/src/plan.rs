//! Compiling a resolved graph into an execution plan, and running it.
//!
//! [`Plan::compile`] walks the graph once for a fixed input size and:
//! - resolves every node's shape at that size;
//! - fuses each chain `conv|linear → (batch norm) → (activation) → (residual add) →
//!   (activation)` into one GEMM or depthwise step whose epilogue applies the rest (batch norm
//!   folded into the weights and bias), and likewise `batch norm|add → (activation) → …` into one
//!   element-wise step; flatten, dropout and drop-path are views, a channel slice is a strided view;
//! - packs every weight into the layout its kernel reads (GEMM panels; `[k·k][C]` for depthwise);
//! - lays every intermediate tensor out in one arena from the tensors' lifetimes
//!   ([`effcnn_arch::liveness`], the analysis behind the cost analyzer's peak activation memory).
//!
//! [`Plan::run`] then converts the NCHW input to NHWC once, runs the steps in order (each split
//! into independent tasks over rows and output channels on the current rayon pool) and returns
//! the logits. Nothing is allocated per run except the returned logits.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use effcnn_arch::graph::tensor_suffixes;
use effcnn_arch::liveness::{self, is_inference_view, Interval, Uses};
use effcnn_arch::{Act, Graph, NodeId, Op, Shape};
use rayon::prelude::*;

use crate::error::EngineError;
use crate::kernels::dw::{self, DwJob, PoolJob, Window};
use crate::kernels::elem::{self, GapJob, GateJob, MapJob};
use crate::kernels::gemm::{self, ASrc, GemmJob, Im2col, PackedB};
use crate::kernels::Geom;
use crate::shapes::spatial_shapes;
use crate::simd::Isa;

/// Trained tensors by effcnn's canonical key (`<node path>.<suffix>`, PyTorch shapes).
pub trait Weights {
    /// The tensor's shape and row-major values.
    fn tensor(&self, key: &str) -> Option<(&[usize], &[f32])>;
}

/// Tensors by canonical key: (PyTorch shape, row-major values).
pub type WeightMap = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

impl Weights for WeightMap {
    fn tensor(&self, key: &str) -> Option<(&[usize], &[f32])> {
        self.get(key).map(|(s, d)| (s.as_slice(), d.as_slice()))
    }
}

/// How to compile a plan.
#[derive(Debug, Clone, Copy)]
pub struct PlanOptions {
    /// Instruction set of the kernels (default: the best this CPU has).
    pub isa: Isa,
    /// Worker threads the steps are split for (the work runs on the current rayon pool).
    pub threads: usize,
    /// Fuse chains into single steps (off: one step per graph node, for tests and profiles).
    pub fuse: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            isa: Isa::detect(),
            threads: rayon::current_num_threads(),
            fuse: true,
        }
    }
}

/// A tensor in the arena: buffer `buf`, channels `coff .. coff + c` of rows of stride `ld`,
/// `h × w` pixels per image.
#[derive(Debug, Clone, Copy)]
struct View {
    buf: usize,
    coff: usize,
    c: usize,
    ld: usize,
    h: usize,
    w: usize,
}

#[derive(Debug, Clone)]
struct Buf {
    floats: usize,
    first: usize,
    last: usize,
    offset: usize,
}

#[derive(Debug)]
enum Kind {
    /// The NCHW input converted into NHWC.
    Input {
        out: View,
    },
    Gemm {
        x: View,
        /// Some: im2col with this geometry; None: rows of `x` read in place.
        geom: Option<Geom>,
        groups: Vec<PackedB>,
        cin_g: usize,
        cout_g: usize,
        act1: Option<Act>,
        res: Option<View>,
        act2: Option<Act>,
        out: View,
    },
    Dw {
        x: View,
        geom: Geom,
        w: Vec<f32>,
        bias: Vec<f32>,
        act: Option<Act>,
        out: View,
    },
    Pool {
        x: View,
        geom: Geom,
        max: bool,
        include_pad: bool,
        out: View,
    },
    Map {
        x: View,
        affine: Option<(Vec<f32>, Vec<f32>)>,
        act1: Option<Act>,
        res: Option<View>,
        act2: Option<Act>,
        out: View,
    },
    Gate {
        x: View,
        gate: View,
        out: View,
    },
    Gap {
        x: View,
        out: View,
    },
    Concat {
        parts: Vec<View>,
        out: View,
    },
    Shuffle {
        x: View,
        groups: usize,
        out: View,
    },
}

/// One step of a plan, with what a profile shows of it.
#[derive(Debug)]
struct Step {
    kind: Kind,
    info: StepInfo,
}

/// What a step computes: the graph nodes it covers and its cost.
#[derive(Debug, Clone)]
pub struct StepInfo {
    /// The graph nodes fused into this step, in order.
    pub nodes: Vec<NodeId>,
    /// Paths of those nodes joined with ` + `.
    pub label: String,
    /// Kind of the step's main op (`pwconv`, `dwconv`, `bn`, …).
    pub op: &'static str,
    /// Multiply-accumulates for the whole batch.
    pub macs: u64,
}

/// A graph compiled for one input size.
pub struct Plan {
    model: String,
    isa: Isa,
    threads: usize,
    dims: [usize; 4],
    steps: Vec<Step>,
    bufs: Vec<Buf>,
    arena: Vec<f32>,
    output: View,
    peak_floats: u64,
    weight_bytes: usize,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("model", &self.model)
            .field("isa", &self.isa)
            .field("dims", &self.dims)
            .field("steps", &self.steps.len())
            .field("arena_bytes", &self.arena_bytes())
            .finish()
    }
}

struct Compiler<'g> {
    g: &'g Graph,
    opts: PlanOptions,
    batch: usize,
    shapes: Vec<Shape>,
    /// Readers of every value, with flatten, dropout and drop-path as views of their input.
    uses: Uses,
    vals: Vec<Option<View>>,
    steps: Vec<Step>,
    bufs: Vec<Buf>,
    weights: &'g dyn Weights,
}

/// A fused chain that ends at `tail`.
#[derive(Debug, Clone, Default)]
struct Chain {
    head: NodeId,
    bn: Option<NodeId>,
    act1: Option<Act>,
    add: Option<(NodeId, NodeId)>,
    act2: Option<Act>,
    nodes: Vec<NodeId>,
}

impl Chain {
    fn tail(&self) -> NodeId {
        *self.nodes.last().expect("a chain has a head")
    }
}

impl Plan {
    /// Compile `graph` for inputs of `dims` = `[batch, channels, height, width]`.
    ///
    /// Every trained tensor is read from `weights` by its canonical key and checked against the
    /// graph's shape; a missing or mis-shaped tensor fails here, with its name.
    pub fn compile(
        graph: &Graph,
        weights: &dyn Weights,
        dims: [usize; 4],
        opts: PlanOptions,
    ) -> Result<Plan, EngineError> {
        check_compile(graph, dims, opts.isa)?;
        let [n, _, h, w] = dims;
        let shapes = spatial_shapes(graph, h, w)?;
        let nn = graph.nodes.len();
        let mut cc = Compiler {
            g: graph,
            opts: PlanOptions {
                threads: opts.threads.max(1),
                ..opts
            },
            batch: n,
            shapes,
            uses: Uses::through_views(graph),
            vals: vec![None; nn],
            steps: Vec::new(),
            bufs: Vec::new(),
            weights,
        };
        cc.build()?;
        let out_root = cc.uses.root(graph.output);
        let output = cc.vals[out_root].expect("the output node was computed");
        let end = cc.steps.len();
        cc.bufs[output.buf].last = end;
        let intervals: Vec<Interval> = cc
            .bufs
            .iter()
            .map(|b| Interval {
                size: b.floats as u64,
                first: b.first,
                last: b.last,
            })
            .collect();
        let peak_floats = liveness::peak(&intervals);
        let (offsets, total) = liveness::pack(&intervals, 16);
        for (b, off) in cc.bufs.iter_mut().zip(offsets) {
            b.offset = off as usize;
        }
        let weight_bytes = cc.steps.iter().map(|s| s.kind.weight_bytes()).sum();
        Ok(Plan {
            model: graph.meta.name.clone(),
            isa: cc.opts.isa,
            threads: cc.opts.threads,
            dims,
            steps: cc.steps,
            bufs: cc.bufs,
            arena: vec![0.0; total as usize],
            output,
            peak_floats,
            weight_bytes,
        })
    }

    /// The input dimensions this plan was compiled for.
    pub fn dims(&self) -> [usize; 4] {
        self.dims
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Bytes of the activation arena (allocated once, at compile time).
    pub fn arena_bytes(&self) -> usize {
        4 * self.arena.len()
    }

    /// The largest sum of live tensor bytes at one step (the arena's lower bound).
    pub fn peak_live_bytes(&self) -> u64 {
        4 * self.peak_floats
    }

    /// Bytes of packed weights.
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    /// The steps, in execution order.
    pub fn steps(&self) -> Vec<StepInfo> {
        self.steps.iter().map(|s| s.info.clone()).collect()
    }

    /// Every pair of buffers alive at the same step occupies disjoint arena ranges (a check of
    /// the layout, used by tests).
    pub fn arena_is_consistent(&self) -> bool {
        let b = &self.bufs;
        for i in 0..b.len() {
            if b[i].offset + b[i].floats > self.arena.len() {
                return false;
            }
            for j in 0..i {
                let alive = b[i].first <= b[j].last && b[j].first <= b[i].last;
                let disjoint = b[i].offset + b[i].floats <= b[j].offset
                    || b[j].offset + b[j].floats <= b[i].offset;
                if alive && !disjoint {
                    return false;
                }
            }
        }
        true
    }

    /// Run on an NCHW float32 input of exactly the compiled [`Plan::dims`]; returns the logits,
    /// `batch × (C·H·W of the output)`, row-major.
    pub fn run(&mut self, input: &[f32]) -> Result<Vec<f32>, EngineError> {
        self.run_inner(input, None)
    }

    /// Like [`Plan::run`], also timing every step (in [`Plan::steps`] order).
    pub fn run_profiled(
        &mut self,
        input: &[f32],
    ) -> Result<(Vec<f32>, Vec<Duration>), EngineError> {
        let mut times = Vec::with_capacity(self.steps.len());
        let out = self.run_inner(input, Some(&mut times))?;
        Ok((out, times))
    }

    fn run_inner(
        &mut self,
        input: &[f32],
        mut times: Option<&mut Vec<Duration>>,
    ) -> Result<Vec<f32>, EngineError> {
        let want: usize = self.dims.iter().product();
        if input.len() != want {
            let [n, c, h, w] = self.dims;
            return Err(EngineError::BadInput(format!(
                "this plan of {} was compiled for inputs {n}×{c}×{h}×{w} ({want} values), got {} \
                 values: compile a plan for the new size",
                self.model,
                input.len()
            )));
        }
        let base = self.arena.as_mut_ptr();
        let ctx = Ctx {
            base,
            bufs: &self.bufs,
            isa: self.isa,
            threads: self.threads,
            batch: self.dims[0],
        };
        for step in &self.steps {
            let t0 = Instant::now();
            // SAFETY: every view lies inside the arena (checked by construction: buffers are
            // packed into `arena` by `liveness::pack`), steps run one at a time, and the tasks
            // of a step write disjoint rows/channels.
            unsafe { step.kind.run(&ctx, input) };
            if let Some(t) = times.as_deref_mut() {
                t.push(t0.elapsed());
            }
        }
        let o = self.output;
        let n = self.dims[0];
        let mut out = vec![0.0f32; n * o.c * o.h * o.w];
        // SAFETY: the output view is inside the arena; `out` holds n·c·h·w floats.
        unsafe { elem::nhwc_to_nchw(n, o.c, o.h * o.w, ctx.ptr(&o), o.ld, out.as_mut_ptr()) };
        Ok(out)
    }
}

/// What a running step needs: the arena and how to split work.
struct Ctx<'a> {
    base: *mut f32,
    bufs: &'a [Buf],
    isa: Isa,
    threads: usize,
    batch: usize,
}

/// A raw pointer that may cross threads (tasks write disjoint parts).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl Ctx<'_> {
    fn ptr(&self, v: &View) -> *mut f32 {
        // SAFETY (of later use): views are inside the arena by construction.
        self.base.wrapping_add(self.bufs[v.buf].offset + v.coff)
    }
    fn rows(&self, v: &View) -> usize {
        self.batch * v.h * v.w
    }
    /// Run `f(t)` for `t in 0..tasks`, split over the pool when it pays.
    fn par(&self, tasks: usize, f: impl Fn(usize) + Sync + Send) {
        if self.threads <= 1 || tasks <= 1 {
            (0..tasks).for_each(f);
        } else {
            (0..tasks).into_par_iter().for_each(f);
        }
    }
    /// Rows per task for element-wise work over `rows` rows of `c` channels.
    fn row_chunk(&self, rows: usize, c: usize) -> usize {
        if self.threads <= 1 {
            return rows.max(1);
        }
        let min_rows = (4096 / c.max(1)).max(1);
        rows.div_ceil(4 * self.threads).max(min_rows)
    }
}

impl Kind {
    fn weight_bytes(&self) -> usize {
        match self {
            Kind::Gemm { groups, .. } => groups.iter().map(|b| b.bytes()).sum(),
            Kind::Dw { w, bias, .. } => 4 * (w.len() + bias.len()),
            Kind::Map { affine, .. } => affine.as_ref().map_or(0, |(s, _)| 8 * s.len()),
            _ => 0,
        }
    }

    /// # Safety
    /// Views must lie inside the arena of `ctx`; `input` must hold the plan's input.
    unsafe fn run(&self, ctx: &Ctx, input: &[f32]) {
        match self {
            Kind::Input { out } => elem::nchw_to_nhwc(
                ctx.batch,
                out.c,
                out.h * out.w,
                input.as_ptr(),
                ctx.ptr(out),
                out.ld,
            ),
            Kind::Gemm {
                x,
                geom,
                groups,
                cin_g,
                cout_g,
                act1,
                res,
                act2,
                out,
            } => {
                let m = ctx.rows(out);
                let mr = ctx.isa.mr();
                for (gi, b) in groups.iter().enumerate() {
                    let a = match geom {
                        None => ASrc::Direct {
                            a: ctx.ptr(x).add(gi * cin_g),
                            lda: x.ld,
                        },
                        Some(g) => ASrc::Im2col(Im2col {
                            x: ctx.ptr(x),
                            ldx: x.ld,
                            c0: gi * cin_g,
                            cin: *cin_g,
                            s: *g,
                        }),
                    };
                    let (mc, pc) = split_gemm(m, b.panels(), mr, ctx.threads);
                    let job = GemmJob {
                        m,
                        a,
                        b,
                        out: ctx.ptr(out).add(gi * cout_g),
                        ldc: out.ld,
                        act1: *act1,
                        res: res.map(|r| (ctx.ptr(&r).add(gi * cout_g) as *const f32, r.ld)),
                        act2: *act2,
                        mc,
                        pc,
                    };
                    let isa = ctx.isa;
                    ctx.par(job.tasks(), |t| gemm::gemm_task(isa, &job, t));
                }
            }
            Kind::Dw {
                x,
                geom,
                w,
                bias,
                act,
                out,
            } => {
                let job = DwJob {
                    g: window(ctx, x, out, geom),
                    w: w.as_ptr(),
                    bias: bias.as_ptr(),
                    act: *act,
                };
                let isa = ctx.isa;
                ctx.par(job.g.tasks(), |t| dw::dw_task(isa, &job, t));
            }
            Kind::Pool {
                x,
                geom,
                max,
                include_pad,
                out,
            } => {
                let job = PoolJob {
                    g: window(ctx, x, out, geom),
                    max: *max,
                    include_pad: *include_pad,
                };
                let isa = ctx.isa;
                ctx.par(job.g.tasks(), |t| dw::pool_task(isa, &job, t));
            }
            Kind::Map {
                x,
                affine,
                act1,
                res,
                act2,
                out,
            } => {
                let rows = ctx.rows(out);
                let (scale, shift) = match affine {
                    Some((s, b)) => (s.as_ptr(), b.as_ptr()),
                    None => (std::ptr::null(), std::ptr::null()),
                };
                let job = MapJob {
                    rows,
                    c: out.c,
                    x: ctx.ptr(x),
                    ldx: x.ld,
                    scale,
                    shift,
                    act1: *act1,
                    res: res.map_or(std::ptr::null(), |r| ctx.ptr(&r) as *const f32),
                    ldr: res.map_or(0, |r| r.ld),
                    act2: *act2,
                    y: ctx.ptr(out),
                    ldy: out.ld,
                    rc: ctx.row_chunk(rows, out.c),
                };
                let isa = ctx.isa;
                ctx.par(job.tasks(), |t| elem::map_task(isa, &job, t));
            }
            Kind::Gate { x, gate, out } => {
                let hw = out.h * out.w;
                let job = GateJob {
                    n: ctx.batch,
                    hw,
                    c: out.c,
                    x: ctx.ptr(x),
                    ldx: x.ld,
                    gate: ctx.ptr(gate),
                    ldg: gate.ld,
                    y: ctx.ptr(out),
                    ldy: out.ld,
                    rc: ctx.row_chunk(ctx.batch * hw, out.c),
                };
                let isa = ctx.isa;
                ctx.par(job.tasks(), |t| elem::gate_task(isa, &job, t));
            }
            Kind::Gap { x, out } => {
                let job = GapJob {
                    n: ctx.batch,
                    hw: x.h * x.w,
                    c: x.c,
                    x: ctx.ptr(x),
                    ldx: x.ld,
                    y: ctx.ptr(out),
                    ldy: out.ld,
                };
                let isa = ctx.isa;
                ctx.par(ctx.batch, |t| elem::gap_task(isa, &job, t));
            }
            Kind::Concat { parts, out } => {
                let rows = ctx.rows(out);
                let mut coff = 0;
                for p in parts {
                    elem::copy_rows(rows, p.c, ctx.ptr(p), p.ld, ctx.ptr(out).add(coff), out.ld);
                    coff += p.c;
                }
            }
            Kind::Shuffle { x, groups, out } => {
                let rows = ctx.rows(out);
                let (xp, yp) = (SendPtr(ctx.ptr(x)), SendPtr(ctx.ptr(out)));
                let rc = ctx.row_chunk(rows, out.c);
                let (c, g, ldx, ldy) = (out.c, *groups, x.ld, out.ld);
                ctx.par(rows.div_ceil(rc), move |t| {
                    let (xp, yp) = (xp, yp);
                    let r0 = t * rc;
                    let r1 = (r0 + rc).min(rows);
                    elem::shuffle_rows(
                        r1 - r0,
                        c,
                        g,
                        xp.0.add(r0 * ldx),
                        ldx,
                        yp.0.add(r0 * ldy),
                        ldy,
                    )
                });
            }
        }
    }
}

fn window(ctx: &Ctx, x: &View, out: &View, g: &Geom) -> Window {
    Window {
        x: ctx.ptr(x),
        ldx: x.ld,
        y: ctx.ptr(out),
        ldy: out.ld,
        n: ctx.batch,
        c: out.c,
        s: *g,
    }
}

/// The checks every compilation starts with: a non-empty input with the graph's channels, and
/// kernels this CPU can run.
pub(crate) fn check_compile(graph: &Graph, dims: [usize; 4], isa: Isa) -> Result<(), EngineError> {
    let [n, c, h, w] = dims;
    if n == 0 || h == 0 || w == 0 {
        return Err(EngineError::BadInput(format!(
            "input {n}×{c}×{h}×{w} is empty"
        )));
    }
    if c != graph.input_shape().c {
        return Err(EngineError::BadInput(format!(
            "{} expects {} input channels, got {c}",
            graph.meta.name,
            graph.input_shape().c
        )));
    }
    if !Isa::available().contains(&isa) {
        return Err(EngineError::BadInput(format!(
            "this CPU cannot run the {} kernels",
            isa.name()
        )));
    }
    Ok(())
}

/// Trained tensor `suffix` of `node`, read by its canonical key and checked against the graph's
/// shape (a missing or mis-shaped tensor is an error naming it).
pub(crate) fn fetch_tensor<'w>(
    g: &Graph,
    weights: &'w dyn Weights,
    node: NodeId,
    suffix: &str,
) -> Result<&'w [f32], EngineError> {
    let n = &g.nodes[node];
    let key = format!("{}.{suffix}", n.path);
    let want = tensor_suffixes(&n.op)
        .into_iter()
        .find(|(s, _, _)| *s == suffix)
        .map(|(_, shape, _)| shape)
        .expect("suffix of the op");
    match weights.tensor(&key) {
        None => Err(EngineError::MissingTensor { key }),
        Some((shape, data)) => {
            let count: usize = want.iter().product();
            if shape != want.as_slice() || data.len() != count {
                return Err(EngineError::ShapeMismatch {
                    key,
                    want,
                    got: shape.to_vec(),
                });
            }
            Ok(data)
        }
    }
}

/// Rows and panels per GEMM task: blocks of 8 micro-tiles of rows, split further (and then by
/// panels) until every worker thread has work.
pub(crate) fn split_gemm(m: usize, panels: usize, mr: usize, threads: usize) -> (usize, usize) {
    let mut mc = mr * 8;
    if threads > 1 && m.div_ceil(mc) < 2 * threads {
        mc = m.div_ceil(2 * threads).div_ceil(mr).max(1) * mr;
    }
    let mblocks = m.div_ceil(mc);
    let pc = if threads > 1 && mblocks < threads {
        panels.div_ceil(threads.div_ceil(mblocks)).max(1)
    } else {
        panels
    };
    (mc, pc)
}

impl<'g> Compiler<'g> {
    fn node_shape(&self, i: NodeId) -> Shape {
        self.shapes[i]
    }

    /// Consumers of `v`'s value, if there is exactly one and `v` is not the model's output.
    fn sole_consumer(&self, v: NodeId) -> Option<NodeId> {
        self.uses.sole_reader(v)
    }

    fn act_of(&self, i: NodeId) -> Option<Act> {
        match self.g.nodes[i].op {
            Op::Act { act } => Some(act),
            _ => None,
        }
    }

    /// The chain starting at `head` (possibly just `head`).
    fn chain(&self, head: NodeId, absorbed: &[bool]) -> Chain {
        let mut ch = Chain {
            head,
            nodes: vec![head],
            ..Chain::default()
        };
        if !self.opts.fuse {
            return ch;
        }
        let op = &self.g.nodes[head].op;
        let depthwise = matches!(op, Op::Conv(c) if self.dw_fast(c));
        let mut cur = head;
        let next = |cur: NodeId| self.sole_consumer(cur).filter(|&j| !absorbed[j]);
        // Batch norm right after a conv/linear.
        if matches!(op, Op::Conv(_) | Op::Linear { .. }) {
            if let Some(j) = next(cur) {
                if matches!(self.g.nodes[j].op, Op::BatchNorm { .. }) {
                    ch.bn = Some(j);
                    ch.nodes.push(j);
                    cur = j;
                }
            }
        }
        if !matches!(op, Op::Act { .. }) {
            if let Some(j) = next(cur) {
                if let Some(a) = self.act_of(j) {
                    ch.act1 = Some(a);
                    ch.nodes.push(j);
                    cur = j;
                }
            }
        }
        if depthwise || matches!(op, Op::Add) {
            return ch;
        }
        if let Some(j) = next(cur) {
            let node = &self.g.nodes[j];
            if matches!(node.op, Op::Add) && node.inputs.len() == 2 {
                let (a, b) = (node.inputs[0], node.inputs[1]);
                let other = if self.uses.root(a) == self.uses.root(cur) {
                    b
                } else {
                    a
                };
                if self.uses.root(other) != self.uses.root(cur)
                    && (self.uses.root(a) == self.uses.root(cur)
                        || self.uses.root(b) == self.uses.root(cur))
                {
                    ch.add = Some((j, other));
                    ch.nodes.push(j);
                    cur = j;
                    if let Some(k) = next(cur) {
                        if let Some(a) = self.act_of(k) {
                            ch.act2 = Some(a);
                            ch.nodes.push(k);
                        }
                    }
                }
            }
        }
        ch
    }

    fn dw_fast(&self, c: &effcnn_arch::Conv) -> bool {
        c.groups == c.cin && c.cout == c.cin && c.groups > 1
    }

    fn new_buf(&mut self, floats: usize) -> usize {
        let at = self.steps.len();
        self.bufs.push(Buf {
            floats,
            first: at,
            last: at,
            offset: 0,
        });
        self.bufs.len() - 1
    }

    /// A fresh dense tensor of node `i`'s shape, written by the next step.
    fn out_view(&mut self, i: NodeId) -> View {
        let s = self.node_shape(i);
        let buf = self.new_buf(self.batch * s.c * s.h * s.w);
        View {
            buf,
            coff: 0,
            c: s.c,
            ld: s.c,
            h: s.h,
            w: s.w,
        }
    }

    /// The value of node `i` as an input of the step being built (extends its lifetime).
    fn input(&mut self, i: NodeId) -> View {
        let v = self.vals[self.uses.root(i)].expect("inputs are computed before their consumers");
        let at = self.steps.len();
        let b = &mut self.bufs[v.buf];
        b.last = b.last.max(at);
        v
    }

    fn push(&mut self, kind: Kind, nodes: Vec<NodeId>) {
        let g = self.g;
        let label = nodes
            .iter()
            .map(|&i| g.nodes[i].path.as_str())
            .collect::<Vec<_>>()
            .join(" + ");
        let op = g.nodes[nodes[0]].op.kind();
        let macs = nodes
            .iter()
            .map(|&i| effcnn_arch::cost::node_macs(&g.nodes[i].op, self.shapes[i]))
            .sum::<u64>()
            * self.batch as u64;
        self.steps.push(Step {
            kind,
            info: StepInfo {
                nodes,
                label,
                op,
                macs,
            },
        });
    }

    fn tensor(&self, node: NodeId, suffix: &str) -> Result<&'g [f32], EngineError> {
        fetch_tensor(self.g, self.weights, node, suffix)
    }

    /// Batch norm `bn` as a per-channel (scale, shift).
    fn bn_affine(&self, bn: NodeId) -> Result<(Vec<f32>, Vec<f32>), EngineError> {
        let Op::BatchNorm { eps, .. } = self.g.nodes[bn].op else {
            unreachable!("a batch-norm node")
        };
        let gamma = self.tensor(bn, "weight")?;
        let beta = self.tensor(bn, "bias")?;
        let mean = self.tensor(bn, "running_mean")?;
        let var = self.tensor(bn, "running_var")?;
        let mut scale = Vec::with_capacity(gamma.len());
        let mut shift = Vec::with_capacity(gamma.len());
        for c in 0..gamma.len() {
            let s = gamma[c] as f64 / (var[c] as f64 + eps).sqrt();
            scale.push(s as f32);
            shift.push((beta[c] as f64 - mean[c] as f64 * s) as f32);
        }
        Ok((scale, shift))
    }

    fn build(&mut self) -> Result<(), EngineError> {
        let g = self.g;
        let nn = g.nodes.len();
        // Chains first: each is emitted at its last node, when all of its inputs exist.
        let mut absorbed = vec![false; nn];
        let mut at_tail: Vec<Option<Chain>> = vec![None; nn];
        for i in 0..nn {
            if absorbed[i] {
                continue;
            }
            let fusable = match &g.nodes[i].op {
                Op::Conv(_) | Op::Linear { .. } | Op::BatchNorm { .. } | Op::Act { .. } => true,
                Op::Add => g.nodes[i].inputs.len() == 2,
                _ => false,
            };
            if fusable {
                let ch = self.chain(i, &absorbed);
                for &j in &ch.nodes {
                    absorbed[j] = true;
                }
                let tail = ch.tail();
                at_tail[tail] = Some(ch);
            }
        }
        for i in 0..nn {
            let node = &g.nodes[i];
            if let Some(ch) = at_tail[i].take() {
                self.emit_chain(ch)?;
                continue;
            }
            if absorbed[i] || is_inference_view(&node.op) {
                continue;
            }
            match &node.op {
                Op::Input => {
                    let out = self.out_view(i);
                    self.vals[i] = Some(out);
                    self.push(Kind::Input { out }, vec![i]);
                }
                Op::Slice { start, len } => {
                    let mut v = self.vals[self.uses.root(node.inputs[0])].expect("computed");
                    v.coff += start;
                    v.c = *len;
                    self.vals[i] = Some(v);
                }
                Op::MaxPool { k, stride, pad, .. } | Op::AvgPool { k, stride, pad, .. } => {
                    let x = self.input(node.inputs[0]);
                    let out = self.out_view(i);
                    let geom = Geom::pool(*k, *stride, *pad, (x.h, x.w), (out.h, out.w));
                    let (max, include_pad) = match node.op {
                        Op::AvgPool {
                            count_include_pad, ..
                        } => (false, count_include_pad),
                        _ => (true, false),
                    };
                    self.vals[i] = Some(out);
                    self.push(
                        Kind::Pool {
                            x,
                            geom,
                            max,
                            include_pad,
                            out,
                        },
                        vec![i],
                    );
                }
                Op::GlobalAvgPool => {
                    let x = self.input(node.inputs[0]);
                    let out = self.out_view(i);
                    self.vals[i] = Some(out);
                    self.push(Kind::Gap { x, out }, vec![i]);
                }
                Op::Scale => {
                    let x = self.input(node.inputs[0]);
                    let gate = self.input(node.inputs[1]);
                    let out = self.out_view(i);
                    self.vals[i] = Some(out);
                    self.push(Kind::Gate { x, gate, out }, vec![i]);
                }
                Op::Concat => {
                    let parts: Vec<View> = node.inputs.iter().map(|&j| self.input(j)).collect();
                    let out = self.out_view(i);
                    self.vals[i] = Some(out);
                    self.push(Kind::Concat { parts, out }, vec![i]);
                }
                Op::Shuffle { groups } => {
                    let x = self.input(node.inputs[0]);
                    let out = self.out_view(i);
                    self.vals[i] = Some(out);
                    self.push(
                        Kind::Shuffle {
                            x,
                            groups: *groups,
                            out,
                        },
                        vec![i],
                    );
                }
                Op::Add => {
                    // Three or more inputs: a chain of two-input adds into one buffer.
                    let first = self.input(node.inputs[0]);
                    let out = self.out_view(i);
                    let mut acc = first;
                    for &j in &node.inputs[1..] {
                        let r = self.input(j);
                        self.push(
                            Kind::Map {
                                x: acc,
                                affine: None,
                                act1: None,
                                res: Some(r),
                                act2: None,
                                out,
                            },
                            vec![i],
                        );
                        acc = out;
                    }
                    self.vals[i] = Some(out);
                }
                other => {
                    return Err(EngineError::Unsupported {
                        path: node.path.clone(),
                        what: format!("op `{}` outside a fusable chain", other.kind()),
                    })
                }
            }
        }
        Ok(())
    }

    fn emit_chain(&mut self, ch: Chain) -> Result<(), EngineError> {
        let g = self.g;
        let head = &g.nodes[ch.head];
        let tail = ch.tail();
        let affine = ch.bn.map(|b| self.bn_affine(b)).transpose()?;
        let x = self.input(head.inputs[0]);
        let res = ch.add.map(|(_, other)| self.input(other));
        let (act1, act2) = (ch.act1, ch.act2);
        let out = self.out_view(tail);
        let kind = match &head.op {
            Op::Conv(c) => {
                let w = self.tensor(ch.head, "weight")?;
                let bias = if c.bias {
                    Some(self.tensor(ch.head, "bias")?)
                } else {
                    None
                };
                let (scale, shift) = match &affine {
                    Some((s, b)) => (s.clone(), b.clone()),
                    None => (vec![1.0; c.cout], vec![0.0; c.cout]),
                };
                let bias_of = |co: usize| bias.map_or(0.0, |b| b[co]) * scale[co] + shift[co];
                let geom = Geom::conv(c, (x.h, x.w), (out.h, out.w));
                let (t, l) = (geom.pt, geom.pl);
                if self.dw_fast(c) && res.is_none() {
                    let (kh, kw) = c.k;
                    let mut wp = vec![0.0f32; kh * kw * c.cout];
                    for ch_ in 0..c.cout {
                        for tap in 0..kh * kw {
                            wp[tap * c.cout + ch_] = w[ch_ * kh * kw + tap] * scale[ch_];
                        }
                    }
                    Kind::Dw {
                        x,
                        geom,
                        w: wp,
                        bias: (0..c.cout).map(bias_of).collect(),
                        act: act1,
                        out,
                    }
                } else {
                    let (cin_g, cout_g) = (c.cin / c.groups, c.cout / c.groups);
                    let (kh, kw) = c.k;
                    let k = kh * kw * cin_g;
                    let nr = self.opts.isa.nr();
                    let groups = (0..c.groups)
                        .map(|gi| {
                            PackedB::pack(
                                k,
                                cout_g,
                                nr,
                                |col, kk| {
                                    let co = gi * cout_g + col;
                                    let (tap, ci) = (kk / cin_g, kk % cin_g);
                                    w[(co * cin_g + ci) * kh * kw + tap] * scale[co]
                                },
                                |col| bias_of(gi * cout_g + col),
                            )
                        })
                        .collect();
                    let direct = c.k == (1, 1) && c.stride == (1, 1) && t == 0 && l == 0;
                    Kind::Gemm {
                        x,
                        geom: (!direct).then_some(geom),
                        groups,
                        cin_g,
                        cout_g,
                        act1,
                        res,
                        act2,
                        out,
                    }
                }
            }
            Op::Linear { fin, fout, bias } => {
                let w = self.tensor(ch.head, "weight")?;
                let b = if *bias {
                    Some(self.tensor(ch.head, "bias")?)
                } else {
                    None
                };
                let (scale, shift) = match &affine {
                    Some((s, b)) => (s.clone(), b.clone()),
                    None => (vec![1.0; *fout], vec![0.0; *fout]),
                };
                // The input is flattened in NCHW order (c, h, w); the plan holds it as NHWC
                // rows, so feature (p, c) of the plan is PyTorch's feature c·hw + p.
                let hw = x.h * x.w;
                if hw > 1 && x.ld != x.c {
                    return Err(EngineError::Unsupported {
                        path: head.path.clone(),
                        what: "a linear layer over a strided channel slice".into(),
                    });
                }
                let cx = x.c;
                let packed = PackedB::pack(
                    *fin,
                    *fout,
                    self.opts.isa.nr(),
                    |col, kk| {
                        let (p, ci) = (kk / cx, kk % cx);
                        w[col * fin + ci * hw + p] * scale[col]
                    },
                    |col| b.map_or(0.0, |b| b[col]) * scale[col] + shift[col],
                );
                let xin = View {
                    ld: if hw > 1 { x.c * hw } else { x.ld },
                    c: *fin,
                    h: 1,
                    w: 1,
                    ..x
                };
                Kind::Gemm {
                    x: xin,
                    geom: None,
                    groups: vec![packed],
                    cin_g: *fin,
                    cout_g: *fout,
                    act1,
                    res,
                    act2,
                    out,
                }
            }
            Op::BatchNorm { .. } | Op::Act { .. } | Op::Add => {
                let (x, res, act1, act2) = match (&head.op, ch.add) {
                    // A chain that starts at an add: its two inputs.
                    (Op::Add, _) => {
                        let b = self.input(head.inputs[1]);
                        (x, Some(b), None, act1)
                    }
                    (Op::Act { act }, None) => (x, None, Some(*act), None),
                    (Op::Act { act }, Some(_)) => (x, res, Some(*act), act2),
                    _ => (x, res, act1, act2),
                };
                let affine = if matches!(head.op, Op::BatchNorm { .. }) {
                    Some(self.bn_affine(ch.head)?)
                } else {
                    affine
                };
                Kind::Map {
                    x,
                    affine,
                    act1,
                    res,
                    act2,
                    out,
                }
            }
            other => unreachable!("`{}` does not start a chain", other.kind()),
        };
        self.vals[tail] = Some(out);
        self.push(kind, ch.nodes);
        Ok(())
    }
}
