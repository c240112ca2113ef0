//! Per-layer parity with every PyTorch fixture in `fixtures/parity`: for each conv/linear layer the
//! fixture lists (module path, in/out shape, params, MACs, kernel, stride, groups), the node whose
//! `module_name(id, layout)` is that path must agree exactly; and `Graph::tensor_keys(layout)` must
//! equal the fixture's state-dict keys with identical shapes, which proves the checkpoint key map.
//!
//! A fixture whose zoo entry does not exist yet is reported as pending (and skipped) only while
//! `effcnn_arch::entry(name)` fails; once the entry resolves it is checked in full.

use std::collections::BTreeMap;
use std::path::PathBuf;

use effcnn_arch::cost::analyze;
use effcnn_arch::{entry, resolve, ArchError, Graph, Layout, Op, Options, Shape};
use serde_json::Value;

/// Fixture file stem → (zoo entry, checkpoint layout the fixture's names follow).
const FIXTURES: [(&str, &str, Layout); 9] = [
    ("mobilenet_v2", "mobilenet_v2", Layout::Torchvision),
    (
        "mobilenet_v3_large",
        "mobilenet_v3_large",
        Layout::Torchvision,
    ),
    (
        "shufflenet_v2_x1_0",
        "shufflenet_v2_x1_0",
        Layout::Torchvision,
    ),
    ("efficientnet_b0", "efficientnet_b0", Layout::Torchvision),
    ("resnet18", "resnet18", Layout::Torchvision),
    ("timm_mobilenetv1_100", "mobilenet_v1", Layout::Timm),
    ("timm_seresnet18", "se_resnet18", Layout::Timm),
    ("timm_legacy_seresnet18", "legacy_se_resnet18", Layout::Timm),
    (
        "timm_tf_efficientnet_lite0",
        "efficientnet_lite0",
        Layout::Timm,
    ),
];

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/parity")
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|x| x.as_u64().expect("non-negative integer") as usize)
        .collect()
}

/// A fixture shape ([C, H, W] or [features]) as a graph shape.
fn shape_of(v: &Value) -> Shape {
    match usizes(v).as_slice() {
        [c, h, w] => Shape::new(*c, *h, *w),
        [c] => Shape::new(*c, 1, 1),
        other => panic!("unexpected fixture shape {other:?}"),
    }
}

fn pair(v: &[usize]) -> (usize, usize) {
    assert_eq!(v.len(), 2, "expected a pair, got {v:?}");
    (v[0], v[1])
}

