//! Every kernel of the engine against a naive reference: small graphs of one kind of layer
//! (dense, grouped, depthwise and pointwise convolutions with kernels 1/3/5/7, strides 1–2, TF
//! "SAME" and dilation; batch norm + activation fusion; residual adds; pooling with ceil mode;
//! SE gates; shuffle, split and concat; linear layers over flattened maps), compiled for every
//! instruction set this CPU runs — the portable fallback included — and compared with a direct
//! NCHW float64 interpreter of the same graph written here.

use effcnn_arch::builder::{names, GraphBuilder};
use effcnn_arch::graph::pool_out_size;
use effcnn_arch::{Act, Conv, Graph, ModelMeta, NodeId, Op, Pad, Profile, Shape};
use effcnn_engine::{Isa, Plan, PlanOptions};

mod common;

use common::{fill, weights};

type Weights = effcnn_engine::WeightMap;

fn act(a: Act, x: f64) -> f64 {
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    match a {
        Act::Relu => x.max(0.0),
        Act::Relu6 => x.clamp(0.0, 6.0),
        Act::Silu => x * sig(x),
        Act::Sigmoid => sig(x),
        Act::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Act::HardSigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
    }
}

/// A tensor `n × c × h × w`, float64, NCHW.
#[derive(Clone)]
struct T {
    c: usize,
    h: usize,
    w: usize,
    v: Vec<f64>,
}

impl T {
    fn at(&self, n: usize, c: usize, y: usize, x: usize) -> f64 {
        self.v[((n * self.c + c) * self.h + y) * self.w + x]
    }
}

