//! Checkpoint import and export: `.safetensors` and PyTorch `.pth`/`.pt` (ZIP and legacy
//! pre-1.6 containers).
//!
//! Every checkpoint is first read into a [`TensorMap`] (key → shape + f32 data). Keys are then
//! matched against the keys the *graph* derives for each [`Layout`]
//! ([`Graph::tensor_keys`]): no per-model name rules. The layout is detected as the one whose key
//! set matches best; a tie between layouts that would load different tensors is an error asking
//! for an explicit layout. `num_batches_tracked` buffers are ignored. Checkpoint shapes are
//! PyTorch's (Linear weights `[out, in]`); they are transposed into burn's `[in, out]` on load and
//! back on save.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use burn::module::RunningState;
use burn::tensor::Tensor;
use burn_store::pytorch_reader::{DType, PytorchReader};
use effcnn_arch::graph::TensorKey;
use effcnn_arch::{Graph, Layout};

use crate::error::{MismatchReport, NnError};
use crate::model::{param_from, tensor_from, EffNet, Slot};
use crate::pickle_guard;

/// One checkpoint tensor, converted to f32, in the checkpoint's (PyTorch) shape.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// Shape as stored in the checkpoint.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
    /// Whether the stored dtype was floating point (integer buffers such as
    /// `num_batches_tracked` are kept but never loaded into parameters).
    pub float: bool,
}

impl RawTensor {
    /// A float tensor.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> RawTensor {
        RawTensor {
            shape,
            data,
            float: true,
        }
    }
}

/// A checkpoint's tensors by key.
pub type TensorMap = BTreeMap<String, RawTensor>;

/// What [`load_weights`] / [`apply_tensors`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// The layout the keys were matched against.
    pub layout: Layout,
    /// A prefix stripped from every key (`module.`, `state_dict.`, …), empty if none.
    pub prefix: String,
    /// Number of tensors loaded.
    pub loaded: usize,
    /// Tensors that did not fit (empty unless `allow_partial`).
    pub skipped: MismatchReport,
    /// Keys ignored on purpose (`num_batches_tracked`).
    pub ignored: usize,
}

/// Prefixes that wrap a state dict (DataParallel, training scripts' checkpoint dicts).
const PREFIXES: [&str; 6] = [
    "",
    "module.",
    "state_dict.",
    "model.",
    "state_dict.module.",
    "model.module.",
];

fn is_ignored(key: &str) -> bool {
    key.ends_with("num_batches_tracked")
}

/// Read a checkpoint (`.safetensors`, or a PyTorch `.pth`/`.pt`/`.bin`/`.tar`) into memory.
/// The format is recognised from the file's content, not its name.
///
/// Floating-point tensors of any width (F64, F32, F16, BF16) are converted to f32; integer
/// tensors are kept as non-float buffers that never load into parameters. A file whose header
/// disagrees with its data (offsets or sizes past the end, overlapping tensors, a byte count
/// that does not fit the dtype and shape) is an error, as is any pickle that references a
/// global outside the weights-only allow-list (see [`NnError::UnsafePickle`]).
pub fn read_checkpoint(path: impl AsRef<Path>) -> Result<TensorMap, NnError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| NnError::io(path, e))?;
    if looks_like_safetensors(&bytes) {
        return read_safetensors_bytes(path, &bytes);
    }
    // Weights-only check of every pickle before the reader sees the file.
    if let Err(e) = pickle_guard::check_bytes(path, &bytes) {
        return Err(match e {
            // Neither zip, legacy container nor a protocol-2+ pickle, and unreadable as a
            // pickle: most likely not a checkpoint at all.
            NnError::Format { msg, .. }
                if pickle_guard::container(&bytes) == pickle_guard::Container::Pickle
                    && !bytes.starts_with(&[0x80]) =>
            {
                NnError::format(
                    path,
                    format!(
                        "not a checkpoint: neither .safetensors, a PyTorch zip archive nor a \
                         pickle ({msg})"
                    ),
                )
            }
            e => e,
        });
    }
    drop(bytes);
    read_pytorch_checked(path)
}

