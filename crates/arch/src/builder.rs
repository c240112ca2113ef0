//! [`GraphBuilder`]: appends primitive ops with shape inference and validation. Blocks
//! (`crate::blocks`) and zoo families (`crate::zoo`) are written against it.

use std::collections::BTreeMap;

use crate::error::ArchError;
use crate::graph::{
    pool_out_size, Act, Block, BlockKind, Conv, Graph, Layout, ModelMeta, Node, NodeId, Op, Pad,
    Shape,
};

/// Module names of one parameter node in the foreign layouts.
pub type Names = Vec<(Layout, String)>;

/// Build [`Names`] from optional torchvision / timm / lukemelas names.
pub fn names(tv: Option<String>, timm: Option<String>, luke: Option<String>) -> Names {
    let mut v = Vec::new();
    if let Some(s) = tv {
        v.push((Layout::Torchvision, s));
    }
    if let Some(s) = timm {
        v.push((Layout::Timm, s));
    }
    if let Some(s) = luke {
        v.push((Layout::Lukemelas, s));
    }
    v
}

/// Join a path prefix and a child name with a dot (an empty prefix gives the child alone).
pub fn join(prefix: &str, child: &str) -> String {
    if prefix.is_empty() {
        child.to_string()
    } else if child.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}.{child}")
    }
}

/// Appends nodes in topological order, inferring shapes and rejecting impossible layers.
pub struct GraphBuilder {
    nodes: Vec<Node>,
    block: String,
    /// Closed blocks, and the open one (its kind may still change; its end is the node count).
    blocks: Vec<Block>,
}

type R = Result<NodeId, ArchError>;

fn invalid(path: &str, msg: impl Into<String>) -> ArchError {
    ArchError::Invalid {
        path: path.to_string(),
        msg: msg.into(),
    }
}

fn out_size(
    path: &str,
    n: usize,
    k: usize,
    s: usize,
    pb: usize,
    pa: usize,
    d: usize,
) -> Result<usize, ArchError> {
    let eff = (k - 1) * d + 1;
    let padded = n + pb + pa;
    if padded < eff || n == 0 {
        return Err(invalid(
            path,
            format!("input of size {n} is smaller than the {k}×{k} window: the layer would be empty (raise the resolution)"),
        ));
    }
    Ok((padded - eff) / s + 1)
}

impl GraphBuilder {
    /// A builder whose first node is the input of the given shape.
    pub fn new(input: Shape) -> (Self, NodeId) {
        let mut b = GraphBuilder {
            nodes: Vec::new(),
            block: String::new(),
            blocks: Vec::new(),
        };
        let id = b.push("input", Op::Input, vec![], input, vec![]);
        (b, id)
    }

    /// Nodes added from now on belong to the block `path` of the given kind (a block function
    /// that learns its kind's details while building sets them with [`Self::set_block_kind`]).
    pub fn begin_block(&mut self, path: &str, kind: BlockKind) {
        self.close_block();
        self.block = path.to_string();
        let first = self.nodes.len();
        self.blocks.push(Block {
            path: path.to_string(),
            kind,
            nodes: first..first,
        });
    }

    /// The kind of the open block.
    pub fn set_block_kind(&mut self, kind: BlockKind) {
        if let Some(b) = self.blocks.last_mut() {
            b.kind = kind;
        }
    }

    /// The id the next node will get.
    pub fn next_id(&self) -> NodeId {
        self.nodes.len()
    }

    fn close_block(&mut self) {
        let end = self.nodes.len();
        if let Some(b) = self.blocks.last_mut() {
            b.nodes.end = end;
        }
        // A block that got no node (begun and at once replaced) is dropped.
        if self.blocks.last().is_some_and(|b| b.nodes.is_empty()) {
            self.blocks.pop();
        }
    }

    pub fn shape(&self, id: NodeId) -> Shape {
        self.nodes[id].shape
    }

    fn push(
        &mut self,
        path: &str,
        op: Op,
        inputs: Vec<NodeId>,
        shape: Shape,
        names: Names,
    ) -> NodeId {
        self.nodes.push(Node {
            path: path.to_string(),
            op,
            inputs,
            shape,
            names: names.into_iter().collect::<BTreeMap<_, _>>(),
            block: self.block.clone(),
        });
        self.nodes.len() - 1
    }

