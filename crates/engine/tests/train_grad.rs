//! The training step on whole zoo graphs (every op kind the zoo trains with): the same bits on
//! any thread count, the portable kernels within float32 noise of the vectorised ones, and
//! clear errors for bad batches and weights. (effcnn-nn's tests compare the step's loss,
//! gradients and batch statistics with burn's autodiff.)

use effcnn_arch::{resolve, Act, Graph, Options};
use effcnn_engine::kernels::act_scalar;
use effcnn_engine::kernels::grad;
use effcnn_engine::{Isa, PlanOptions, StepInput, TrainPlan, WeightMap};

mod common;

use common::{fill, weights};

fn graph(name: &str) -> Graph {
    let mut o = Options::cifar();
    o.dropout = Some(0.0);
    resolve(name, &o).unwrap()
}

struct Batch {
    images: Vec<f32>,
    labels: Vec<i64>,
}

fn batch(g: &Graph, n: usize) -> Batch {
    let k = g.nodes[g.output].shape.c;
    Batch {
        images: fill(7, n * 3 * 32 * 32),
        labels: (0..n).map(|i| ((i * 7 + 3) % k) as i64).collect(),
    }
}

fn opts(isa: Isa, threads: usize) -> PlanOptions {
    PlanOptions {
        isa,
        threads,
        fuse: true,
    }
}

fn rel(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum();
    num.sqrt() / den.sqrt().max(1e-30)
}

/// One and two threads give the same bits (drop-path masks included); the portable kernels
/// agree with the best this CPU has within the step's own float32 noise floor, measured as the
/// change of each gradient when the input moves by one part in a million.
#[test]
fn steps_are_deterministic_across_threads_and_close_across_isas() {
    for name in [
        "resnet20",
        "shufflenet_v2_x1_0",
        "mobilenet_v3_small",
        "efficientnet_b0",
    ] {
        let g = resolve(name, &Options::cifar()).unwrap();
        let n = 4;
        let b = batch(&g, n);
        let w = weights(&g, 9);
        let nudged: Vec<f32> = b
            .images
            .iter()
            .enumerate()
            .map(|(i, v)| v * (1.0 + 1e-6 * ((i % 13) as f32 - 6.0) / 6.0))
            .collect();
        let run = |isa: Isa, threads: usize, images: &[f32]| {
            let input = StepInput {
                images,
                labels: &b.labels,
                label_smoothing: 0.1,
                seed: 1,
            };
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut p = TrainPlan::compile(&g, [n, 3, 32, 32], opts(isa, threads)).unwrap();
                p.step(&w, &input).unwrap()
            })
        };
        let one = run(Isa::detect(), 1, &b.images);
        let two = run(Isa::detect(), 2, &b.images);
        assert_eq!(one.loss.to_bits(), two.loss.to_bits(), "{name}: loss");
        for (k, (_, a)) in &one.grads {
            let b = &two.grads[k].1;
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{name} {k}: 1 vs 2 threads differ"
            );
        }
        let noise = run(Isa::detect(), 2, &nudged);
        let port = run(Isa::Portable, 2, &b.images);
        assert!(
            ((port.loss - one.loss) / one.loss).abs() < 1e-5,
            "{name}: loss"
        );
        for (k, (_, a)) in &one.grads {
            let floor = rel(&noise.grads[k].1, a);
            let e = rel(&port.grads[k].1, a);
            assert!(
                e <= (10.0 * floor).max(1e-4),
                "{name} {k}: portable vs {:?} {e:.3e} (noise floor {floor:.3e})",
                Isa::detect()
            );
        }
    }
}

