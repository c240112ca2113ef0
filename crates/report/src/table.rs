//! Tables rendered as aligned plain text, Markdown, CSV and JSON.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::format::{format_float, format_giga, format_mega, format_percent, format_thousands};

/// Horizontal alignment of a column in text, Markdown and HTML output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Align {
    /// Left aligned (text).
    #[default]
    Left,
    /// Right aligned (numbers).
    Right,
    /// Centred.
    Center,
}

/// A table column: its header and alignment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// Header text; also the key of the column in JSON output.
    pub name: String,
    /// Alignment of the column.
    pub align: Align,
}

impl Column {
    /// A left-aligned column.
    pub fn left(name: impl Into<String>) -> Self {
        Column {
            name: name.into(),
            align: Align::Left,
        }
    }

    /// A right-aligned column (use it for numbers).
    pub fn right(name: impl Into<String>) -> Self {
        Column {
            name: name.into(),
            align: Align::Right,
        }
    }

    /// A centred column.
    pub fn center(name: impl Into<String>) -> Self {
        Column {
            name: name.into(),
            align: Align::Center,
        }
    }
}

/// One table cell.
///
/// Text and Markdown show the *display* form of a cell; CSV and JSON carry its
/// *machine* value, so numbers stay numbers at full precision:
///
/// | variant  | display                 | CSV              | JSON            |
/// |----------|-------------------------|------------------|-----------------|
/// | `Empty`  | empty                   | empty            | `null`          |
/// | `Text`   | the text                | the text         | string          |
/// | `Int`    | digits                  | digits           | number          |
/// | `Float`  | `decimals` decimals     | full precision   | number          |
/// | `Number` | `display`               | full precision   | number          |
///
/// Non-finite floats are shown as `n/a`, `inf`, `-inf`, written to CSV as
/// `NaN`, `inf`, `-inf` and to JSON as `null`; whole numbers are JSON integers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Cell {
    /// No value.
    #[default]
    Empty,
    /// Free text.
    Text(String),
    /// An integer.
    Int(i64),
    /// A float shown with a fixed number of decimals.
    Float {
        /// The value.
        value: f64,
        /// Decimals shown in text and Markdown.
        decimals: u8,
    },
    /// A number with its own display form (e.g. `300.77 M` for `300774272`).
    Number {
        /// The value written to CSV and JSON.
        value: f64,
        /// The text shown in text and Markdown.
        display: String,
    },
}

impl Cell {
    /// A text cell.
    pub fn text(s: impl Into<String>) -> Self {
        Cell::Text(s.into())
    }

    /// An integer cell.
    pub fn int(n: i64) -> Self {
        Cell::Int(n)
    }

    /// A float cell shown with `decimals` decimals.
    pub fn float(value: f64, decimals: u8) -> Self {
        Cell::Float { value, decimals }
    }

    /// A count shown with thousands separators (`3,504,872`).
    pub fn count(n: u64) -> Self {
        Cell::Number {
            value: n as f64,
            display: format_thousands(n),
        }
    }

    /// A value shown in millions (`300.77 M`).
    pub fn mega(value: f64) -> Self {
        Cell::Number {
            value,
            display: format_mega(value),
        }
    }

    /// A value shown in billions (`1.20 G`).
    pub fn giga(value: f64) -> Self {
        Cell::Number {
            value,
            display: format_giga(value),
        }
    }

    /// A fraction shown as a percentage (`0.7123` → `71.23%` with 2 decimals);
    /// CSV and JSON carry the fraction.
    pub fn percent(fraction: f64, decimals: u8) -> Self {
        Cell::Number {
            value: fraction,
            display: format_percent(fraction, decimals as usize),
        }
    }

