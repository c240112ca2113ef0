//! effcnn-onnx: ONNX export of effcnn models, derived from the resolved [`Graph`] — like the cost
//! table, the checkpoint key maps and the diagrams, one more thing read off the single
//! architecture definition.
//!
//! Every [`Op`] maps to standard ONNX operators (default domain, opsets [`MIN_OPSET`] to
//! [`MAX_OPSET`]):
//!
//! | effcnn op | ONNX |
//! | --- | --- |
//! | `Conv` (any `groups`, dilation) | `Conv` with explicit per-side `pads` |
//! | `BatchNorm` | `BatchNormalization` (or folded into the preceding `Conv`, [`ExportOptions::fold_bn`]) |
//! | ReLU / ReLU6 / Sigmoid | `Relu` / `Clip(0, 6)` / `Sigmoid` |
//! | SiLU | `Sigmoid` → `Mul` |
//! | HardSigmoid | `HardSigmoid(alpha = 1/6, beta = 0.5)` |
//! | HardSwish | `HardSwish` (opset ≥ 14), else `HardSigmoid` → `Mul` |
//! | `Scale` (SE gate) | `Mul` (the gate broadcast over H×W) |
//! | `Shuffle` | `Reshape` → `Transpose` → `Reshape` |
//! | `Slice` / `Concat` / `Add` | `Slice` / `Concat` / `Add` |
//! | `MaxPool` / `AvgPool` | `MaxPool` (`ceil_mode`) / `AveragePool` (`count_include_pad`) |
//! | `GlobalAvgPool` / `Flatten` / `Linear` | `GlobalAveragePool` / `Flatten` / `Gemm` (`transB = 1`) |
//! | `Dropout` / `DropPath` | nothing: identity at inference |
//!
//! TensorFlow "SAME" padding ([`effcnn_arch::Pad::TfSame`]) depends on the input size; the
//! spatial resolution of an export is therefore fixed (the graph's), and SAME padding is written
//! as the explicit, possibly asymmetric `pads` it resolves to at that resolution. Only the batch
//! dimension may be dynamic ([`Batch::Dynamic`]), which changes no padding.
//!
//! Initializers are named by the model's own parameter paths (`blocks.3.1.conv_dw.weight`, …, in
//! PyTorch's shapes), node outputs by the node paths; the graph input is [`INPUT_NAME`]
//! (`[N, 3, H, W]`, float32, normalized) and the output [`OUTPUT_NAME`] (`[N, classes]`, no
//! softmax). The model name, profile, width, resolution and the input normalization the weights
//! expect (`effcnn.norm_mean` / `effcnn.norm_std`) are recorded in `metadata_props`.
//!
//! The protobuf messages are prost derives mirroring the official `onnx.proto` ([`proto`]);
//! [`write`] writes atomically (temporary file, then rename).

#![warn(missing_docs)]

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

use effcnn_arch::graph::pool_out_size;
use effcnn_arch::{Act, Graph, Layout, NodeId, Op};
use effcnn_nn::{EffNet, RawTensor, TensorMap};
use prost::Message;

mod error;
pub mod proto;

pub use error::OnnxError;
use proto::{
    AttributeProto, AttributeType, DataType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// The lowest ONNX opset effcnn exports (`Clip` with min/max inputs, `Gemm` without bias).
pub const MIN_OPSET: i64 = 11;
/// The highest ONNX opset effcnn exports.
pub const MAX_OPSET: i64 = 21;
/// The default opset (the one `torch.onnx.export` defaults to in recent PyTorch).
pub const DEFAULT_OPSET: i64 = 17;
/// Name of the graph input.
pub const INPUT_NAME: &str = "input";
/// Name of the graph output.
pub const OUTPUT_NAME: &str = "logits";
/// Name of the symbolic batch dimension of a [`Batch::Dynamic`] export.
pub const BATCH_PARAM: &str = "batch";

/// The batch dimension of the exported input and output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// A fixed batch size.
    Fixed(usize),
    /// A symbolic dimension ([`BATCH_PARAM`]): any batch size at run time.
    Dynamic,
}