#[test]
fn bad_batches_and_weights_are_clear_errors() {
    let g = graph("resnet20");
    let n = 2;
    let b = batch(&g, n);
    let w = weights(&g, 1);
    let mut plan = TrainPlan::compile(&g, [n, 3, 32, 32], opts(Isa::detect(), 1)).unwrap();
    let step = |plan: &mut TrainPlan, w: &WeightMap, images: &[f32], labels: &[i64]| {
        plan.step(
            w,
            &StepInput {
                images,
                labels,
                label_smoothing: 0.0,
                seed: 0,
            },
        )
        .unwrap_err()
        .to_string()
    };
    let e = step(&mut plan, &w, &b.images[..100], &b.labels);
    assert!(e.contains("compiled for batches 2×3×32×32"), "{e}");
    let e = step(&mut plan, &w, &b.images, &[0]);
    assert!(e.contains("1 labels for a batch of 2"), "{e}");
    let e = step(&mut plan, &w, &b.images, &[0, 10]);
    assert!(
        e.contains("label 10 is outside the model's 10 classes"),
        "{e}"
    );
    let mut missing = w.clone();
    let key = missing
        .keys()
        .find(|k| k.ends_with("conv1.weight"))
        .unwrap()
        .clone();
    missing.remove(&key);
    let e = step(&mut plan, &missing, &b.images, &b.labels);
    assert!(e.contains(&key) && e.contains("missing"), "{e}");
    let mut bad = w.clone();
    bad.get_mut(&key).unwrap().0 = vec![1, 2, 3];
    let e = step(&mut plan, &bad, &b.images, &b.labels);
    assert!(e.contains(&key) && e.contains("shape"), "{e}");
    // The plan still steps after refusing bad input.
    let ok = plan.step(
        &w,
        &StepInput {
            images: &b.images,
            labels: &b.labels,
            label_smoothing: 0.0,
            seed: 0,
        },
    );
    assert!(ok.unwrap().loss.is_finite());
    let e = TrainPlan::compile(&g, [0, 3, 32, 32], opts(Isa::detect(), 1)).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
}

/// The derivative of each activation (PyTorch's conventions), in float64.
fn act_derivative(a: Act, x: f64) -> f64 {
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    match a {
        Act::Relu => f64::from(u8::from(x > 0.0)),
        Act::Relu6 => f64::from(u8::from(x > 0.0 && x < 6.0)),
        Act::Sigmoid => sig(x) * (1.0 - sig(x)),
        Act::Silu => sig(x) * (1.0 + x * (1.0 - sig(x))),
        Act::HardSigmoid => f64::from(u8::from(x > -3.0 && x < 3.0)) / 6.0,
        Act::HardSwish => {
            if x < -3.0 {
                0.0
            } else if x <= 3.0 {
                x / 3.0 + 0.5
            } else {
                1.0
            }
        }
    }
}

