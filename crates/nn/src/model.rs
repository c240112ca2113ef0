//! The runnable model: a burn [`Module`] that interprets an effcnn [`Graph`] node by node.
//!
//! Parameters live in three flat lists (convolutions, batch norms, linear layers) indexed by a
//! per-node slot table; everything else (activations, pooling, residual adds, SE scaling,
//! concatenation, channel split and shuffle) is computed from the graph at run time. The model is
//! backend-agnostic: the backend is whatever [`Device`] its tensors live on.
//!
//! Train/eval mode follows burn's convention: the model trains (batch statistics, dropout,
//! drop-path) when its tensors are on an autodiff device and it has not been put into validation
//! mode with [`Module::valid`]; otherwise it evaluates with running statistics.

use burn::module::{Flag, Module, Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::tensor::module::{adaptive_avg_pool2d, avg_pool2d, batch_norm, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions, PadMode};
use burn::tensor::{activation, Device, Distribution, Tensor, TensorData};
use effcnn_arch::graph::pool_out_size;
use effcnn_arch::liveness::Uses;
use effcnn_arch::{Act, Graph, NodeId, Op};

use crate::error::NnError;

/// PyTorch's BatchNorm momentum (weight of the new batch statistic in the running average).
pub const BN_MOMENTUM: f64 = 0.1;

/// How parameters are initialised: torchvision's scheme, reproducible from a seed.
///
/// Convolutions: Kaiming-normal with `mode = fan_out` (std = √(2 / (C_out·k_h·k_w))), bias 0;
/// batch norm: γ = 1, β = 0, running mean 0, running variance 1; linear layers: N(0, 0.01²) with
/// bias 0, except the EfficientNet family, which uses U(−1/√out, 1/√out) as torchvision does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitConfig {
    /// Seed of the host-side generator (the same seed gives the same weights on every backend).
    pub seed: u64,
}

impl Default for InitConfig {
    fn default() -> Self {
        InitConfig { seed: 42 }
    }
}

/// Where a node's parameters live in [`EffNet`]'s lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    None,
    Conv(usize),
    Bn(usize),
    Linear(usize),
}

/// A runnable effcnn network, built from a resolved [`Graph`].
#[derive(Module, Debug)]
pub struct EffNet {
    /// Convolutions in graph order (weights in PyTorch's `[C_out, C_in/groups, kh, kw]` layout).
    pub convs: Vec<Conv2d>,
    /// Batch norms in graph order.
    pub bns: Vec<BatchNorm>,
    /// Linear layers in graph order (weights in burn's `[in, out]` layout).
    pub linears: Vec<Linear>,
    /// Cleared by [`Module::valid`]: the model trains only on an autodiff device with this set.
    pub training: Param<Flag>,
    #[module(skip)]
    graph: Graph,
    #[module(skip)]
    slots: Vec<Slot>,
    /// Who reads each node's output (every node a value of its own, as this interpreter runs).
    #[module(skip)]
    uses: Uses,
}

/// A conv's fused successors at inference: its batch norm and its activation (node and kind).
#[derive(Debug, Clone, Copy)]
struct Chain {
    bn: Option<NodeId>,
    act: Option<(NodeId, Act)>,
}

/// A small deterministic generator (splitmix64) for host-side initialisation.
struct HostRng {
    state: u64,
    spare: Option<f64>,
}

impl HostRng {
    fn new(seed: u64) -> HostRng {
        HostRng {
            state: seed,
            spare: None,
        }
    }
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Standard normal (Box-Muller, both values of each pair used).
    fn normal(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        // 1 - u keeps the logarithm finite.
        let r = (-2.0 * (1.0 - self.uniform()).ln()).sqrt();
        let (s, c) = (2.0 * std::f64::consts::PI * self.uniform()).sin_cos();
        self.spare = Some(r * s);
        r * c
    }
}

