//! CIFAR-10 in its official binary format.
//!
//! Each of `data_batch_1.bin` … `data_batch_5.bin` (train) and `test_batch.bin` (test) is a
//! sequence of 3073-byte records: one label byte (0–9) followed by the 32×32 image as three
//! 1024-byte planes R, G, B, each row-major. Records are converted to HWC on load.

use std::path::{Path, PathBuf};

use crate::archive::{self, ArchiveContents};
use crate::dataset::{Dataset, Splits};
use crate::error::{DataError, Result};

/// The ten CIFAR-10 class names, in label order.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;
const RECORD: usize = 1 + 3 * PLANE;
const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
const TEST_FILE: &str = "test_batch.bin";
const META_FILE: &str = "batches.meta.txt";
/// Folder name inside the official archive.
const ARCHIVE_DIR: &str = "cifar-10-batches-bin";
/// Records in an official batch file; an archived batch may not declare more.
const BATCH_RECORDS: u64 = 10_000;
/// The largest `batches.meta.txt` an archive may hold (the official one is 61 bytes).
const MAX_META_BYTES: u64 = 4096;

/// The size limit of a CIFAR-10 file in an archive, by its base name: a batch holds at most
/// 10,000 records of 3,073 bytes, `batches.meta.txt` ten class names (at most 4 KiB). `None`
/// for any other name.
pub(crate) fn entry_limit(path: &str) -> Option<(u64, String)> {
    let name = basename(path);
    if name == TEST_FILE || TRAIN_FILES.contains(&name) {
        Some((
            BATCH_RECORDS * RECORD as u64,
            format!("a CIFAR-10 batch file ({BATCH_RECORDS} records of {RECORD} bytes)"),
        ))
    } else if name == META_FILE {
        Some((
            MAX_META_BYTES,
            format!("a CIFAR-10 {META_FILE} (ten class names)"),
        ))
    } else {
        None
    }
}

/// Loads CIFAR-10 from its binary distribution.
///
/// `path` may be:
/// * a folder holding `data_batch_1.bin` … `data_batch_5.bin` and `test_batch.bin`;
/// * a folder holding the `cifar-10-batches-bin` folder of the official archive;
/// * the official archive itself (`cifar-10-binary.tar.gz`), read in memory without extracting.
///   Each entry's size is checked from its header before it is read: a batch file may declare
///   at most 10,000 records (30,730,000 bytes), `batches.meta.txt` at most 4 KiB, any other
///   entry at most 64 MiB.
///
/// All six batch files are required; a missing one is an error naming it. Class names come
/// from `batches.meta.txt` when present (it must then list exactly ten names), otherwise
/// [`CIFAR10_CLASSES`].
pub fn load_cifar10(path: &Path) -> Result<Splits> {
    if path.is_file() {
        let contents = archive::read(path)?;
        return from_archive(path, &contents);
    }
    let dir = batch_dir(path).ok_or_else(|| {
        DataError::invalid(
            path.display().to_string(),
            format!(
                "no CIFAR-10 batch files: expected {} or a {ARCHIVE_DIR} folder",
                TRAIN_FILES[0]
            ),
        )
    })?;
    let read = |name: &str| -> Result<Vec<u8>> {
        let file = dir.join(name);
        if !file.is_file() {
            return Err(DataError::invalid(
                file.display().to_string(),
                "missing CIFAR-10 batch file",
            ));
        }
        std::fs::read(&file).map_err(|e| DataError::io(&file, e))
    };
    let mut train = Parsed::default();
    for name in TRAIN_FILES {
        train.push(&dir.join(name).display().to_string(), &read(name)?)?;
    }
    let mut test = Parsed::default();
    test.push(
        &dir.join(TEST_FILE).display().to_string(),
        &read(TEST_FILE)?,
    )?;
    let meta = dir.join(META_FILE);
    let classes = if meta.is_file() {
        let bytes = std::fs::read(&meta).map_err(|e| DataError::io(&meta, e))?;
        parse_meta(&meta.display().to_string(), &bytes)?
    } else {
        default_classes()
    };
    finish(train, test, classes, &dir.display().to_string())
}