    /// A convolution on `x`; `conv.cin` must equal x's channels.
    pub fn conv(&mut self, x: NodeId, path: &str, conv: Conv, names: Names) -> R {
        let s = self.shape(x);
        if conv.cin != s.c {
            return Err(invalid(
                path,
                format!("expects {} input channels, got {}", conv.cin, s.c),
            ));
        }
        if conv.cin == 0 || conv.cout == 0 {
            return Err(invalid(
                path,
                "has zero channels (width multiplier too small)",
            ));
        }
        if conv.groups == 0 || conv.cin % conv.groups != 0 || conv.cout % conv.groups != 0 {
            return Err(invalid(
                path,
                format!(
                    "groups={} does not divide input channels {} and output channels {}",
                    conv.groups, conv.cin, conv.cout
                ),
            ));
        }
        let (t, l, b, r) = conv
            .pad
            .resolve(s.h, s.w, conv.k, conv.stride, conv.dilation);
        let h = out_size(path, s.h, conv.k.0, conv.stride.0, t, b, conv.dilation)?;
        let w = out_size(path, s.w, conv.k.1, conv.stride.1, l, r, conv.dilation)?;
        Ok(self.push(
            path,
            Op::Conv(conv),
            vec![x],
            Shape::new(conv.cout, h, w),
            names,
        ))
    }

