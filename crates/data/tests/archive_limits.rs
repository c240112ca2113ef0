//! Archive entries are sized from their tar headers before they are read: a CIFAR-10 batch may
//! declare at most 10,000 records, `batches.meta.txt` 4 KiB, any other entry (an image) 64 MiB,
//! and the tar reader's own metadata (GNU long names, PAX records) 1 MiB. Forged headers get an
//! error naming the entry, and an archive that really holds a huge entry is refused without
//! the process's peak memory growing by anything like that entry.
//!
//! One test function, so that nothing else runs in this process while the peak is measured.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use effcnn_data::{load, load_cifar10, load_image_folder, LoadOptions};
use flate2::write::GzEncoder;

mod common;
use common::{TempDir, CIFAR_FILES as BATCHES, CIFAR_RECORD as RECORD};

const SIX_GIB: u64 = 6 << 30;
/// Size of the entries that are really present in the memory check.
const BIG: u64 = 256 << 20;

/// What follows a header in the stream.
enum Body<'a> {
    Bytes(&'a [u8]),
    /// `n` zero bytes, streamed (never held in memory).
    Zeros(u64),
    /// Nothing: the archive ends right after the header (a forged, truncated entry).
    Cut,
}

/// Writes a `.tar.gz` entry by entry, with whatever size each header claims.
struct TarGz(GzEncoder<File>);

impl TarGz {
    fn new(path: &Path) -> TarGz {
        TarGz(GzEncoder::new(
            File::create(path).unwrap(),
            flate2::Compression::fast(),
        ))
    }

    /// A header of type `kind` for `name` declaring `size` bytes, then `body`. Returns false
    /// when the archive was cut (nothing may follow).
    fn entry(&mut self, name: &str, kind: tar::EntryType, size: u64, body: Body) -> bool {
        let mut h = tar::Header::new_gnu();
        let raw = &mut h.as_old_mut().name;
        raw.fill(0);
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(size);
        h.set_mode(0o644);
        h.set_entry_type(kind);
        h.set_cksum();
        self.0.write_all(h.as_bytes()).unwrap();
        let written = match body {
            Body::Bytes(b) => {
                self.0.write_all(b).unwrap();
                b.len() as u64
            }
            Body::Zeros(n) => {
                let chunk = vec![0u8; 1 << 20];
                let mut left = n;
                while left > 0 {
                    let k = left.min(chunk.len() as u64) as usize;
                    self.0.write_all(&chunk[..k]).unwrap();
                    left -= k as u64;
                }
                n
            }
            Body::Cut => return false,
        };
        assert_eq!(written, size, "{name}: body must match the header");
        let pad = (512 - size % 512) % 512;
        self.0.write_all(&vec![0u8; pad as usize]).unwrap();
        true
    }

    fn file(&mut self, name: &str, data: &[u8]) {
        self.entry(
            name,
            tar::EntryType::Regular,
            data.len() as u64,
            Body::Bytes(data),
        );
    }

    /// Ends the archive properly (two zero blocks) or, when `cut`, right where it is.
    fn finish(mut self, cut: bool) {
        if !cut {
            self.0.write_all(&[0u8; 1024]).unwrap();
        }
        self.0.finish().unwrap();
    }
}

fn records(n: usize) -> Vec<u8> {
    (0..n * RECORD)
        .map(|i| if i % RECORD == 0 { 3 } else { (i % 251) as u8 })
        .collect()
}

/// A CIFAR archive whose `data_batch_1.bin` gets `batch1` (declared size and body); the other
/// batches hold two valid records.
fn cifar_archive(path: &Path, batch1: (u64, Body)) {
    let mut t = TarGz::new(path);
    let good = records(2);
    let (size, body) = batch1;
    let cut = !t.entry(
        "cifar-10-batches-bin/data_batch_1.bin",
        tar::EntryType::Regular,
        size,
        body,
    );
    if !cut {
        for b in &BATCHES[1..] {
            t.file(&format!("cifar-10-batches-bin/{b}"), &good);
        }
    }
    t.finish(cut);
}

/// An image-folder archive with two valid PNGs and `entry` (name, declared size, body) first.
fn folder_archive(path: &Path, entry: (&str, tar::EntryType, u64, Body)) {
    let mut t = TarGz::new(path);
    let (name, kind, size, body) = entry;
    let cut = !t.entry(name, kind, size, body);
    if !cut {
        let png = common::png(4, 4, [10, 20, 30]);
        t.file("train/a/0.png", &png);
        t.file("test/a/0.png", &png);
    }
    t.finish(cut);
}

fn err_of<T: std::fmt::Debug>(r: effcnn_data::Result<T>) -> String {
    r.expect_err("must be refused").to_string()
}

fn assert_mentions(msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(msg.contains(n), "error lacks {n:?}: {msg}");
    }
}

