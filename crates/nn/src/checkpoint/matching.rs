//! Checkpoint keys against the keys the graph derives for each layout: the best layout and
//! wrapping prefix, ties between layouts that would load differently reported.

use std::collections::BTreeSet;

use effcnn_arch::graph::TensorKey;
use effcnn_arch::{Graph, Layout};

use super::TensorMap;
use crate::error::NnError;

/// Prefixes that wrap a state dict (DataParallel, training scripts' checkpoint dicts).
const PREFIXES: [&str; 6] = [
    "",
    "module.",
    "state_dict.",
    "model.",
    "state_dict.module.",
    "model.module.",
];

pub(super) fn is_ignored(key: &str) -> bool {
    key.ends_with("num_batches_tracked")
}

/// One layout's assignment of checkpoint keys to graph tensors.
pub(super) struct Matching<'a> {
    pub(super) layout: Layout,
    pub(super) prefix: &'static str,
    pub(super) keys: Vec<TensorKey>,
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

pub(super) fn best_matching<'a>(
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
