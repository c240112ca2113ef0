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
//!
//! The module splits by job: [`init`](self) builds and initialises the parameters, the
//! interpreter runs the graph node by node (`interpret`), `fusion` finds the conv → BN →
//! activation chains it runs as one kernel call, and [`ext`] is the burn backend extension that
//! plugs effcnn's CPU kernels ([`effcnn_kernels::cpu`]) into burn with their own backward pass.

use burn::module::{Flag, Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::tensor::{Device, Tensor};
use effcnn_arch::graph::pool_out_size;
use effcnn_arch::liveness::Uses;
use effcnn_arch::{Graph, NodeId, Op};

use crate::error::NnError;

pub mod ext;
mod fusion;
mod init;
mod interpret;

pub(crate) use init::{param_from, tensor_from};
pub use interpret::act_forward;

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

impl EffNet {
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