/// Peak resident memory of this process so far, in bytes (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn entry_sizes_are_checked_before_reading() {
    let tmp = TempDir::new("archive-limits");
    let opts = LoadOptions::default();
    let spec = |p: &Path| p.to_str().unwrap().to_owned();

    // Forged headers, archives cut right after them (a few hundred bytes of gzip).
    let forged = tmp.join("forged-cifar.tar.gz");
    cifar_archive(&forged, (SIX_GIB, Body::Cut));
    assert!(std::fs::metadata(&forged).unwrap().len() < 1024);
    let entry = "forged-cifar.tar.gz:cifar-10-batches-bin/data_batch_1.bin";
    let needles = [
        entry,
        "declares 6442450944 bytes",
        "10000 records of 3073 bytes",
        "30730000 bytes",
    ];
    assert_mentions(&err_of(load_cifar10(&forged)), &needles);
    assert_mentions(&err_of(load(&spec(&forged), &opts)), &needles);
    // One byte over the official batch size is refused; the official size itself passes the
    // check (and this cut archive then fails on the missing bytes).
    let over = tmp.join("over.tar.gz");
    cifar_archive(&over, (10_000 * RECORD as u64 + 1, Body::Cut));
    assert_mentions(&err_of(load_cifar10(&over)), &["declares 30730001 bytes"]);
    let exact = tmp.join("exact.tar.gz");
    cifar_archive(&exact, (10_000 * RECORD as u64, Body::Cut));
    let e = err_of(load_cifar10(&exact));
    assert!(!e.contains("declares"), "{e}");
    assert_mentions(
        &e,
        &[
            "data_batch_1.bin",
            "the archive ends after 0 of its 30730000 bytes",
        ],
    );

    // batches.meta.txt lists ten names: more than 4 KiB is refused.
    let meta = tmp.join("meta.tar.gz");
    let mut t = TarGz::new(&meta);
    let names = "airplane\n".repeat(500);
    t.file("cifar-10-batches-bin/batches.meta.txt", names.as_bytes());
    t.finish(false);
    assert_mentions(
        &err_of(load(&spec(&meta), &opts)),
        &["batches.meta.txt", "declares 4500 bytes", "4096 bytes"],
    );

    // An image in an image-folder archive: at most 64 MiB.
    let image = tmp.join("forged-image.tar.gz");
    folder_archive(
        &image,
        (
            "train/a/big.png",
            tar::EntryType::Regular,
            SIX_GIB,
            Body::Cut,
        ),
    );
    let needles = [
        "forged-image.tar.gz:train/a/big.png",
        "declares 6442450944 bytes",
        "64 MiB",
    ];
    assert_mentions(&err_of(load_image_folder(&image, None)), &needles);
    assert_mentions(&err_of(load(&spec(&image), &opts)), &needles);

    // A GNU long-name entry, which the tar reader buffers whole (capped at 1 MiB; see the real
    // one below): cut short, it is a broken archive.
    let long = tmp.join("forged-longname.tar.gz");
    folder_archive(
        &long,
        (
            "././@LongLink",
            tar::EntryType::GNULongName,
            SIX_GIB,
            Body::Cut,
        ),
    );
    assert_mentions(
        &err_of(load(&spec(&long), &opts)),
        &["forged-longname.tar.gz", "cannot read archive"],
    );

    // Archives that really hold a 256 MiB entry (zeros: 256 KiB of gzip each).
    let real = [
        ("big-batch.tar.gz", "data_batch_1.bin"),
        ("big-image.tar.gz", "train/a/big.png"),
        (
            "big-longname.tar.gz",
            "metadata entry (long name, PAX record) takes more than 1048576 bytes",
        ),
    ];
    cifar_archive(&tmp.join(real[0].0), (BIG, Body::Zeros(BIG)));
    folder_archive(
        &tmp.join(real[1].0),
        (
            "train/a/big.png",
            tar::EntryType::Regular,
            BIG,
            Body::Zeros(BIG),
        ),
    );
    folder_archive(
        &tmp.join(real[2].0),
        (
            "././@LongLink",
            tar::EntryType::GNULongName,
            BIG,
            Body::Zeros(BIG),
        ),
    );
    // A skipped (hidden) entry is passed over without being buffered; the rest still loads.
    let hidden = tmp.join("big-hidden.tar.gz");
    folder_archive(
        &hidden,
        (
            "train/a/._big.png",
            tar::EntryType::Regular,
            BIG,
            Body::Zeros(BIG),
        ),
    );

    let before = peak_rss();
    for (file, needle) in real {
        let path = tmp.join(file);
        assert!(std::fs::metadata(&path).unwrap().len() < BIG / 100);
        assert_mentions(&err_of(load(&spec(&path), &opts)), &[file, needle]);
    }
    let s = load(&spec(&hidden), &opts).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (1, 1));
    if let (Some(before), Some(after)) = (before, peak_rss()) {
        let grew = after.saturating_sub(before);
        assert!(
            grew < 32 << 20,
            "peak memory grew by {} MiB reading archives that hold 256 MiB entries",
            grew >> 20
        );
        println!("peak RSS {} MiB → {} MiB", before >> 20, after >> 20);
    }
}
