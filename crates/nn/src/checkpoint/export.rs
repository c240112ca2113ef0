//! A model's tensors out: PyTorch-shaped maps under a layout's keys, atomic `.safetensors`
//! files, and `.pth` → `.safetensors` conversion.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use burn::tensor::Tensor;
use effcnn_arch::{Graph, Layout};

use super::formats::read_checkpoint;
use super::matching::{best_matching, is_ignored};
use super::{RawTensor, TensorMap};
use crate::error::{MismatchReport, NnError};
use crate::model::{EffNet, Slot};

fn tensor_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float tensor data")
}

/// Every checkpoint tensor of `model` under `layout`'s keys, in PyTorch shapes.
pub fn model_tensors(model: &EffNet, layout: Layout) -> Result<TensorMap, NnError> {
    let graph = model.graph();
    if !graph.layouts().contains(&layout) {
        return Err(NnError::NoSuchLayout {
            model: graph.meta.name.clone(),
            layout: layout.name().to_string(),
            available: graph
                .layouts()
                .iter()
                .map(|l| l.name().to_string())
                .collect(),
        });
    }
    let mut out = TensorMap::new();
    for k in graph.tensor_keys(layout) {
        let data = match (model.slot(k.node), k.suffix) {
            (Slot::Conv(i), "weight") => tensor_values(model.convs[i].weight.val()),
            (Slot::Conv(i), "bias") => tensor_values(
                model.convs[i]
                    .bias
                    .as_ref()
                    .expect("graph says the conv has a bias")
                    .val(),
            ),
            (Slot::Bn(i), "weight") => tensor_values(model.bns[i].gamma.val()),
            (Slot::Bn(i), "bias") => tensor_values(model.bns[i].beta.val()),
            (Slot::Bn(i), "running_mean") => tensor_values(model.bns[i].running_mean.value_sync()),
            (Slot::Bn(i), "running_var") => tensor_values(model.bns[i].running_var.value_sync()),
            (Slot::Linear(i), "weight") => {
                let w = model.linears[i].weight.val();
                tensor_values(w.transpose())
            }
            (Slot::Linear(i), "bias") => tensor_values(
                model.linears[i]
                    .bias
                    .as_ref()
                    .expect("graph says the linear layer has a bias")
                    .val(),
            ),
            (slot, suffix) => unreachable!("{slot:?} has no tensor {suffix}"),
        };
        out.insert(k.key.clone(), RawTensor::new(k.shape.clone(), data));
    }
    Ok(out)
}

/// Write float tensors as a `.safetensors` file, atomically (temporary file in the same folder,
/// then rename). Integer tensors are skipped.
pub fn write_safetensors(
    map: &TensorMap,
    path: impl AsRef<Path>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<(), NnError> {
    let path = path.as_ref();
    let bytes: BTreeMap<&str, (Vec<usize>, Vec<u8>)> = map
        .iter()
        .filter(|(_, t)| t.float)
        .map(|(k, t)| {
            let b: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (k.as_str(), (t.shape.clone(), b))
        })
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (k, (shape, b)) in &bytes {
        let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
            .map_err(|e| NnError::format(path, format!("tensor {k}: {e}")))?;
        views.push((*k, v));
    }
    let blob = safetensors::tensor::serialize(views, metadata)
        .map_err(|e| NnError::format(path, format!("cannot serialize: {e}")))?;
    write_atomic(path, &blob)
}

/// Write `bytes` to `path` atomically ([`effcnn_arch::files::write_atomic`]), so a crash never
/// leaves a half-written file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NnError> {
    effcnn_arch::files::write_atomic(path, bytes).map_err(|e| NnError::io(path, e))
}

/// Save `model`'s weights as `.safetensors` under `layout`'s keys (default: effcnn's canonical
/// paths), atomically. Records the model name and layout in the file's metadata.
pub fn save_safetensors(
    model: &EffNet,
    path: impl AsRef<Path>,
    layout: Option<Layout>,
) -> Result<(), NnError> {
    let layout = layout.unwrap_or(Layout::Canonical);
    let map = model_tensors(model, layout)?;
    let meta = [
        ("effcnn.model".to_string(), model.graph().meta.name.clone()),
        ("effcnn.layout".to_string(), layout.name().to_string()),
    ]
    .into_iter()
    .collect();
    write_safetensors(&map, path, Some(meta))
}

/// What [`convert`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertReport {
    /// Tensors written.
    pub written: usize,
    /// Keys left out (integer buffers; with a graph, tensors it does not have).
    pub skipped: Vec<String>,
    /// With a graph: the layout the input's keys were recognised as.
    pub layout: Option<Layout>,
}

/// Convert a checkpoint (normally a PyTorch `.pth`) to `.safetensors`.
///
/// Without `canonical`, keys are kept as they are (float tensors only). With a graph, keys are
/// matched through its layouts (as when loading, strictly) and renamed to effcnn's canonical
/// paths.
pub fn convert(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    canonical: Option<&Graph>,
) -> Result<ConvertReport, NnError> {
    let map = read_checkpoint(input.as_ref())?;
    match canonical {
        None => {
            let skipped: Vec<String> = map
                .iter()
                .filter(|(_, t)| !t.float)
                .map(|(k, _)| k.clone())
                .collect();
            write_safetensors(&map, output, None)?;
            Ok(ConvertReport {
                written: map.len() - skipped.len(),
                skipped,
                layout: None,
            })
        }
        Some(graph) => {
            let m = best_matching(graph, &map, None)?;
            let canon: BTreeMap<(usize, &str), String> = graph
                .tensor_keys(Layout::Canonical)
                .into_iter()
                .map(|k| ((k.node, k.suffix), k.key))
                .collect();
            let mut out = TensorMap::new();
            let mut report = MismatchReport {
                layout: m.layout.name().to_string(),
                ..Default::default()
            };
            let mut used = BTreeSet::new();
            for k in &m.keys {
                let full = format!("{}{}", m.prefix, k.key);
                match map.get(&full) {
                    None => report.missing.push(full),
                    Some(t) if !t.float || t.shape != k.shape => {
                        report.mismatched.push(format!(
                            "{full}: expected {:?}, found {:?}",
                            k.shape, t.shape
                        ));
                    }
                    Some(t) => {
                        used.insert(full);
                        out.insert(canon[&(k.node, k.suffix)].clone(), t.clone());
                    }
                }
            }
            let mut skipped = Vec::new();
            for key in map.keys().filter(|k| !used.contains(*k)) {
                if is_ignored(key) {
                    skipped.push(key.clone());
                } else if !report
                    .mismatched
                    .iter()
                    .any(|m| m.starts_with(key.as_str()))
                {
                    report.unexpected.push(key.clone());
                }
            }
            if !report.is_clean() {
                return Err(NnError::Mismatch(Box::new(report)));
            }
            let meta = [
                ("effcnn.model".to_string(), graph.meta.name.clone()),
                (
                    "effcnn.layout".to_string(),
                    Layout::Canonical.name().to_string(),
                ),
            ]
            .into_iter()
            .collect();
            write_safetensors(&out, output, Some(meta))?;
            Ok(ConvertReport {
                written: out.len(),
                skipped,
                layout: Some(m.layout),
            })
        }
    }
}