    /// Convenience: a square convolution with PyTorch's symmetric padding `k/2` (or TF SAME).
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &mut self,
        x: NodeId,
        path: &str,
        cout: usize,
        k: usize,
        stride: usize,
        groups: usize,
        bias: bool,
        tf_same: bool,
        names: Names,
    ) -> R {
        let cin = self.shape(x).c;
        let pad = if tf_same {
            Pad::TfSame
        } else {
            Pad::sym((k - 1) / 2)
        };
        self.conv(
            x,
            path,
            Conv {
                cin,
                cout,
                k: (k, k),
                stride: (stride, stride),
                pad,
                dilation: 1,
                groups,
                bias,
            },
            names,
        )
    }

    pub fn bn(&mut self, x: NodeId, path: &str, eps: f64, names: Names) -> R {
        let s = self.shape(x);
        Ok(self.push(path, Op::BatchNorm { c: s.c, eps }, vec![x], s, names))
    }

    pub fn act(&mut self, x: NodeId, path: &str, act: Act) -> NodeId {
        let s = self.shape(x);
        self.push(path, Op::Act { act }, vec![x], s, vec![])
    }

    pub fn max_pool(&mut self, x: NodeId, path: &str, k: usize, stride: usize, pad: usize) -> R {
        self.max_pool_with(x, path, k, stride, pad, false)
    }

    /// Max pooling; `ceil_mode` as PyTorch's (output size rounded up, see
    /// [`crate::graph::pool_out_size`]).
    pub fn max_pool_with(
        &mut self,
        x: NodeId,
        path: &str,
        k: usize,
        stride: usize,
        pad: usize,
        ceil_mode: bool,
    ) -> R {
        let s = self.shape(x);
        if 2 * pad > k {
            return Err(invalid(
                path,
                format!("max-pool padding {pad} is more than half the {k}×{k} window"),
            ));
        }
        let size = |n| {
            // The floor-mode size carries the "window larger than the input" error.
            let floor = out_size(path, n, k, stride, pad, pad, 1)?;
            Ok::<_, ArchError>(pool_out_size(n, k, stride, pad, ceil_mode).unwrap_or(floor))
        };
        let (h, w) = (size(s.h)?, size(s.w)?);
        Ok(self.push(
            path,
            Op::MaxPool {
                k,
                stride,
                pad,
                ceil_mode,
            },
            vec![x],
            Shape::new(s.c, h, w),
            vec![],
        ))
    }

    pub fn avg_pool(&mut self, x: NodeId, path: &str, k: usize, stride: usize, pad: usize) -> R {
        let s = self.shape(x);
        let h = out_size(path, s.h, k, stride, pad, pad, 1)?;
        let w = out_size(path, s.w, k, stride, pad, pad, 1)?;
        let op = Op::AvgPool {
            k,
            stride,
            pad,
            count_include_pad: true,
        };
        Ok(self.push(path, op, vec![x], Shape::new(s.c, h, w), vec![]))
    }

    pub fn global_avg_pool(&mut self, x: NodeId, path: &str) -> NodeId {
        let s = self.shape(x);
        self.push(
            path,
            Op::GlobalAvgPool,
            vec![x],
            Shape::new(s.c, 1, 1),
            vec![],
        )
    }

    pub fn flatten(&mut self, x: NodeId, path: &str) -> NodeId {
        let s = self.shape(x);
        self.push(
            path,
            Op::Flatten,
            vec![x],
            Shape::new(s.c * s.h * s.w, 1, 1),
            vec![],
        )
    }

    pub fn linear(&mut self, x: NodeId, path: &str, fout: usize, bias: bool, names: Names) -> R {
        let s = self.shape(x);
        if s.h != 1 || s.w != 1 {
            return Err(invalid(
                path,
                format!("linear layer needs a flat input, got {s}"),
            ));
        }
        if fout == 0 || s.c == 0 {
            return Err(invalid(path, "has zero features"));
        }
        let op = Op::Linear {
            fin: s.c,
            fout,
            bias,
        };
        Ok(self.push(path, op, vec![x], Shape::new(fout, 1, 1), names))
    }

    pub fn dropout(&mut self, x: NodeId, path: &str, p: f64) -> NodeId {
        let s = self.shape(x);
        self.push(path, Op::Dropout { p }, vec![x], s, vec![])
    }

    pub fn drop_path(&mut self, x: NodeId, path: &str, p: f64) -> NodeId {
        let s = self.shape(x);
        self.push(path, Op::DropPath { p }, vec![x], s, vec![])
    }

    pub fn add(&mut self, a: NodeId, b: NodeId, path: &str) -> R {
        let (sa, sb) = (self.shape(a), self.shape(b));
        if sa != sb {
            return Err(invalid(
                path,
                format!("residual shapes differ: {sa} vs {sb}"),
            ));
        }
        Ok(self.push(path, Op::Add, vec![a, b], sa, vec![]))
    }

    /// `x * gate` with a C×1×1 gate.
    pub fn scale(&mut self, x: NodeId, gate: NodeId, path: &str) -> R {
        let (sx, sg) = (self.shape(x), self.shape(gate));
        if sg != Shape::new(sx.c, 1, 1) {
            return Err(invalid(path, format!("gate shape {sg} does not fit {sx}")));
        }
        Ok(self.push(path, Op::Scale, vec![x, gate], sx, vec![]))
    }

    pub fn concat(&mut self, xs: &[NodeId], path: &str) -> R {
        let first = self.shape(xs[0]);
        let mut c = 0;
        for &x in xs {
            let s = self.shape(x);
            if (s.h, s.w) != (first.h, first.w) {
                return Err(invalid(
                    path,
                    format!("concat of {first} and {s}: spatial sizes differ"),
                ));
            }
            c += s.c;
        }
        Ok(self.push(
            path,
            Op::Concat,
            xs.to_vec(),
            Shape::new(c, first.h, first.w),
            vec![],
        ))
    }

    pub fn slice(&mut self, x: NodeId, path: &str, start: usize, len: usize) -> R {
        let s = self.shape(x);
        if start + len > s.c || len == 0 {
            return Err(invalid(
                path,
                format!("channel slice {start}..{} of {} channels", start + len, s.c),
            ));
        }
        Ok(self.push(
            path,
            Op::Slice { start, len },
            vec![x],
            Shape::new(len, s.h, s.w),
            vec![],
        ))
    }

    pub fn shuffle(&mut self, x: NodeId, path: &str, groups: usize) -> R {
        let s = self.shape(x);
        if groups == 0 || s.c % groups != 0 {
            return Err(invalid(
                path,
                format!(
                    "channel shuffle: {groups} groups do not divide {} channels",
                    s.c
                ),
            ));
        }
        Ok(self.push(path, Op::Shuffle { groups }, vec![x], s, vec![]))
    }

    pub fn finish(mut self, meta: ModelMeta, output: NodeId) -> Result<Graph, ArchError> {
        self.close_block();
        let g = Graph {
            meta,
            nodes: self.nodes,
            output,
            blocks: self.blocks,
        };
        g.validate()?;
        Ok(g)
    }
}
