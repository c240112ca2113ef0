//! The one use and liveness analysis of effcnn.
//!
//! - [`Uses`]: who reads each node's output (directly, or through the view ops that share its
//!   storage), its last reader and its sole consumer. The cost analyzer's lifetimes, the burn
//!   model's buffer release and inference fusion, the engine's fusion and the ONNX exporter's
//!   BN folding all read it.
//! - [`Interval`], [`peak`], [`pack`]: tensors as intervals of the positions at which they are
//!   alive, the peak of their summed sizes, and an arena layout that gives every tensor an offset
//!   no other tensor alive at the same time overlaps. The cost analyzer's *peak activation
//!   memory* ([`crate::cost::peak_live_elements`]) and the inference engine's arena both come
//!   from here: the analyzer over the graph's nodes run one by one, the engine over its fused
//!   steps.

use crate::graph::{Graph, NodeId, Op};

/// Ops whose output is their input's storage at inference (no copy): flatten, and dropout and
/// drop-path, which are the identity outside training.
pub fn is_inference_view(op: &Op) -> bool {
    matches!(op, Op::Flatten | Op::Dropout { .. } | Op::DropPath { .. })
}

/// Who reads each node's output.
///
/// Built [`Uses::direct`] (every node is a value of its own, as in an op-by-op interpreter) or
/// [`Uses::through_views`] (a view op's output is its input's storage, see
/// [`is_inference_view`]): then every question about a node is answered for its storage, the
/// *root* it views, and view nodes are never counted as readers themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uses {
    root: Vec<NodeId>,
    /// Per root: its distinct non-view readers, in graph order.
    readers: Vec<Vec<NodeId>>,
    /// Per root: the last node (reader or view) that touches it.
    last: Vec<Option<NodeId>>,
    output: NodeId,
}

impl Uses {
    /// Every node's output is its own value.
    pub fn direct(g: &Graph) -> Uses {
        Uses::with_views(g, |_| false)
    }

    /// View ops ([`is_inference_view`]) share their input's storage.
    pub fn through_views(g: &Graph) -> Uses {
        Uses::with_views(g, is_inference_view)
    }

    /// The ops for which `is_view` holds share their (first) input's storage: e.g. training,
    /// where only dropout and drop-path of probability 0 are views.
    pub fn with_views(g: &Graph, is_view: impl Fn(&Op) -> bool) -> Uses {
        let n = g.nodes.len();
        let mut root: Vec<NodeId> = (0..n).collect();
        let mut readers = vec![Vec::new(); n];
        let mut last = vec![None; n];
        for (i, node) in g.nodes.iter().enumerate() {
            let view = is_view(&node.op) && !node.inputs.is_empty();
            if view {
                root[i] = root[node.inputs[0]];
            }
            for &j in &node.inputs {
                let r = root[j];
                last[r] = Some(i);
                if !view && !readers[r].contains(&i) {
                    readers[r].push(i);
                }
            }
        }
        Uses {
            root,
            readers,
            last,
            output: g.output,
        }
    }

    /// The node whose storage `i`'s output is: `i` itself unless it is a view.
    pub fn root(&self, i: NodeId) -> NodeId {
        self.root[i]
    }

    /// The distinct nodes that read `i`'s value, in graph order (views excluded when built
    /// through views: their readers are listed instead).
    pub fn readers(&self, i: NodeId) -> &[NodeId] {
        &self.readers[self.root[i]]
    }

    /// The last node that reads `i`'s value (or views it); `None` if nothing does.
    pub fn last_reader(&self, i: NodeId) -> Option<NodeId> {
        self.last[self.root[i]]
    }

    /// Whether `i`'s value is (or is viewed as) the graph's output.
    pub fn is_output(&self, i: NodeId) -> bool {
        self.root[i] == self.root[self.output]
    }

    /// The one node that reads `i`'s value, when there is exactly one and the value is not the
    /// graph's output: the condition for computing `i` inside a fused operation with its reader.
    pub fn sole_reader(&self, i: NodeId) -> Option<NodeId> {
        match self.readers(i) {
            [one] if !self.is_output(i) => Some(*one),
            _ => None,
        }
    }
}

/// A tensor alive from position `first` to position `last`, both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub size: u64,
    pub first: usize,
    pub last: usize,
}

impl Interval {
    fn overlaps(&self, o: &Interval) -> bool {
        self.first <= o.last && o.first <= self.last
    }
}

/// The largest sum of sizes of the tensors alive at one position.
pub fn peak(values: &[Interval]) -> u64 {
    let end = values.iter().map(|v| v.last + 2).max().unwrap_or(0);
    let mut delta = vec![0i128; end + 1];
    for v in values {
        delta[v.first] += v.size as i128;
        delta[v.last + 1] -= v.size as i128;
    }
    let (mut live, mut best) = (0i128, 0i128);
    for d in delta {
        live += d;
        best = best.max(live);
    }
    best as u64
}

/// Place every tensor in one arena: offsets (multiples of `align`) such that two tensors alive
/// at the same position never overlap, and the arena's total size. Greedy by size, largest
/// first, each at the lowest gap that fits; the total is at least [`peak`] (rounded to `align`)
/// and usually equal to it for the chain-like graphs of efficient CNNs.
pub fn pack(values: &[Interval], align: u64) -> (Vec<u64>, u64) {
    let align = align.max(1);
    let round = |x: u64| x.div_ceil(align) * align;
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(values[i].size), values[i].first, i));
    let mut offsets = vec![0u64; values.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(values.len());
    let mut total = 0;
    for &i in &order {
        let v = &values[i];
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter(|&&j| values[j].overlaps(v))
            .map(|&j| (offsets[j], offsets[j] + round(values[j].size)))
            .collect();
        busy.sort_unstable();
        let need = round(v.size);
        let mut at = 0;
        for (lo, hi) in busy {
            if lo >= at + need {
                break;
            }
            at = at.max(hi);
        }
        offsets[i] = at;
        total = total.max(at + need);
        placed.push(i);
    }
    (offsets, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(size: u64, first: usize, last: usize) -> Interval {
        Interval { size, first, last }
    }

    #[test]
    fn peak_of_a_chain_is_the_largest_neighbouring_pair() {
        // a → b → c: a and b live together at 1, b and c at 2.
        let v = [iv(10, 0, 1), iv(5, 1, 2), iv(7, 2, 2)];
        assert_eq!(peak(&v), 15);
    }

    #[test]
    fn packing_never_overlaps_live_tensors_and_reaches_the_peak_on_chains() {
        let v = [iv(10, 0, 1), iv(5, 1, 2), iv(7, 2, 3), iv(3, 0, 3)];
        let (off, total) = pack(&v, 1);
        for i in 0..v.len() {
            for j in 0..i {
                if v[i].overlaps(&v[j]) {
                    let (a, b) = ((off[i], off[i] + v[i].size), (off[j], off[j] + v[j].size));
                    assert!(a.1 <= b.0 || b.1 <= a.0, "{i} and {j} overlap");
                }
            }
        }
        assert!(total >= peak(&v));
        assert_eq!(total, peak(&v));
    }
}