pub(crate) fn param_from<const D: usize>(
    data: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Param<Tensor<D>> {
    Param::from_data(TensorData::new(data, shape), device)
}

pub(crate) fn tensor_from<const D: usize>(
    data: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

fn conv_options(
    stride: (usize, usize),
    pad: [usize; 2],
    dilation: usize,
    groups: usize,
) -> ConvOptions<2> {
    ConvOptions::new([stride.0, stride.1], pad, [dilation, dilation], groups)
}

impl EffNet {
    /// Build a freshly initialised model for `graph` on `device`.
    pub fn new(graph: &Graph, device: &Device, init: InitConfig) -> Result<EffNet, NnError> {
        graph.validate()?;
        let mut rng = HostRng::new(init.seed);
        let efficientnet_linear = graph.meta.init == effcnn_arch::graph::InitScheme::EfficientNet;
        let mut convs = Vec::new();
        let mut bns = Vec::new();
        let mut linears = Vec::new();
        let mut slots = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            let slot = match &node.op {
                Op::Conv(c) => {
                    if c.groups == 0 || c.cin % c.groups != 0 || c.cout % c.groups != 0 {
                        return Err(NnError::BadInput(format!(
                            "layer {}: {} input and {} output channels do not split into {} groups",
                            node.path, c.cin, c.cout, c.groups
                        )));
                    }
                    let shape = c.weight_shape();
                    let fan_out = (c.cout * c.k.0 * c.k.1) as f64;
                    let std = (2.0 / fan_out).sqrt();
                    let n: usize = shape.iter().product();
                    let w: Vec<f32> = (0..n).map(|_| (rng.normal() * std) as f32).collect();
                    let bias = c
                        .bias
                        .then(|| param_from(vec![0.0; c.cout], [c.cout], device));
                    convs.push(Conv2d {
                        weight: param_from(w, shape, device),
                        bias,
                        stride: [c.stride.0, c.stride.1],
                        kernel_size: [c.k.0, c.k.1],
                        dilation: [c.dilation, c.dilation],
                        groups: c.groups,
                        padding: PaddingConfig2d::Valid,
                    });
                    Slot::Conv(convs.len() - 1)
                }
                Op::BatchNorm { c, eps } => {
                    bns.push(BatchNorm {
                        gamma: param_from(vec![1.0; *c], [*c], device),
                        beta: param_from(vec![0.0; *c], [*c], device),
                        training: Param::from_bool(true),
                        running_mean: RunningState::new(tensor_from(vec![0.0; *c], [*c], device)),
                        running_var: RunningState::new(tensor_from(vec![1.0; *c], [*c], device)),
                        momentum: BN_MOMENTUM,
                        epsilon: *eps,
                    });
                    Slot::Bn(bns.len() - 1)
                }
                Op::Linear { fin, fout, bias } => {
                    let (fin, fout) = (*fin, *fout);
                    let w: Vec<f32> = if efficientnet_linear {
                        let r = 1.0 / (fout as f64).sqrt();
                        (0..fin * fout)
                            .map(|_| ((rng.uniform() * 2.0 - 1.0) * r) as f32)
                            .collect()
                    } else {
                        (0..fin * fout)
                            .map(|_| (rng.normal() * 0.01) as f32)
                            .collect()
                    };
                    let bias = bias.then(|| param_from(vec![0.0; fout], [fout], device));
                    linears.push(Linear {
                        weight: param_from(w, [fin, fout], device),
                        bias,
                    });
                    Slot::Linear(linears.len() - 1)
                }
                _ => Slot::None,
            };
            slots.push(slot);
        }
        let uses = Uses::direct(graph);
        Ok(EffNet {
            convs,
            bns,
            linears,
            training: Param::from_bool(true),
            graph: graph.clone(),
            slots,
            uses,
        })
    }

    /// Resolve a zoo entry and build it (see [`effcnn_arch::resolve`]).
    pub fn from_zoo(
        name: &str,
        opts: &effcnn_arch::Options,
        device: &Device,
        init: InitConfig,
    ) -> Result<EffNet, NnError> {
        let graph = effcnn_arch::resolve(name, opts)?;
        EffNet::new(&graph, device, init)
    }

    /// The graph this model runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub(crate) fn slot(&self, id: NodeId) -> Slot {
        self.slots[id]
    }

    /// Number of trainable parameters of the live model (conv/linear weights and biases, BN γ/β;
    /// BN running statistics excluded), counted from the tensors actually held.
    pub fn num_trainable_params(&self) -> usize {
        let n = |s: burn::tensor::Shape| s.num_elements();
        let mut total = 0;
        for c in &self.convs {
            total += n(c.weight.shape());
            total += c.bias.as_ref().map_or(0, |b| n(b.shape()));
        }
        for b in &self.bns {
            total += n(b.gamma.shape()) + n(b.beta.shape());
        }
        for l in &self.linears {
            total += n(l.weight.shape());
            total += l.bias.as_ref().map_or(0, |b| n(b.shape()));
        }
        total
    }

    /// Whether a forward pass on `x` would run in training mode.
    pub fn is_training(&self, x: &Tensor<4>) -> bool {
        x.device().is_autodiff() && self.training.is_enabled()
    }

    /// Check that an input of dims `[N, C, H, W]` fits the model (channels, non-empty, large
    /// enough for every strided layer).
    pub fn check_input(&self, dims: [usize; 4]) -> Result<(), NnError> {
        let want = self.graph.input_shape().c;
        let [n, c, h, w] = dims;
        if n == 0 || h == 0 || w == 0 {
            return Err(NnError::BadInput(format!("input {n}×{c}×{h}×{w} is empty")));
        }
        if c != want {
            return Err(NnError::BadInput(format!(
                "{} expects {want} input channels, got {c} (input {n}×{c}×{h}×{w})",
                self.graph.meta.name
            )));
        }
        // Walk the spatial sizes through the graph.
        let mut sizes: Vec<(usize, usize)> = Vec::with_capacity(self.graph.nodes.len());
        for node in &self.graph.nodes {
            let inp = node.inputs.first().map(|&i| sizes[i]).unwrap_or((h, w));
            let out = match &node.op {
                Op::Input => (h, w),
                Op::Conv(cv) => {
                    let (t, l, b, r) = cv.pad.resolve(inp.0, inp.1, cv.k, cv.stride, cv.dilation);
                    let ek = |k: usize| (k - 1) * cv.dilation + 1;
                    let (ph, pw) = (inp.0 + t + b, inp.1 + l + r);
                    if ph < ek(cv.k.0) || pw < ek(cv.k.1) {
                        return Err(self.too_small(&node.path, dims));
                    }
                    (
                        (ph - ek(cv.k.0)) / cv.stride.0 + 1,
                        (pw - ek(cv.k.1)) / cv.stride.1 + 1,
                    )
                }
                Op::MaxPool { k, stride, pad, .. } | Op::AvgPool { k, stride, pad, .. } => {
                    let ceil = matches!(
                        node.op,
                        Op::MaxPool {
                            ceil_mode: true,
                            ..
                        }
                    );
                    let size = |n| pool_out_size(n, *k, *stride, *pad, ceil);
                    match (size(inp.0), size(inp.1)) {
                        (Some(h), Some(w)) => (h, w),
                        _ => return Err(self.too_small(&node.path, dims)),
                    }
                }
                Op::GlobalAvgPool | Op::Flatten | Op::Linear { .. } => (1, 1),
                Op::Add | Op::Concat => {
                    let first = sizes[node.inputs[0]];
                    if node.inputs.iter().any(|&i| sizes[i] != first) {
                        return Err(NnError::BadInput(format!(
                            "input {n}×{c}×{h}×{w}: the branches joined at {} have different \
                             spatial sizes (use a multiple of the network's total stride)",
                            node.path
                        )));
                    }
                    first
                }
                _ => inp,
            };
            sizes.push(out);
        }
        Ok(())
    }

    fn too_small(&self, path: &str, dims: [usize; 4]) -> NnError {
        NnError::BadInput(format!(
            "input {}×{}×{}×{} is too small for {} (layer {path})",
            dims[0], dims[1], dims[2], dims[3], self.graph.meta.name
        ))
    }

    /// Run the network on `x` (`[N, C, H, W]`), returning logits `[N, classes]`.
    ///
    /// The input must fit the model; validate untrusted shapes with [`EffNet::check_input`]
    /// first (burn reports shape errors as panics).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_with_capture(x, &[]).0
    }

    /// Run the network and also return the outputs of the nodes in `capture` (in that order),
    /// e.g. [`Graph::se_gates`] for the SE channel gates.
    ///
    /// # Panics
    /// If an id in `capture` is not a node of [`EffNet::graph`].
    pub fn forward_with_capture(
        &self,
        x: Tensor<4>,
        capture: &[NodeId],
    ) -> (Tensor<2>, Vec<Tensor<4>>) {
        let training = self.is_training(&x);
        let nodes = &self.graph.nodes;
        let mut keep = vec![false; nodes.len()];
        for &c in capture {
            if c < keep.len() {
                keep[c] = true;
            }
        }
        let mut values: Vec<Option<Tensor<4>>> = vec![None; nodes.len()];
        let mut captured: Vec<Option<Tensor<4>>> = vec![None; nodes.len()];
        // Inference on effcnn's kernels: conv → batch norm → activation chains run as one fused
        // kernel (batch norm folded into a per-channel scale and shift).
        let device = x.device();
        let accelerated = effcnn_kernels::accelerated(&device);
        let chains = if !training && !device.is_autodiff() && accelerated {
            self.fusion_chains(&keep)
        } else {
            vec![None; nodes.len()]
        };
        // Training on effcnn's kernels: batch norm → ReLU/ReLU6 runs as one operation.
        let bn_acts = if training && accelerated {
            self.bn_act_chains(&keep)
        } else {
            vec![None; nodes.len()]
        };
        let mut skip = vec![false; nodes.len()];
        let mut input = Some(x);
        for (i, node) in nodes.iter().enumerate() {
            if skip[i] {
                continue;
            }
            let mut args = self.take_inputs(i, &mut values);
            let (y, at) = match (&node.op, chains[i]) {
                (Op::Input, _) => (input.take().expect("one input node"), i),
                (Op::BatchNorm { .. }, _) if bn_acts[i].is_some() => {
                    let (a, act) = bn_acts[i].expect("checked");
                    skip[a] = true;
                    let Slot::Bn(s) = self.slots[i] else {
                        unreachable!("bn slot")
                    };
                    (bn_forward(&self.bns[s], args.swap_remove(0), true, act), a)
                }
                (Op::Conv(c), Some(chain)) => {
                    let last = chain.act.map_or(chain.bn.unwrap_or(i), |(a, _)| a);
                    for j in chain.bn.into_iter().chain(chain.act.map(|(a, _)| a)) {
                        skip[j] = true;
                    }
                    (self.fused_conv(i, c, chain, args.swap_remove(0)), last)
                }
                _ => (self.apply(i, &node.op, args, training), i),
            };
            if keep[at] {
                captured[at] = Some(y.clone());
            }
            values[at] = Some(y);
        }
        let out = values[self.graph.output]
            .take()
            .expect("output node was computed");
        let [n, c, h, w] = out.dims();
        let logits = out.reshape([n, c * h * w]);
        let caps = capture
            .iter()
            .map(|&c| {
                captured
                    .get(c)
                    .and_then(|t| t.clone())
                    .expect("captured node ids are in range")
            })
            .collect();
        (logits, caps)
    }

    /// Run the network like [`EffNet::forward`] and time every node: returns the logits and one
    /// `(node id, wall time)` pair per graph node, in graph order (the input node included, at
    /// close to zero).
    ///
    /// Each node's time covers fetching its inputs, computing its output and then forcing that
    /// output to completion by reading back one scalar of it (a 1×1×1×1 corner). That read is
    /// done only here, never in [`EffNet::forward`]: it adds a small synchronisation cost to
    /// every node, so the per-node times add up to somewhat more than an unprofiled forward pass,
    /// and the overhead weighs most on cheap nodes (activations, adds, reshapes). The mode
    /// (train/eval) follows the same rule as [`EffNet::forward`]; profile on a plain device for
    /// eval-mode latency.
    pub fn forward_profiled(
        &self,
        x: Tensor<4>,
    ) -> (Tensor<2>, Vec<(NodeId, std::time::Duration)>) {
        use std::time::Instant;
        let training = self.is_training(&x);
        let nodes = &self.graph.nodes;
        let mut values: Vec<Option<Tensor<4>>> = vec![None; nodes.len()];
        let mut times = Vec::with_capacity(nodes.len());
        let mut input = Some(x);
        for (i, node) in nodes.iter().enumerate() {
            let t0 = Instant::now();
            let args = self.take_inputs(i, &mut values);
            let y = match &node.op {
                Op::Input => input.take().expect("one input node"),
                _ => self.apply(i, &node.op, args, training),
            };
            // Force completion: read one element (a view of the corner, no full copy).
            let _: f32 = y
                .clone()
                .narrow(0, 0, 1)
                .narrow(1, 0, 1)
                .narrow(2, 0, 1)
                .narrow(3, 0, 1)
                .into_scalar();
            times.push((i, t0.elapsed()));
            values[i] = Some(y);
        }
        let out = values[self.graph.output]
            .take()
            .expect("output node was computed");
        let [n, c, h, w] = out.dims();
        (out.reshape([n, c * h * w]), times)
    }

    /// The inputs of node `i`: moved out of `values` at their last use, cloned (a cheap handle)
    /// otherwise.
    fn take_inputs(&self, i: NodeId, values: &mut [Option<Tensor<4>>]) -> Vec<Tensor<4>> {
        self.graph.nodes[i]
            .inputs
            .iter()
            .map(|&j| {
                let last = !self.uses.is_output(j) && self.uses.last_reader(j) == Some(i);
                let t = if last {
                    values[j].take()
                } else {
                    values[j].clone()
                };
                t.expect("graph inputs come before their consumers")
            })
            .collect()
    }

    /// For each node, the node that alone consumes its output, if that output is an internal,
    /// uncaptured value (so computing it inside a fused operation loses nothing).
    fn sole_consumers(&self, keep: &[bool]) -> Vec<Option<NodeId>> {
        (0..self.graph.nodes.len())
            .map(|j| self.uses.sole_reader(j).filter(|_| !keep[j]))
            .collect()
    }

    /// For every batch norm followed only by a ReLU or ReLU6, that activation (node and kind),
    /// fused into the training batch norm.
    fn bn_act_chains(&self, keep: &[bool]) -> Vec<Option<(NodeId, effcnn_kernels::Activation)>> {
        let nodes = &self.graph.nodes;
        let sole = self.sole_consumers(keep);
        (0..nodes.len())
            .map(|i| {
                if !matches!(nodes[i].op, Op::BatchNorm { .. }) {
                    return None;
                }
                match nodes[sole[i]?].op {
                    Op::Act { act: Act::Relu } => Some((sole[i]?, Some(Act::Relu))),
                    Op::Act { act: Act::Relu6 } => Some((sole[i]?, Some(Act::Relu6))),
                    _ => None,
                }
            })
            .collect()
    }

    /// For every convolution whose output feeds only a batch norm and/or an activation (which
    /// feed nothing else and are not captured), the chain to fuse at inference.
    fn fusion_chains(&self, keep: &[bool]) -> Vec<Option<Chain>> {
        let nodes = &self.graph.nodes;
        let sole_of = self.sole_consumers(keep);
        let sole = |j: NodeId| sole_of[j];
        (0..nodes.len())
            .map(|i| {
                let Op::Conv(c) = &nodes[i].op else {
                    return None;
                };
                if c.dilation != 1 {
                    return None;
                }
                let bn = sole(i).filter(|&j| matches!(nodes[j].op, Op::BatchNorm { .. }));
                let act = sole(bn.unwrap_or(i)).and_then(|k| match nodes[k].op {
                    Op::Act { act } => Some((k, act)),
                    _ => None,
                });
                (bn.is_some() || act.is_some()).then_some(Chain { bn, act })
            })
            .collect()
    }

    /// Inference of a conv → (batch norm) → (activation) chain in one kernel call.
    fn fused_conv(
        &self,
        id: NodeId,
        c: &effcnn_arch::Conv,
        chain: Chain,
        x: Tensor<4>,
    ) -> Tensor<4> {
        let Slot::Conv(s) = self.slots[id] else {
            unreachable!("conv slot")
        };
        let conv = &self.convs[s];
        let device = x.device();
        let [_, _, h, w] = x.dims();
        let (t, l, b, r) = c.pad.resolve(h, w, c.k, c.stride, c.dilation);
        let (scale, shift) = match chain.bn {
            Some(bn_id) => {
                let Slot::Bn(k) = self.slots[bn_id] else {
                    unreachable!("bn slot")
                };
                let bn = &self.bns[k];
                let var = bn.running_var.value().to_device(&device);
                let mean = bn.running_mean.value().to_device(&device);
                let scale = bn.gamma.val().div(var.add_scalar(bn.epsilon).sqrt());
                let shift = bn.beta.val().sub(mean.mul(scale.clone()));
                match &conv.bias {
                    Some(bias) => (scale.clone(), shift.add(bias.val().mul(scale))),
                    None => (scale, shift),
                }
            }
            None => (
                Tensor::ones([c.cout], &device),
                conv.bias
                    .as_ref()
                    .map_or_else(|| Tensor::zeros([c.cout], &device), |b| b.val()),
            ),
        };
        let act = chain.act.map(|(_, a)| a);
        let options = ConvOptions {
            stride: [c.stride.0, c.stride.1],
            padding: [(t, b), (l, r)],
            dilation: [1, 1],
            groups: c.groups,
        };
        effcnn_kernels::conv2d_fused(x, conv.weight.val(), scale, shift, options, act)
    }

    fn apply(&self, id: NodeId, op: &Op, mut args: Vec<Tensor<4>>, training: bool) -> Tensor<4> {
        match op {
            Op::Input => unreachable!("handled by the caller"),
            Op::Conv(c) => {
                let Slot::Conv(s) = self.slots[id] else {
                    unreachable!("conv slot")
                };
                let conv = &self.convs[s];
                let x = args.swap_remove(0);
                let [_, _, h, w] = x.dims();
                let (t, l, b, r) = c.pad.resolve(h, w, c.k, c.stride, c.dilation);
                if c.dilation == 1 && effcnn_kernels::accelerated(&x.device()) {
                    // effcnn's kernels take per-side padding directly (TF "SAME" included).
                    let options = ConvOptions {
                        stride: [c.stride.0, c.stride.1],
                        padding: [(t, b), (l, r)],
                        dilation: [1, 1],
                        groups: c.groups,
                    };
                    let y = effcnn_kernels::conv2d(x, conv.weight.val(), options);
                    return match &conv.bias {
                        Some(bias) => y + bias.val().reshape([1, c.cout, 1, 1]),
                        None => y,
                    };
                }
                let (x, pad) = if t == b && l == r {
                    (x, [t, l])
                } else {
                    (x.pad([(t, b), (l, r)], PadMode::Constant(0.0)), [0, 0])
                };
                conv2d(
                    x,
                    conv.weight.val(),
                    conv.bias.as_ref().map(|b| b.val()),
                    conv_options(c.stride, pad, c.dilation, c.groups),
                )
            }
            Op::BatchNorm { .. } => {
                let Slot::Bn(s) = self.slots[id] else {
                    unreachable!("bn slot")
                };
                bn_forward(&self.bns[s], args.swap_remove(0), training, None)
            }
            Op::Act { act } => act_forward(*act, args.swap_remove(0)),
            // burn's ceil mode follows PyTorch: the last window is clipped to the input and
            // dropped if it would start in the right padding (checked against PyTorch by the
            // `timm_legacy_seresnet18` parity fixture, whose 65² case has clipped windows).
            Op::MaxPool {
                k,
                stride,
                pad,
                ceil_mode,
            } => max_pool2d(
                args.swap_remove(0),
                MaxPoolOptions::new([*k, *k])
                    .with_stride([*stride, *stride])
                    .with_padding([*pad, *pad])
                    .with_ceil_mode(*ceil_mode),
            ),
            Op::AvgPool {
                k,
                stride,
                pad,
                count_include_pad,
            } => avg_pool2d(
                args.swap_remove(0),
                AvgPoolOptions::new([*k, *k])
                    .with_stride([*stride, *stride])
                    .with_padding([*pad, *pad])
                    .with_count_include_pad(*count_include_pad),
            ),
            Op::GlobalAvgPool => adaptive_avg_pool2d(args.swap_remove(0), [1, 1]),
            Op::Flatten => {
                let x = args.swap_remove(0);
                let [n, c, h, w] = x.dims();
                x.reshape([n, c * h * w, 1, 1])
            }
            Op::Linear { fout, .. } => {
                let Slot::Linear(s) = self.slots[id] else {
                    unreachable!("linear slot")
                };
                let x = args.swap_remove(0);
                let [n, c, h, w] = x.dims();
                let y = self.linears[s].forward(x.reshape([n, c * h * w]));
                y.reshape([n, *fout, 1, 1])
            }
            Op::Dropout { p } => {
                let x = args.swap_remove(0);
                if training && *p > 0.0 {
                    let keep = 1.0 - p;
                    let mask = x.random_like(Distribution::Bernoulli(keep));
                    x.mul(mask).div_scalar(keep)
                } else {
                    x
                }
            }
            Op::DropPath { p } => {
                let x = args.swap_remove(0);
                if training && *p > 0.0 {
                    let keep = 1.0 - p;
                    let n = x.dims()[0];
                    let mask = Tensor::<4>::random(
                        [n, 1, 1, 1],
                        Distribution::Bernoulli(keep),
                        &x.device(),
                    );
                    x.mul(mask).div_scalar(keep)
                } else {
                    x
                }
            }
            Op::Add => {
                let mut it = args.into_iter();
                let mut acc = it.next().expect("add has inputs");
                for t in it {
                    acc = acc.add(t);
                }
                acc
            }
            Op::Scale => {
                let gate = args.swap_remove(1);
                args.swap_remove(0).mul(gate)
            }
            Op::Concat => Tensor::cat(args, 1),
            Op::Slice { start, len } => args.swap_remove(0).narrow(1, *start, *len),
            Op::Shuffle { groups } => {
                let x = args.swap_remove(0);
                let [n, c, h, w] = x.dims();
                let g = *groups;
                x.reshape([n, g, c / g, h, w])
                    .swap_dims(1, 2)
                    .reshape([n, c, h, w])
            }
        }
    }
}