    /// The text shown in plain-text, Markdown and HTML tables.
    pub fn display(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(s) => s.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Float { value, decimals } => format_float(*value, *decimals as usize),
            Cell::Number { value, display } => {
                if value.is_finite() {
                    display.clone()
                } else {
                    format_float(*value, 0)
                }
            }
        }
    }

    /// The value written to CSV.
    pub fn machine(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(s) => s.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Float { value, .. } | Cell::Number { value, .. } => {
                if value.is_nan() {
                    "NaN".to_string()
                } else {
                    value.to_string()
                }
            }
        }
    }

    /// The value written to JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Empty => Value::Null,
            Cell::Text(s) => Value::String(s.clone()),
            Cell::Int(n) => Value::Number((*n).into()),
            Cell::Float { value, .. } | Cell::Number { value, .. } => {
                // Whole numbers (counts) are written as JSON integers.
                if value.fract() == 0.0 && value.abs() < 9.0e15 {
                    Value::Number((*value as i64).into())
                } else {
                    Number::from_f64(*value).map_or(Value::Null, Value::Number)
                }
            }
        }
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.to_string())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}

impl From<i64> for Cell {
    fn from(n: i64) -> Self {
        Cell::Int(n)
    }
}

impl From<i32> for Cell {
    fn from(n: i32) -> Self {
        Cell::Int(n.into())
    }
}

impl From<u32> for Cell {
    fn from(n: u32) -> Self {
        Cell::Int(n.into())
    }
}

impl From<usize> for Cell {
    fn from(n: usize) -> Self {
        match i64::try_from(n) {
            Ok(n) => Cell::Int(n),
            Err(_) => Cell::Float {
                value: n as f64,
                decimals: 0,
            },
        }
    }
}

/// `f64` cells are shown with 2 decimals.
impl From<f64> for Cell {
    fn from(value: f64) -> Self {
        Cell::Float { value, decimals: 2 }
    }
}

/// `f32` cells are shown with 2 decimals.
impl From<f32> for Cell {
    fn from(value: f32) -> Self {
        Cell::Float {
            value: value.into(),
            decimals: 2,
        }
    }
}

/// A titled table with per-column alignment and footnotes.
///
/// Rows shorter than the header are padded with empty cells when rendered;
/// cells beyond the last column are not rendered (see [`Table::push_row`] for a
/// checked way to add rows).
///
/// ```
/// use effcnn_report::{Cell, Column, Table};
/// let mut t = Table::new("Models", vec![Column::left("Model"), Column::right("MACs")]);
/// t.push_row(vec![Cell::text("MobileNetV2"), Cell::mega(300_774_272.0)]).unwrap();
/// assert!(t.to_text().contains("300.77 M"));
/// assert!(t.to_csv().contains("MobileNetV2,300774272"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Title shown above the table (not part of CSV or JSON).
    pub title: String,
    /// The columns.
    pub columns: Vec<Column>,
    /// The rows, one cell per column.
    pub rows: Vec<Vec<Cell>>,
    /// Footnotes shown below the table (not part of CSV or JSON).
    pub notes: Vec<String>,
}

impl Table {
    /// An empty table with the given title and columns.
    pub fn new(title: impl Into<String>, columns: Vec<Column>) -> Self {
        Table {
            title: title.into(),
            columns,
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Appends a row; fails when its length differs from the number of columns.
    pub fn push_row(&mut self, row: Vec<Cell>) -> Result<(), crate::ReportError> {
        if row.len() != self.columns.len() {
            return Err(crate::ReportError::Invalid(format!(
                "table {:?}: row has {} cells, the table has {} columns",
                self.title,
                row.len(),
                self.columns.len()
            )));
        }
        self.rows.push(row);
        Ok(())
    }

    /// Appends a footnote.
    pub fn push_note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The cell at `(row, col)`, empty when the row is short.
    fn cell(&self, row: usize, col: usize) -> &Cell {
        const EMPTY: &Cell = &Cell::Empty;
        self.rows[row].get(col).unwrap_or(EMPTY)
    }

    /// Display strings of the header and all rows, one line each, padded to the columns.
    fn display_grid(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let header = self.columns.iter().map(|c| one_line(&c.name)).collect();
        let rows = (0..self.rows.len())
            .map(|r| {
                (0..self.columns.len())
                    .map(|c| one_line(&self.cell(r, c).display()))
                    .collect()
            })
            .collect();
        (header, rows)
    }

    /// Aligned plain text for a terminal: title, header, a rule, the rows, then the notes.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if !self.title.is_empty() {
            out.push_str(&self.title);
            out.push('\n');
        }
        if !self.columns.is_empty() {
            let (header, rows) = self.display_grid();
            let widths = column_widths(&header, &rows);
            let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
            let aligns: Vec<Align> = self.columns.iter().map(|c| c.align).collect();
            push_text_line(&mut out, &header, &widths, &aligns);
            push_text_line(&mut out, &rule, &widths, &aligns);
            for row in &rows {
                push_text_line(&mut out, row, &widths, &aligns);
            }
        }
        for note in &self.notes {
            out.push_str(note);
            out.push('\n');
        }
        out
    }

