//! The burn side of effcnn's compiled training step (`effcnn_nn::train_step`), held to burn
//! itself: gradients mapped out of burn and back give bit-identical optimizer steps, batch
//! statistics update the running statistics exactly as burn's training forward does, and bad
//! maps are refused. (The plan against burn: tests/train_plan.rs.)
//!
//! Every model has random weights and random batch-norm affine parameters and running
//! statistics, and every dropout / drop-path probability set to 0.

mod common;

use effcnn_arch::{Layout, Op};
use effcnn_nn::checkpoint::model_tensors;
use effcnn_nn::engine::WeightMap;
use effcnn_nn::parity::rel_l2;
use effcnn_nn::train_step::{apply_batch_stats, gradients_from_map, gradients_to_map, param_ids};
use effcnn_nn::TensorMap;

use common::*;

fn assert_maps_equal(a: &TensorMap, b: &TensorMap, what: &str) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (k, t) in a {
        let u = &b[k];
        assert_eq!(t.shape, u.shape, "{what}: {k}");
        let same = t
            .data
            .iter()
            .zip(&u.data)
            .all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(
            same,
            "{what}: {k} differs (rel-L2 {:.3e})",
            rel_l2(&t.data, &u.data)
        );
    }
}

#[test]
fn mapped_gradients_give_bit_identical_optimizer_steps() {
    for name in ["dwsep_cnn", "resnet20", "se_resnet20"] {
        let g = graph(name);
        let classes = g.meta.classes;
        let m = model(&g, 7);
        let x = images(11, BATCH);
        let y = labels(BATCH, classes);
        let first = burn_step(&m, &x, &y);
        let map = gradients_to_map(&m, &first.grads).unwrap();

        // Every trainable tensor, in PyTorch shapes, under the canonical keys.
        let ids = param_ids(&m);
        let trainable: Vec<_> = g
            .tensor_keys(Layout::Canonical)
            .into_iter()
            .filter(|k| k.trainable)
            .collect();
        assert_eq!(ids.len(), trainable.len(), "{name}");
        assert_eq!(map.len(), trainable.len(), "{name}");
        assert_eq!(
            first.grads.len(),
            trainable.len(),
            "{name}: burn's gradients"
        );
        for k in &trainable {
            assert_eq!(map[&k.key].0, k.shape, "{name}: {}", k.key);
        }
        // The way back: the same tensors, bit for bit, on the device burn's backward uses.
        let back = gradients_from_map(&m, &map).unwrap();
        assert_eq!(back.len(), first.grads.len());
        assert_eq!(
            gradients_to_map(&m, &back).unwrap(),
            map,
            "{name}: round trip"
        );
        let w = &m.convs[0].weight;
        let (theirs, ours) = (
            first.grads.get::<4>(w.id).unwrap(),
            back.get::<4>(w.id).unwrap(),
        );
        assert_eq!(theirs.device(), ours.device(), "{name}: gradient device");
        assert!(!ours.is_autodiff());

        for ((what, mut burn_opt), (_, mut mapped_opt)) in
            optimizers(&m).into_iter().zip(optimizers(&m))
        {
            // Two steps, so the second runs on the momentum / moment state of the first.
            let (mut a, mut b) = (m.clone(), m.clone());
            let mut grads = burn_step(&a, &x, &y).grads;
            for s in 0..2 {
                let mapped =
                    gradients_from_map(&b, &gradients_to_map(&a, &grads).unwrap()).unwrap();
                a = burn_opt.step(0.05, a, grads);
                b = mapped_opt.step(0.05, b, mapped);
                let (ta, tb) = (
                    model_tensors(&a, Layout::Canonical).unwrap(),
                    model_tensors(&b, Layout::Canonical).unwrap(),
                );
                assert_maps_equal(&ta, &tb, &format!("{name} {what} step {s}"));
                grads = burn_step(&a, &x, &y).grads;
            }
            let before = model_tensors(&m, Layout::Canonical).unwrap();
            let after = model_tensors(&a, Layout::Canonical).unwrap();
            let k = &trainable[0].key;
            assert_ne!(
                before[k].data, after[k].data,
                "{name} {what}: the step moved nothing"
            );
        }
    }
}