/// Batch norm with PyTorch semantics: running statistics in eval; in training, batch
/// statistics and a running-average update with momentum [`BN_MOMENTUM`] and the unbiased
/// batch variance.
/// Batch norm (running statistics updated in training), then `act` — which must be the identity
/// unless training on a device for which `effcnn_kernels::accelerated` holds.
fn bn_forward(
    bn: &BatchNorm,
    x: Tensor<4>,
    training: bool,
    act: effcnn_kernels::Activation,
) -> Tensor<4> {
    let device = x.device();
    if !training {
        return batch_norm(
            x,
            bn.gamma.val(),
            bn.beta.val(),
            bn.running_mean.value().to_device(&device),
            bn.running_var.value().to_device(&device),
            bn.epsilon,
        );
    }
    let [n, _, h, w] = x.dims();
    let count = (n * h * w) as f64;
    let out = if effcnn_kernels::accelerated(&device) {
        let (output, mean, variance) =
            effcnn_kernels::batch_norm_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon, act);
        burn::tensor::module::BatchNormTrainOutput {
            output,
            mean,
            variance,
        }
    } else {
        burn::tensor::module::batch_norm_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon)
    };
    let unbias = if count > 1.0 {
        count / (count - 1.0)
    } else {
        1.0
    };
    let m = bn.momentum;
    let mean = bn
        .running_mean
        .value_sync()
        .to_device(&device)
        .mul_scalar(1.0 - m)
        .add(out.mean.detach().mul_scalar(m));
    let var = bn
        .running_var
        .value_sync()
        .to_device(&device)
        .mul_scalar(1.0 - m)
        .add(out.variance.detach().mul_scalar(m * unbias));
    bn.running_mean.update(mean.detach());
    bn.running_var.update(var.detach());
    out.output
}

