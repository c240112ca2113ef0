//! Building a model: parameter slots and torchvision's initialisation, from a seed.

use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};
use effcnn_arch::liveness::Uses;
use effcnn_arch::{Graph, Op};

use crate::error::NnError;

use super::{EffNet, InitConfig, Slot, BN_MOMENTUM};

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
}