/// The naive reference: every op straight from its definition.
fn reference(g: &Graph, w: &Weights, batch: usize, x: &[f32], h: usize, wd: usize) -> Vec<f64> {
    let t = |key: &str| &w[key].1;
    let mut vals: Vec<T> = Vec::new();
    for node in &g.nodes {
        let inp = |i: usize| &vals[node.inputs[i]];
        let out = match &node.op {
            Op::Input => T {
                c: 3,
                h,
                w: wd,
                v: x.iter().map(|&v| v as f64).collect(),
            },
            Op::Conv(cv) => {
                let a = inp(0);
                let (pt, pl, pb, pr) = cv.pad.resolve(a.h, a.w, cv.k, cv.stride, cv.dilation);
                let ek = |k: usize| (k - 1) * cv.dilation + 1;
                let oh = (a.h + pt + pb - ek(cv.k.0)) / cv.stride.0 + 1;
                let ow = (a.w + pl + pr - ek(cv.k.1)) / cv.stride.1 + 1;
                let wt = t(&format!("{}.weight", node.path));
                let (cig, cog) = (cv.cin / cv.groups, cv.cout / cv.groups);
                let mut v = vec![0.0; batch * cv.cout * oh * ow];
                for n in 0..batch {
                    for co in 0..cv.cout {
                        let gi = co / cog;
                        let b = if cv.bias {
                            t(&format!("{}.bias", node.path))[co] as f64
                        } else {
                            0.0
                        };
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let mut s = b;
                                for ci in 0..cig {
                                    for ky in 0..cv.k.0 {
                                        for kx in 0..cv.k.1 {
                                            let iy = (oy * cv.stride.0 + ky * cv.dilation) as isize
                                                - pt as isize;
                                            let ix = (ox * cv.stride.1 + kx * cv.dilation) as isize
                                                - pl as isize;
                                            if iy < 0
                                                || ix < 0
                                                || iy as usize >= a.h
                                                || ix as usize >= a.w
                                            {
                                                continue;
                                            }
                                            let wi = ((co * cig + ci) * cv.k.0 + ky) * cv.k.1 + kx;
                                            s += wt[wi] as f64
                                                * a.at(n, gi * cig + ci, iy as usize, ix as usize);
                                        }
                                    }
                                }
                                v[((n * cv.cout + co) * oh + oy) * ow + ox] = s;
                            }
                        }
                    }
                }
                T {
                    c: cv.cout,
                    h: oh,
                    w: ow,
                    v,
                }
            }
            Op::BatchNorm { c, eps } => {
                let a = inp(0).clone();
                let p = |s: &str| t(&format!("{}.{s}", node.path));
                let (gm, bt, mu, var) =
                    (p("weight"), p("bias"), p("running_mean"), p("running_var"));
                let hw = a.h * a.w;
                let mut o = a;
                for (i, v) in o.v.iter_mut().enumerate() {
                    let ch = (i / hw) % c;
                    *v = (*v - mu[ch] as f64) / (var[ch] as f64 + eps).sqrt() * gm[ch] as f64
                        + bt[ch] as f64;
                }
                o
            }
            Op::Act { act: a } => {
                let mut o = inp(0).clone();
                o.v.iter_mut().for_each(|v| *v = act(*a, *v));
                o
            }
            Op::MaxPool {
                k,
                stride,
                pad,
                ceil_mode,
            } => pool(inp(0), batch, *k, *stride, *pad, *ceil_mode, None),
            Op::AvgPool {
                k,
                stride,
                pad,
                count_include_pad,
            } => pool(
                inp(0),
                batch,
                *k,
                *stride,
                *pad,
                false,
                Some(*count_include_pad),
            ),
            Op::GlobalAvgPool => {
                let a = inp(0);
                let hw = (a.h * a.w) as f64;
                let v =
                    a.v.chunks(a.h * a.w)
                        .map(|c| c.iter().sum::<f64>() / hw)
                        .collect();
                T {
                    c: a.c,
                    h: 1,
                    w: 1,
                    v,
                }
            }
            Op::Flatten | Op::Dropout { .. } | Op::DropPath { .. } => {
                let a = inp(0).clone();
                T {
                    c: node.shape.c,
                    h: if matches!(node.op, Op::Flatten) {
                        1
                    } else {
                        a.h
                    },
                    w: if matches!(node.op, Op::Flatten) {
                        1
                    } else {
                        a.w
                    },
                    v: a.v,
                }
            }
            Op::Linear { fin, fout, bias } => {
                let a = inp(0);
                let wt = t(&format!("{}.weight", node.path));
                let mut v = vec![0.0; batch * fout];
                for n in 0..batch {
                    for o in 0..*fout {
                        let mut s = if *bias {
                            t(&format!("{}.bias", node.path))[o] as f64
                        } else {
                            0.0
                        };
                        for i in 0..*fin {
                            s += wt[o * fin + i] as f64 * a.v[n * fin + i];
                        }
                        v[n * fout + o] = s;
                    }
                }
                T {
                    c: *fout,
                    h: 1,
                    w: 1,
                    v,
                }
            }
            Op::Add => {
                let mut o = inp(0).clone();
                for i in 1..node.inputs.len() {
                    for (a, b) in o.v.iter_mut().zip(&inp(i).v) {
                        *a += b;
                    }
                }
                o
            }
            Op::Scale => {
                let (a, g) = (inp(0), inp(1));
                let hw = a.h * a.w;
                let mut o = a.clone();
                for (i, v) in o.v.iter_mut().enumerate() {
                    *v *= g.v[i / hw];
                }
                o
            }
            Op::Concat => {
                let first = inp(0);
                let c: usize = (0..node.inputs.len()).map(|i| inp(i).c).sum();
                let hw = first.h * first.w;
                let mut v = Vec::with_capacity(batch * c * hw);
                for n in 0..batch {
                    for i in 0..node.inputs.len() {
                        let a = inp(i);
                        v.extend_from_slice(&a.v[n * a.c * hw..(n + 1) * a.c * hw]);
                    }
                }
                T {
                    c,
                    h: first.h,
                    w: first.w,
                    v,
                }
            }
            Op::Slice { start, len } => {
                let a = inp(0);
                let hw = a.h * a.w;
                let mut v = Vec::new();
                for n in 0..batch {
                    let base = (n * a.c + start) * hw;
                    v.extend_from_slice(&a.v[base..base + len * hw]);
                }
                T {
                    c: *len,
                    h: a.h,
                    w: a.w,
                    v,
                }
            }
            Op::Shuffle { groups } => {
                let a = inp(0);
                let (hw, cpg) = (a.h * a.w, a.c / groups);
                let mut o = a.clone();
                for n in 0..batch {
                    for gi in 0..*groups {
                        for i in 0..cpg {
                            let (src, dst) = (gi * cpg + i, i * groups + gi);
                            for p in 0..hw {
                                o.v[(n * a.c + dst) * hw + p] = a.v[(n * a.c + src) * hw + p];
                            }
                        }
                    }
                }
                o
            }
        };
        vals.push(out);
    }
    vals[g.output].v.clone()
}

