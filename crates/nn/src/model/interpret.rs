//! The interpreter: the graph run node by node, with captures, profiling and PyTorch's
//! batch-norm and activation semantics.

use burn::nn::BatchNorm;
use burn::tensor::module::{adaptive_avg_pool2d, avg_pool2d, batch_norm, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions, PadMode};
use burn::tensor::{activation, Distribution, Tensor};
use effcnn_arch::{Act, NodeId, Op};

use super::{EffNet, Slot};

fn conv_options(
    stride: (usize, usize),
    pad: [usize; 2],
    dilation: usize,
    groups: usize,
) -> ConvOptions<2> {
    ConvOptions::new([stride.0, stride.1], pad, [dilation, dilation], groups)
}

impl EffNet {
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
        let accelerated = super::ext::accelerated(&device);
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
                if c.dilation == 1 && super::ext::accelerated(&x.device()) {
                    // effcnn's kernels take per-side padding directly (TF "SAME" included).
                    let options = ConvOptions {
                        stride: [c.stride.0, c.stride.1],
                        padding: [(t, b), (l, r)],
                        dilation: [1, 1],
                        groups: c.groups,
                    };
                    let y = super::ext::conv2d(x, conv.weight.val(), options);
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

/// Batch norm with PyTorch semantics, then `act`: running statistics in eval; in training, batch
/// statistics and a running-average update with momentum [`BN_MOMENTUM`] and the unbiased batch
/// variance. `act` must be the identity unless training on a device for which
/// [`super::ext::accelerated`] holds.
fn bn_forward(
    bn: &BatchNorm,
    x: Tensor<4>,
    training: bool,
    act: effcnn_kernels::cpu::Activation,
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
    let out = if super::ext::accelerated(&device) {
        let (output, mean, variance) =
            super::ext::batch_norm_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon, act);
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
