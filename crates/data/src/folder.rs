//! Image folders in the torchvision `ImageFolder` layout, on disk or inside a `.tar.gz`.
//!
//! ```text
//! ROOT/train/<class>/<image>.{jpg,jpeg,png}
//! ROOT/test/<class>/<image>.{jpg,jpeg,png}     (or ROOT/val/… when there is no test/)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::archive::{self, ArchiveContents};
use crate::dataset::{Dataset, Splits};
use crate::error::{DataError, Result};
use crate::parallel;

const SPLITS: [&str; 3] = ["train", "test", "val"];
const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Loads an image-folder dataset from a folder or from a `.tar.gz` (or `.tar`) of one.
///
/// Layout rules:
/// * `train/` is required and so is `test/` or, when `test/` is absent, `val/`.
/// * The class list is the sorted list of class folder names under `train/`; the test split
///   uses the same class → index mapping, and each of its class folders must also exist under
///   `train/` (a class may be missing from the test split).
/// * A class folder without any image is an error.
/// * Hidden entries (any name starting with `.`, such as `.DS_Store` or `._x.jpg`) are skipped.
/// * Files with the extension `.jpg`, `.jpeg` or `.png` (any case) are decoded; one that fails
///   to decode is an error naming it. Any other file inside `train/`, `test/` or `val/`, a
///   nested folder inside a class folder, or a file directly in a split folder is an error.
/// * Every image is converted to 8-bit RGB: grayscale is replicated to three channels, 16-bit
///   samples are scaled to 8 bits, an alpha channel is dropped (not composited).
/// * With `image_size = Some(s)`, every image whose size is not `s × s` is resized to it
///   (bilinear, aspect ratio not preserved). Without it every image must have the size of the
///   first train image; the first one that differs is an error naming it.
///
/// In an archive the dataset root may sit under leading folders (`cifar10/train/…`); files
/// outside `train/`, `test/` and `val/` (a README beside them) are ignored. No entry may declare
/// more than 64 MiB (checked from its header before it is read; an entry named like a CIFAR-10
/// file has that file's limit). Images are decoded in parallel on all available cores.
pub fn load_image_folder(path: &Path, image_size: Option<u32>) -> Result<Splits> {
    if path.is_file() {
        let contents = archive::read(path)?;
        from_archive(path, &contents, image_size)
    } else {
        from_dir(path, image_size)
    }
}

/// Where an image's bytes are.
enum Data<'a> {
    File(PathBuf),
    Bytes(&'a [u8]),
}

/// One image to decode.
struct Item<'a> {
    name: String,
    label: u16,
    data: Data<'a>,
}

/// A class folder: its display name and its images (display name, data), in name order.
struct ClassFolder<'a> {
    display: String,
    files: Vec<(String, Data<'a>)>,
}

type SplitMap<'a> = BTreeMap<String, ClassFolder<'a>>;

fn is_image_name(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| IMAGE_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext)))
}

fn not_an_image(display: String) -> DataError {
    DataError::invalid(display, "not an image: expected a .jpg, .jpeg or .png file")
}

// ---------------------------------------------------------------------------------------------
// Folder on disk

fn from_dir(root: &Path, image_size: Option<u32>) -> Result<Splits> {
    if !root.is_dir() {
        return Err(DataError::invalid(
            root.display().to_string(),
            "not a folder or archive",
        ));
    }
    let train_dir = root.join("train");
    if !train_dir.is_dir() {
        return Err(DataError::invalid(
            root.display().to_string(),
            "no train/ folder",
        ));
    }
    let test_dir = ["test", "val"]
        .iter()
        .map(|s| root.join(s))
        .find(|d| d.is_dir())
        .ok_or_else(|| DataError::invalid(root.display().to_string(), "no test/ or val/ folder"))?;
    let train = scan_split(&train_dir)?;
    let test = scan_split(&test_dir)?;
    assemble(
        &root.display().to_string(),
        &train_dir.display().to_string(),
        train,
        test,
        image_size,
    )
}

