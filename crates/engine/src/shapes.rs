//! Node shapes at a given input size (the graph stores them at the model's own resolution).

use effcnn_arch::graph::pool_out_size;
use effcnn_arch::{Graph, Op, Shape};

use crate::error::EngineError;

/// Every node's output shape (one sample) for an `h × w` input.
pub fn spatial_shapes(g: &Graph, h: usize, w: usize) -> Result<Vec<Shape>, EngineError> {
    let too_small = |path: &str| {
        EngineError::BadInput(format!(
            "input {h}×{w} is too small for {} (layer {path})",
            g.meta.name
        ))
    };
    let pool = |path: &str, inp: Shape, k, s, p, ceil| {
        let size = |n| pool_out_size(n, k, s, p, ceil);
        match (size(inp.h), size(inp.w)) {
            (Some(oh), Some(ow)) => Ok((oh, ow)),
            _ => Err(too_small(path)),
        }
    };
    let mut out: Vec<Shape> = Vec::with_capacity(g.nodes.len());
    for node in &g.nodes {
        let inp = node
            .inputs
            .first()
            .map(|&i| out[i])
            .unwrap_or(Shape::new(0, h, w));
        let (oh, ow) = match &node.op {
            Op::Input => (h, w),
            Op::Conv(cv) => {
                let (t, l, b, r) = cv.pad.resolve(inp.h, inp.w, cv.k, cv.stride, cv.dilation);
                let ek = |k: usize| (k - 1) * cv.dilation + 1;
                let (ph, pw) = (inp.h + t + b, inp.w + l + r);
                if ph < ek(cv.k.0) || pw < ek(cv.k.1) {
                    return Err(too_small(&node.path));
                }
                (
                    (ph - ek(cv.k.0)) / cv.stride.0 + 1,
                    (pw - ek(cv.k.1)) / cv.stride.1 + 1,
                )
            }
            Op::MaxPool {
                k,
                stride,
                pad,
                ceil_mode,
            } => pool(&node.path, inp, *k, *stride, *pad, *ceil_mode)?,
            Op::AvgPool { k, stride, pad, .. } => pool(&node.path, inp, *k, *stride, *pad, false)?,
            Op::GlobalAvgPool | Op::Flatten | Op::Linear { .. } => (1, 1),
            Op::Add | Op::Concat | Op::Scale => {
                let first = out[node.inputs[0]];
                let joined = if matches!(node.op, Op::Scale) {
                    &node.inputs[..1]
                } else {
                    &node.inputs[..]
                };
                if joined
                    .iter()
                    .any(|&i| (out[i].h, out[i].w) != (first.h, first.w))
                {
                    return Err(EngineError::BadInput(format!(
                        "input {h}×{w}: the branches joined at {} have different spatial sizes \
                         (use a multiple of the network's total stride)",
                        node.path
                    )));
                }
                (first.h, first.w)
            }
            _ => (inp.h, inp.w),
        };
        out.push(Shape::new(node.shape.c, oh, ow));
    }
    Ok(out)
}