/// Every activation's backward kernel, on every instruction set, writing and accumulating:
/// `dx = dy · act'(x)` against the float64 derivative, at points off the kinks (the whole-net
/// comparisons use smooth activations, so the kinked ones are checked here).
#[test]
fn activation_backward_matches_the_derivative() {
    let n = 1001; // not a multiple of any vector width: the tails run too
    let x: Vec<f32> = fill(3, n)
        .into_iter()
        .map(|u| {
            let v = 8.0 * u;
            // Off the kinks at -3, 0, 3 and 6.
            if [-3.0f32, 0.0, 3.0, 6.0]
                .iter()
                .any(|k| (v - k).abs() < 1e-3)
            {
                v + 2e-3
            } else {
                v
            }
        })
        .collect();
    let dy = fill(4, n);
    let base = fill(5, n);
    for a in [
        Act::Relu,
        Act::Relu6,
        Act::Sigmoid,
        Act::Silu,
        Act::HardSigmoid,
        Act::HardSwish,
    ] {
        let y: Vec<f32> = x.iter().map(|&v| act_scalar(Some(a), v)).collect();
        for isa in Isa::available() {
            for acc in [false, true] {
                let mut dx = base.clone();
                // SAFETY: every buffer holds n floats.
                unsafe {
                    grad::act_back(
                        isa,
                        a,
                        n,
                        x.as_ptr(),
                        y.as_ptr(),
                        dy.as_ptr(),
                        dx.as_mut_ptr(),
                        acc,
                    )
                };
                for i in 0..n {
                    let want = f64::from(dy[i]) * act_derivative(a, f64::from(x[i]))
                        + if acc { f64::from(base[i]) } else { 0.0 };
                    assert!(
                        (f64::from(dx[i]) - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{a:?} {isa:?} acc {acc}: x {} dx {} want {want}",
                        x[i],
                        dx[i]
                    );
                }
            }
        }
    }
}

/// The depthwise backward kernels (input and weight gradients) against a float64 loop over the
/// definition, on every instruction set: stride 1 and 2, kernels 3 and 5, dilation, asymmetric
/// (TF-SAME-like) padding, images narrower than the kernel, channel counts with a partial
/// vector, and `dx` accumulated or overwritten.
#[test]
fn depthwise_backward_kernels_match_the_definition() {
    use effcnn_engine::kernels::grad::WinImage;
    use effcnn_engine::kernels::Geom;
    // (h, w, k, stride, dilation, pad top, pad left, channels)
    let cases = [
        (9, 11, 3, 1, 1, 1, 1, 37),
        (8, 8, 3, 2, 1, 1, 1, 16),
        (7, 6, 3, 2, 1, 0, 0, 33),
        (6, 9, 5, 1, 1, 2, 2, 20),
        (10, 10, 3, 1, 2, 2, 2, 17),
        (5, 2, 3, 1, 1, 1, 1, 40),
        (4, 7, 3, 1, 1, 0, 1, 8),
        (9, 9, 5, 2, 1, 2, 1, 19),
        (3, 4, 5, 1, 1, 2, 2, 24),
        (12, 11, 5, 1, 2, 4, 4, 33),
    ];
    for (i, &(h, w, k, s, d, pt, pl, c)) in cases.iter().enumerate() {
        let out = |size: usize, p: usize| (size + 2 * p - d * (k - 1) - 1) / s + 1;
        let g = Geom {
            h,
            w,
            oh: out(h, pt),
            ow: out(w, pl),
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            pt,
            pl,
            dilation: d,
        };
        let win = WinImage { c, s: g };
        let x = fill(11 + i as u64, h * w * c);
        let dy = fill(12 + i as u64, g.oh * g.ow * c);
        let wt = fill(13 + i as u64, k * k * c);
        let base = fill(14 + i as u64, h * w * c);
        let dw0 = fill(15 + i as u64, k * k * c);
        // The definition: y[oy, ox, ch] = Σ w[ky, kx, ch] · x[oy·s + ky·d - pt, ox·s + kx·d - pl, ch].
        let mut want_dx = vec![0f64; h * w * c];
        let mut want_dw: Vec<f64> = dw0.iter().map(|&v| f64::from(v)).collect();
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * s + ky * d) as isize - pt as isize;
                        let ix = (ox * s + kx * d) as isize - pl as isize;
                        if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                            continue;
                        }
                        let p = iy as usize * w + ix as usize;
                        for ch in 0..c {
                            let dv = f64::from(dy[(oy * g.ow + ox) * c + ch]);
                            want_dx[p * c + ch] += f64::from(wt[(ky * k + kx) * c + ch]) * dv;
                            want_dw[(ky * k + kx) * c + ch] += f64::from(x[p * c + ch]) * dv;
                        }
                    }
                }
            }
        }
        let close = |what: &str, got: &[f32], want: &[f64], isa: Isa| {
            for (j, (&a, &b)) in got.iter().zip(want).enumerate() {
                assert!(
                    (f64::from(a) - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "case {i} {what} ({isa:?}) at {j}: {a} vs {b}"
                );
            }
        };
        for isa in Isa::available() {
            for acc in [false, true] {
                let mut dx = base.clone();
                // SAFETY: the buffers hold h·w·c, oh·ow·c and k·k·c floats.
                unsafe {
                    grad::dw_back_dx(isa, &win, wt.as_ptr(), dy.as_ptr(), dx.as_mut_ptr(), acc)
                };
                let want: Vec<f64> = want_dx
                    .iter()
                    .zip(&base)
                    .map(|(&v, &b)| if acc { v + f64::from(b) } else { v })
                    .collect();
                close("dx", &dx, &want, isa);
            }
            let mut dwv = dw0.clone();
            // SAFETY: as above.
            unsafe { grad::dw_back_dw(isa, &win, x.as_ptr(), dy.as_ptr(), dwv.as_mut_ptr()) };
            close("dw", &dwv, &want_dw, isa);
        }
    }
}

