//! Report documents written as Markdown and self-contained HTML.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;

use crate::chart::{Chart, Plot};
use crate::files::write_file_atomic;
use crate::markup::{escape_html, inline, markdown_to_html};
use crate::table::{escape_markdown_inline, Align, Table};
use crate::ReportError;

/// A report: a title and a list of sections.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Title of the document.
    pub title: String,
    /// The sections, in order.
    pub sections: Vec<Section>,
}

/// A section: a heading and its content blocks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Section {
    /// Heading of the section (none when empty).
    pub heading: String,
    /// The content, in order.
    pub blocks: Vec<Block>,
}

/// One piece of section content.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    /// Markdown-ish text: paragraphs separated by blank lines, `#` headings,
    /// `-` and `1.` lists, fenced code, inline `` `code` ``, `**bold**`,
    /// `*italic*` and `[links](https://...)`. Copied as is into `report.md`.
    Text(String),
    /// A table, numbered "Table N" in the report.
    Table(Table),
    /// A figure, numbered "Figure N" in the report.
    Figure(Figure),
}

/// A plot saved as `NAME.png` and `NAME.svg` next to the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// File stem: ASCII letters, digits, `-`, `_` and `.`, not starting with
    /// `.`; unique within a report.
    pub name: String,
    /// Caption shown below the figure.
    pub caption: String,
    /// What to draw.
    pub plot: Plot,
    /// Image size in pixels; `None` uses the plot's [`Chart::default_size`].
    pub size: Option<(u32, u32)>,
}

impl Figure {
    /// A figure at the plot's default size.
    pub fn new(name: impl Into<String>, caption: impl Into<String>, plot: impl Into<Plot>) -> Self {
        Figure {
            name: name.into(),
            caption: caption.into(),
            plot: plot.into(),
            size: None,
        }
    }

    /// The image size used for rendering.
    pub fn pixel_size(&self) -> (u32, u32) {
        self.size.unwrap_or_else(|| self.plot.default_size())
    }
}

impl Report {
    /// An empty report.
    pub fn new(title: impl Into<String>) -> Self {
        Report {
            title: title.into(),
            sections: Vec::new(),
        }
    }

    /// The Markdown document written as [`MARKDOWN_NAME`]; figures are
    /// linked as `NAME.png` (and `NAME.svg`) relative to it.
    pub fn to_markdown(&self) -> String {
        to_markdown(self)
    }

    /// Appends a section and returns it for filling.
    pub fn section(&mut self, heading: impl Into<String>) -> &mut Section {
        self.sections.push(Section::new(heading));
        self.sections.last_mut().expect("just pushed")
    }
}

impl Section {
    /// An empty section.
    pub fn new(heading: impl Into<String>) -> Self {
        Section {
            heading: heading.into(),
            blocks: Vec::new(),
        }
    }

    /// Appends Markdown-ish text.
    pub fn text(&mut self, text: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Text(text.into()));
        self
    }

    /// Appends a table.
    pub fn table(&mut self, table: Table) -> &mut Self {
        self.blocks.push(Block::Table(table));
        self
    }

    /// Appends a figure.
    pub fn figure(&mut self, figure: Figure) -> &mut Self {
        self.blocks.push(Block::Figure(figure));
        self
    }
}

/// One rendered output file: its name inside the report directory and content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFile {
    /// File name (no directory part).
    pub name: String,
    /// File content.
    pub bytes: Vec<u8>,
}

/// Name of the Markdown document written by [`write_report`].
pub const MARKDOWN_NAME: &str = "report.md";
/// Name of the HTML document written by [`write_report`].
pub const HTML_NAME: &str = "report.html";

fn check_name(name: &str) -> Result<(), ReportError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ReportError::Invalid(format!(
            "figure name {name:?}: use ASCII letters, digits, '-', '_' and '.', not starting with '.'"
        )))
    }
}

struct Rendered {
    png: Vec<u8>,
    svg: String,
    size: (u32, u32),
}