    /// A GitHub-flavoured Markdown table, preceded by the title in bold and
    /// followed by the notes as paragraphs.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        if !self.title.is_empty() {
            out.push_str(&format!("**{}**\n\n", escape_markdown_inline(&self.title)));
        }
        out.push_str(&self.markdown_body());
        out
    }

    /// The Markdown table and the notes, without the title.
    pub(crate) fn markdown_body(&self) -> String {
        let mut out = String::new();
        if !self.columns.is_empty() {
            let (header, rows) = self.display_grid();
            let esc = |cells: &[String]| -> Vec<String> {
                cells.iter().map(|s| s.replace('|', "\\|")).collect()
            };
            let header = esc(&header);
            let rows: Vec<Vec<String>> = rows.iter().map(|r| esc(r)).collect();
            let widths: Vec<usize> = column_widths(&header, &rows)
                .into_iter()
                .map(|w| w.max(3))
                .collect();
            let aligns: Vec<Align> = self.columns.iter().map(|c| c.align).collect();
            push_markdown_line(&mut out, &header, &widths, &aligns);
            let rule: Vec<String> = widths
                .iter()
                .zip(&aligns)
                .map(|(&w, a)| match a {
                    Align::Left => format!(":{}", "-".repeat(w - 1)),
                    Align::Right => format!("{}:", "-".repeat(w - 1)),
                    Align::Center => format!(":{}:", "-".repeat(w - 2)),
                })
                .collect();
            push_markdown_line(&mut out, &rule, &widths, &aligns);
            for row in &rows {
                push_markdown_line(&mut out, row, &widths, &aligns);
            }
        }
        for note in &self.notes {
            out.push('\n');
            out.push_str(note);
            out.push('\n');
        }
        out
    }

    /// CSV (RFC 4180): a header line, then one line per row, CRLF line ends;
    /// fields holding `,`, `"`, CR or LF are quoted with `"` doubled.
    /// Numbers are written at full precision (see [`Cell`]).
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        if self.columns.is_empty() {
            return out;
        }
        let line = |out: &mut String, fields: Vec<String>| {
            let quoted: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&quoted.join(","));
            out.push_str("\r\n");
        };
        line(
            &mut out,
            self.columns.iter().map(|c| c.name.clone()).collect(),
        );
        for r in 0..self.rows.len() {
            line(
                &mut out,
                (0..self.columns.len())
                    .map(|c| self.cell(r, c).machine())
                    .collect(),
            );
        }
        out
    }

    /// The rows as a JSON array of objects keyed by column name; numbers stay
    /// numbers. A repeated column name gets a ` (2)`, ` (3)`, ... suffix.
    pub fn to_json_value(&self) -> Value {
        let keys = self.json_keys();
        Value::Array(
            (0..self.rows.len())
                .map(|r| {
                    let mut obj = Map::new();
                    for (c, key) in keys.iter().enumerate() {
                        obj.insert(key.clone(), self.cell(r, c).to_json());
                    }
                    Value::Object(obj)
                })
                .collect(),
        )
    }

    /// [`Table::to_json_value`] as pretty-printed text, keys in column order.
    pub fn to_json(&self) -> String {
        let keys = self.json_keys();
        if self.rows.is_empty() {
            return "[]\n".to_string();
        }
        let mut out = String::from("[\n");
        for r in 0..self.rows.len() {
            out.push_str("  {");
            for (c, key) in keys.iter().enumerate() {
                if c > 0 {
                    out.push(',');
                }
                out.push_str("\n    ");
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                out.push_str(&self.cell(r, c).to_json().to_string());
            }
            out.push_str(if keys.is_empty() { "}" } else { "\n  }" });
            out.push_str(if r + 1 < self.rows.len() { ",\n" } else { "\n" });
        }
        out.push_str("]\n");
        out
    }

    fn json_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::with_capacity(self.columns.len());
        for col in &self.columns {
            let mut key = col.name.clone();
            let mut n = 2;
            while keys.contains(&key) {
                key = format!("{} ({n})", col.name);
                n += 1;
            }
            keys.push(key);
        }
        keys
    }
}