/// Max-pooling backward on every instruction set against PyTorch's rule written out (each
/// window's gradient goes to its first maximum in scan order; a NaN wins and the last NaN
/// keeps it), for windows that tile the input (the vectorised path) and for overlapping,
/// padded and remainder windows, with ties, NaNs and partial channel vectors, written or
/// added to `dx`.
#[test]
fn max_pool_backward_matches_the_first_maximum_rule() {
    use effcnn_engine::kernels::grad::WinImage;
    use effcnn_engine::kernels::Geom;
    // (h, w, k, stride, pad, channels)
    let cases = [
        (8, 8, 2, 2, 0, 16),
        (6, 10, 2, 2, 0, 13),
        (9, 9, 3, 3, 0, 3),
        (7, 7, 2, 2, 0, 24),
        (8, 8, 3, 2, 1, 17),
        (9, 8, 3, 1, 0, 9),
    ];
    for (i, &(h, w, k, s, p, c)) in cases.iter().enumerate() {
        let out = |size: usize| (size + 2 * p - k) / s + 1;
        let g = Geom::pool(k, s, p, (h, w), (out(h), out(w)));
        let win = WinImage { c, s: g };
        // Three levels make ties common; a few NaNs, some windows with two of them.
        let mut x: Vec<f32> = fill(40 + i as u64, h * w * c)
            .iter()
            .map(|v| (v * 1.5).round())
            .collect();
        for j in (5..x.len()).step_by(23) {
            x[j] = f32::NAN;
        }
        for j in (5 + c..x.len()).step_by(23 * 4) {
            x[j] = f32::NAN;
        }
        let dy = fill(50 + i as u64, g.oh * g.ow * c);
        let base = fill(60 + i as u64, h * w * c);
        let mut want = vec![0f32; h * w * c];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                for ch in 0..c {
                    let (mut best, mut arg) = (f32::NEG_INFINITY, None);
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * s + ky) as isize - p as isize;
                            let ix = (ox * s + kx) as isize - p as isize;
                            if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                continue;
                            }
                            let at = (iy as usize * w + ix as usize) * c + ch;
                            if x[at] > best || x[at].is_nan() {
                                best = x[at];
                                arg = Some(at);
                            }
                        }
                    }
                    if let Some(at) = arg {
                        want[at] += dy[(oy * g.ow + ox) * c + ch];
                    }
                }
            }
        }
        for isa in Isa::available() {
            for acc in [false, true] {
                let mut dx = if acc {
                    base.clone()
                } else {
                    vec![f32::NAN; h * w * c]
                };
                let (mut best, mut arg) = (vec![0f32; c], vec![0u32; c]);
                unsafe {
                    grad::pool_back(
                        isa,
                        &win,
                        true,
                        false,
                        x.as_ptr(),
                        dy.as_ptr(),
                        dx.as_mut_ptr(),
                        acc,
                        best.as_mut_ptr(),
                        arg.as_mut_ptr(),
                    );
                }
                for (j, &got) in dx.iter().enumerate() {
                    let expect = want[j] + if acc { base[j] } else { 0.0 };
                    assert!(
                        (got - expect).abs() <= 1e-6,
                        "case {i} ({}, acc {acc}): dx[{j}] = {got}, want {expect}",
                        isa.name()
                    );
                }
            }
        }
    }
}

/// The geometry of a 3×3 stride-1 convolution with padding `pad` over `n` images of `h × w`,
/// and every (output pixel, tap `3·ky + kx`, input pixel) whose input lies inside the image.
fn conv3x3(
    n: usize,
    h: usize,
    w: usize,
    pad: usize,
) -> (effcnn_engine::kernels::Geom, Vec<(usize, usize, usize)>) {
    let (oh, ow) = (h + 2 * pad - 2, w + 2 * pad - 2);
    let mut triples = Vec::new();
    for img in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for tap in 0..9 {
                    let iy = (oy + tap / 3) as isize - pad as isize;
                    let ix = (ox + tap % 3) as isize - pad as isize;
                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                        let p = (img * h + iy as usize) * w + ix as usize;
                        triples.push(((img * oh + oy) * ow + ox, tap, p));
                    }
                }
            }
        }
    }
    let g = effcnn_engine::kernels::Geom {
        h,
        w,
        oh,
        ow,
        kh: 3,
        kw: 3,
        sh: 1,
        sw: 1,
        pt: pad,
        pl: pad,
        dilation: 1,
    };
    (g, triples)
}

