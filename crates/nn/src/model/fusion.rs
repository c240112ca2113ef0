//! Which nodes run fused: conv → batch norm → activation chains at inference, batch norm →
//! ReLU in training, over values that nothing else reads.

use burn::tensor::ops::ConvOptions;
use burn::tensor::Tensor;
use effcnn_arch::{Act, NodeId, Op};

use super::{EffNet, Slot};

/// A conv's fused successors at inference: its batch norm and its activation (node and kind).
#[derive(Debug, Clone, Copy)]
pub(super) struct Chain {
    pub(super) bn: Option<NodeId>,
    pub(super) act: Option<(NodeId, Act)>,
}

impl EffNet {
    /// For each node, the node that alone consumes its output, if that output is an internal,
    /// uncaptured value (so computing it inside a fused operation loses nothing).
    fn sole_consumers(&self, keep: &[bool]) -> Vec<Option<NodeId>> {
        (0..self.graph.nodes.len())
            .map(|j| self.uses.sole_reader(j).filter(|_| !keep[j]))
            .collect()
    }

    /// For every batch norm followed only by a ReLU or ReLU6, that activation (node and kind),
    /// fused into the training batch norm.
    pub(super) fn bn_act_chains(
        &self,
        keep: &[bool],
    ) -> Vec<Option<(NodeId, effcnn_kernels::cpu::Activation)>> {
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
    pub(super) fn fusion_chains(&self, keep: &[bool]) -> Vec<Option<Chain>> {
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
    pub(super) fn fused_conv(
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
        super::ext::conv2d_fused(x, conv.weight.val(), scale, shift, options, act)
    }
}