fn one_line(s: &str) -> String {
    if s.contains(['\n', '\r']) {
        s.split(['\n', '\r'])
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        s.to_string()
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn column_widths(header: &[String], rows: &[Vec<String>]) -> Vec<usize> {
    header
        .iter()
        .enumerate()
        .map(|(c, h)| {
            rows.iter()
                .map(|r| width(&r[c]))
                .chain(std::iter::once(width(h)))
                .max()
                .unwrap_or(0)
        })
        .collect()
}

fn pad(s: &str, w: usize, align: Align) -> String {
    let fill = w.saturating_sub(width(s));
    match align {
        Align::Left => format!("{s}{}", " ".repeat(fill)),
        Align::Right => format!("{}{s}", " ".repeat(fill)),
        Align::Center => {
            let left = fill / 2;
            format!("{}{s}{}", " ".repeat(left), " ".repeat(fill - left))
        }
    }
}

fn push_text_line(out: &mut String, cells: &[String], widths: &[usize], aligns: &[Align]) {
    let parts: Vec<String> = cells
        .iter()
        .zip(widths)
        .zip(aligns)
        .map(|((s, &w), &a)| pad(s, w, a))
        .collect();
    out.push_str(parts.join("  ").trim_end());
    out.push('\n');
}

fn push_markdown_line(out: &mut String, cells: &[String], widths: &[usize], aligns: &[Align]) {
    out.push('|');
    for ((s, &w), &a) in cells.iter().zip(widths).zip(aligns) {
        out.push(' ');
        out.push_str(&pad(s, w, a));
        out.push_str(" |");
    }
    out.push('\n');
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Escapes the characters that Markdown would read as inline markup.
pub(crate) fn escape_markdown_inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '*' | '_' | '`' | '[' | ']' | '|' | '<' | '>') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(
            "Accuracy vs cost",
            vec![
                Column::left("Model"),
                Column::right("Params"),
                Column::right("MACs"),
                Column::right("Top-1"),
                Column::center("Notes"),
            ],
        );
        t.push_row(vec![
            Cell::text("MobileNetV2 1.0"),
            Cell::count(3_504_872),
            Cell::mega(300_774_272.0),
            Cell::percent(0.7188, 2),
            Cell::text("width 1.0, \"baseline\""),
        ])
        .unwrap();
        t.push_row(vec![
            Cell::text("ShuffleNet|V2"),
            Cell::count(2_278_604),
            Cell::mega(146_000_000.0),
            Cell::float(f64::NAN, 2),
            Cell::Empty,
        ])
        .unwrap();
        t.push_row(vec![Cell::text("line\nbreak"), Cell::int(-3)])
            .unwrap_err();
        t.push_note("MACs counted for a 224×224 input.");
        t
    }

    #[test]
    fn text_is_aligned() {
        let text = sample().to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Accuracy vs cost");
        assert!(lines[2].chars().all(|c| c == '-' || c == ' '));
        // Right-aligned MACs column: both values end at the same column.
        let end = |l: &str, pat: &str| l.find(pat).unwrap() + pat.len();
        assert_eq!(end(lines[3], "300.77 M"), end(lines[4], "146.00 M"));
        assert_eq!(end(lines[3], "3,504,872"), end(lines[4], "2,278,604"));
        assert!(lines[4].contains("n/a"));
        assert_eq!(lines[5], "MACs counted for a 224×224 input.");
    }

    #[test]
    fn markdown_shape() {
        let t = sample();
        let md = t.to_markdown();
        let table_lines: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(table_lines.len(), 2 + t.rows.len());
        for line in &table_lines {
            assert!(line.ends_with('|'));
            // Unescaped pipes: one more than the number of columns.
            let pipes = line.matches('|').count() - line.matches("\\|").count();
            assert_eq!(pipes, t.columns.len() + 1, "{line}");
        }
        let rule: Vec<&str> = table_lines[1]
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        assert!(rule[0].starts_with(':') && !rule[0].ends_with(':'));
        assert!(rule[1].ends_with(':') && !rule[1].starts_with(':'));
        assert!(rule[4].starts_with(':') && rule[4].ends_with(':'));
        assert!(md.starts_with("**Accuracy vs cost**\n\n|"));
        assert!(md.contains("ShuffleNet\\|V2"));
        assert!(md.trim_end().ends_with("MACs counted for a 224×224 input."));
        // All table lines have the same width.
        let w = table_lines[0].chars().count();
        assert!(table_lines.iter().all(|l| l.chars().count() == w));
    }

    #[test]
    fn csv_quoting() {
        let mut t = Table::new("", vec![Column::left("a,b"), Column::left("c")]);
        t.rows.push(vec![Cell::text("say \"hi\""), Cell::text("x")]);
        t.rows
            .push(vec![Cell::text("two\nlines"), Cell::text("plain")]);
        t.rows.push(vec![Cell::float(0.1, 1)]);
        t.rows
            .push(vec![Cell::mega(300_774_272.0), Cell::float(f64::NAN, 1)]);
        assert_eq!(
            t.to_csv(),
            "\"a,b\",c\r\n\"say \"\"hi\"\"\",x\r\n\"two\nlines\",plain\r\n0.1,\r\n300774272,NaN\r\n"
        );
    }

    #[test]
    fn json_keeps_numbers_and_round_trips() {
        let t = sample();
        let parsed: Value = serde_json::from_str(&t.to_json()).unwrap();
        assert_eq!(parsed, t.to_json_value());
        let rows = parsed.as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["Model"], "MobileNetV2 1.0");
        assert_eq!(rows[0]["Params"].as_u64(), Some(3_504_872));
        assert_eq!(rows[0]["MACs"].as_f64(), Some(300_774_272.0));
        assert_eq!(rows[0]["Top-1"].as_f64(), Some(0.7188));
        assert!(rows[1]["Top-1"].is_null());
        assert!(rows[1]["Notes"].is_null());
        // Keys keep the column order in the text form.
        let text = t.to_json();
        assert!(text.find("\"Model\"").unwrap() < text.find("\"Top-1\"").unwrap());

        // The table itself survives a serde round trip (finite values).
        let mut finite = t.clone();
        finite.rows.truncate(1);
        let back: Table = serde_json::from_str(&serde_json::to_string(&finite).unwrap()).unwrap();
        assert_eq!(back, finite);
    }

    #[test]
    fn json_duplicate_columns_and_empty() {
        let mut t = Table::new("", vec![Column::left("x"), Column::left("x")]);
        assert_eq!(t.to_json(), "[]\n");
        t.rows.push(vec![Cell::int(1), Cell::int(2)]);
        let v: Value = serde_json::from_str(&t.to_json()).unwrap();
        assert_eq!(v[0]["x"], 1);
        assert_eq!(v[0]["x (2)"], 2);
    }

    #[test]
    fn empty_table_renders() {
        let t = Table::default();
        assert_eq!(t.to_text(), "");
        assert_eq!(t.to_markdown(), "");
        assert_eq!(t.to_csv(), "");
        assert_eq!(t.to_json(), "[]\n");
    }
}