/// The largest header the safetensors format allows.
const SAFETENSORS_MAX_HEADER: u64 = 100_000_000;

/// A safetensors file: an 8-byte little-endian header length, then a JSON object. The length is
/// only checked for plausibility here (a zip or pickle never starts with one), so that a header
/// length running past the end of the file is reported as such rather than as a bad pickle.
fn looks_like_safetensors(bytes: &[u8]) -> bool {
    if bytes.len() < 10 {
        return false;
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    n > 0 && n <= SAFETENSORS_MAX_HEADER && bytes[8] == b'{'
}

fn read_safetensors_bytes(path: &Path, bytes: &[u8]) -> Result<TensorMap, NnError> {
    use safetensors::Dtype;
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if n > (bytes.len() - 8) as u64 {
        return Err(NnError::format(
            path,
            format!(
                "invalid safetensors file: the header length {n} runs past the end of the \
                 {}-byte file (truncated or not a safetensors file)",
                bytes.len()
            ),
        ));
    }
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
        let detail = safetensors_size_mismatch(bytes)
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        NnError::format(path, format!("invalid safetensors file: {e}{detail}"))
    })?;
    let mut out = TensorMap::new();
    for (name, view) in st.iter() {
        let d = view.data();
        let (data, float) = match view.dtype() {
            Dtype::F32 => (
                d.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                true,
            ),
            Dtype::F64 => (
                d.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                true,
            ),
            Dtype::F16 => (
                d.chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                true,
            ),
            Dtype::BF16 => (
                d.chunks_exact(2)
                    .map(|c| bf16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                true,
            ),
            Dtype::I64 => (
                d.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                false,
            ),
            Dtype::I32 => (
                d.chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                false,
            ),
            other => {
                return Err(NnError::format(
                    path,
                    format!("tensor {name}: unsupported dtype {other:?}"),
                ))
            }
        };
        out.insert(
            name.to_string(),
            RawTensor {
                shape: view.shape().to_vec(),
                data,
                float,
            },
        );
    }
    Ok(out)
}

/// Names the first tensor whose header entry disagrees with itself (the byte span of its
/// `data_offsets` is not what its dtype and shape need): the safetensors crate reports that
/// case without the tensor's name.
fn safetensors_size_mismatch(bytes: &[u8]) -> Option<String> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    header.iter().find_map(|(name, info)| {
        let width: u64 = match info.get("dtype")?.as_str()? {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            "I8" | "U8" | "BOOL" => 1,
            _ => return None,
        };
        let count = info
            .get("shape")?
            .as_array()?
            .iter()
            .try_fold(1u64, |a, d| a.checked_mul(d.as_u64()?))?;
        let offsets = info.get("data_offsets")?.as_array()?;
        let (start, end) = (offsets.first()?.as_u64()?, offsets.get(1)?.as_u64()?);
        let need = count.checked_mul(width)?;
        (end.checked_sub(start) != Some(need)).then(|| {
            format!(
                "tensor {name}: {} {} needs {need} bytes, its data_offsets [{start}, {end}] \
                 span {}",
                info["dtype"].as_str().unwrap_or("?"),
                info["shape"],
                end as i128 - start as i128
            )
        })
    })
}

/// Read a PyTorch checkpoint after its pickles passed the weights-only check.
fn read_pytorch_checked(path: &Path) -> Result<TensorMap, NnError> {
    let reader = PytorchReader::new(path)
        .map_err(|e| NnError::format(path, format!("cannot read PyTorch checkpoint: {e}")))?;
    let mut out = TensorMap::new();
    for (name, t) in reader.into_tensors() {
        let bytes = t
            .read()
            .map_err(|e| NnError::format(path, format!("tensor {name}: {e}")))?;
        let (data, float): (Vec<f32>, bool) = match t.dtype() {
            DType::F32 => (
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                true,
            ),
            DType::F64 => (
                bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                true,
            ),
            DType::F16 => (
                bytes
                    .chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                true,
            ),
            DType::BF16 => (
                bytes
                    .chunks_exact(2)
                    .map(|c| bf16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                true,
            ),
            DType::I64 => (
                bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                false,
            ),
            // Other integer and bool buffers are never weights; keep their shape only.
            _ => (Vec::new(), false),
        };
        out.insert(
            name,
            RawTensor {
                shape: t.shape().to_vec(),
                data,
                float,
            },
        );
    }
    Ok(out)
}

fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m · 2^-24.
            let v = m as f32 * (1.0 / (1u32 << 24) as f32);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// One layout's assignment of checkpoint keys to graph tensors.
struct Matching<'a> {
    layout: Layout,
    prefix: &'static str,
    keys: Vec<TensorKey>,
    map: &'a TensorMap,
}

