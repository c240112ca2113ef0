//! Matched checkpoint tensors into a model's parameters and running statistics.

use std::collections::BTreeSet;

use burn::module::RunningState;
use effcnn_arch::graph::TensorKey;
use effcnn_arch::Layout;

use super::matching::{best_matching, is_ignored};
use super::{LoadReport, RawTensor, TensorMap};
use crate::error::{MismatchReport, NnError};
use crate::model::{param_from, tensor_from, EffNet, Slot};

/// Load the tensors of `map` into `model`, mapping keys through the graph's layouts (see
/// [`detect_layout`]). This is the one mapping used for real checkpoints and test fixtures.
///
/// Missing, unexpected and mis-shaped tensors are an error listing them, unless
/// `allow_partial`, in which case whatever matches is loaded and the rest reported.
pub fn apply_tensors(
    model: &mut EffNet,
    map: &TensorMap,
    layout: Option<Layout>,
    allow_partial: bool,
) -> Result<LoadReport, NnError> {
    let graph = model.graph().clone();
    let m = best_matching(&graph, map, layout)?;
    let mut report = MismatchReport {
        layout: m.layout.name().to_string(),
        ..Default::default()
    };
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut staged: Vec<(&TensorKey, &RawTensor)> = Vec::new();
    for k in &m.keys {
        let full = format!("{}{}", m.prefix, k.key);
        match map.get(&full) {
            None => report.missing.push(full),
            Some(t) => {
                used.insert(full.clone());
                if !t.float {
                    report
                        .mismatched
                        .push(format!("{full}: stored as an integer tensor"));
                } else if t.shape != k.shape || t.data.len() != k.shape.iter().product::<usize>() {
                    report.mismatched.push(format!(
                        "{full}: expected {:?}, found {:?}",
                        k.shape, t.shape
                    ));
                } else {
                    staged.push((k, t));
                }
            }
        }
    }
    let mut ignored = 0;
    for key in map.keys() {
        if used.contains(key) {
            continue;
        }
        if is_ignored(key) {
            ignored += 1;
        } else {
            report.unexpected.push(key.clone());
        }
    }
    if !report.is_clean() && !allow_partial {
        return Err(NnError::Mismatch(Box::new(report)));
    }
    let loaded = staged.len();
    for (k, t) in staged {
        set_tensor(model, k, t);
    }
    Ok(LoadReport {
        layout: m.layout,
        prefix: m.prefix.to_string(),
        loaded,
        skipped: report,
        ignored,
    })
}

/// Write one checkpoint tensor (already shape-checked) into the model.
fn set_tensor(model: &mut EffNet, k: &TensorKey, t: &RawTensor) {
    let data = t.data.clone();
    match model.slot(k.node) {
        Slot::Conv(i) => {
            let conv = &mut model.convs[i];
            let device = conv.weight.lazy_device();
            match k.suffix {
                "weight" => {
                    let s = [t.shape[0], t.shape[1], t.shape[2], t.shape[3]];
                    conv.weight = param_from(data, s, &device);
                }
                "bias" => conv.bias = Some(param_from(data, [t.shape[0]], &device)),
                other => unreachable!("conv tensor {other}"),
            }
        }
        Slot::Bn(i) => {
            let bn = &mut model.bns[i];
            let device = bn.gamma.lazy_device();
            let c = t.shape[0];
            match k.suffix {
                "weight" => bn.gamma = param_from(data, [c], &device),
                "bias" => bn.beta = param_from(data, [c], &device),
                "running_mean" => {
                    bn.running_mean = RunningState::new(tensor_from(data, [c], &device))
                }
                "running_var" => {
                    bn.running_var = RunningState::new(tensor_from(data, [c], &device))
                }
                other => unreachable!("bn tensor {other}"),
            }
        }
        Slot::Linear(i) => {
            let lin = &mut model.linears[i];
            let device = lin.weight.lazy_device();
            match k.suffix {
                "weight" => {
                    // PyTorch [out, in] → burn [in, out].
                    let (o, n) = (t.shape[0], t.shape[1]);
                    let mut tr = vec![0f32; o * n];
                    for r in 0..o {
                        for c in 0..n {
                            tr[c * o + r] = data[r * n + c];
                        }
                    }
                    lin.weight = param_from(tr, [n, o], &device);
                }
                "bias" => lin.bias = Some(param_from(data, [t.shape[0]], &device)),
                other => unreachable!("linear tensor {other}"),
            }
        }
        Slot::None => unreachable!("tensor key on a parameter-free node"),
    }
}