/// Renders every file of the report in memory, without touching the disk:
/// `NAME.png` and `NAME.svg` for each figure (in order), then
/// [`MARKDOWN_NAME`] and [`HTML_NAME`].
///
/// Fails on an invalid or repeated figure name, or when a plot cannot be drawn.
pub fn render_report(report: &Report) -> Result<Vec<OutputFile>, ReportError> {
    let mut names = BTreeSet::new();
    let mut rendered = Vec::new();
    for fig in figures(report) {
        check_name(&fig.name)?;
        if !names.insert(fig.name.as_str()) {
            return Err(ReportError::Invalid(format!(
                "figure name {:?} is used twice",
                fig.name
            )));
        }
        let (w, h) = fig.pixel_size();
        rendered.push(Rendered {
            png: fig.plot.render_png(w, h)?,
            svg: fig.plot.render_svg(w, h)?,
            size: (w, h),
        });
    }
    let markdown = to_markdown(report);
    let html = to_html(report, &rendered);
    let mut files = Vec::with_capacity(rendered.len() * 2 + 2);
    for (fig, r) in figures(report).zip(rendered) {
        files.push(OutputFile {
            name: format!("{}.png", fig.name),
            bytes: r.png,
        });
        files.push(OutputFile {
            name: format!("{}.svg", fig.name),
            bytes: r.svg.into_bytes(),
        });
    }
    files.push(OutputFile {
        name: MARKDOWN_NAME.into(),
        bytes: markdown.into_bytes(),
    });
    files.push(OutputFile {
        name: HTML_NAME.into(),
        bytes: html.into_bytes(),
    });
    Ok(files)
}

/// Writes the report into `dir`: [`MARKDOWN_NAME`] (figures linked by
/// relative path), [`HTML_NAME`] (self-contained: PNGs embedded as base64
/// data URIs, inline CSS) and each figure as `NAME.png` and `NAME.svg`.
/// Returns the paths written, in the order of [`render_report`].
///
/// `dir` is created when missing, but not its parents. Everything is rendered
/// before the first file is written, and every file is written to a temporary `.NAME….tmp`
/// and then renamed, so a failure leaves no partial or temporary files.
/// Existing files of the same names are replaced.
pub fn write_report(dir: &Path, report: &Report) -> Result<Vec<PathBuf>, ReportError> {
    let files = render_report(report)?;
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(ReportError::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "not a directory"),
            ))
        }
        Err(_) => fs::create_dir(dir).map_err(|e| ReportError::io(dir, e))?,
    }
    let mut written = Vec::with_capacity(files.len());
    for f in &files {
        let path = dir.join(&f.name);
        write_file_atomic(&path, &f.bytes)?;
        written.push(path);
    }
    Ok(written)
}

fn figures(report: &Report) -> impl Iterator<Item = &Figure> {
    report
        .sections
        .iter()
        .flat_map(|s| s.blocks.iter())
        .filter_map(|b| match b {
            Block::Figure(f) => Some(f),
            _ => None,
        })
}

fn numbered(prefix: &str, n: usize, text: &str) -> String {
    if text.is_empty() {
        format!("{prefix} {n}")
    } else {
        format!("{prefix} {n}: {text}")
    }
}