/// Check one fixture against its graph; returns the list of mismatches.
fn check_fixture(stem: &str, fx: &Value, g: &Graph, layout: Layout) -> Vec<String> {
    let mut errs = Vec::new();
    let cost = analyze(g);
    let total_params = fx["params"].as_u64().unwrap();
    let total_macs = fx["macs_224"].as_u64().unwrap();
    if cost.params != total_params {
        errs.push(format!(
            "{stem}: params {} vs fixture {total_params}",
            cost.params
        ));
    }
    if cost.macs != total_macs {
        errs.push(format!(
            "{stem}: MACs {} vs fixture {total_macs}",
            cost.macs
        ));
    }

    // Module name in the layout → node id.
    let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (id, _) in g.param_nodes() {
        if let Some(m) = g.module_name(id, layout) {
            by_name.entry(m).or_default().push(id);
        }
    }
    let layers = fx["layers_224"].as_array().unwrap();
    let conv_linear = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Conv(_) | Op::Linear { .. }))
        .count();
    if conv_linear != layers.len() {
        errs.push(format!(
            "{stem}: {conv_linear} conv/linear nodes vs {} fixture layers",
            layers.len()
        ));
    }
    for l in layers {
        let name = l["name"].as_str().unwrap();
        let id = match by_name.get(name).map(Vec::as_slice) {
            Some([id]) => *id,
            Some(ids) => {
                errs.push(format!(
                    "{stem}: {} nodes are named {name} in {}",
                    ids.len(),
                    layout.name()
                ));
                continue;
            }
            None => {
                errs.push(format!(
                    "{stem}: no node is named {name} in {}",
                    layout.name()
                ));
                continue;
            }
        };
        let node = &g.nodes[id];
        let row = &cost.layers[id];
        let mut bad = |what: &str, ours: String, theirs: String| {
            if ours != theirs {
                errs.push(format!(
                    "{stem}: {name} (node {}): {what} {ours} vs fixture {theirs}",
                    node.path
                ));
            }
        };
        let input = g.nodes[node.inputs[0]].shape;
        bad("in", input.to_string(), shape_of(&l["in"]).to_string());
        bad(
            "out",
            node.shape.to_string(),
            shape_of(&l["out"]).to_string(),
        );
        bad("params", row.params.to_string(), l["params"].to_string());
        bad("MACs", row.macs.to_string(), l["macs"].to_string());
        match &node.op {
            Op::Conv(c) => {
                bad("kind", "conv".into(), l["kind"].as_str().unwrap().into());
                bad(
                    "k",
                    format!("{:?}", c.k),
                    format!("{:?}", pair(&usizes(&l["k"]))),
                );
                bad(
                    "stride",
                    format!("{:?}", c.stride),
                    format!("{:?}", pair(&usizes(&l["stride"]))),
                );
                bad("groups", c.groups.to_string(), l["groups"].to_string());
            }
            Op::Linear { .. } => {
                bad("kind", "linear".into(), l["kind"].as_str().unwrap().into());
            }
            other => bad("op", other.kind().into(), l["kind"].to_string()),
        }
    }

    // Checkpoint keys: identical key sets with identical shapes.
    let ours: BTreeMap<String, Vec<usize>> = g
        .tensor_keys(layout)
        .into_iter()
        .map(|t| (t.key, t.shape))
        .collect();
    let theirs: BTreeMap<String, Vec<usize>> = fx["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["key"].as_str().unwrap().to_string(), usizes(&t["shape"])))
        .collect();
    let n_keys = g.tensor_keys(layout).len();
    if n_keys != ours.len() {
        errs.push(format!(
            "{stem}: {} duplicate checkpoint keys in {}",
            n_keys - ours.len(),
            layout.name()
        ));
    }
    let missing: Vec<&String> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    let extra: Vec<&String> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    if !missing.is_empty() {
        errs.push(format!(
            "{stem}: {} fixture keys missing from tensor_keys({}), e.g. {:?}",
            missing.len(),
            layout.name(),
            &missing[..missing.len().min(5)]
        ));
    }
    if !extra.is_empty() {
        errs.push(format!(
            "{stem}: {} keys of tensor_keys({}) not in the fixture, e.g. {:?}",
            extra.len(),
            layout.name(),
            &extra[..extra.len().min(5)]
        ));
    }
    for (k, shape) in &theirs {
        if let Some(s) = ours.get(k) {
            if s != shape {
                errs.push(format!("{stem}: {k}: shape {s:?} vs fixture {shape:?}"));
            }
        }
    }

    // BatchNorm eps: the module tree prints one `eps=` per BN in registration order, which is the
    // state-dict order of the BN modules (their `.running_var` keys).
    let repr = fx["module_repr"].as_str().unwrap();
    let eps: Vec<f64> = repr
        .split("eps=")
        .skip(1)
        .map(|rest| {
            let end = rest.find([',', ')']).unwrap();
            rest[..end].parse().unwrap()
        })
        .collect();
    let bn_modules: Vec<&str> = fx["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["key"].as_str().unwrap().strip_suffix(".running_var"))
        .collect();
    if eps.len() != bn_modules.len() {
        errs.push(format!(
            "{stem}: {} eps values in module_repr vs {} BN modules",
            eps.len(),
            bn_modules.len()
        ));
    }
    for (m, e) in bn_modules.iter().zip(&eps) {
        if let Some([id]) = by_name.get(m).map(Vec::as_slice) {
            match g.nodes[*id].op {
                Op::BatchNorm { eps: ours, .. } if (ours - e).abs() <= 1e-12 => {}
                ref other => errs.push(format!("{stem}: {m}: {other:?} vs fixture eps {e}")),
            }
        }
    }
    errs
}

#[test]
fn every_fixture_matches_layer_by_layer() {
    let dir = fixture_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());

    let mut errs = Vec::new();
    let mut checked = Vec::new();
    let mut pending = Vec::new();
    for path in &files {
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let Some(&(_, model, layout)) = FIXTURES.iter().find(|(s, _, _)| *s == stem) else {
            errs.push(format!(
                "{stem}: fixture has no (zoo entry, layout) mapping in this test"
            ));
            continue;
        };
        match entry(model) {
            Err(ArchError::UnknownModel { .. }) => {
                pending.push(format!("{stem} (zoo entry `{model}` not defined yet)"));
                continue;
            }
            Err(e) => {
                errs.push(format!("{stem}: {e}"));
                continue;
            }
            Ok(_) => {}
        }
        let fx: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let g = match resolve(model, &Options::imagenet().resolution(224)) {
            Ok(g) => g,
            Err(e) => {
                errs.push(format!("{stem}: {model} does not resolve: {e}"));
                continue;
            }
        };
        let before = errs.len();
        errs.extend(check_fixture(&stem, &fx, &g, layout));
        if errs.len() == before {
            checked.push(format!("{stem} = {model} ({})", layout.name()));
        }
    }
    for (stem, _, _) in FIXTURES {
        if !files.iter().any(|p| p.file_stem().unwrap() == stem) {
            errs.push(format!(
                "{stem}: fixture file missing from {}",
                dir.display()
            ));
        }
    }
    println!("fixtures checked layer by layer: {}", checked.join(", "));
    if !pending.is_empty() {
        println!("PENDING fixtures (skipped): {}", pending.join(", "));
    }
    assert!(errs.is_empty(), "fixture mismatches:\n{}", errs.join("\n"));
}

/// The released EfficientNet-Lite0 checkpoint (lukemelas/EfficientNet-PyTorch names): every key
/// but `num_batches_tracked` is a tensor of the `efficientnet_lite0` graph with the same shape.
#[test]
fn efficientnet_lite0_checkpoint_keys() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/pretrained/efficientnet_lite0_predictions.json");
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let theirs: Vec<(String, Vec<usize>)> = fx["state_dict_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| (kv[0].as_str().unwrap().to_string(), usizes(&kv[1])))
        .filter(|(k, _)| !k.ends_with(".num_batches_tracked"))
        .collect();
    let g = resolve("efficientnet_lite0", &Options::imagenet()).unwrap();
    assert!(g.layouts().contains(&Layout::Lukemelas));
    let ours: Vec<(String, Vec<usize>)> = g
        .tensor_keys(Layout::Lukemelas)
        .into_iter()
        .map(|t| (t.key, t.shape))
        .collect();
    // Same keys, same shapes, and the same (state-dict) order.
    assert_eq!(ours, theirs);
    let params: u64 = ours
        .iter()
        .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
        .map(|(_, s)| s.iter().product::<usize>() as u64)
        .sum();
    assert_eq!(params, fx["params"].as_u64().unwrap());
}
