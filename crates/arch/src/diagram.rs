//! Text block diagrams of a resolved graph: one line per block, its ops in execution order.

use crate::graph::{Graph, Op};

/// A compact token for one node (batch norm is folded into its conv and not shown).
pub fn token(op: &Op) -> Option<String> {
    Some(match op {
        Op::Input | Op::BatchNorm { .. } | Op::Flatten => return None,
        Op::Conv(c) => {
            let s = if c.stride.0 > 1 {
                format!("/{}", c.stride.0)
            } else {
                String::new()
            };
            let k = format!("{}×{}{s}", c.k.0, c.k.1);
            match c.kind() {
                "dwconv" => format!("dw {k}"),
                "gpwconv" => format!("gpw {k} g{} →{}", c.groups, c.cout),
                "pwconv" => format!("pw {k} →{}", c.cout),
                "gconv" => format!("gconv {k} g{} →{}", c.groups, c.cout),
                _ => format!("conv {k} →{}", c.cout),
            }
        }
        Op::Act { act } => act.name().to_string(),
        Op::MaxPool {
            k,
            stride,
            ceil_mode,
            ..
        } => format!(
            "maxpool {k}×{k}/{stride}{}",
            if *ceil_mode { " ceil" } else { "" }
        ),
        Op::AvgPool { k, stride, .. } => format!("avgpool {k}×{k}/{stride}"),
        Op::GlobalAvgPool => "gap".into(),
        Op::Linear { fout, .. } => format!("fc →{fout}"),
        Op::Dropout { p } => format!("dropout {p}"),
        Op::DropPath { p } => format!("drop-path {p:.3}"),
        Op::Add => "(+ residual)".into(),
        Op::Scale => "(× SE gate)".into(),
        Op::Concat => "concat".into(),
        Op::Slice { start, len } => format!("split[{start}..{}]", start + len),
        Op::Shuffle { groups } => format!("shuffle g{groups}"),
    })
}

/// One line per block: `block  in-shape → ops… → out-shape`.
pub fn render(g: &Graph) -> String {
    let mut lines: Vec<(String, String, Vec<String>, String)> = Vec::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if i == 0 {
            continue;
        }
        let in_shape = n
            .inputs
            .first()
            .map(|&j| g.nodes[j].shape.to_string())
            .unwrap_or_default();
        if lines.last().map(|l| l.0 != n.block).unwrap_or(true) {
            lines.push((n.block.clone(), in_shape, vec![], String::new()));
        }
        let last = lines.last_mut().expect("pushed above");
        if let Some(t) = token(&n.op) {
            last.2.push(t);
        }
        last.3 = n.shape.to_string();
    }
    let w = lines.iter().map(|l| l.0.len()).max().unwrap_or(0);
    let mut s = format!(
        "{} ({} profile, width {}, {}², {} classes)\n",
        g.meta.name,
        g.meta.profile.name(),
        g.meta.width,
        g.meta.resolution,
        g.meta.classes
    );
    for (b, i, ops, o) in lines {
        s.push_str(&format!("{b:<w$}  {i} → {} → {o}\n", ops.join(" · ")));
    }
    s.push_str("(batch norm after every conv is implied; dw = depthwise, pw = pointwise 1×1, gpw = grouped pointwise)\n");
    s
}
