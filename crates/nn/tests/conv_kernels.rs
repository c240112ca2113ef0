//! effcnn's convolution kernels against burn's own `conv2d` (the reference): forward output,
//! input gradient and weight gradient through autodiff, on fixed edge-case shapes and on random
//! ones (odd sizes, strides 1–3, symmetric and asymmetric padding, dense, grouped with
//! groups < C, depthwise with groups = C, 1×1 pointwise, kernels 1–5).

use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use effcnn_arch::Act;
use effcnn_nn::model::ext::{accelerated, conv2d};

#[derive(Debug, Clone, Copy)]
struct Case {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    co: usize,
    k: (usize, usize),
    stride: (usize, usize),
    pad: [(usize, usize); 2],
    groups: usize,
}

/// splitmix64, so failures reproduce from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn values(&mut self, len: usize) -> Vec<f32> {
        (0..len)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            .collect()
    }
}

fn options(c: &Case) -> ConvOptions<2> {
    ConvOptions {
        stride: [c.stride.0, c.stride.1],
        padding: c.pad,
        dilation: [1, 1],
        groups: c.groups,
    }
}

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let num: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f32 = b.iter().map(|y| y * y).sum();
    (num / den.max(1e-20)).sqrt()
}

fn vals(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

/// Runs one case through both paths on `device`; returns (y, dx, dw) relative errors.
fn compare(case: &Case, seed: u64, device: &Device) -> [f32; 3] {
    let mut rng = Rng(seed);
    let cg = case.c / case.groups;
    let xv = rng.values(case.n * case.c * case.h * case.w);
    let wv = rng.values(case.co * cg * case.k.0 * case.k.1);
    let x_shape = [case.n, case.c, case.h, case.w];
    let w_shape = [case.co, cg, case.k.0, case.k.1];
    let leaf = |v: &Vec<f32>, s: [usize; 4]| {
        let t = Tensor::<4>::from_data(TensorData::new(v.clone(), s), device);
        if device.is_autodiff() {
            t.require_grad()
        } else {
            t
        }
    };
    let (xa, wa) = (leaf(&xv, x_shape), leaf(&wv, w_shape));
    let (xb, wb) = (leaf(&xv, x_shape), leaf(&wv, w_shape));
    let ya = conv2d(xa.clone(), wa.clone(), options(case));
    let yb = burn_conv2d(xb.clone(), wb.clone(), None, options(case));
    assert_eq!(ya.dims(), yb.dims(), "{case:?}");
    let ry = rng.values(ya.dims().iter().product());
    let r = Tensor::<4>::from_data(TensorData::new(ry, ya.dims()), device);
    let y_err = rel_err(&vals(ya.clone()), &vals(yb.clone()));
    if !device.is_autodiff() {
        return [y_err, 0.0, 0.0];
    }
    let ga = (ya * r.clone()).sum().backward();
    let gb = (yb * r).sum().backward();
    let dx = rel_err(
        &vals(xa.grad(&ga).expect("dx")),
        &vals(xb.grad(&gb).expect("dx")),
    );
    let dw = rel_err(
        &vals(wa.grad(&ga).expect("dw")),
        &vals(wb.grad(&gb).expect("dw")),
    );
    [y_err, dx, dw]
}

fn assert_close(case: &Case, seed: u64, device: &Device) {
    let errs = compare(case, seed, device);
    assert!(
        errs.iter().all(|e| *e < 1e-5),
        "seed {seed} {case:?}: relative errors y/dx/dw = {errs:?}"
    );
}

fn case(c: usize, co: usize, k: usize, s: usize, p: usize, groups: usize) -> Case {
    Case {
        n: 3,
        c,
        h: 9,
        w: 7,
        co,
        k: (k, k),
        stride: (s, s),
        pad: [(p, p), (p, p)],
        groups,
    }
}

#[test]
fn the_kernels_serve_flex_devices_only() {
    assert!(accelerated(&Device::flex()));
    assert!(accelerated(&Device::flex().autodiff()));
}

#[test]
fn fixed_shapes_match_burn_forward_and_gradients() {
    let device = Device::flex().autodiff();
    let cases = [
        case(4, 8, 3, 1, 1, 1),  // dense 3×3
        case(4, 8, 3, 2, 1, 1),  // dense stride 2
        case(6, 6, 3, 1, 1, 6),  // depthwise
        case(6, 6, 3, 2, 1, 6),  // depthwise stride 2
        case(5, 5, 5, 2, 2, 5),  // depthwise 5×5
        case(6, 12, 3, 1, 0, 3), // grouped, groups < C, no padding
        case(8, 4, 1, 1, 0, 1),  // pointwise
        case(8, 12, 1, 1, 0, 4), // grouped pointwise (ShuffleNet v1)
        case(3, 5, 3, 3, 2, 1),  // stride 3, padding 2
        Case {
            // TF "SAME" style asymmetric padding, stride 2
            pad: [(0, 1), (1, 0)],
            ..case(4, 4, 3, 2, 0, 4)
        },
        Case {
            // batch 1, a 1×1 map (the SE block's convolutions)
            n: 1,
            h: 1,
            w: 1,
            ..case(8, 2, 1, 1, 0, 1)
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        assert_close(c, 100 + i as u64, &device);
    }
}

#[test]
fn random_shapes_match_burn_forward_and_gradients() {
    let device = Device::flex().autodiff();
    let mut rng = Rng(7);
    for seed in 0..60u64 {
        let groups_kind = rng.below(3);
        let c = 1 + rng.below(8);
        let (groups, co) = match groups_kind {
            0 => (1, 1 + rng.below(8)),
            1 => (c, c),
            _ => {
                let g = [1, 2, 3][rng.below(3)];
                (g, g * (1 + rng.below(3)))
            }
        };
        let c = if groups_kind == 2 {
            groups * (1 + rng.below(3))
        } else {
            c
        };
        let k = (1 + rng.below(5), 1 + rng.below(5));
        let pad = [
            (rng.below(k.0), rng.below(k.0)),
            (rng.below(k.1), rng.below(k.1)),
        ];
        let case = Case {
            n: 1 + rng.below(3),
            c,
            h: k.0 + rng.below(9),
            w: k.1 + rng.below(9),
            co,
            k,
            stride: (1 + rng.below(3), 1 + rng.below(3)),
            pad,
            groups,
        };
        assert_close(&case, seed, &device);
    }
}

#[test]
fn inference_without_autodiff_matches_burn() {
    let device = Device::flex();
    for (i, c) in [
        case(6, 6, 3, 2, 1, 6),
        case(4, 8, 3, 1, 1, 1),
        case(8, 4, 1, 1, 0, 2),
    ]
    .iter()
    .enumerate()
    {
        let [y, _, _] = compare(c, i as u64, &device);
        assert!(y < 1e-5, "{c:?}: {y}");
    }
}

/// Batch norm in training mode, alone and fused with ReLU / ReLU6: output, statistics and the
/// gradients of input, γ and β against burn's `batch_norm_train` followed by burn's activation,
/// on shapes with a single spatial position, odd sizes and batch 1.
#[test]
fn batch_norm_train_matches_burn() {
    use burn::tensor::activation::relu;
    use burn::tensor::module::batch_norm_train as burn_bn;
    let device = Device::flex().autodiff();
    let shapes = [[4, 3, 5, 7], [1, 6, 3, 3], [8, 5, 1, 1], [2, 16, 9, 4]];
    let acts = [None, Some(Act::Relu), Some(Act::Relu6)];
    for (seed, (dims, act)) in shapes
        .iter()
        .flat_map(|d| acts.iter().map(move |a| (*d, *a)))
        .enumerate()
    {
        let mut rng = Rng(seed as u64 + 11);
        let c = dims[1];
        // An offset mean and a non-unit scale make the statistics matter; γ up to 4 and β up to
        // 3 push some outputs past ReLU6's upper clip.
        let xv: Vec<f32> = rng
            .values(dims.iter().product())
            .iter()
            .map(|v| 3.0 * v + 0.5)
            .collect();
        let gv: Vec<f32> = rng.values(c).iter().map(|v| 4.0 * v).collect();
        let bv: Vec<f32> = rng.values(c).iter().map(|v| 3.0 * v).collect();
        let leaf4 =
            || Tensor::<4>::from_data(TensorData::new(xv.clone(), dims), &device).require_grad();
        let leaf1 = |v: &Vec<f32>| {
            Tensor::<1>::from_data(TensorData::new(v.clone(), [c]), &device).require_grad()
        };
        let (xa, ga, ba) = (leaf4(), leaf1(&gv), leaf1(&bv));
        let (xb, gb, bb) = (leaf4(), leaf1(&gv), leaf1(&bv));
        let (ya, ma, va) =
            effcnn_nn::model::ext::batch_norm_train(xa.clone(), ga.clone(), ba.clone(), 1e-5, act);
        let rb = burn_bn(xb.clone(), gb.clone(), bb.clone(), 1e-5);
        let yb = match act {
            Some(Act::Relu) => relu(rb.output),
            Some(Act::Relu6) => rb.output.clamp(0.0, 6.0),
            _ => rb.output,
        };
        let v1 = |t: Tensor<1>| t.into_data().try_into_vec::<f32>().unwrap();
        let tag = format!("{dims:?} {act:?}");
        assert!(
            rel_err(&vals(ya.clone()), &vals(yb.clone())) < 1e-5,
            "{tag} y"
        );
        assert!(rel_err(&v1(ma), &v1(rb.mean)) < 1e-5, "{tag} mean");
        assert!(rel_err(&v1(va), &v1(rb.variance)) < 1e-5, "{tag} var");
        let r = Tensor::<4>::from_data(TensorData::new(rng.values(xv.len()), dims), &device);
        let gra = (ya * r.clone()).sum().backward();
        let grb = (yb * r).sum().backward();
        let e = |a: Option<Tensor<4>>, b: Option<Tensor<4>>| {
            rel_err(&vals(a.unwrap()), &vals(b.unwrap()))
        };
        let e1 =
            |a: Option<Tensor<1>>, b: Option<Tensor<1>>| rel_err(&v1(a.unwrap()), &v1(b.unwrap()));
        assert!(e(xa.grad(&gra), xb.grad(&grb)) < 1e-4, "{tag} dx");
        assert!(e1(ga.grad(&gra), gb.grad(&grb)) < 1e-5, "{tag} dgamma");
        assert!(e1(ba.grad(&gra), bb.grad(&grb)) < 1e-5, "{tag} dbeta");
    }
}

/// Training must be reproducible: the same gradients bit for bit on 1 and 2 threads (the weight
/// gradient sums many images, so this checks the summation order is fixed).
#[test]
fn gradients_are_bit_identical_across_thread_counts() {
    let device = Device::flex().autodiff();
    let c = Case {
        n: 19,
        ..case(8, 8, 3, 1, 1, 1)
    };
    let grads = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut rng = Rng(5);
            let x = Tensor::<4>::from_data(
                TensorData::new(rng.values(c.n * c.c * c.h * c.w), [c.n, c.c, c.h, c.w]),
                &device,
            )
            .require_grad();
            let w = Tensor::<4>::from_data(
                TensorData::new(rng.values(8 * 8 * 9), [8, 8, 3, 3]),
                &device,
            )
            .require_grad();
            let y = conv2d(x.clone(), w.clone(), options(&c));
            let g = (y.clone() * y).sum().backward();
            (vals(x.grad(&g).unwrap()), vals(w.grad(&g).unwrap()))
        })
    };
    let (a, b) = (grads(1), grads(2));
    assert!(
        a.0.iter()
            .zip(&b.0)
            .all(|(p, q)| p.to_bits() == q.to_bits()),
        "dx differs"
    );
    assert!(
        a.1.iter()
            .zip(&b.1)
            .all(|(p, q)| p.to_bits() == q.to_bits()),
        "dw differs"
    );
}