/// Sorted, non-hidden entries of a folder: (name, path, is_dir).
fn list(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(DataError::invalid(
                path.display().to_string(),
                "name is not valid UTF-8",
            ));
        };
        if name.starts_with('.') {
            continue;
        }
        // `metadata` follows symbolic links.
        let meta = std::fs::metadata(&path).map_err(|e| DataError::io(&path, e))?;
        out.push((name, path, meta.is_dir()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn scan_split(dir: &Path) -> Result<SplitMap<'static>> {
    let mut map = SplitMap::new();
    for (class, class_path, is_dir) in list(dir)? {
        if !is_dir {
            return Err(DataError::invalid(
                class_path.display().to_string(),
                "file outside a class folder",
            ));
        }
        let mut files = Vec::new();
        for (name, path, is_dir) in list(&class_path)? {
            let display = path.display().to_string();
            if is_dir {
                return Err(DataError::invalid(
                    display,
                    "nested folder inside a class folder",
                ));
            }
            if !is_image_name(&name) {
                return Err(not_an_image(display));
            }
            files.push((display, Data::File(path)));
        }
        map.insert(
            class,
            ClassFolder {
                display: class_path.display().to_string(),
                files,
            },
        );
    }
    Ok(map)
}

// ---------------------------------------------------------------------------------------------
// Archive

/// The dataset root inside an archive: the folder holding `train/` (may be empty).
fn archive_root(display: &str, contents: &ArchiveContents) -> Result<String> {
    let mut roots: Vec<String> = contents
        .files
        .iter()
        .filter_map(|f| {
            let parts: Vec<&str> = f.path.split('/').collect();
            let n = parts.len();
            (n >= 3 && SPLITS.contains(&parts[n - 3])).then(|| parts[..n - 3].join("/"))
        })
        .collect();
    roots.sort();
    roots.dedup();
    match roots.as_slice() {
        [] => Err(DataError::invalid(
            display,
            "no <root>/train/<class>/<image> entries: neither an image-folder nor a CIFAR-10 archive",
        )),
        [root] => Ok(root.clone()),
        [a, b, ..] => Err(DataError::invalid(
            display,
            format!("several dataset roots in one archive: '{a}' and '{b}'"),
        )),
    }
}

pub(crate) fn from_archive(
    path: &Path,
    contents: &ArchiveContents,
    image_size: Option<u32>,
) -> Result<Splits> {
    let display = path.display().to_string();
    let root = archive_root(&display, contents)?;
    let rel = |p: &str| -> Option<String> {
        if root.is_empty() {
            Some(p.to_owned())
        } else {
            p.strip_prefix(&root)
                .and_then(|r| r.strip_prefix('/'))
                .map(str::to_owned)
        }
    };
    let under = |p: &str, split: &str| rel(p).is_some_and(|r| r.split('/').next() == Some(split));
    let has = |split: &str| {
        contents.files.iter().any(|f| under(&f.path, split))
            || contents.dirs.iter().any(|d| under(d, split))
    };
    if !has("train") {
        let train = if root.is_empty() {
            "train/".to_owned()
        } else {
            format!("{root}/train/")
        };
        return Err(DataError::invalid(display, format!("no {train} folder")));
    }
    let test_split = if has("test") {
        "test"
    } else if has("val") {
        "val"
    } else {
        return Err(DataError::invalid(display, "no test/ or val/ folder"));
    };
    let mut maps: [SplitMap; 2] = [SplitMap::new(), SplitMap::new()];
    let folder_display = |split: &str, class: &str| {
        if root.is_empty() {
            format!("{display}:{split}/{class}")
        } else {
            format!("{display}:{root}/{split}/{class}")
        }
    };
    for dir in &contents.dirs {
        let Some(r) = rel(dir) else { continue };
        let parts: Vec<&str> = r.split('/').collect();
        for (map, split) in maps.iter_mut().zip(["train", test_split]) {
            if parts.len() == 2 && parts[0] == split {
                map.entry(parts[1].to_owned())
                    .or_insert_with(|| ClassFolder {
                        display: folder_display(split, parts[1]),
                        files: Vec::new(),
                    });
            }
        }
    }
    for f in &contents.files {
        let Some(r) = rel(&f.path) else { continue };
        let parts: Vec<&str> = r.split('/').collect();
        let file_display = format!("{display}:{}", f.path);
        for (map, split) in maps.iter_mut().zip(["train", test_split]) {
            if parts[0] != split {
                continue;
            }
            match parts.len() {
                3 => {}
                2 => {
                    return Err(DataError::invalid(
                        file_display,
                        "file outside a class folder",
                    ))
                }
                _ => {
                    return Err(DataError::invalid(
                        file_display,
                        "file in a nested folder inside a class folder",
                    ))
                }
            }
            if !is_image_name(parts[2]) {
                return Err(not_an_image(file_display));
            }
            map.entry(parts[1].to_owned())
                .or_insert_with(|| ClassFolder {
                    display: folder_display(split, parts[1]),
                    files: Vec::new(),
                })
                .files
                .push((file_display.clone(), Data::Bytes(&f.data)));
        }
    }
    for map in &mut maps {
        for folder in map.values_mut() {
            folder.files.sort_by(|a, b| a.0.cmp(&b.0));
        }
    }
    let [train, test] = maps;
    let train_display = folder_display("train", "").trim_end_matches('/').to_owned();
    assemble(&display, &train_display, train, test, image_size)
}

// ---------------------------------------------------------------------------------------------
// Common part: class mapping and parallel decoding

fn assemble(
    source: &str,
    train_display: &str,
    train: SplitMap<'_>,
    test: SplitMap<'_>,
    image_size: Option<u32>,
) -> Result<Splits> {
    if train.is_empty() {
        return Err(DataError::invalid(train_display, "no class folders"));
    }
    if train.len() > usize::from(u16::MAX) + 1 {
        return Err(DataError::invalid(
            train_display,
            format!("{} classes exceed the limit of 65536", train.len()),
        ));
    }
    if let Some(size) = image_size {
        if size == 0 {
            return Err(DataError::InvalidArgument(
                "image size must be positive".into(),
            ));
        }
    }
    for folder in train.values().chain(test.values()) {
        if folder.files.is_empty() {
            return Err(DataError::invalid(
                folder.display.clone(),
                "class folder is empty",
            ));
        }
    }
    if let Some((_, folder)) = test.iter().find(|(class, _)| !train.contains_key(*class)) {
        return Err(DataError::invalid(
            folder.display.clone(),
            "class folder has no counterpart under train/",
        ));
    }
    let classes: Vec<String> = train.keys().cloned().collect();
    let label_of = |class: &str| {
        classes
            .iter()
            .position(|c| c == class)
            .map_or(0, |p| p as u16)
    };
    let mut items = Vec::new();
    let mut train_len = 0;
    for (split, map) in [train, test].into_iter().enumerate() {
        for (class, folder) in map {
            let label = label_of(&class);
            items.extend(
                folder
                    .files
                    .into_iter()
                    .map(|(name, data)| Item { name, label, data }),
            );
        }
        if split == 0 {
            train_len = items.len();
        }
    }
    let (width, height, first) = match image_size {
        Some(s) => (s, s, None),
        None => {
            // Train is non-empty: it has at least one class folder and none is empty.
            let first = &items[0];
            let img = decode(first)?;
            (img.width(), img.height(), Some(first.name.as_str()))
        }
    };
    let item_len = width as usize * height as usize * 3;
    let mut pixels = vec![0u8; items.len() * item_len];
    parallel::fill(&items, &mut pixels, item_len, |_, item, dst| {
        let mut img = decode(item)?;
        if img.dimensions() != (width, height) {
            match first {
                Some(first) => {
                    return Err(DataError::invalid(
                        item.name.clone(),
                        format!(
                            "size {}x{} differs from {width}x{height} of {first}; set an image size to resize all images",
                            img.width(),
                            img.height()
                        ),
                    ))
                }
                None => {
                    img = image::imageops::resize(&img, width, height, image::imageops::FilterType::Triangle);
                }
            }
        }
        dst.copy_from_slice(img.as_raw());
        Ok(())
    })?;
    let test_pixels = pixels.split_off(train_len * item_len);
    let mut labels: Vec<u16> = items.iter().map(|i| i.label).collect();
    let test_labels = labels.split_off(train_len);
    Ok(Splits {
        train: Dataset::new(
            pixels,
            labels,
            classes.clone(),
            height,
            width,
            format!("{source} (train)"),
        )?,
        test: Dataset::new(
            test_pixels,
            test_labels,
            classes,
            height,
            width,
            format!("{source} (test)"),
        )?,
    })
}

/// Reads (if needed) and decodes one image to 8-bit RGB.
fn decode(item: &Item<'_>) -> Result<image::RgbImage> {
    let owned;
    let bytes: &[u8] = match &item.data {
        Data::Bytes(b) => b,
        Data::File(path) => {
            owned = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
            &owned
        }
    };
    let img = image::load_from_memory(bytes).map_err(|e| DataError::CorruptImage {
        path: item.name.clone(),
        message: e.to_string(),
    })?;
    Ok(img.into_rgb8())
}