/// The folder holding the batch files, if `dir` looks like a CIFAR-10 binary folder.
pub(crate) fn batch_dir(dir: &Path) -> Option<PathBuf> {
    let has_batches = |d: &Path| d.join(TRAIN_FILES[0]).is_file() || d.join(TEST_FILE).is_file();
    if has_batches(dir) {
        return Some(dir.to_path_buf());
    }
    let inner = dir.join(ARCHIVE_DIR);
    inner.is_dir().then_some(inner)
}

/// `true` when an archive holds CIFAR-10 batch files.
pub(crate) fn archive_has_batches(contents: &ArchiveContents) -> bool {
    contents
        .files
        .iter()
        .any(|f| matches!(basename(&f.path), n if n == TEST_FILE || TRAIN_FILES.contains(&n)))
}

/// Builds the splits from an archive already read into memory.
pub(crate) fn from_archive(path: &Path, contents: &ArchiveContents) -> Result<Splits> {
    let display = path.display().to_string();
    let find = |name: &str| {
        contents
            .files
            .iter()
            .find(|f| basename(&f.path) == name)
            .ok_or_else(|| {
                DataError::invalid(
                    display.clone(),
                    format!("archive has no CIFAR-10 batch file {name}"),
                )
            })
    };
    let mut train = Parsed::default();
    for name in TRAIN_FILES {
        let f = find(name)?;
        train.push(&format!("{display}:{}", f.path), &f.data)?;
    }
    let mut test = Parsed::default();
    let f = find(TEST_FILE)?;
    test.push(&format!("{display}:{}", f.path), &f.data)?;
    let classes = match contents
        .files
        .iter()
        .find(|f| basename(&f.path) == META_FILE)
    {
        Some(f) => parse_meta(&format!("{display}:{}", f.path), &f.data)?,
        None => default_classes(),
    };
    finish(train, test, classes, &display)
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn default_classes() -> Vec<String> {
    CIFAR10_CLASSES.iter().map(|s| (*s).to_owned()).collect()
}

#[derive(Default)]
struct Parsed {
    images: Vec<u8>,
    labels: Vec<u16>,
}

impl Parsed {
    /// Validates one batch file and appends its records, converted to HWC.
    fn push(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Err(DataError::invalid(name, "empty CIFAR-10 batch file"));
        }
        if bytes.len() % RECORD != 0 {
            return Err(DataError::invalid(
                name,
                format!(
                    "size {} is not a multiple of the {RECORD}-byte CIFAR-10 record",
                    bytes.len()
                ),
            ));
        }
        let records = bytes.len() / RECORD;
        self.images.reserve(records * 3 * PLANE);
        self.labels.reserve(records);
        for (r, rec) in bytes.chunks_exact(RECORD).enumerate() {
            let label = rec[0];
            if usize::from(label) >= CIFAR10_CLASSES.len() {
                return Err(DataError::invalid(
                    name,
                    format!("label {label} out of range 0..10 in record {r}"),
                ));
            }
            self.labels.push(u16::from(label));
            let (red, rest) = rec[1..].split_at(PLANE);
            let (green, blue) = rest.split_at(PLANE);
            for p in 0..PLANE {
                self.images.extend_from_slice(&[red[p], green[p], blue[p]]);
            }
        }
        Ok(())
    }
}

fn parse_meta(name: &str, bytes: &[u8]) -> Result<Vec<String>> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| DataError::invalid(name, "not UTF-8 text"))?;
    let classes: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if classes.len() != CIFAR10_CLASSES.len() {
        return Err(DataError::invalid(
            name,
            format!("expected 10 class names, found {}", classes.len()),
        ));
    }
    Ok(classes)
}

fn finish(train: Parsed, test: Parsed, classes: Vec<String>, source: &str) -> Result<Splits> {
    let side = SIDE as u32;
    Ok(Splits {
        train: Dataset::new(
            train.images,
            train.labels,
            classes.clone(),
            side,
            side,
            format!("{source} (CIFAR-10 train)"),
        )?,
        test: Dataset::new(
            test.images,
            test.labels,
            classes,
            side,
            side,
            format!("{source} (CIFAR-10 test)"),
        )?,
    })
}
