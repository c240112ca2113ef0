//! The one use analysis (`effcnn_arch::liveness::Uses`) on real zoo graphs: residual inputs
//! have two readers, view chains (flatten, dropout) resolve to the storage they view, the output
//! is never fused away, and the cost analyzer's lifetimes agree with it.

use effcnn_arch::cost::live_intervals;
use effcnn_arch::liveness::{is_inference_view, Uses};
use effcnn_arch::{resolve, Graph, Op, Options};

fn graph(name: &str) -> Graph {
    resolve(name, &Options::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Readers counted the plain way: every node that lists `j` among its inputs, once.
fn plain_readers(g: &Graph, j: usize) -> Vec<usize> {
    (0..g.nodes.len())
        .filter(|&i| g.nodes[i].inputs.contains(&j))
        .collect()
}

#[test]
fn direct_uses_list_every_reader_once_in_graph_order() {
    for name in [
        "resnet18",
        "mobilenet_v2",
        "shufflenet_v2_x1_0",
        "efficientnet_b0",
    ] {
        let g = graph(name);
        let u = Uses::direct(&g);
        for j in 0..g.nodes.len() {
            assert_eq!(u.root(j), j, "{name}: direct uses have no views");
            assert_eq!(u.readers(j), plain_readers(&g, j), "{name} node {j}");
            assert_eq!(u.last_reader(j), plain_readers(&g, j).last().copied());
        }
        assert!(u.is_output(g.output));
        assert_eq!(
            u.sole_reader(g.output),
            None,
            "{name}: the output is never fused away"
        );
    }
}

#[test]
fn residual_inputs_have_two_readers_and_no_sole_reader() {
    let g = graph("resnet18");
    let u = Uses::direct(&g);
    let adds: Vec<usize> = (0..g.nodes.len())
        .filter(|&i| matches!(g.nodes[i].op, Op::Add))
        .collect();
    assert_eq!(adds.len(), 8, "resnet18 has 8 basic blocks");
    // Each block's input is read twice, by its first conv and by the add (identity shortcut)
    // or the downsample conv; every other value once.
    let shared: Vec<usize> = (0..g.nodes.len())
        .filter(|&j| u.readers(j).len() >= 2)
        .collect();
    assert_eq!(shared.len(), 8, "{shared:?}");
    for &j in &shared {
        assert_eq!(u.readers(j).len(), 2);
        assert_eq!(u.sole_reader(j), None);
    }
    // Every conv of a ResNet is followed by its batch norm alone: the fusion condition.
    for (i, node) in g.nodes.iter().enumerate() {
        if matches!(node.op, Op::Conv(_)) {
            let bn = u.sole_reader(i).expect("conv → bn");
            assert!(matches!(g.nodes[bn].op, Op::BatchNorm { .. }), "node {i}");
        }
    }
}

#[test]
fn view_chains_resolve_to_the_storage_they_view() {
    // mobilenet_v2's head: global pool → flatten → dropout → linear.
    let g = graph("mobilenet_v2");
    let u = Uses::through_views(&g);
    let views: Vec<usize> = (0..g.nodes.len())
        .filter(|&i| is_inference_view(&g.nodes[i].op))
        .collect();
    assert!(views.len() >= 2, "flatten and dropout");
    let linear = (0..g.nodes.len())
        .find(|&i| matches!(g.nodes[i].op, Op::Linear { .. }))
        .expect("a classifier");
    for &v in &views {
        let r = u.root(v);
        assert!(!is_inference_view(&g.nodes[r].op), "a root is real storage");
        assert_eq!(u.root(r), r);
        assert_eq!(
            u.readers(v),
            [linear],
            "views are not readers; the linear reads through"
        );
        assert_eq!(u.sole_reader(r), Some(linear));
    }
    // Direct uses see the views as readers.
    let d = Uses::direct(&g);
    let r = u.root(views[0]);
    assert_eq!(d.readers(r), [views[0]]);
}

#[test]
fn cost_lifetimes_end_at_the_last_reader_through_views() {
    let g = graph("mobilenet_v2");
    let u = Uses::through_views(&g);
    let real: Vec<usize> = (0..g.nodes.len())
        .filter(|&i| !is_inference_view(&g.nodes[i].op))
        .collect();
    let iv = live_intervals(&g);
    assert_eq!(iv.len(), real.len());
    for (t, &i) in iv.iter().zip(&real) {
        assert_eq!(t.first, i);
        if u.is_output(i) {
            assert_eq!(t.last, g.nodes.len(), "the output lives to the end");
        } else {
            let last = plain_readers(&g, i)
                .into_iter()
                .flat_map(|r| {
                    // A view's readers extend its input's life.
                    if is_inference_view(&g.nodes[r].op) {
                        let mut v = vec![r];
                        v.extend((r..g.nodes.len()).filter(|&k| g.nodes[k].inputs.contains(&r)));
                        v
                    } else {
                        vec![r]
                    }
                })
                .max()
                .unwrap_or(i);
            assert!(
                t.last >= last,
                "node {i} dies at {} before its reader {last}",
                t.last
            );
            assert_eq!(Some(t.last), u.last_reader(i).or(Some(i)));
        }
    }
}