/// Activations with PyTorch's formulas.
pub fn act_forward<const D: usize>(act: Act, x: Tensor<D>) -> Tensor<D> {
    match act {
        Act::Relu => activation::relu(x),
        Act::Relu6 => x.clamp(0.0, 6.0),
        Act::Silu => activation::silu(x),
        Act::Sigmoid => activation::sigmoid(x),
        Act::HardSwish => x
            .clone()
            .mul(x.add_scalar(3.0).clamp(0.0, 6.0).div_scalar(6.0)),
        Act::HardSigmoid => x.add_scalar(3.0).clamp(0.0, 6.0).div_scalar(6.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use effcnn_arch::Options;

    #[test]
    fn forward_profiled_times_every_node_and_matches_forward() {
        let opts = Options {
            profile: effcnn_arch::graph::Profile::Cifar,
            ..Options::default()
        };
        let device = crate::cpu();
        let model = EffNet::from_zoo("dwsep_cnn", &opts, &device, InitConfig::default()).unwrap();
        let model = model.valid();
        let s = model.graph().input_shape();
        let n = 2 * s.c * s.h * s.w;
        let data: Vec<f32> = (0..n).map(|i| (i % 17) as f32 / 8.0 - 1.0).collect();
        let x = tensor_from(data, [2, s.c, s.h, s.w], &device);
        let (logits, times) = model.forward_profiled(x.clone());
        assert_eq!(times.len(), model.graph().nodes.len());
        for (k, (id, d)) in times.iter().enumerate() {
            assert_eq!(*id, k, "one entry per node, in graph order");
            assert!(d.as_secs_f64() >= 0.0);
        }
        assert!(times.iter().map(|(_, d)| d.as_secs_f64()).sum::<f64>() > 0.0);
        let a: Vec<f32> = logits.into_data().try_to_vec().unwrap();
        let b: Vec<f32> = model.forward(x).into_data().try_to_vec().unwrap();
        // The profile runs node by node; the plain forward fuses conv + BN + activation, so the
        // two agree to float rounding.
        let err: f32 = a
            .iter()
            .zip(&b)
            .map(|(p, q)| (p - q).powi(2))
            .sum::<f32>()
            .sqrt()
            / b.iter().map(|q| q * q).sum::<f32>().sqrt().max(1e-30);
        assert!(
            err < 1e-5,
            "profiled and fused forward differ: relative L2 {err}"
        );
    }
}