/// The fused inference kernel equals burn's convolution followed by the per-channel affine map
/// and each activation, written with burn's tensor ops.
#[test]
fn fused_conv_matches_burn_composition() {
    use burn::tensor::activation::{relu, sigmoid};
    use effcnn_nn::model::ext::conv2d_fused;
    let device = Device::flex();
    let acts = [
        None,
        Some(Act::Relu),
        Some(Act::Relu6),
        Some(Act::Silu),
        Some(Act::Sigmoid),
        Some(Act::HardSwish),
        Some(Act::HardSigmoid),
    ];
    for (i, (c, act)) in [
        case(6, 6, 3, 2, 1, 6),
        case(4, 8, 3, 1, 1, 1),
        case(8, 4, 1, 1, 0, 2),
        case(5, 5, 5, 1, 2, 5),
    ]
    .iter()
    .flat_map(|c| acts.iter().map(move |a| (c, *a)))
    .enumerate()
    {
        let mut rng = Rng(300 + i as u64);
        let cg = c.c / c.groups;
        let x = Tensor::<4>::from_data(
            TensorData::new(rng.values(c.n * c.c * c.h * c.w), [c.n, c.c, c.h, c.w]),
            &device,
        );
        let w = Tensor::<4>::from_data(
            TensorData::new(
                rng.values(c.co * cg * c.k.0 * c.k.1),
                [c.co, cg, c.k.0, c.k.1],
            ),
            &device,
        );
        let scale = Tensor::<1>::from_data(TensorData::new(rng.values(c.co), [c.co]), &device);
        let shift = Tensor::<1>::from_data(TensorData::new(rng.values(c.co), [c.co]), &device);
        let got = conv2d_fused(
            x.clone(),
            w.clone(),
            scale.clone(),
            shift.clone(),
            options(c),
            act,
        );
        let y = burn_conv2d(x, w, None, options(c)) * scale.reshape([1, c.co, 1, 1])
            + shift.reshape([1, c.co, 1, 1]);
        let hsig = |t: Tensor<4>| t.add_scalar(3.0).clamp(0.0, 6.0).div_scalar(6.0);
        let want = match act {
            None => y,
            Some(Act::Relu) => relu(y),
            Some(Act::Relu6) => y.clamp(0.0, 6.0),
            Some(Act::Silu) => y.clone() * sigmoid(y),
            Some(Act::Sigmoid) => sigmoid(y),
            Some(Act::HardSwish) => y.clone() * hsig(y),
            Some(Act::HardSigmoid) => hsig(y),
        };
        let e = rel_err(&vals(got), &vals(want));
        assert!(e < 1e-5, "{c:?} {act:?}: {e}");
    }
}