impl Matching<'_> {
    fn matched(&self) -> usize {
        self.keys
            .iter()
            .filter(|k| self.map.contains_key(&format!("{}{}", self.prefix, k.key)))
            .count()
    }
    /// (checkpoint key, node, suffix) of every matched tensor.
    fn assignment(&self) -> BTreeSet<(String, usize, &'static str)> {
        self.keys
            .iter()
            .filter_map(|k| {
                let full = format!("{}{}", self.prefix, k.key);
                self.map
                    .contains_key(&full)
                    .then_some((full, k.node, k.suffix))
            })
            .collect()
    }
}

/// Pick the layout (and wrapping prefix) whose keys match `map` best.
///
/// With `layout` given only that layout is tried (it must exist for the graph). Without, every
/// layout the graph has names for is tried; the most matched keys wins, and a tie between layouts
/// that would assign tensors differently is [`NnError::AmbiguousLayout`].
pub fn detect_layout(
    graph: &Graph,
    map: &TensorMap,
    layout: Option<Layout>,
) -> Result<(Layout, String), NnError> {
    let m = best_matching(graph, map, layout)?;
    Ok((m.layout, m.prefix.to_string()))
}

fn best_matching<'a>(
    graph: &Graph,
    map: &'a TensorMap,
    layout: Option<Layout>,
) -> Result<Matching<'a>, NnError> {
    let available = graph.layouts();
    let layouts = match layout {
        Some(l) if available.contains(&l) => vec![l],
        Some(l) => {
            return Err(NnError::NoSuchLayout {
                model: graph.meta.name.clone(),
                layout: l.name().to_string(),
                available: available.iter().map(|l| l.name().to_string()).collect(),
            })
        }
        None => available,
    };
    let mut cands: Vec<(usize, Matching<'a>)> = Vec::new();
    for &l in &layouts {
        let keys = graph.tensor_keys(l);
        for prefix in PREFIXES {
            let m = Matching {
                layout: l,
                prefix,
                keys: keys.clone(),
                map,
            };
            let n = m.matched();
            if n > 0 || prefix.is_empty() {
                cands.push((n, m));
            }
        }
    }
    let best = cands.iter().map(|(n, _)| *n).max().unwrap_or(0);
    let mut top: Vec<Matching<'a>> = cands
        .into_iter()
        .filter(|(n, _)| *n == best)
        .map(|(_, m)| m)
        .collect();
    if best > 0 && top.len() > 1 {
        let first = top[0].assignment();
        let differing: Vec<&Matching> = top[1..]
            .iter()
            .filter(|m| m.assignment() != first)
            .collect();
        if !differing.is_empty() {
            let mut names: Vec<String> = std::iter::once(&top[0])
                .chain(differing)
                .map(|m| m.layout.name().to_string())
                .collect();
            names.dedup();
            if names.len() > 1 {
                return Err(NnError::AmbiguousLayout {
                    candidates: names,
                    matched: best,
                });
            }
        }
    }
    // Equivalent assignments: the first (canonical before foreign layouts, no prefix first).
    Ok(top.swap_remove(0))
}

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

/// Load a checkpoint file into `model` (see [`read_checkpoint`] and [`apply_tensors`]).
pub fn load_weights(
    model: &mut EffNet,
    path: impl AsRef<Path>,
    layout: Option<Layout>,
    allow_partial: bool,
) -> Result<LoadReport, NnError> {
    let map = read_checkpoint(path.as_ref())?;
    apply_tensors(model, &map, layout, allow_partial)
}

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