impl FromStr for Batch {
    type Err = OnnxError;
    fn from_str(s: &str) -> Result<Batch, OnnxError> {
        if s.eq_ignore_ascii_case("dynamic") {
            return Ok(Batch::Dynamic);
        }
        match s.parse::<usize>() {
            Ok(0) => Err(OnnxError::ZeroBatch),
            Ok(n) => Ok(Batch::Fixed(n)),
            Err(_) => Err(OnnxError::BadBatch(s.to_string())),
        }
    }
}

impl std::fmt::Display for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Batch::Fixed(n) => write!(f, "{n}"),
            Batch::Dynamic => write!(f, "dynamic"),
        }
    }
}

/// How to export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// ONNX operator set, [`MIN_OPSET`] ..= [`MAX_OPSET`].
    pub opset: i64,
    /// Batch dimension.
    pub batch: Batch,
    /// Fold every batch norm that alone consumes a convolution's output into that convolution
    /// (scaled weights and a bias, computed in f64). Other batch norms stay
    /// `BatchNormalization` nodes.
    pub fold_bn: bool,
    /// Extra `metadata_props` entries (e.g. where the weights came from).
    pub metadata: Vec<(String, String)>,
}

impl ExportOptions {
    /// Check the options on their own (the opset range, a non-zero batch), before any work.
    pub fn validate(&self) -> Result<(), OnnxError> {
        if !(MIN_OPSET..=MAX_OPSET).contains(&self.opset) {
            return Err(OnnxError::Opset(self.opset));
        }
        if self.batch == Batch::Fixed(0) {
            return Err(OnnxError::ZeroBatch);
        }
        Ok(())
    }
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            opset: DEFAULT_OPSET,
            batch: Batch::Fixed(1),
            fold_bn: false,
            metadata: Vec::new(),
        }
    }
}

/// The ONNX IR version that goes with an opset (ONNX's release table).
pub fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

/// Export `model` (its graph and current weights; eval-mode semantics).
pub fn export_model(model: &EffNet, opts: &ExportOptions) -> Result<ModelProto, OnnxError> {
    let tensors = effcnn_nn::checkpoint::model_tensors(model, Layout::Canonical)?;
    export(model.graph(), &tensors, opts)
}

/// Export `graph` with the parameter tensors in `tensors` (effcnn's canonical keys,
/// `<node path>.<suffix>`, in PyTorch's shapes, as [`effcnn_nn::checkpoint::model_tensors`]
/// returns them).
pub fn export(
    graph: &Graph,
    tensors: &TensorMap,
    opts: &ExportOptions,
) -> Result<ModelProto, OnnxError> {
    opts.validate()?;
    graph.validate().map_err(effcnn_nn::NnError::from)?;
    let mut b = Builder::new(graph, tensors, opts);
    b.build()?;
    let Builder { nodes, inits, .. } = b;
    let meta = &graph.meta;
    let s = graph.input_shape();
    let classes = graph.nodes[graph.output].shape.numel() as usize;
    let batch_dim = match opts.batch {
        Batch::Fixed(n) => dim_value(n),
        Batch::Dynamic => tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimParam(
                BATCH_PARAM.into(),
            )),
            denotation: None,
        },
    };
    let input = value_info(
        INPUT_NAME,
        vec![
            batch_dim.clone(),
            dim_value(s.c),
            dim_value(s.h),
            dim_value(s.w),
        ],
        format!(
            "float32 NCHW RGB image batch, {}×{} pixels, each channel (x/255 − mean) / std with \
             mean {} and std {} (see metadata effcnn.norm_mean / effcnn.norm_std)",
            s.h,
            s.w,
            json_floats(&meta.norm_mean),
            json_floats(&meta.norm_std)
        ),
    );
    let output = value_info(
        OUTPUT_NAME,
        vec![batch_dim, dim_value(classes)],
        format!("float32 logits over {classes} classes (no softmax)"),
    );
    let mut props: Vec<(String, String)> = vec![
        ("effcnn.model".into(), meta.name.clone()),
        ("effcnn.family".into(), meta.family.clone()),
        ("effcnn.profile".into(), meta.profile.name().into()),
        ("effcnn.width".into(), meta.width.to_string()),
        ("effcnn.depth".into(), meta.depth.to_string()),
        ("effcnn.resolution".into(), meta.resolution.to_string()),
        ("effcnn.classes".into(), classes.to_string()),
        ("effcnn.input".into(), INPUT_NAME.into()),
        ("effcnn.output".into(), OUTPUT_NAME.into()),
        ("effcnn.input_layout".into(), "NCHW, RGB".into()),
        ("effcnn.norm_mean".into(), json_floats(&meta.norm_mean)),
        ("effcnn.norm_std".into(), json_floats(&meta.norm_std)),
        (
            "effcnn.batch_norm".into(),
            if opts.fold_bn {
                "folded into conv where it follows one".into()
            } else {
                "BatchNormalization".into()
            },
        ),
    ];
    props.extend(opts.metadata.iter().cloned());
    let model = ModelProto {
        ir_version: Some(ir_version(opts.opset)),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opts.opset),
        }],
        producer_name: Some("effcnn".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        domain: Some("effcnn".into()),
        model_version: Some(1),
        doc_string: Some(format!(
            "{} ({} profile, {}×{} input), exported by effcnn from its resolved architecture \
             graph. Input `{INPUT_NAME}`: normalized RGB NCHW; output `{OUTPUT_NAME}`: logits.",
            meta.name,
            meta.profile.name(),
            s.h,
            s.w
        )),
        graph: Some(GraphProto {
            node: nodes,
            name: Some(meta.name.clone()),
            initializer: inits,
            doc_string: None,
            input: vec![input],
            output: vec![output],
            value_info: Vec::new(),
        }),
        metadata_props: props
            .into_iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k),
                value: Some(v),
            })
            .collect(),
    };
    check(&model).map_err(OnnxError::Internal)?;
    Ok(model)
}