/// Winograd F(2×2, 3×3) against the convolution's float64 definition on every instruction set:
/// odd output sizes (tiles cut by the image edge), paddings 0 to 2 (the flipped input gradient
/// of a padding-0 layer has padding 2), partial channel vectors, bias, written or added, and
/// blocks of tiles that span images.
#[test]
fn winograd_convolution_matches_the_definition() {
    use effcnn_engine::kernels::gemm::PackedB;
    use effcnn_engine::kernels::wino::{self, WinoJob};
    // (n, h, w, pad, cin, cout, tiles per task)
    let cases = [
        (2, 8, 8, 1, 16, 16, 12),
        (3, 7, 5, 1, 9, 21, 5),
        (1, 6, 9, 0, 8, 17, 7),
        (2, 5, 4, 2, 19, 8, 3),
        (1, 3, 3, 1, 33, 40, 96),
        (2, 11, 6, 1, 5, 3, 16),
    ];
    for (i, &(n, h, w, pad, cin, cout, tt)) in cases.iter().enumerate() {
        let (oh, ow) = (h + 2 * pad - 2, w + 2 * pad - 2);
        let x = fill(70 + i as u64, n * h * w * cin);
        let wt = fill(71 + i as u64, cout * cin * 9);
        let bias = fill(72 + i as u64, cout);
        let base = fill(73 + i as u64, n * oh * ow * cout);
        let (s, triples) = conv3x3(n, h, w, pad);
        let mut want = vec![0f64; n * oh * ow * cout];
        for (o, v) in want.iter_mut().enumerate() {
            *v = f64::from(bias[o % cout]);
        }
        for &(o, tap, p) in &triples {
            for co in 0..cout {
                for ci in 0..cin {
                    want[o * cout + co] +=
                        f64::from(x[p * cin + ci]) * f64::from(wt[(co * cin + ci) * 9 + tap]);
                }
            }
        }
        for isa in Isa::available() {
            let mut u: Vec<PackedB> = Vec::new();
            wino::pack_weights(&mut u, isa.nr(), cin, cout, |co, ci| {
                let k = &wt[(co * cin + ci) * 9..][..9];
                [[k[0], k[1], k[2]], [k[3], k[4], k[5]], [k[6], k[7], k[8]]]
            });
            for acc in [false, true] {
                let mut out = if acc {
                    base.clone()
                } else {
                    vec![f32::NAN; base.len()]
                };
                let job = WinoJob {
                    isa,
                    x: x.as_ptr(),
                    ldx: cin,
                    cin,
                    n,
                    s,
                    u: &u,
                    bias: bias.as_ptr(),
                    out: out.as_mut_ptr(),
                    ldc: cout,
                    cout,
                    acc,
                    tt,
                };
                for t in 0..job.tasks() {
                    unsafe { wino::wino_task(isa, &job, t) };
                }
                let scale = (cin * 9) as f64;
                for (j, &got) in out.iter().enumerate() {
                    let expect = want[j] + if acc { f64::from(base[j]) } else { 0.0 };
                    assert!(
                        (f64::from(got) - expect).abs() <= 1e-6 * scale,
                        "case {i} ({}, acc {acc}): out[{j}] = {got}, want {expect}",
                        isa.name()
                    );
                }
            }
        }
    }
}

/// The Winograd weight gradient (F(3×3, 2×2)) against the float64 definition
/// `dW[co][ci][ky][kx] = Σ dy[n, oy, ox, co] · x[n, oy + ky − pad, ox + kx − pad, ci]`, on every
/// instruction set, with odd sizes, paddings 0 to 2, partial vectors and parts that split the
/// tiles unevenly.
#[test]
fn winograd_weight_gradient_matches_the_definition() {
    use effcnn_engine::kernels::wino::{self, WinoGradJob};
    // (n, h, w, pad, cin, cout, parts, tiles per block)
    let cases = [
        (2, 8, 8, 1, 16, 16, 3, 12),
        (3, 7, 5, 1, 9, 21, 2, 5),
        (1, 6, 9, 0, 8, 17, 1, 7),
        (2, 5, 4, 2, 19, 8, 4, 3),
        (2, 11, 6, 1, 5, 3, 8, 16),
    ];
    for (i, &(n, h, w, pad, cin, cout, parts, tt)) in cases.iter().enumerate() {
        let (oh, ow) = (h + 2 * pad - 2, w + 2 * pad - 2);
        let x = fill(80 + i as u64, n * h * w * cin);
        let dy = fill(81 + i as u64, n * oh * ow * cout);
        let (s, triples) = conv3x3(n, h, w, pad);
        let mut want = vec![0f64; cout * cin * 9];
        for &(o, tap, p) in &triples {
            for co in 0..cout {
                let g = f64::from(dy[o * cout + co]);
                for ci in 0..cin {
                    want[(co * cin + ci) * 9 + tap] += g * f64::from(x[p * cin + ci]);
                }
            }
        }
        for isa in Isa::available() {
            let mut job = WinoGradJob {
                isa,
                x: x.as_ptr(),
                cin,
                dy: dy.as_ptr(),
                cout,
                n,
                s,
                per: 0,
                tt,
            };
            job.per = job.tiles().div_ceil(parts);
            // Each part into its own zeroed sums, added in order.
            let size = 16 * cout * cin;
            let mut sum = vec![0f32; size];
            for p in 0..parts {
                let mut m = vec![0f32; size];
                unsafe { wino::wino_grad_part(isa, &job, p, m.as_mut_ptr()) };
                for (s, v) in sum.iter_mut().zip(&m) {
                    *s += v;
                }
            }
            let mut got = vec![0f32; cout * cin * 9];
            wino::grad_output_transform(&sum, cout, cin, &mut got);
            let scale = (n * oh * ow) as f64;
            for (j, (&g, &e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(g) - e).abs() <= 1e-6 * scale,
                    "case {i} ({}): dW[{j}] = {g}, want {e}",
                    isa.name()
                );
            }
        }
    }
}
