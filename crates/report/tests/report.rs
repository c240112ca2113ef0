//! Report writing: files, self-contained HTML, atomic writes and errors.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use effcnn_report::{
    render_report, write_file_atomic, write_report, Cell, Column, Figure, Report, ReportError,
    Table,
};

/// A fresh, empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("effcnn-report-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn sample_report() -> Report {
    let mut table = Table::new(
        "Models | costs",
        vec![
            Column::left("Model"),
            Column::right("MACs"),
            Column::right("Top-1"),
        ],
    );
    for &(label, _, macs, _, acc) in &common::MODELS[..4] {
        table
            .push_row(vec![
                Cell::text(label),
                Cell::mega(macs),
                Cell::percent(acc / 100.0, 1),
            ])
            .unwrap();
    }
    table.push_note("MACs for a `224×224` <input>.");
    let mut r = Report::new("effcnn results & notes");
    r.section("Accuracy")
        .text("Intro with **bold** and a <tag>.\n\n- item one\n- item two")
        .table(table)
        .figure(Figure::new(
            "acc_macs",
            "Accuracy vs MACs",
            common::accuracy_vs_macs(true),
        ));
    r.section("SE gates")
        .figure(Figure::new("gates", "Gates", common::se_gates(10, 1280)))
        .figure(Figure::new(
            "hist",
            "Gate histograms",
            common::gate_histograms(6),
        ))
        .figure(Figure::new("curves", "Curves", common::training_curves()));
    r
}

const FIGURES: [&str; 4] = ["acc_macs", "gates", "hist", "curves"];

#[test]
fn writes_markdown_html_and_figures() {
    let tmp = TempDir::new("write");
    let dir = tmp.0.join("out"); // created by write_report
    let report = sample_report();
    let written = write_report(&dir, &report).unwrap();
    let mut expected: Vec<String> = FIGURES
        .iter()
        .flat_map(|f| [format!("{f}.png"), format!("{f}.svg")])
        .collect();
    expected.push("report.md".into());
    expected.push("report.html".into());
    assert_eq!(
        written,
        expected.iter().map(|n| dir.join(n)).collect::<Vec<_>>()
    );
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(list(&dir), sorted, "no .tmp files or extras");

    // Figures are valid images of the figure's size.
    for f in FIGURES {
        let png = fs::read(dir.join(format!("{f}.png"))).unwrap();
        let img = image::load_from_memory(&png).unwrap();
        assert!(img.width() >= 400 && img.height() >= 300);
        let svg = fs::read_to_string(dir.join(format!("{f}.svg"))).unwrap();
        assert!(svg.starts_with("<svg"));
    }

    // Markdown links the figures relatively and numbers tables and figures.
    let md = fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.starts_with("# effcnn results & notes\n"));
    assert!(md.contains("## Accuracy\n"));
    assert!(md.contains("**Table 1: Models \\| costs**"));
    assert!(md.contains("| MobileNetV1 1.0 "));
    for (i, f) in FIGURES.iter().enumerate() {
        assert!(md.contains(&format!("![Figure {}: ", i + 1)));
        assert!(md.contains(&format!("]({f}.png)")));
        assert!(md.contains(&format!("[SVG]({f}.svg)")));
    }
    assert!(md.contains("Intro with **bold** and a <tag>."));

    // HTML is self-contained: every image is a data URI, nothing external.
    let html = fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        html.matches("<img src=\"data:image/png;base64,").count(),
        FIGURES.len()
    );
    assert_eq!(html.matches("src=").count(), FIGURES.len());
    assert!(!html.contains("<link"));
    assert!(!html.contains("<script"));
    assert!(!html.contains("url("));
    assert!(html.contains("<style>"));
    // The embedded images are the written PNGs.
    let first = html
        .split("base64,")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(first)
        .unwrap();
    assert_eq!(decoded, fs::read(dir.join("acc_macs.png")).unwrap());
    // Text is escaped and lightly formatted; tables are real tables.
    assert!(html.contains("<title>effcnn results &amp; notes</title>"));
    assert!(html.contains("<strong>bold</strong> and a &lt;tag&gt;."));
    assert!(html.contains("<li>item one</li>"));
    assert!(html.contains("<caption>Table 1: Models | costs</caption>"));
    assert!(html.contains("<th class=\"r\">MACs</th>"));
    assert!(html.contains("<td class=\"r\">569.00 M</td>"));
    assert!(html.contains("<code>224×224</code> &lt;input&gt;."));
    assert!(html.contains("<figcaption>Figure 2: Gates</figcaption>"));
    assert!(html.contains("href=\"#section-2\""));

    // Writing again replaces the files with identical bytes (deterministic).
    let before: Vec<Vec<u8>> = written.iter().map(|p| fs::read(p).unwrap()).collect();
    let again = write_report(&dir, &report).unwrap();
    let after: Vec<Vec<u8>> = again.iter().map(|p| fs::read(p).unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(list(&dir), sorted);
}

