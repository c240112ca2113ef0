//! effcnn's compiled inference plan (effcnn-engine) against burn's forward pass, the reference:
//! every zoo entry with random weights and random batch-norm statistics, at batch 1 and 3,
//! 1 and 2 threads, odd and even input sizes, both profiles; every instruction set this CPU has
//! (the portable one included); the arena against the cost analyzer's liveness; and the errors
//! of a plan run on the wrong input.

mod common;

use burn::tensor::{Tensor, TensorData};
use effcnn_arch::Options;
use effcnn_engine::{Isa, Plan, PlanOptions};
use effcnn_nn::engine::{compile_plan, engine_weights};
use effcnn_nn::parity::{fill, rel_l2};
use effcnn_nn::{EffNet, InitConfig};

const TOL: f64 = 1e-4;

/// A model whose batch norms are not the identity: γ, β, running mean and variance drawn from
/// the fixture generator, so folding them into the weights is really tested.
fn model(name: &str, opts: &Options, seed: u64) -> EffNet {
    let device = effcnn_nn::cpu();
    let graph = effcnn_arch::resolve(name, opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut m = EffNet::new(&graph, &device, InitConfig { seed }).unwrap();
    common::randomize_bn_and_biases(&mut m, seed);
    m
}

fn burn_forward(m: &EffNet, dims: [usize; 4], x: &[f32]) -> Vec<f32> {
    let t = Tensor::<4>::from_data(TensorData::new(x.to_vec(), dims), &effcnn_nn::cpu());
    m.forward(t)
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap()
}

fn check(m: &EffNet, dims: [usize; 4], opts: PlanOptions, what: &str) -> Plan {
    let x = fill(5, 1.0, 0.0, dims.iter().product());
    let want = burn_forward(m, dims, &x);
    let mut plan = compile_plan(m, dims, opts).unwrap_or_else(|e| panic!("{what}: {e}"));
    let got = plan.run(&x).unwrap();
    let err = rel_l2(&got, &want);
    assert!(
        err <= TOL,
        "{what} {dims:?} isa {} threads {}: rel-L2 {err:.3e}",
        opts.isa.name(),
        opts.threads
    );
    // A second run on the same arena gives the same answer.
    assert_eq!(plan.run(&x).unwrap(), got, "{what}: second run differs");
    plan
}

const SHARDS: usize = 4;

fn zoo_shard(shard: usize) {
    let mut entries = effcnn_arch::entries();
    entries.sort_by_key(|e| {
        effcnn_arch::resolve(e.name, &Options::cifar())
            .map(|g| effcnn_arch::cost::analyze(&g).params)
            .unwrap_or(0)
    });
    for entry in entries.into_iter().skip(shard).step_by(SHARDS) {
        let name = entry.name;
        let native = effcnn_arch::resolve(name, &Options::imagenet()).unwrap();
        let cifar_native = native.meta.resolution == 32;
        // ImageNet profile at an odd size (CIFAR-native nets at their own 32², and 33²).
        let r = if cifar_native { 33 } else { 65 };
        let opts = Options::imagenet().resolution(r);
        let m = model(name, &opts, 3);
        let best = PlanOptions {
            threads: 1,
            ..PlanOptions::default()
        };
        let plan = check(&m, [1, 3, r, r], best, name);
        // The arena: tensors alive together never overlap, and the plan needs no more than the
        // analyzer's peak for the unfused graph (fusion only removes intermediates).
        assert!(plan.arena_is_consistent(), "{name}: arena layout overlaps");
        let analyzer = effcnn_arch::cost::analyze(m.graph()).peak_activation_bytes;
        assert!(
            plan.peak_live_bytes() <= analyzer,
            "{name}: plan peak {} > analyzer peak {analyzer}",
            plan.peak_live_bytes()
        );
        assert!(plan.arena_bytes() as u64 >= plan.peak_live_bytes());
        // Unfused, one step per node: the same liveness analysis as the analyzer's.
        let unfused = compile_plan(
            &m,
            [1, 3, r, r],
            PlanOptions {
                fuse: false,
                ..best
            },
        )
        .unwrap();
        assert!(
            unfused.peak_live_bytes() <= analyzer,
            "{name}: unfused plan"
        );
        assert!(unfused.arena_is_consistent());
        // CIFAR profile, batch 3, two threads.
        let m = model(name, &Options::cifar(), 4);
        let two = PlanOptions {
            threads: 2,
            ..PlanOptions::default()
        };
        check(&m, [3, 3, 32, 32], two, &format!("{name} (cifar)"));
    }
}

#[test]
fn zoo_shard_0() {
    zoo_shard(0);
}

#[test]
fn zoo_shard_1() {
    zoo_shard(1);
}

#[test]
fn zoo_shard_2() {
    zoo_shard(2);
}

#[test]
fn zoo_shard_3() {
    zoo_shard(3);
}

/// Every instruction set this CPU runs (the portable fallback included) on a model of each kind
/// of layer: depthwise 3×3/5×5, SE with hard-sigmoid, channel shuffle and split, group
/// pointwise, dense 7×7 with max-pool, TF "SAME" padding.
#[test]
fn every_instruction_set_matches_burn() {
    let models = [
        "mobilenet_v3_large",
        "shufflenet_v2_x1_0",
        "shufflenet_v1_g3",
        "resnet18",
        "efficientnet_lite0",
        "se_resnet20",
    ];
    for name in models {
        let m = model(name, &Options::imagenet().resolution(64), 9);
        let r = if m.graph().meta.resolution == 32 {
            32
        } else {
            64
        };
        for isa in Isa::available() {
            for threads in [1, 2] {
                let opts = PlanOptions {
                    isa,
                    threads,
                    fuse: true,
                };
                check(&m, [2, 3, r, r], opts, name);
            }
        }
    }
}

#[test]
fn a_plan_refuses_another_input_size() {
    let m = model("mobilenet_v2", &Options::cifar(), 1);
    let mut plan = compile_plan(&m, [2, 3, 32, 32], PlanOptions::default()).unwrap();
    let err = plan
        .run(&vec![0.0; 3 * 3 * 32 * 32])
        .unwrap_err()
        .to_string();
    assert!(err.contains("compiled for inputs 2×3×32×32"), "{err}");
    let err = compile_plan(&m, [1, 4, 32, 32], PlanOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("expects 3 input channels"),
        "{err}"
    );
}

#[test]
fn weights_that_do_not_fit_fail_at_compile_time_with_the_tensor_name() {
    let m = model("dwsep_cnn", &Options::cifar(), 1);
    let mut w = engine_weights(&m).unwrap();
    let key = w
        .keys()
        .find(|k| k.ends_with("running_var"))
        .unwrap()
        .clone();
    w.remove(&key);
    let err = Plan::compile(m.graph(), &w, [1, 3, 32, 32], PlanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&key) && err.contains("missing"), "{err}");
    let mut w = engine_weights(&m).unwrap();
    let key = w.keys().find(|k| k.ends_with(".weight")).unwrap().clone();
    w.get_mut(&key).unwrap().0 = vec![1, 2, 3];
    let err = Plan::compile(m.graph(), &w, [1, 3, 32, 32], PlanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&key) && err.contains("[1, 2, 3]"), "{err}");
}