/// The model's protobuf bytes.
pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Write `model` to `path` atomically (a temporary file in the same folder, then a rename; no
/// partial file on error).
pub fn write(model: &ModelProto, path: impl AsRef<Path>) -> Result<(), OnnxError> {
    effcnn_nn::checkpoint::write_atomic(path.as_ref(), &encode(model))?;
    Ok(())
}

/// A structural check of an exported model, in the spirit of `onnx.checker`: an opset import,
/// unique value names defined once (graph inputs, initializers, node outputs), every node input
/// defined before it is used, every graph output produced, initializer bytes that match their
/// shapes and types, every attribute with its value.
pub fn check(model: &ModelProto) -> Result<(), String> {
    if model.opset_import.is_empty() {
        return Err("no opset import".into());
    }
    let g = model.graph.as_ref().ok_or("no graph")?;
    let mut defined: HashSet<&str> = HashSet::new();
    for i in &g.input {
        let n = i.name.as_deref().ok_or("an unnamed graph input")?;
        if !defined.insert(n) {
            return Err(format!("graph input {n} defined twice"));
        }
    }
    for t in &g.initializer {
        let n = t.name.as_deref().ok_or("an unnamed initializer")?;
        if !defined.insert(n) {
            return Err(format!("initializer {n} defined twice"));
        }
        let size = match t.data_type {
            Some(x) if x == DataType::Float as i32 => 4,
            Some(x) if x == DataType::Int64 as i32 => 8,
            other => return Err(format!("initializer {n}: unexpected data type {other:?}")),
        };
        let count: i64 = t.dims.iter().product();
        let bytes = t.raw_data.as_ref().map_or(0, |d| d.len());
        if t.dims.iter().any(|&d| d < 0) || bytes != count as usize * size {
            return Err(format!(
                "initializer {n}: {bytes} bytes for shape {:?}",
                t.dims
            ));
        }
    }
    for (k, node) in g.node.iter().enumerate() {
        let op = node.op_type.as_deref().unwrap_or("");
        if op.is_empty() {
            return Err(format!("node {k} has no op_type"));
        }
        for i in &node.input {
            if !i.is_empty() && !defined.contains(i.as_str()) {
                return Err(format!(
                    "node {k} ({op}) reads {i}, which is not defined before it"
                ));
            }
        }
        for a in &node.attribute {
            let has_value = a.f.is_some()
                || a.i.is_some()
                || a.s.is_some()
                || a.t.is_some()
                || !a.floats.is_empty()
                || !a.ints.is_empty();
            if a.name.is_none() || a.r#type.is_none() || !has_value {
                return Err(format!(
                    "node {k} ({op}): an attribute without name, type or value"
                ));
            }
        }
        for o in &node.output {
            if !defined.insert(o.as_str()) {
                return Err(format!("node {k} ({op}) redefines {o}"));
            }
        }
    }
    for o in &g.output {
        let n = o.name.as_deref().ok_or("an unnamed graph output")?;
        if !defined.contains(n) {
            return Err(format!("graph output {n} is never produced"));
        }
    }
    Ok(())
}