#[test]
fn render_matches_written_files() {
    let files = render_report(&sample_report()).unwrap();
    assert_eq!(files.len(), FIGURES.len() * 2 + 2);
    assert_eq!(files[files.len() - 2].name, "report.md");
    assert_eq!(files[files.len() - 1].name, "report.html");
}

#[test]
fn missing_parent_is_an_error_and_writes_nothing() {
    let tmp = TempDir::new("missing");
    let dir = tmp.0.join("no").join("such").join("dir");
    let err = write_report(&dir, &sample_report()).unwrap_err();
    match &err {
        ReportError::Io { path, .. } => assert_eq!(path, &dir),
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().contains(&dir.display().to_string()));
    assert!(list(&tmp.0).is_empty(), "nothing created");
}

#[test]
fn file_in_place_of_dir_is_an_error() {
    let tmp = TempDir::new("notdir");
    let file = tmp.0.join("report");
    fs::write(&file, b"x").unwrap();
    let err = write_report(&file, &sample_report()).unwrap_err();
    assert!(matches!(err, ReportError::Io { ref path, .. } if path == &file));
    assert_eq!(list(&tmp.0), ["report"]);
}

#[test]
fn read_only_dir_is_an_error_without_tmp_files() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("readonly");
    let dir = tmp.0.join("ro");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o555)).unwrap();
    // Privileged users can write anyway; then there is nothing to test.
    let probe = dir.join("probe");
    if fs::write(&probe, b"x").is_ok() {
        let _ = fs::remove_file(&probe);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        eprintln!("skipped: the directory is writable despite its mode");
        return;
    }
    let err = write_report(&dir, &sample_report()).unwrap_err();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(matches!(err, ReportError::Io { ref path, .. } if path.starts_with(&dir)));
    assert!(list(&dir).is_empty());
}

#[test]
fn failed_rename_removes_the_tmp_file() {
    let tmp = TempDir::new("rename");
    // The target is a non-empty directory: the tmp file is written, the rename fails.
    let target = tmp.0.join("report.html");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep"), b"x").unwrap();
    let err = write_file_atomic(&target, b"<html>").unwrap_err();
    assert!(matches!(err, ReportError::Io { ref path, .. } if path == &target));
    assert_eq!(list(&tmp.0), ["report.html"]);

    // write_report stops at that file: earlier files are complete, no tmp remains.
    let err = write_report(&tmp.0, &sample_report()).unwrap_err();
    assert!(matches!(err, ReportError::Io { ref path, .. } if path == &target));
    assert!(list(&tmp.0).iter().all(|n| !n.ends_with(".tmp")));
}

#[test]
fn atomic_write_replaces_content() {
    let tmp = TempDir::new("atomic");
    let p = tmp.0.join("table.csv");
    write_file_atomic(&p, b"old").unwrap();
    write_file_atomic(&p, b"new").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"new");
    assert_eq!(list(&tmp.0), ["table.csv"]);
    let missing = tmp.0.join("nope").join("x.csv");
    let err = write_file_atomic(&missing, b"x").unwrap_err();
    assert!(matches!(err, ReportError::Io { ref path, .. } if path == &missing));
    assert_eq!(list(&tmp.0), ["table.csv"]);
}

#[test]
fn bad_figure_names_are_rejected_before_writing() {
    let tmp = TempDir::new("names");
    for name in ["", "../escape", "a/b", ".hidden", "with space"] {
        let mut r = Report::new("t");
        r.section("s")
            .figure(Figure::new(name, "c", common::training_curves()));
        let dir = tmp.0.join("out");
        let err = write_report(&dir, &r).unwrap_err();
        assert!(matches!(err, ReportError::Invalid(_)), "{name:?}: {err}");
        assert!(!dir.exists());
    }
    let mut r = Report::new("t");
    r.section("s")
        .figure(Figure::new("same", "1", common::training_curves()))
        .figure(Figure::new("same", "2", common::training_curves()));
    assert!(matches!(render_report(&r), Err(ReportError::Invalid(_))));
    let mut r = Report::new("t");
    let mut fig = Figure::new("tiny", "c", common::training_curves());
    fig.size = Some((10, 10));
    r.section("s").figure(fig);
    assert!(matches!(render_report(&r), Err(ReportError::Invalid(_))));
}

#[test]
fn empty_report() {
    let tmp = TempDir::new("empty");
    let written = write_report(&tmp.0, &Report::default()).unwrap();
    assert_eq!(written.len(), 2);
    let html = fs::read_to_string(&written[1]).unwrap();
    assert!(html.contains("<main>") && html.trim_end().ends_with("</html>"));
    assert_eq!(fs::read_to_string(&written[0]).unwrap(), "");
}