fn pool(a: &T, batch: usize, k: usize, s: usize, p: usize, ceil: bool, avg: Option<bool>) -> T {
    let oh = pool_out_size(a.h, k, s, p, ceil).unwrap();
    let ow = pool_out_size(a.w, k, s, p, ceil).unwrap();
    let mut v = vec![0.0; batch * a.c * oh * ow];
    for n in 0..batch {
        for c in 0..a.c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut m, mut sum, mut cnt) = (f64::NEG_INFINITY, 0.0, 0);
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * s + ky) as isize - p as isize;
                            let ix = (ox * s + kx) as isize - p as isize;
                            if iy < 0 || ix < 0 || iy as usize >= a.h || ix as usize >= a.w {
                                continue;
                            }
                            let x = a.at(n, c, iy as usize, ix as usize);
                            m = m.max(x);
                            sum += x;
                            cnt += 1;
                        }
                    }
                    v[((n * a.c + c) * oh + oy) * ow + ox] = match avg {
                        None => m,
                        Some(true) => sum / (k * k) as f64,
                        Some(false) => sum / cnt as f64,
                    };
                }
            }
        }
    }
    T {
        c: a.c,
        h: oh,
        w: ow,
        v,
    }
}

fn meta() -> ModelMeta {
    ModelMeta {
        name: "test".into(),
        family: "test".into(),
        profile: Profile::Imagenet,
        width: 1.0,
        depth: 1.0,
        resolution: 0,
        classes: 0,
        norm_mean: [0.0; 3],
        norm_std: [1.0; 3],
        init: effcnn_arch::graph::InitScheme::Torchvision,
    }
}

fn conv(cin: usize, cout: usize, k: usize, s: usize, pad: Pad, groups: usize) -> Conv {
    Conv {
        cin,
        cout,
        k: (k, k),
        stride: (s, s),
        pad,
        dilation: 1,
        groups,
        bias: false,
    }
}

/// Compile `g` for every instruction set and thread count and compare with the reference.
fn check(what: &str, g: &Graph, batch: usize, h: usize, w: usize) {
    let wts = weights(g, 3);
    let x = fill(11, batch * 3 * h * w);
    let want = reference(g, &wts, batch, &x, h, w);
    for isa in Isa::available() {
        for threads in [1, 2] {
            let opts = PlanOptions {
                isa,
                threads,
                fuse: true,
            };
            let mut plan = Plan::compile(g, &wts, [batch, 3, h, w], opts)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let got = plan.run(&x).unwrap();
            assert_eq!(got.len(), want.len(), "{what}");
            let num: f64 = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (*a as f64 - b).powi(2))
                .sum();
            let den: f64 = want.iter().map(|b| b * b).sum();
            let err = (num / den.max(1e-30)).sqrt();
            assert!(
                err <= 1e-5,
                "{what} on {} with {threads} thread(s): rel-L2 {err:.2e}",
                isa.name()
            );
        }
    }
}