#[test]
fn gradient_maps_are_checked() {
    let g = graph("resnet20");
    let m = model(&g, 3);
    let x = images(2, BATCH);
    let good = gradients_to_map(&m, &burn_step(&m, &x, &labels(BATCH, 10)).grads).unwrap();
    let conv = g.tensor_keys(Layout::Canonical)[0].key.clone();

    let mut missing = good.clone();
    missing.remove(&conv);
    let e = gradients_from_map(&m, &missing).unwrap_err().to_string();
    assert!(e.contains(&conv) && e.contains("no gradient"), "{e}");

    let mut bad = good.clone();
    let t = bad.get_mut(&conv).unwrap();
    t.0 = vec![t.0.iter().product()];
    let e = gradients_from_map(&m, &bad).unwrap_err().to_string();
    assert!(e.contains(&conv) && e.contains("shape"), "{e}");

    // A linear weight in burn's [in, out] layout instead of PyTorch's [out, in].
    let fc = g
        .tensor_keys(Layout::Canonical)
        .into_iter()
        .find(|k| matches!(g.nodes[k.node].op, Op::Linear { .. }) && k.suffix == "weight")
        .unwrap();
    let mut flipped = good.clone();
    flipped.get_mut(&fc.key).unwrap().0 = vec![fc.shape[1], fc.shape[0]];
    let e = gradients_from_map(&m, &flipped).unwrap_err().to_string();
    assert!(e.contains(&fc.key), "{e}");

    let mut extra = good.clone();
    extra.insert("bn1.running_mean".into(), (vec![16], vec![0.0; 16]));
    extra.insert("no.such.weight".into(), (vec![1], vec![0.0]));
    let e = gradients_from_map(&m, &extra).unwrap_err().to_string();
    assert!(e.contains("no.such.weight"), "{e}");
}

#[test]
fn batch_stats_update_running_statistics_like_burns_forward() {
    for name in ["dwsep_cnn", "resnet20", "se_resnet20", "mobilenet_v2"] {
        let g = graph(name);
        let a = model(&g, 9);
        let b = copy(&a);
        let before = model_tensors(&a, Layout::Canonical).unwrap();
        let x = images(4, BATCH);
        // burn's training forward updates a's running statistics; the statistics of the same
        // batch (the unbiased variance) go into b.
        let step = burn_step(&a, &x, &labels(BATCH, g.meta.classes));
        let bn_count = bn_inputs(&g).len();
        assert_eq!(step.stats.len(), 2 * bn_count, "{name}");
        let b = apply_batch_stats(b, &step.stats).unwrap();
        let (ta, tb) = (
            model_tensors(&a, Layout::Canonical).unwrap(),
            model_tensors(&b, Layout::Canonical).unwrap(),
        );
        let mut moved = 0;
        for (k, t) in &ta {
            let u = &tb[k];
            if k.ends_with("running_mean") || k.ends_with("running_var") {
                // burn computes the statistics in f32, the test in f64 (≤ 10⁻⁷ apart); the
                // biased variance would put the running variance ≥ 2.7·10⁻⁶ off (N·H·W = 4096
                // at the stem, more below).
                let err = rel_l2(&u.data, &t.data);
                assert!(err < 5e-7, "{name}: {k} rel-L2 {err:.3e}");
                moved += usize::from(t.data != before[k].data);
            } else {
                assert_eq!(t.data, u.data, "{name}: {k} is not a statistic");
            }
        }
        assert_eq!(moved, 2 * bn_count, "{name}: every statistic moves");
    }
}

#[test]
fn batch_stats_are_checked() {
    let g = graph("dwsep_cnn");
    let m = model(&g, 1);
    let step = burn_step(&m, &images(1, 2), &labels(2, 10));
    let key = step.stats.keys().last().unwrap().clone();
    let fresh = model(&g, 1);
    let before = model_tensors(&fresh, Layout::Canonical).unwrap();
    let refused = |stats: &WeightMap| {
        apply_batch_stats(fresh.clone(), stats)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };

    let mut missing = step.stats.clone();
    missing.remove(&key);
    let e = refused(&missing);
    assert!(e.contains(&key) && e.contains("no batch statistic"), "{e}");

    let mut bad = step.stats.clone();
    bad.get_mut(&key).unwrap().1.push(0.0);
    let e = refused(&bad);
    assert!(e.contains(&key) && e.contains("shape"), "{e}");

    let mut extra = step.stats.clone();
    extra.insert("conv1.weight".into(), (vec![1], vec![0.0]));
    let e = refused(&extra);
    assert!(e.contains("conv1.weight"), "{e}");

    // A refused update changes nothing.
    assert!(model_tensors(&fresh, Layout::Canonical).unwrap() == before);
    // An accepted one does (the running statistics are shared by clones, as in burn).
    apply_batch_stats(fresh.clone(), &step.stats).unwrap();
    assert!(model_tensors(&fresh, Layout::Canonical).unwrap() != before);
}
