//! Whole-zoo invariants at a small resolution (CIFAR profile, 32×32, batch 2): the live model's
//! trainable parameter count equals the analyzer's, the forward pass is finite, and after one
//! backward pass on the autodiff backend every trainable parameter has a gradient.

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use effcnn_arch::Options;
use effcnn_nn::parity::fill;
use effcnn_nn::{EffNet, InitConfig};

/// The zoo is split into shards that the test harness runs in parallel.
const SHARDS: usize = 3;

#[test]
fn zoo_shard_0() {
    run_shard(0);
}

#[test]
fn zoo_shard_1() {
    run_shard(1);
}

#[test]
fn zoo_shard_2() {
    run_shard(2);
}

fn run_shard(shard: usize) {
    let device = effcnn_nn::cpu().autodiff();
    let mut checked = 0;
    // Sorted by size so that every shard gets a similar share of the large models.
    let mut entries = effcnn_arch::entries();
    entries.sort_by_key(|e| {
        effcnn_arch::resolve(e.name, &Options::cifar())
            .map(|g| effcnn_arch::cost::analyze(&g).params)
            .unwrap_or(0)
    });
    for entry in entries.into_iter().skip(shard).step_by(SHARDS) {
        let t0 = std::time::Instant::now();
        let opts = Options::cifar();
        let graph = match effcnn_arch::resolve(entry.name, &opts) {
            Ok(g) => g,
            Err(e) => panic!("{}: cannot resolve the CIFAR profile: {e}", entry.name),
        };
        let model = EffNet::new(&graph, &device, InitConfig { seed: 7 }).unwrap();
        let analyzed = effcnn_arch::cost::analyze(&graph).params;
        assert_eq!(
            model.num_trainable_params() as u64,
            analyzed,
            "{}: live vs analyzer params",
            entry.name
        );
        let s = graph.input_shape();
        let shape = [2, s.c, s.h, s.w];
        model.check_input(shape).unwrap();
        let x = Tensor::<4>::from_data(
            TensorData::new(fill(0, 1.0, 0.0, shape.iter().product()), shape),
            &device,
        );

        // Eval forward (valid copy): finite.
        let eval = model.valid();
        let y = eval.forward(x.clone().without_autodiff());
        let v: Vec<f32> = y.into_data().convert::<f32>().try_into_vec().unwrap();
        assert_eq!(v.len(), 2 * graph.meta.classes, "{}", entry.name);
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{}: eval forward not finite",
            entry.name
        );

        // Training forward + backward: finite, and every trainable parameter gets a gradient.
        let y = model.forward(x);
        let loss = y.clone().powf_scalar(2.0).mean();
        let lv: f32 = loss.clone().into_scalar();
        assert!(lv.is_finite(), "{}: training loss not finite", entry.name);
        let grads = loss.backward();
        let mut missing = Vec::new();
        let has = |t: Option<bool>, name: String, missing: &mut Vec<String>| {
            if t == Some(false) {
                missing.push(name);
            }
        };
        for (i, c) in model.convs.iter().enumerate() {
            has(
                Some(c.weight.val().grad(&grads).is_some()),
                format!("conv {i} weight"),
                &mut missing,
            );
            has(
                c.bias.as_ref().map(|b| b.val().grad(&grads).is_some()),
                format!("conv {i} bias"),
                &mut missing,
            );
        }
        for (i, b) in model.bns.iter().enumerate() {
            has(
                Some(b.gamma.val().grad(&grads).is_some()),
                format!("bn {i} weight"),
                &mut missing,
            );
            has(
                Some(b.beta.val().grad(&grads).is_some()),
                format!("bn {i} bias"),
                &mut missing,
            );
        }
        for (i, l) in model.linears.iter().enumerate() {
            has(
                Some(l.weight.val().grad(&grads).is_some()),
                format!("linear {i} weight"),
                &mut missing,
            );
            has(
                l.bias.as_ref().map(|b| b.val().grad(&grads).is_some()),
                format!("linear {i} bias"),
                &mut missing,
            );
        }
        assert!(
            missing.is_empty(),
            "{}: no gradient for {}",
            entry.name,
            missing.join(", ")
        );
        eprintln!("{}: {:.2}s", entry.name, t0.elapsed().as_secs_f64());
        checked += 1;
    }
    eprintln!("shard {shard}: checked {checked} zoo entries");
    assert!(checked > 0);
}