#[test]
fn convolutions_of_every_shape() {
    let n = names(None, None, None);
    // (cin, cout, k, stride, pad, groups): dense, pointwise, grouped, depthwise; odd channels.
    let cases: &[(usize, usize, usize, usize, Pad, usize)] = &[
        (3, 19, 3, 2, Pad::sym(1), 1),
        (3, 8, 7, 2, Pad::sym(3), 1),
        (3, 40, 1, 1, Pad::sym(0), 1),
        (3, 33, 1, 2, Pad::sym(0), 1),
        (3, 6, 5, 1, Pad::TfSame, 3),
        (3, 9, 3, 2, Pad::TfSame, 3),
    ];
    for (i, &(cin, cout, k, s, pad, groups)) in cases.iter().enumerate() {
        let (mut b, x) = GraphBuilder::new(Shape::new(3, 13, 11));
        let mut c = conv(cin, cout, k, s, pad, groups);
        c.bias = i % 2 == 0;
        let y = b.conv(x, "conv", c, n.clone()).unwrap();
        let g = b.finish(meta(), y).unwrap();
        check(&format!("conv case {i}"), &g, 2, 13, 11);
    }
    // Depthwise over many channels (full vectors and tails), kernels 3/5/7, strides 1/2,
    // symmetric and TF "SAME" padding, dilation 2; each followed by BN + activation.
    for (i, (c, k, s, pad, dil)) in [
        (37, 3, 1, Pad::sym(1), 1),
        (40, 3, 2, Pad::sym(1), 1),
        (24, 5, 2, Pad::TfSame, 1),
        (17, 5, 1, Pad::sym(2), 1),
        (16, 7, 1, Pad::sym(3), 1),
        (21, 3, 1, Pad::sym(2), 2),
        (19, 3, 2, Pad::TfSame, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let (mut b, x) = GraphBuilder::new(Shape::new(3, 17, 15));
        let y = b
            .conv(x, "expand", conv(3, c, 1, 1, Pad::sym(0), 1), n.clone())
            .unwrap();
        let mut d = conv(c, c, k, s, pad, c);
        d.dilation = dil;
        let y = b.conv(y, "dw", d, n.clone()).unwrap();
        let y = b.bn(y, "bn", 1e-3, n.clone()).unwrap();
        let acts = [Act::Relu6, Act::Silu, Act::HardSwish, Act::Relu];
        let y = b.act(y, "act", acts[i % acts.len()]);
        let g = b.finish(meta(), y).unwrap();
        check(&format!("depthwise case {i}"), &g, 2, 17, 15);
    }
}

#[test]
fn fused_residual_chains_and_standalone_element_wise_steps() {
    let n = names(None, None, None);
    let (mut b, x) = GraphBuilder::new(Shape::new(3, 9, 9));
    let a = b
        .conv(x, "a", conv(3, 20, 3, 1, Pad::sym(1), 1), n.clone())
        .unwrap();
    let a = b.bn(a, "a.bn", 1e-5, n.clone()).unwrap();
    let a = b.act(a, "a.relu", Act::Relu);
    // conv → bn → add → relu (ResNet) with the shortcut from `a`.
    let c = b
        .conv(a, "b", conv(20, 20, 3, 1, Pad::sym(1), 1), n.clone())
        .unwrap();
    let c = b.bn(c, "b.bn", 1e-5, n.clone()).unwrap();
    let s = b.add(c, a, "add").unwrap();
    let s = b.act(s, "add.relu", Act::Relu);
    // A batch norm and activation on their own (the input is used twice, so nothing fuses).
    let t = b.bn(s, "bn2", 1e-5, n.clone()).unwrap();
    let t = b.act(t, "hs", Act::HardSigmoid);
    let u = b.add(t, s, "add2").unwrap();
    // An add of three inputs.
    let v = b.add(u, t, "add3a").unwrap();
    let v = b.add(v, s, "add3b").unwrap();
    let g = b.finish(meta(), v).unwrap();
    check("residual chains", &g, 3, 9, 9);
}

#[test]
fn pooling_se_shuffle_split_concat_and_linear() {
    let n = names(None, None, None);
    let (mut b, x) = GraphBuilder::new(Shape::new(3, 15, 15));
    let y = b
        .conv(x, "stem", conv(3, 24, 3, 1, Pad::sym(1), 1), n.clone())
        .unwrap();
    let y = b.max_pool_with(y, "pool_ceil", 3, 2, 0, true).unwrap();
    let p = b.avg_pool(y, "avg", 3, 1, 1).unwrap();
    // SE: squeeze, two 1×1 convs with bias, sigmoid gate, scale.
    let s = b.global_avg_pool(p, "se.pool");
    let mut f1 = conv(24, 6, 1, 1, Pad::sym(0), 1);
    f1.bias = true;
    let s = b.conv(s, "se.fc1", f1, n.clone()).unwrap();
    let s = b.act(s, "se.relu", Act::Relu);
    let mut f2 = conv(6, 24, 1, 1, Pad::sym(0), 1);
    f2.bias = true;
    let s = b.conv(s, "se.fc2", f2, n.clone()).unwrap();
    let s = b.act(s, "se.gate", Act::Sigmoid);
    let y = b.scale(p, s, "se.scale").unwrap();
    // ShuffleNetV2-style split → branch → concat → shuffle, then a group pointwise conv.
    let l = b.slice(y, "split.l", 0, 12).unwrap();
    let r = b.slice(y, "split.r", 12, 12).unwrap();
    let r = b
        .conv(r, "branch", conv(12, 12, 1, 1, Pad::sym(0), 1), n.clone())
        .unwrap();
    let y = b.concat(&[l, r], "cat").unwrap();
    let y = b.shuffle(y, "shuffle", 3).unwrap();
    let y = b
        .conv(y, "gpw", conv(24, 30, 1, 1, Pad::sym(0), 3), n.clone())
        .unwrap();
    // A linear layer over a flattened 7×7 map (PyTorch's NCHW feature order).
    let y = b.flatten(y, "flatten");
    let y = b.linear(y, "fc", 10, true, n.clone()).unwrap();
    let g = b.finish(meta(), y).unwrap();
    check("pool/se/shuffle/linear", &g, 2, 15, 15);
}

#[test]
fn ceil_mode_windows_are_clipped_like_pytorch() {
    // 16 → ceil((16 − 3) / 2) + 1 = 8 windows, the last one hanging over the edge.
    let (mut b, x) = GraphBuilder::new(Shape::new(3, 16, 16));
    let y = b.max_pool_with(x, "pool", 3, 2, 0, true).unwrap();
    let g = b.finish(meta(), y).unwrap();
    check("ceil-mode max pool", &g, 1, 16, 16);
}

#[test]
fn the_arena_never_overlaps_tensors_alive_together() {
    let n = names(None, None, None);
    let (mut b, x) = GraphBuilder::new(Shape::new(3, 8, 8));
    let a = b
        .conv(x, "a", conv(3, 8, 3, 1, Pad::sym(1), 1), n.clone())
        .unwrap();
    let c = b
        .conv(a, "b", conv(8, 8, 3, 1, Pad::sym(1), 1), n.clone())
        .unwrap();
    let d = b.add(a, c, "add").unwrap();
    let g = b.finish(meta(), d).unwrap();
    let plan = Plan::compile(&g, &weights(&g, 1), [1, 3, 8, 8], PlanOptions::default()).unwrap();
    assert!(plan.arena_is_consistent());
    assert!(plan.arena_bytes() as u64 >= plan.peak_live_bytes());
    let _: Vec<NodeId> = plan.steps().into_iter().flat_map(|s| s.nodes).collect();
}