fn to_markdown(report: &Report) -> String {
    let mut out = String::new();
    if !report.title.is_empty() {
        out.push_str(&format!("# {}\n\n", one_line(&report.title)));
    }
    let (mut n_table, mut n_fig) = (0, 0);
    for section in &report.sections {
        if !section.heading.is_empty() {
            out.push_str(&format!("## {}\n\n", one_line(&section.heading)));
        }
        for block in &section.blocks {
            match block {
                Block::Text(t) => {
                    let t = t.trim_matches('\n');
                    if !t.trim().is_empty() {
                        out.push_str(t);
                        out.push_str("\n\n");
                    }
                }
                Block::Table(t) => {
                    n_table += 1;
                    let caption = numbered("Table", n_table, &one_line(&t.title));
                    out.push_str(&format!("**{}**\n\n", escape_markdown_inline(&caption)));
                    out.push_str(&t.markdown_body());
                    out.push('\n');
                }
                Block::Figure(f) => {
                    n_fig += 1;
                    let caption =
                        escape_markdown_inline(&numbered("Figure", n_fig, &one_line(&f.caption)));
                    out.push_str(&format!(
                        "![{caption}]({name}.png)\n\n*{caption}* ([SVG]({name}.svg))\n\n",
                        name = f.name
                    ));
                }
            }
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

const CSS: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f4f6; color: #1f2933;
  font: 16px/1.55 -apple-system, BlinkMacSystemFont, "Segoe UI", "DejaVu Sans", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 2rem 2.5rem 4rem; background: #fff; min-height: 100vh;
  box-shadow: 0 0 0 1px #e5e7eb; }
h1 { font-size: 1.9rem; margin: 0 0 1.2rem; padding-bottom: .5rem; border-bottom: 2px solid #e5e7eb; }
h2 { font-size: 1.4rem; margin: 2.6rem 0 .8rem; padding-bottom: .3rem; border-bottom: 1px solid #e5e7eb; }
h3, h4, h5, h6 { margin: 1.6rem 0 .6rem; }
p, li { max-width: 52rem; }
a { color: #2563eb; }
code { font: .9em/1.4 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
  background: #f3f4f6; padding: .1em .35em; border-radius: 4px; }
pre { background: #f3f4f6; padding: .8rem 1rem; border-radius: 6px; overflow-x: auto; }
pre code { background: none; padding: 0; }
nav.toc { background: #f9fafb; border: 1px solid #e5e7eb; border-radius: 6px; padding: .6rem 1.2rem; margin-bottom: 1.5rem; }
nav.toc ol { margin: .3rem 0; padding-left: 1.4rem; }
.table-wrap { overflow-x: auto; margin: 1.2rem 0; }
table { border-collapse: collapse; font-size: .92rem; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 0 0 .5rem; }
th, td { padding: .4rem .8rem; border-bottom: 1px solid #e5e7eb; white-space: nowrap; }
thead th { background: #f3f4f6; border-bottom: 2px solid #d1d5db; font-weight: 600; }
tbody tr:nth-child(even) { background: #fafafa; }
tbody tr:hover { background: #eef2ff; }
.l { text-align: left; } .r { text-align: right; } .c { text-align: center; }
p.note { color: #4b5563; font-size: .85rem; margin: .3rem 0; }
figure { margin: 1.8rem 0; text-align: center; }
figure img { max-width: 100%; height: auto; border: 1px solid #e5e7eb; border-radius: 6px; }
figcaption { color: #4b5563; font-size: .9rem; margin-top: .5rem; }
"#;

fn html_table(out: &mut String, t: &Table, n: usize) {
    let class = |a: Align| match a {
        Align::Left => "l",
        Align::Right => "r",
        Align::Center => "c",
    };
    out.push_str("<div class=\"table-wrap\"><table>\n");
    out.push_str(&format!(
        "<caption>{}</caption>\n<thead><tr>",
        escape_html(&numbered("Table", n, &one_line(&t.title)))
    ));
    for c in &t.columns {
        out.push_str(&format!(
            "<th class=\"{}\">{}</th>",
            class(c.align),
            escape_html(&c.name)
        ));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &t.rows {
        out.push_str("<tr>");
        for (i, c) in t.columns.iter().enumerate() {
            let cell = row.get(i).map(|c| c.display()).unwrap_or_default();
            out.push_str(&format!(
                "<td class=\"{}\">{}</td>",
                class(c.align),
                escape_html(&cell)
            ));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
    for note in &t.notes {
        out.push_str(&format!("<p class=\"note\">{}</p>\n", inline(note)));
    }
}

fn to_html(report: &Report, rendered: &[Rendered]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let title = if report.title.is_empty() {
        "effcnn report".to_string()
    } else {
        one_line(&report.title)
    };
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str(&format!("<title>{}</title>\n", escape_html(&title)));
    out.push_str(&format!("<style>{CSS}</style>\n</head>\n<body>\n<main>\n"));
    if !report.title.is_empty() {
        out.push_str(&format!("<h1>{}</h1>\n", escape_html(&title)));
    }
    let headed: Vec<(usize, &Section)> = report
        .sections
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.heading.is_empty())
        .collect();
    if headed.len() >= 2 {
        out.push_str("<nav class=\"toc\"><strong>Contents</strong>\n<ol>\n");
        for (i, s) in &headed {
            out.push_str(&format!(
                "<li><a href=\"#section-{}\">{}</a></li>\n",
                i + 1,
                escape_html(&one_line(&s.heading))
            ));
        }
        out.push_str("</ol></nav>\n");
    }
    let (mut n_table, mut n_fig) = (0, 0);
    let mut images = rendered.iter();
    for (i, section) in report.sections.iter().enumerate() {
        out.push_str(&format!("<section id=\"section-{}\">\n", i + 1));
        if !section.heading.is_empty() {
            out.push_str(&format!(
                "<h2>{}</h2>\n",
                escape_html(&one_line(&section.heading))
            ));
        }
        for block in &section.blocks {
            match block {
                Block::Text(t) => out.push_str(&markdown_to_html(t, 3)),
                Block::Table(t) => {
                    n_table += 1;
                    html_table(&mut out, t, n_table);
                }
                Block::Figure(f) => {
                    n_fig += 1;
                    let caption = numbered("Figure", n_fig, &one_line(&f.caption));
                    let Some(img) = images.next() else { continue };
                    out.push_str(&format!(
                        "<figure id=\"figure-{}\">\n<img src=\"data:image/png;base64,{}\" \
                         width=\"{}\" height=\"{}\" alt=\"{}\">\n<figcaption>{}</figcaption>\n</figure>\n",
                        escape_html(&f.name),
                        b64.encode(&img.png),
                        img.size.0,
                        img.size.1,
                        escape_html(&caption),
                        escape_html(&caption)
                    ));
                }
            }
        }
        out.push_str("</section>\n");
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}
