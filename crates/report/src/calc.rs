//! Tables of effcnn's block calculators.

use effcnn_arch::calc::Calc;

use crate::format::format_thousands;
use crate::{Cell, Column, Table};

/// The stage-by-stage table of a block calculator ([`effcnn_arch::calc`]): per stage its op,
/// shapes, parameters and MACs, the total, the standard convolution it replaces (when there is
/// one) and the closed-form formula as a note.
pub fn calc_table(c: &Calc) -> Table {
    let mut t = Table::new(
        c.title.clone(),
        vec![
            Column::left("stage"),
            Column::left("op"),
            Column::left("in"),
            Column::left("out"),
            Column::right("params"),
            Column::right("MACs"),
        ],
    );
    for s in &c.stages {
        let _ = t.push_row(vec![
            Cell::text(&s.name),
            Cell::text(&s.op),
            Cell::text(s.input.to_string()),
            Cell::text(s.output.to_string()),
            Cell::count(s.params),
            Cell::count(s.macs),
        ]);
    }
    let _ = t.push_row(vec![
        Cell::text("total"),
        Cell::Empty,
        Cell::Empty,
        Cell::Empty,
        Cell::count(c.params),
        Cell::count(c.macs),
    ]);
    if let Some((p, m)) = c.standard {
        let _ = t.push_row(vec![
            Cell::text("standard conv (same mapping)"),
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
            Cell::count(p),
            Cell::count(m),
        ]);
        t.push_note(format!(
            "reduction vs standard: {:.2}× fewer params, {:.2}× fewer MACs",
            p as f64 / c.params as f64,
            m as f64 / c.macs as f64
        ));
    }
    t.push_note(format!(
        "formula: {} = {}",
        c.formula,
        format_thousands(c.formula_macs)
    ));
    for n in &c.notes {
        t.push_note(n.clone());
    }
    t.push_note("MACs = multiply-accumulates; FLOPs = 2 × MACs");
    t
}