// -------------------------------------------------------------------------------------------
// Protobuf helpers

use proto::tensor_shape_proto;

fn dim_value(n: usize) -> tensor_shape_proto::Dimension {
    tensor_shape_proto::Dimension {
        value: Some(tensor_shape_proto::dimension::Value::DimValue(n as i64)),
        denotation: None,
    }
}

fn value_info(name: &str, dims: Vec<tensor_shape_proto::Dimension>, doc: String) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(proto::type_proto::Value::TensorType(
                proto::type_proto::Tensor {
                    elem_type: Some(DataType::Float as i32),
                    shape: Some(TensorShapeProto { dim: dims }),
                },
            )),
            denotation: None,
        }),
        doc_string: Some(doc),
    }
}

fn json_floats(v: &[f32; 3]) -> String {
    format!("[{}, {}, {}]", v[0], v[1], v[2])
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

fn i64s(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

// -------------------------------------------------------------------------------------------
// Graph → ONNX

/// An ONNX value standing for a graph node's output.
#[derive(Debug, Clone)]
struct Value {
    name: String,
    /// 4 for feature maps `[N, C, H, W]`, 2 after `Flatten` / `Gemm` (`[N, F]`).
    rank: usize,
}

struct Builder<'a> {
    graph: &'a Graph,
    tensors: &'a TensorMap,
    opts: &'a ExportOptions,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    init_names: HashSet<String>,
    values: Vec<Option<Value>>,
}

impl<'a> Builder<'a> {
    fn new(graph: &'a Graph, tensors: &'a TensorMap, opts: &'a ExportOptions) -> Self {
        Builder {
            graph,
            tensors,
            opts,
            nodes: Vec::new(),
            inits: Vec::new(),
            init_names: HashSet::new(),
            values: vec![None; graph.nodes.len()],
        }
    }

    fn unsupported(&self, id: NodeId, msg: impl Into<String>) -> OnnxError {
        OnnxError::Unsupported {
            path: self.graph.nodes[id].path.clone(),
            msg: msg.into(),
        }
    }

    /// The value of node `id`'s input `k`.
    fn arg(&self, id: NodeId, k: usize) -> Value {
        let j = self.graph.nodes[id].inputs[k];
        self.values[j]
            .clone()
            .expect("graph inputs come before their consumers")
    }

    /// The value of node `id`'s input `k`, which must be a 4-d feature map.
    fn map_arg(&self, id: NodeId, k: usize, what: &str) -> Result<Value, OnnxError> {
        let v = self.arg(id, k);
        if v.rank != 4 {
            return Err(self.unsupported(id, format!("{what} on a flattened [N, features] value")));
        }
        Ok(v)
    }

    fn emit(
        &mut self,
        op: &str,
        name: String,
        inputs: Vec<String>,
        output: String,
        attrs: Vec<AttributeProto>,
    ) -> String {
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![output.clone()],
            name: Some(name),
            op_type: Some(op.into()),
            domain: None,
            attribute: attrs,
            doc_string: None,
        });
        output
    }

    fn init(
        &mut self,
        name: String,
        dims: &[usize],
        ty: DataType,
        raw: Vec<u8>,
        doc: Option<String>,
    ) {
        if self.init_names.insert(name.clone()) {
            self.inits.push(TensorProto {
                dims: i64s(dims),
                data_type: Some(ty as i32),
                name: Some(name),
                doc_string: doc,
                raw_data: Some(raw),
            });
        }
    }

    fn init_f32(
        &mut self,
        name: String,
        dims: &[usize],
        data: &[f32],
        doc: Option<String>,
    ) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.init(name.clone(), dims, DataType::Float, raw, doc);
        name
    }

    fn init_i64(&mut self, name: String, data: &[i64]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.init(name.clone(), &[data.len()], DataType::Int64, raw, None);
        name
    }

    /// A float32 scalar constant shared by every node that needs it.
    fn scalar(&mut self, name: &str, v: f32) -> String {
        let raw = v.to_le_bytes().to_vec();
        self.init(name.into(), &[], DataType::Float, raw, None);
        name.into()
    }

    /// The parameter tensor `<path>.<suffix>` with the shape the graph expects.
    fn param(&self, id: NodeId, suffix: &str, shape: &[usize]) -> Result<&'a RawTensor, OnnxError> {
        let key = format!("{}.{suffix}", self.graph.nodes[id].path);
        let t = self.tensors.get(&key).ok_or_else(|| OnnxError::Tensor {
            key: key.clone(),
            msg: "missing".into(),
        })?;
        if !t.float || t.shape != shape || t.data.len() != shape.iter().product::<usize>() {
            return Err(OnnxError::Tensor {
                key,
                msg: format!("expected {shape:?}, found {:?}", t.shape),
            });
        }
        Ok(t)
    }

    fn build(&mut self) -> Result<(), OnnxError> {
        let graph = self.graph;
        let n = graph.nodes.len();
        let uses = effcnn_arch::liveness::Uses::direct(graph);
        let mut folded = vec![false; n];
        for (id, node) in graph.nodes.iter().enumerate() {
            if folded[id] {
                continue;
            }
            let path = node.path.clone();
            let v = match &node.op {
                Op::Input => Value {
                    name: INPUT_NAME.into(),
                    rank: 4,
                },
                Op::Conv(c) => {
                    let x = self.map_arg(id, 0, "a convolution")?;
                    let ins = graph.nodes[node.inputs[0]].shape;
                    let (t, l, b, r) = c.pad.resolve(ins.h, ins.w, c.k, c.stride, c.dilation);
                    let bn = uses
                        .sole_reader(id)
                        .filter(|_| self.opts.fold_bn)
                        .filter(|&j| matches!(graph.nodes[j].op, Op::BatchNorm { .. }));
                    let wshape = c.weight_shape();
                    let w = self.param(id, "weight", &wshape)?;
                    let bias = if c.bias {
                        Some(self.param(id, "bias", &[c.cout])?)
                    } else {
                        None
                    };
                    let mut inputs = vec![x.name];
                    let out_name = match bn {
                        None => {
                            inputs.push(self.init_f32(
                                format!("{path}.weight"),
                                &wshape,
                                &w.data,
                                None,
                            ));
                            if let Some(bias) = bias {
                                inputs.push(self.init_f32(
                                    format!("{path}.bias"),
                                    &[c.cout],
                                    &bias.data,
                                    None,
                                ));
                            }
                            path.clone()
                        }
                        Some(j) => {
                            let Op::BatchNorm { eps, .. } = graph.nodes[j].op else {
                                unreachable!("filtered above")
                            };
                            let (fw, fb) = self.fold(j, eps, c.cout, w, bias)?;
                            let bn_path = graph.nodes[j].path.clone();
                            let doc = Some(format!("{path} with batch norm {bn_path} folded in"));
                            inputs.push(self.init_f32(
                                format!("{path}.weight"),
                                &wshape,
                                &fw,
                                doc.clone(),
                            ));
                            inputs.push(self.init_f32(format!("{path}.bias"), &[c.cout], &fb, doc));
                            folded[j] = true;
                            bn_path
                        }
                    };
                    let attrs = vec![
                        attr_ints("kernel_shape", &i64s(&[c.k.0, c.k.1])),
                        attr_ints("strides", &i64s(&[c.stride.0, c.stride.1])),
                        attr_ints("pads", &i64s(&[t, l, b, r])),
                        attr_ints("dilations", &i64s(&[c.dilation, c.dilation])),
                        attr_int("group", c.groups as i64),
                    ];
                    let name = self.emit("Conv", path, inputs, out_name, attrs);
                    let v = Value { name, rank: 4 };
                    if let Some(j) = bn {
                        self.values[j] = Some(v.clone());
                    }
                    v
                }
                Op::BatchNorm { c, eps } => {
                    let x = self.arg(id, 0);
                    let mut inputs = vec![x.name];
                    for suffix in ["weight", "bias", "running_mean", "running_var"] {
                        let t = self.param(id, suffix, &[*c])?;
                        inputs.push(self.init_f32(
                            format!("{path}.{suffix}"),
                            &[*c],
                            &t.data,
                            None,
                        ));
                    }
                    let attrs = vec![attr_float("epsilon", *eps as f32)];
                    let name = self.emit("BatchNormalization", path.clone(), inputs, path, attrs);
                    Value { name, rank: x.rank }
                }
                Op::Act { act } => {
                    let x = self.arg(id, 0);
                    let name = self.act(&path, *act, x.name);
                    Value { name, rank: x.rank }
                }
                Op::MaxPool {
                    k,
                    stride,
                    pad,
                    ceil_mode,
                } => {
                    let x = self.map_arg(id, 0, "max pooling")?;
                    let ins = graph.nodes[node.inputs[0]].shape;
                    let (k, s, p) = (*k, *stride, *pad);
                    let mut attrs = vec![
                        attr_ints("kernel_shape", &i64s(&[k, k])),
                        attr_ints("strides", &i64s(&[s, s])),
                    ];
                    // PyTorch's ceil mode drops a last window that would start in the right
                    // padding; where that rule bites, write the exact extra bottom/right padding
                    // with floor rounding instead (padding never wins a max, so both agree).
                    let naive = |n: usize| (n + 2 * p).saturating_sub(k).div_ceil(s) + 1;
                    let torch = |n: usize| pool_out_size(n, k, s, p, *ceil_mode);
                    let (Some(oh), Some(ow)) = (torch(ins.h), torch(ins.w)) else {
                        return Err(
                            self.unsupported(id, "the pooling window does not fit the input")
                        );
                    };
                    if *ceil_mode && (naive(ins.h) != oh || naive(ins.w) != ow) {
                        let extra =
                            |n: usize, o: usize| ((o - 1) * s + k).saturating_sub(n + 2 * p);
                        attrs.push(attr_ints(
                            "pads",
                            &i64s(&[p, p, p + extra(ins.h, oh), p + extra(ins.w, ow)]),
                        ));
                        attrs.push(attr_int("ceil_mode", 0));
                    } else {
                        attrs.push(attr_ints("pads", &i64s(&[p, p, p, p])));
                        attrs.push(attr_int("ceil_mode", i64::from(*ceil_mode)));
                    }
                    let name = self.emit("MaxPool", path.clone(), vec![x.name], path, attrs);
                    Value { name, rank: 4 }
                }
                Op::AvgPool {
                    k,
                    stride,
                    pad,
                    count_include_pad,
                } => {
                    let x = self.map_arg(id, 0, "average pooling")?;
                    let attrs = vec![
                        attr_ints("kernel_shape", &i64s(&[*k, *k])),
                        attr_ints("strides", &i64s(&[*stride, *stride])),
                        attr_ints("pads", &i64s(&[*pad; 4])),
                        attr_int("count_include_pad", i64::from(*count_include_pad)),
                        attr_int("ceil_mode", 0),
                    ];
                    let name = self.emit("AveragePool", path.clone(), vec![x.name], path, attrs);
                    Value { name, rank: 4 }
                }
                Op::GlobalAvgPool => {
                    let x = self.map_arg(id, 0, "global average pooling")?;
                    let name = self.emit(
                        "GlobalAveragePool",
                        path.clone(),
                        vec![x.name],
                        path,
                        vec![],
                    );
                    Value { name, rank: 4 }
                }
                Op::Flatten => {
                    let x = self.arg(id, 0);
                    let name = self.flatten(path.clone(), x.name, path);
                    Value { name, rank: 2 }
                }
                Op::Linear { fin, fout, bias } => {
                    let x = self.arg(id, 0);
                    let x = if x.rank == 4 {
                        self.flatten(format!("{path}.flatten"), x.name, format!("{path}.flatten"))
                    } else {
                        x.name
                    };
                    let w = self.param(id, "weight", &[*fout, *fin])?;
                    let mut inputs = vec![x];
                    inputs.push(self.init_f32(
                        format!("{path}.weight"),
                        &[*fout, *fin],
                        &w.data,
                        None,
                    ));
                    if *bias {
                        let b = self.param(id, "bias", &[*fout])?;
                        inputs.push(self.init_f32(format!("{path}.bias"), &[*fout], &b.data, None));
                    }
                    let attrs = vec![attr_int("transB", 1)];
                    let name = self.emit("Gemm", path.clone(), inputs, path, attrs);
                    Value { name, rank: 2 }
                }
                // Identity at inference: the node's value is its input's.
                Op::Dropout { .. } | Op::DropPath { .. } => self.arg(id, 0),
                Op::Add => {
                    let args: Vec<Value> =
                        (0..node.inputs.len()).map(|k| self.arg(id, k)).collect();
                    if args.len() < 2 || args.iter().any(|a| a.rank != args[0].rank) {
                        return Err(self.unsupported(id, "an add of values of different ranks"));
                    }
                    let mut acc = args[0].name.clone();
                    for (k, a) in args.iter().enumerate().skip(1) {
                        let last = k + 1 == args.len();
                        let out = if last {
                            path.clone()
                        } else {
                            format!("{path}.sum{k}")
                        };
                        acc = self.emit("Add", out.clone(), vec![acc, a.name.clone()], out, vec![]);
                    }
                    Value {
                        name: acc,
                        rank: args[0].rank,
                    }
                }
                Op::Scale => {
                    let x = self.map_arg(id, 0, "an SE scale")?;
                    let gate = self.arg(id, 1);
                    let gate = if gate.rank == 2 {
                        let shape = self.init_i64(format!("{path}.gate_shape"), &[0, -1, 1, 1]);
                        let out = format!("{path}.gate");
                        self.emit("Reshape", out.clone(), vec![gate.name, shape], out, vec![])
                    } else {
                        gate.name
                    };
                    let name = self.emit("Mul", path.clone(), vec![x.name, gate], path, vec![]);
                    Value { name, rank: 4 }
                }
                Op::Concat => {
                    let args: Vec<Value> =
                        (0..node.inputs.len()).map(|k| self.arg(id, k)).collect();
                    if args.iter().any(|a| a.rank != args[0].rank) {
                        return Err(
                            self.unsupported(id, "a concatenation of values of different ranks")
                        );
                    }
                    let rank = args[0].rank;
                    let inputs = args.into_iter().map(|a| a.name).collect();
                    let name = self.emit(
                        "Concat",
                        path.clone(),
                        inputs,
                        path,
                        vec![attr_int("axis", 1)],
                    );
                    Value { name, rank }
                }
                Op::Slice { start, len } => {
                    let x = self.arg(id, 0);
                    let starts = self.init_i64(format!("{path}.starts"), &[*start as i64]);
                    let ends = self.init_i64(format!("{path}.ends"), &[(start + len) as i64]);
                    let axes = self.init_i64(format!("{path}.axes"), &[1]);
                    let name = self.emit(
                        "Slice",
                        path.clone(),
                        vec![x.name, starts, ends, axes],
                        path,
                        vec![],
                    );
                    Value { name, rank: x.rank }
                }
                Op::Shuffle { groups } => {
                    let x = self.map_arg(id, 0, "a channel shuffle")?;
                    let s = node.shape;
                    let g = *groups;
                    if g == 0 || s.c % g != 0 {
                        return Err(self.unsupported(
                            id,
                            format!("{} channels do not split into {g} groups", s.c),
                        ));
                    }
                    let split = self.init_i64(
                        format!("{path}.split_shape"),
                        &[0, g as i64, (s.c / g) as i64, s.h as i64, s.w as i64],
                    );
                    let merged = self.init_i64(
                        format!("{path}.merged_shape"),
                        &[0, s.c as i64, s.h as i64, s.w as i64],
                    );
                    let a = format!("{path}.split");
                    let a = self.emit("Reshape", a.clone(), vec![x.name, split], a, vec![]);
                    let t = format!("{path}.transpose");
                    let t = self.emit(
                        "Transpose",
                        t.clone(),
                        vec![a],
                        t,
                        vec![attr_ints("perm", &[0, 2, 1, 3, 4])],
                    );
                    let name = self.emit("Reshape", path.clone(), vec![t, merged], path, vec![]);
                    Value { name, rank: 4 }
                }
            };
            self.values[id] = Some(v);
        }
        // The graph output: `logits`, [N, classes].
        let out = self.values[graph.output]
            .clone()
            .expect("the output node was exported");
        if out.rank == 4 || out.name == INPUT_NAME {
            self.flatten(OUTPUT_NAME.into(), out.name, OUTPUT_NAME.into());
        } else {
            for node in &mut self.nodes {
                for s in node.input.iter_mut().chain(node.output.iter_mut()) {
                    if *s == out.name {
                        *s = OUTPUT_NAME.into();
                    }
                }
            }
        }
        Ok(())
    }

    fn flatten(&mut self, name: String, x: String, out: String) -> String {
        self.emit("Flatten", name, vec![x], out, vec![attr_int("axis", 1)])
    }

    /// `act(x)` as ONNX nodes; returns the output name (`path`).
    fn act(&mut self, path: &str, act: Act, x: String) -> String {
        let p = path.to_string();
        match act {
            Act::Relu => self.emit("Relu", p.clone(), vec![x], p, vec![]),
            Act::Relu6 => {
                let lo = self.scalar("effcnn.const.0", 0.0);
                let hi = self.scalar("effcnn.const.6", 6.0);
                self.emit("Clip", p.clone(), vec![x, lo, hi], p, vec![])
            }
            Act::Sigmoid => self.emit("Sigmoid", p.clone(), vec![x], p, vec![]),
            Act::Silu => {
                let s = format!("{p}.sigmoid");
                let s = self.emit("Sigmoid", s.clone(), vec![x.clone()], s, vec![]);
                self.emit("Mul", p.clone(), vec![x, s], p, vec![])
            }
            Act::HardSigmoid => self.hard_sigmoid(p.clone(), x, p),
            Act::HardSwish if self.opts.opset >= 14 => {
                self.emit("HardSwish", p.clone(), vec![x], p, vec![])
            }
            Act::HardSwish => {
                let s = format!("{p}.hardsigmoid");
                let s = self.hard_sigmoid(s.clone(), x.clone(), s);
                self.emit("Mul", p.clone(), vec![x, s], p, vec![])
            }
        }
    }

    /// ReLU6(x + 3) / 6 = max(0, min(1, x/6 + 1/2)).
    fn hard_sigmoid(&mut self, name: String, x: String, out: String) -> String {
        let attrs = vec![attr_float("alpha", 1.0 / 6.0), attr_float("beta", 0.5)];
        self.emit("HardSigmoid", name, vec![x], out, attrs)
    }

    /// Weights and bias of a convolution with batch norm `bn` folded in (f64 arithmetic):
    /// w' = w · γ/√(σ² + ε), b' = β + (b − μ) · γ/√(σ² + ε).
    fn fold(
        &self,
        bn: NodeId,
        eps: f64,
        cout: usize,
        w: &RawTensor,
        bias: Option<&RawTensor>,
    ) -> Result<(Vec<f32>, Vec<f32>), OnnxError> {
        let gamma = &self.param(bn, "weight", &[cout])?.data;
        let beta = &self.param(bn, "bias", &[cout])?.data;
        let mean = &self.param(bn, "running_mean", &[cout])?.data;
        let var = &self.param(bn, "running_var", &[cout])?.data;
        let per_out = w.data.len() / cout;
        let mut fw = Vec::with_capacity(w.data.len());
        let mut fb = Vec::with_capacity(cout);
        for o in 0..cout {
            let scale = gamma[o] as f64 / (var[o] as f64 + eps).sqrt();
            fw.extend(
                w.data[o * per_out..(o + 1) * per_out]
                    .iter()
                    .map(|&v| (v as f64 * scale) as f32),
            );
            let b = bias.map_or(0.0, |b| b.data[o] as f64);
            fb.push((beta[o] as f64 + (b - mean[o] as f64) * scale) as f32);
        }
        Ok((fw, fb))
    }
}
