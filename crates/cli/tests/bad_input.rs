//! Bad input, driven through the real `effcnn` binary: broken datasets, tensors, checkpoints,
//! hostile pickles, mismatched weights, impossible models and unwritable outputs.
//!
//! Every case builds its broken input in a fresh temporary folder and checks that effcnn exits
//! with code 2, does not panic, names the problem and the file or flag in its message, and
//! leaves no partial output (no half-written file, no `.tmp` file, nothing on stdout).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::{
    assert_fails, effcnn_with_memory_limit, fails, fresh, ok, s, trained_weights as weights,
};

// ---------------------------------------------------------------------------------------------
// Running the binary

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn assert_no_tmp_files(dir: &Path) {
    for f in files_under(dir) {
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(
            !name.contains(".tmp"),
            "temporary file left: {}",
            f.display()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// `effcnn predict plain_cnn --profile cifar --weights W INPUTS…`.
fn predict_args<'a>(weights: &'a str, inputs: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "predict",
        "plain_cnn",
        "--profile",
        "cifar",
        "--weights",
        weights,
    ];
    a.extend_from_slice(inputs);
    a
}

const RECORD: usize = 3073;

fn record(label: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend((0..RECORD - 1).map(|i| (i * 7 % 251) as u8));
    r
}

fn records(labels: &[u8]) -> Vec<u8> {
    labels.iter().flat_map(|&l| record(l)).collect()
}

const CIFAR_FILES: [&str; 6] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];

/// A CIFAR-10 binary folder with two valid records per batch, except the files overridden
/// (`None`: the file is left out).
fn cifar_dir(name: &str, overrides: &[(&str, Option<Vec<u8>>)]) -> PathBuf {
    let d = fresh(name);
    for f in CIFAR_FILES {
        match overrides.iter().find(|(n, _)| *n == f) {
            Some((_, None)) => {}
            Some((_, Some(bytes))) => std::fs::write(d.join(f), bytes).unwrap(),
            None => std::fs::write(d.join(f), records(&[3, 7])).unwrap(),
        }
    }
    d
}

/// `effcnn eval W --data DIR` must fail naming `needles`.
fn eval_fails(data: &Path, needles: &[&str]) {
    fails(
        &["eval", s(weights()), "--data", s(data), "--format", "json"],
        needles,
    );
}

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // Written by hand so that hostile names (`..`) survive.
        let raw = &mut h.as_old_mut().name;
        raw.fill(0);
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn png_rgb(side: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        image::Rgb([x as u8 ^ seed, y as u8, seed.wrapping_mul(31)])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// An image folder with classes `a` and `b`, one 32×32 PNG per class and split.
fn image_folder(name: &str) -> PathBuf {
    let d = fresh(name);
    for split in ["train", "test"] {
        for (i, class) in ["a", "b"].iter().enumerate() {
            let c = d.join(split).join(class);
            std::fs::create_dir_all(&c).unwrap();
            std::fs::write(c.join("0.png"), png_rgb(32, i as u8 * 100)).unwrap();
        }
    }
    d
}

/// A `.npy` file: header with `descr`, `fortran_order` and `shape`, then `body`.
fn npy(descr: &str, fortran: bool, shape: &str, body: &[u8]) -> Vec<u8> {
    let mut h = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((h.len() as u16).to_le_bytes());
    out.extend(h.as_bytes());
    out.extend(body);
    out
}

fn good_npy() -> Vec<u8> {
    let body: Vec<u8> = (0..3 * 32 * 32)
        .flat_map(|i| ((i % 17) as f32 / 17.0).to_le_bytes())
        .collect();
    npy("<f4", false, "(1, 3, 32, 32)", &body)
}

/// A valid input tensor for the fixture model, in `dir`.
fn good_input(dir: &Path) -> PathBuf {
    let p = dir.join("x.npy");
    std::fs::write(&p, good_npy()).unwrap();
    p
}

/// One safetensors entry: name, dtype, shape, raw little-endian bytes.
type StTensor = (String, String, Vec<usize>, Vec<u8>);

/// The tensors of a safetensors file, in offset order.
fn read_st(path: &Path) -> Vec<StTensor> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out: Vec<(usize, StTensor)> = header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let o = v["data_offsets"].as_array().unwrap();
            let (a, b) = (
                o[0].as_u64().unwrap() as usize,
                o[1].as_u64().unwrap() as usize,
            );
            let shape = v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            (
                a,
                (
                    k.clone(),
                    v["dtype"].as_str().unwrap().to_string(),
                    shape,
                    data[a..b].to_vec(),
                ),
            )
        })
        .collect();
    out.sort_by_key(|(a, _)| *a);
    out.into_iter().map(|(_, t)| t).collect()
}

/// A consistent safetensors file holding `tensors`.
fn write_st(path: &Path, tensors: &[StTensor]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": dtype,
                "shape": shape,
                "data_offsets": [data.len(), data.len() + bytes.len()],
            }),
        );
        data.extend(bytes);
    }
    write_raw_st(
        path,
        &serde_json::Value::Object(header).to_string(),
        &data,
        None,
    );
}

/// A safetensors file from a literal header (possibly lying) and data.
fn write_raw_st(path: &Path, header: &str, data: &[u8], header_len: Option<u64>) {
    let mut out = header_len
        .unwrap_or(header.len() as u64)
        .to_le_bytes()
        .to_vec();
    out.extend(header.as_bytes());
    out.extend(data);
    std::fs::write(path, out).unwrap();
}

/// `effcnn predict` with weights `w` on a valid input must fail naming `needles`.
fn predict_weights_fails(dir: &Path, w: &Path, needles: &[&str]) -> String {
    let x = good_input(dir);
    fails(&predict_args(s(w), &[s(&x)]), needles)
}

/// Protocol-2 pickle of `os.system(cmd)` (GLOBAL + REDUCE), as a hostile `torch.save` would.
fn os_system_pickle(cmd: &str) -> Vec<u8> {
    let mut p = b"\x80\x02cos\nsystem\nq\x00X".to_vec();
    p.extend((cmd.len() as u32).to_le_bytes());
    p.extend(cmd.as_bytes());
    p.extend(b"q\x01\x85q\x02Rq\x03.");
    p
}

/// A stored (uncompressed) zip archive with the given entries, written by hand.
fn zip_stored(entries: &[(&str, &[u8])]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0xEDB8_8320
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let n = data.len() as u32;
        let mut common = Vec::new();
        common.extend(20u16.to_le_bytes()); // version needed
        common.extend(0u16.to_le_bytes()); // flags
        common.extend(0u16.to_le_bytes()); // stored
        common.extend(0u32.to_le_bytes()); // time, date
        common.extend(crc.to_le_bytes());
        common.extend(n.to_le_bytes());
        common.extend(n.to_le_bytes());
        common.extend((name.len() as u16).to_le_bytes());
        common.extend(0u16.to_le_bytes()); // extra
        out.extend(b"PK\x03\x04");
        out.extend(&common);
        out.extend(name.as_bytes());
        out.extend(*data);
        central.extend(b"PK\x01\x02");
        central.extend(20u16.to_le_bytes()); // version made by
        central.extend(&common);
        central.extend(0u16.to_le_bytes()); // comment
        central.extend(0u16.to_le_bytes()); // disk
        central.extend(0u16.to_le_bytes()); // internal attributes
        central.extend(0u32.to_le_bytes()); // external attributes
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    let cd_len = central.len() as u32;
    out.extend(&central);
    out.extend(b"PK\x05\x06");
    out.extend(0u32.to_le_bytes()); // disk numbers
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend(cd_len.to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

// ---------------------------------------------------------------------------------------------
// CIFAR-10 batches

#[test]
fn cifar_truncated_record() {
    let mut bytes = records(&[1, 2]);
    bytes.truncate(2 * RECORD - 100);
    let d = cifar_dir("cifar-trunc", &[("test_batch.bin", Some(bytes))]);
    eval_fails(
        &d,
        &[
            "test_batch.bin",
            "size 6046 is not a multiple of the 3073-byte CIFAR-10 record",
        ],
    );
}

#[test]
fn cifar_oversized_batch_with_trailing_bytes() {
    let mut bytes = records(&[1, 2]);
    bytes.push(0);
    let d = cifar_dir("cifar-over", &[("data_batch_3.bin", Some(bytes))]);
    eval_fails(&d, &["data_batch_3.bin", "size 6147 is not a multiple"]);
}

#[test]
fn cifar_wrong_record_size_cifar100_layout() {
    // CIFAR-100 records carry a coarse and a fine label: 3074 bytes.
    let bytes: Vec<u8> = (0..3).flat_map(|_| vec![1u8; 3074]).collect();
    let d = cifar_dir("cifar-100", &[("data_batch_1.bin", Some(bytes))]);
    eval_fails(&d, &["data_batch_1.bin", "3073-byte CIFAR-10 record"]);
}

#[test]
fn cifar_label_out_of_range() {
    let d = cifar_dir(
        "cifar-label",
        &[("data_batch_2.bin", Some(records(&[4, 10])))],
    );
    eval_fails(
        &d,
        &[
            "data_batch_2.bin",
            "label 10 out of range 0..10 in record 1",
        ],
    );
}

#[test]
fn cifar_empty_and_missing_batch_files() {
    let d = cifar_dir("cifar-empty", &[("data_batch_5.bin", Some(Vec::new()))]);
    eval_fails(&d, &["data_batch_5.bin", "empty CIFAR-10 batch file"]);
    let d = cifar_dir("cifar-missing", &[("data_batch_4.bin", None)]);
    eval_fails(&d, &["data_batch_4.bin", "missing CIFAR-10 batch file"]);
}

#[test]
fn cifar_archive_with_a_truncated_batch_names_the_entry() {
    let d = fresh("cifar-tgz");
    let good = records(&[0, 9]);
    let mut bad = records(&[0, 9]);
    bad.truncate(RECORD + 5);
    let mut entries: Vec<(String, Vec<u8>)> = CIFAR_FILES
        .iter()
        .map(|f| (format!("cifar-10-batches-bin/{f}"), good.clone()))
        .collect();
    entries[5].1 = bad;
    let refs: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let archive = d.join("cifar-10-binary.tar.gz");
    std::fs::write(&archive, tar_gz(&refs)).unwrap();
    eval_fails(
        &archive,
        &[
            "cifar-10-binary.tar.gz:cifar-10-batches-bin/test_batch.bin",
            "not a multiple of the 3073-byte",
        ],
    );
    // A gzip stream cut in the middle.
    let bytes = std::fs::read(&archive).unwrap();
    let cut = d.join("cut.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    eval_fails(&cut, &["cut.tar.gz", "cannot read archive"]);
}

/// A `.tar.gz` whose first entry `name` declares `declared` bytes and holds `present` zero
/// bytes (streamed, never in memory); when all of them are there, `rest` follows. A shorter
/// body ends the archive where it stops, as a forged header would.
fn tar_gz_declaring(path: &Path, name: &str, declared: u64, present: u64, rest: &[(&str, &[u8])]) {
    let file = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_size(declared);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    gz.write_all(h.as_bytes()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut left = present;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        gz.write_all(&zeros[..n]).unwrap();
        left -= n as u64;
    }
    if present == declared {
        gz.write_all(&vec![0u8; ((512 - declared % 512) % 512) as usize])
            .unwrap();
        gz.write_all(&tar_raw(rest)).unwrap();
    }
    gz.finish().unwrap();
}

/// An uncompressed tar of `entries` (the body of [`tar_gz`]).
fn tar_raw(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(tar_gz(entries).as_slice())
        .read_to_end(&mut raw)
        .unwrap();
    raw
}

#[test]
fn archive_entries_declaring_more_than_their_format_allows_are_refused_before_reading() {
    let d = fresh("tgz-declared");
    let good = records(&[1, 2]);
    let rest: Vec<(String, &[u8])> = CIFAR_FILES[1..]
        .iter()
        .map(|f| (format!("cifar-10-batches-bin/{f}"), good.as_slice()))
        .collect();
    let rest: Vec<(&str, &[u8])> = rest.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    let batch = "cifar-10-batches-bin/data_batch_1.bin";

    // A forged header: 6 GiB declared in a file of a few hundred bytes.
    let forged = d.join("forged.tar.gz");
    tar_gz_declaring(&forged, batch, 6 << 30, 0, &[]);
    assert!(std::fs::metadata(&forged).unwrap().len() < 1024);
    eval_fails(
        &forged,
        &[
            "forged.tar.gz:cifar-10-batches-bin/data_batch_1.bin",
            "declares 6442450944 bytes",
            "CIFAR-10 batch file (10000 records of 3073 bytes)",
        ],
    );
    // An image in an image-folder archive: 64 MiB at most.
    let png = png_rgb(32, 3);
    let image = d.join("images.tar.gz");
    tar_gz_declaring(
        &image,
        "train/a/big.png",
        6 << 30,
        0,
        &[("train/a/0.png", &png), ("test/a/0.png", &png)],
    );
    eval_fails(
        &image,
        &[
            "images.tar.gz:train/a/big.png",
            "declares 6442450944 bytes",
            "64 MiB",
        ],
    );

    // The batch really holds 1 GiB (4.5 MB of gzip): refused from its header under a 768 MiB
    // address-space limit, where reading it first would run out of memory.
    let real = d.join("real.tar.gz");
    tar_gz_declaring(&real, batch, 1 << 30, 1 << 30, &rest);
    let args = ["eval", s(weights()), "--data", s(&real), "--format", "json"];
    let err = assert_fails(
        effcnn_with_memory_limit(768 << 10, &args),
        &format!("(ulimit -v 768 MiB) {}", common::show(&args)),
        &[
            "real.tar.gz:cifar-10-batches-bin/data_batch_1.bin",
            "declares 1073741824 bytes",
        ],
    );
    assert!(!err.contains("out of memory"), "{err}");
}

#[test]
fn train_on_a_bad_cifar_batch_writes_no_run_files() {
    let d = cifar_dir("cifar-train", &[("test_batch.bin", Some(records(&[200])))]);
    let out = d.join("run");
    fails(
        &[
            "train",
            "plain_cnn",
            "--data",
            s(&d),
            "--epochs",
            "1",
            "--progress",
            "quiet",
            "--out",
            s(&out),
        ],
        &["test_batch.bin", "label 200 out of range"],
    );
    // No run folder is left behind when training fails before writing anything.
    assert!(!out.exists(), "{} was left behind", out.display());
}

// ---------------------------------------------------------------------------------------------
// Image folders

#[test]
fn image_folder_with_an_empty_class() {
    let d = image_folder("img-empty");
    std::fs::create_dir_all(d.join("train/c")).unwrap();
    eval_fails(&d, &["train/c", "class folder is empty"]);
}

#[test]
fn image_folder_with_a_non_image_file() {
    let d = image_folder("img-txt");
    std::fs::write(d.join("train/a/notes.txt"), b"not an image").unwrap();
    eval_fails(&d, &["train/a/notes.txt", "not an image"]);
}

#[test]
fn image_folder_with_a_corrupt_jpeg() {
    let d = image_folder("img-jpeg");
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    jpeg.extend(b"JFIF\0 this is not the rest of a JPEG");
    std::fs::write(d.join("test/b/1.jpg"), jpeg).unwrap();
    eval_fails(&d, &["test/b/1.jpg", "corrupt image"]);
}

#[test]
fn image_folder_with_a_truncated_png() {
    let d = image_folder("img-png-cut");
    let png = png_rgb(32, 7);
    std::fs::write(d.join("train/b/1.png"), &png[..png.len() / 2]).unwrap();
    eval_fails(&d, &["train/b/1.png", "corrupt image"]);
}

#[test]
fn image_folder_archive_entry_that_escapes_is_refused() {
    let d = fresh("img-escape");
    let png = png_rgb(32, 1);
    let archive = d.join("set.tar.gz");
    std::fs::write(
        &archive,
        tar_gz(&[
            ("train/a/0.png", &png),
            ("test/a/0.png", &png),
            ("../../outside.png", &png),
        ]),
    )
    .unwrap();
    eval_fails(&archive, &["set.tar.gz", "leaves the archive"]);
    assert!(!d.parent().unwrap().join("outside.png").exists());
}

#[test]
fn image_folder_grayscale_16_bit_and_rgba_pngs_are_converted_and_train() {
    let d = fresh("img-convert");
    let mut k = 0u32;
    for split in ["train", "test"] {
        for class in ["a", "b"] {
            let c = d.join(split).join(class);
            std::fs::create_dir_all(&c).unwrap();
            k += 1;
            image::GrayImage::from_fn(32, 32, |x, y| image::Luma([(x * y + k) as u8]))
                .save(c.join("gray8.png"))
                .unwrap();
            image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(32, 32, |x, _| {
                image::Luma([(x * 2000 + k) as u16])
            })
            .save(c.join("gray16.png"))
            .unwrap();
            image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(32, 32, |x, y| {
                image::Rgb([(x * 1000) as u16, (y * 1000) as u16, (k * 999) as u16])
            })
            .save(c.join("rgb16.png"))
            .unwrap();
            image::RgbaImage::from_fn(32, 32, |x, y| image::Rgba([x as u8, y as u8, 9, 128]))
                .save(c.join("rgba.png"))
                .unwrap();
        }
    }
    let out = d.join("run");
    ok(&[
        "train",
        "plain_cnn",
        "--data",
        s(&d),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--progress",
        "quiet",
        "--out",
        s(&out),
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["eval", s(&out), "--format", "json"])).unwrap();
    assert_eq!(v["images"], 8, "{v}");
    assert_no_tmp_files(&out);
}

// ---------------------------------------------------------------------------------------------
// .npy inputs of `effcnn predict`

fn npy_fails(name: &str, bytes: &[u8], needles: &[&str]) {
    let d = fresh(name);
    let good = good_input(&d);
    let p = d.join(format!("{name}.npy"));
    std::fs::write(&p, bytes).unwrap();
    let mut n = needles.to_vec();
    let file = format!("{name}.npy");
    n.push(&file);
    // The bad tensor comes second: nothing may be printed for the good one before it.
    fails(&predict_args(s(weights()), &[s(&good), s(&p)]), &n);
}

#[test]
fn npy_float64() {
    npy_fails(
        "npy-f8",
        &npy("<f8", false, "(1, 3, 32, 32)", &[0; 8 * 3072]),
        &["dtype '<f8' is not supported", "'<f4'"],
    );
}

#[test]
fn npy_int32() {
    npy_fails(
        "npy-i4",
        &npy("<i4", false, "(1, 3, 32, 32)", &[0; 4 * 3072]),
        &["dtype '<i4' is not supported"],
    );
}

#[test]
fn npy_wrong_rank() {
    npy_fails(
        "npy-rank",
        &npy("<f4", false, "(3, 32, 32)", &[0; 4 * 3072]),
        &["expected a rank-4 [N, 3, H, W] array, got shape [3, 32, 32]"],
    );
}

#[test]
fn npy_wrong_channel_count() {
    npy_fails(
        "npy-ch",
        &npy("<f4", false, "(1, 32, 32, 3)", &[0; 4 * 3072]),
        &["expected 3 channels", "[1, 32, 32, 3]"],
    );
}

#[test]
fn npy_truncated_body() {
    npy_fails(
        "npy-cut",
        &npy("<f4", false, "(1, 3, 32, 32)", &[0; 4 * 3072 - 3]),
        &["truncated data", "needs 12288 bytes, the file has 12285"],
    );
}

#[test]
fn npy_bad_magic() {
    let mut b = good_npy();
    b[1] = b'X';
    npy_fails("npy-magic", &b, &["not a .npy file (bad magic)"]);
}

#[test]
fn npy_fortran_order() {
    npy_fails(
        "npy-fortran",
        &npy("<f4", true, "(1, 3, 32, 32)", &[0; 4 * 3072]),
        &["Fortran-ordered arrays are not supported"],
    );
}

#[test]
fn npy_wrong_spatial_size_for_the_model() {
    let body: Vec<u8> = vec![0; 4 * 3 * 2 * 2];
    npy_fails(
        "npy-small",
        &npy("<f4", false, "(1, 3, 2, 2)", &body),
        &["npy-small.npy"],
    );
}

// ---------------------------------------------------------------------------------------------
// .safetensors weights

#[test]
fn safetensors_header_length_past_the_end() {
    let d = fresh("st-hlen");
    let w = d.join("w.safetensors");
    write_raw_st(
        &w,
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        &[0; 8],
        Some(1_000_000),
    );
    predict_weights_fails(
        &d,
        &w,
        &["w.safetensors", "header length 1000000 runs past the end"],
    );
}

#[test]
fn safetensors_data_offsets_past_the_end() {
    let d = fresh("st-off");
    let w = d.join("w.safetensors");
    write_raw_st(
        &w,
        r#"{"a":{"dtype":"F32","shape":[200],"data_offsets":[0,800]}}"#,
        &[0; 8],
        None,
    );
    predict_weights_fails(&d, &w, &["w.safetensors", "invalid safetensors file"]);
}

#[test]
fn safetensors_overlapping_offsets() {
    let d = fresh("st-overlap");
    let w = d.join("w.safetensors");
    write_raw_st(
        &w,
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        &[0; 12],
        None,
    );
    predict_weights_fails(
        &d,
        &w,
        &["w.safetensors", "invalid safetensors file", "`b`"],
    );
}

#[test]
fn safetensors_dtype_that_lies_about_the_size() {
    let d = fresh("st-lie");
    let w = d.join("w.safetensors");
    // F64 × 2 needs 16 bytes; the offsets give 8 (an F32 payload relabelled).
    write_raw_st(
        &w,
        r#"{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}}"#,
        &[0; 8],
        None,
    );
    predict_weights_fails(
        &d,
        &w,
        &["w.safetensors", "tensor a: F64 [2] needs 16 bytes"],
    );
}

#[test]
fn safetensors_float64_weights_are_converted_integer_weights_refused() {
    let d = fresh("st-dtype");
    let x = good_input(&d);
    let tensors = read_st(weights());
    let as_f64: Vec<StTensor> = tensors
        .iter()
        .map(|(n, _, shape, b)| {
            let wide = b
                .chunks_exact(4)
                .flat_map(|c| (f32::from_le_bytes(c.try_into().unwrap()) as f64).to_le_bytes())
                .collect();
            (n.clone(), "F64".to_string(), shape.clone(), wide)
        })
        .collect();
    let w64 = d.join("f64.safetensors");
    write_st(&w64, &as_f64);
    // F64 → F32 is exact for values that came from f32: same predictions.
    let p32 = ok(&predict_args(s(weights()), &[s(&x)]));
    let p64 = ok(&predict_args(s(&w64), &[s(&x)]));
    let strip = |t: &str| t.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(&p32), strip(&p64));
    // Integer tensors where float weights belong: a named error with a count.
    let as_i64: Vec<StTensor> = tensors
        .iter()
        .map(|(n, _, shape, b)| {
            let ints = b
                .chunks_exact(4)
                .flat_map(|c| (f32::from_le_bytes(c.try_into().unwrap()) as i64).to_le_bytes())
                .collect();
            (n.clone(), "I64".to_string(), shape.clone(), ints)
        })
        .collect();
    let wi = d.join("i64.safetensors");
    write_st(&wi, &as_i64);
    let n = tensors.len().to_string();
    predict_weights_fails(
        &d,
        &wi,
        &[
            "i64.safetensors",
            "stored as an integer tensor",
            &format!("{n} with the wrong shape"),
        ],
    );
}

#[test]
fn safetensors_header_not_json() {
    let d = fresh("st-json");
    let w = d.join("w.safetensors");
    write_raw_st(&w, "{not json at all}", &[], None);
    predict_weights_fails(&d, &w, &["w.safetensors", "invalid JSON in header"]);
}

#[test]
fn weights_of_another_model_list_missing_and_unexpected() {
    let d = fresh("st-other");
    let w = d.join("resnet.safetensors");
    let zeros = |shape: &[usize]| vec![0u8; 4 * shape.iter().product::<usize>()];
    let t = |n: &str, shape: &[usize]| -> StTensor {
        (n.into(), "F32".into(), shape.to_vec(), zeros(shape))
    };
    write_st(
        &w,
        &[
            t("conv1.weight", &[64, 3, 7, 7]),
            t("bn1.weight", &[64]),
            t("fc.weight", &[1000, 512]),
            t("fc.bias", &[1000]),
        ],
    );
    let expected = read_st(weights()).len();
    predict_weights_fails(
        &d,
        &w,
        &[
            "resnet.safetensors",
            "checkpoint does not match the model",
            &format!("{expected} missing"),
            &format!("({expected} in all)"),
            "4 unexpected: bn1.weight, conv1.weight, fc.bias, fc.weight",
        ],
    );
}

#[test]
fn weights_with_one_missing_one_extra_one_misshaped_tensor() {
    let d = fresh("st-mismatch");
    let tensors = read_st(weights());
    // Missing.
    let dropped = tensors[1].0.clone();
    let mut t = tensors.clone();
    t.remove(1);
    let w = d.join("missing.safetensors");
    write_st(&w, &t);
    predict_weights_fails(&d, &w, &[&format!("1 missing: {dropped}")]);
    // Extra.
    let mut t = tensors.clone();
    t.push((
        "head.extra.weight".into(),
        "F32".into(),
        vec![2],
        vec![0; 8],
    ));
    let w = d.join("extra.safetensors");
    write_st(&w, &t);
    predict_weights_fails(&d, &w, &["1 unexpected: head.extra.weight"]);
    // Mis-shaped: a 4-d conv weight with its first two axes swapped (same byte count).
    let mut t = tensors.clone();
    let i = t
        .iter()
        .position(|(_, _, shape, _)| shape.len() == 4 && shape[0] != shape[1])
        .expect("a conv weight");
    let (name, _, shape, _) = t[i].clone();
    t[i].2.swap(0, 1);
    let w = d.join("shape.safetensors");
    write_st(&w, &t);
    predict_weights_fails(
        &d,
        &w,
        &[&format!(
            "1 with the wrong shape: {name}: expected {shape:?}, found {:?}",
            t[i].2
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// PyTorch .pth

#[test]
fn pth_neither_zip_nor_pickle() {
    let d = fresh("pth-garbage");
    let w = d.join("model.pth");
    std::fs::write(&w, "this is a text file, not a checkpoint\n".repeat(4)).unwrap();
    predict_weights_fails(&d, &w, &["model.pth", "not a checkpoint"]);
}

#[test]
fn pth_zip_without_data_pkl() {
    let d = fresh("pth-nodata");
    let w = d.join("model.pth");
    std::fs::write(&w, zip_stored(&[("archive/version", b"3\n")])).unwrap();
    predict_weights_fails(&d, &w, &["model.pth", "without a data.pkl"]);
}

fn marker(name: &str) -> PathBuf {
    let m = std::env::temp_dir().join(format!("effcnn-pwned-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&m);
    m
}

#[test]
fn pth_zip_whose_pickle_calls_os_system_is_refused_never_run() {
    let d = fresh("pth-evil-zip");
    let m = marker("zip");
    let pkl = os_system_pickle(&format!("touch {}", m.display()));
    let w = d.join("evil.pth");
    std::fs::write(
        &w,
        zip_stored(&[("archive/data.pkl", &pkl), ("archive/version", b"3\n")]),
    )
    .unwrap();
    predict_weights_fails(&d, &w, &["evil.pth", "refusing to load", "`os.system`"]);
    // `convert` refuses it too and writes nothing.
    let out = d.join("out.safetensors");
    fails(
        &["convert", s(&w), s(&out)],
        &["evil.pth", "refusing to load", "`os.system`"],
    );
    assert!(!out.exists());
    assert_no_tmp_files(&d);
    assert!(
        !m.exists(),
        "the pickle payload ran: {} exists",
        m.display()
    );
}

#[test]
fn raw_pickle_that_calls_os_system_is_refused_never_run() {
    let d = fresh("pth-evil-raw");
    let m = marker("raw");
    let w = d.join("evil.pt");
    std::fs::write(&w, os_system_pickle(&format!("touch {}", m.display()))).unwrap();
    predict_weights_fails(&d, &w, &["evil.pt", "refusing to load", "`os.system`"]);
    let out = d.join("out.safetensors");
    fails(&["convert", s(&w), s(&out)], &["refusing to load"]);
    assert!(!out.exists());
    assert!(
        !m.exists(),
        "the pickle payload ran: {} exists",
        m.display()
    );
}

// ---------------------------------------------------------------------------------------------
// Models and flags

#[test]
fn unknown_model_names_suggest_a_zoo_name_and_create_nothing() {
    let d = fresh("unknown-model");
    let x = good_input(&d);
    fails(
        &["predict", "mobilenet_v22", "--weights", s(weights()), s(&x)],
        &["unknown model 'mobilenet_v22'", "did you mean mobilenet_v2"],
    );
    let out = d.join("run");
    fails(
        &[
            "train",
            "mobilenetv2",
            "--data",
            "synthetic:20:10",
            "--out",
            s(&out),
        ],
        &["unknown model 'mobilenetv2'", "mobilenet_v2"],
    );
    assert!(!out.exists());
}

#[test]
fn width_that_empties_a_layer_names_it() {
    fails(
        &["show", "shufflenet_v1_g3", "--width", "0.01"],
        &["layer blocks.0.0", "output channels must exceed"],
    );
    fails(&["bench", "mobilenet_v2", "--width", "0"], &["--width"]);
    // Found by fuzzing: these overflowed the cost arithmetic (a panic in debug builds).
    fails(
        &["show", "mobilenet_v2", "--width", "1e6"],
        &["--width 1000000 is larger than the supported 8"],
    );
    fails(
        &["show", "mobilenet_v2", "--resolution", "100000000"],
        &["--resolution 100000000 is larger than the supported 4096"],
    );
}

#[test]
fn zero_threads_is_refused_by_every_command_that_sizes_the_pool() {
    fails(
        &["bench", "dwsep_cnn", "--profile", "cifar", "--threads", "0"],
        &["--threads must be at least 1"],
    );
    let out = fresh("zero-threads").join("run");
    fails(
        &[
            "train",
            "dwsep_cnn",
            "--data",
            "synthetic",
            "--threads",
            "0",
            "--epochs",
            "1",
            "--out",
            out.to_str().unwrap(),
        ],
        &["threads must be at least 1"],
    );
    assert!(!out.exists());
}

#[test]
fn resolution_that_empties_a_layer_names_it() {
    let d = fresh("small-res");
    let x = d.join("tiny.npy");
    std::fs::write(&x, npy("<f4", false, "(1, 3, 2, 2)", &[0; 48])).unwrap();
    fails(
        &[
            "predict",
            "plain_cnn",
            "--profile",
            "cifar",
            "--resolution",
            "2",
            "--weights",
            s(weights()),
            s(&x),
        ],
        &[
            "layer blocks.1.pool",
            "would be empty",
            "raise the resolution",
        ],
    );
    let out = d.join("run");
    fails(
        &[
            "train",
            "plain_cnn",
            "--data",
            "synthetic:20:10",
            "--image-size",
            "4",
            "--epochs",
            "1",
            "--progress",
            "quiet",
            "--out",
            s(&out),
        ],
        &["layer blocks.2.pool", "raise the resolution"],
    );
    assert_eq!(files_under(&out), Vec::<PathBuf>::new());
}

// ---------------------------------------------------------------------------------------------
// Outputs that cannot be written

#[test]
fn output_under_a_regular_file() {
    let d = fresh("out-under-file");
    let file = d.join("FILE");
    std::fs::write(&file, b"a regular file").unwrap();
    let sub = file.join("sub");
    fails(
        &["compare", "--models", "mobilenet_v2", "--out", s(&sub)],
        &["--out", "FILE/sub"],
    );
    fails(
        &["convert", s(weights()), s(&sub.join("w.safetensors"))],
        &["FILE/sub/w.safetensors"],
    );
    fails(
        &[
            "train",
            "plain_cnn",
            "--data",
            "synthetic:20:10",
            "--epochs",
            "1",
            "--out",
            s(&sub),
        ],
        &["FILE/sub"],
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"a regular file");
    assert_eq!(files_under(&d), vec![file]);
}

#[test]
fn convert_refuses_an_output_that_is_not_safetensors() {
    // `/dev/full` would make a write fail, but convert only writes `.safetensors` files.
    fails(
        &["convert", s(weights()), "/dev/full"],
        &["/dev/full", "must end in .safetensors"],
    );
}

#[test]
fn stdout_that_cannot_be_written_is_an_error() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("note: no /dev/full on this system; skipping");
        return;
    };
    let o = Command::new(env!("CARGO_BIN_EXE_effcnn"))
        .args(["show", "mobilenet_v2", "--format", "json"])
        .stdout(Stdio::from(full))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("writing to standard output") && err.contains("No space left"),
        "{err}"
    );
}

/// A 64 KiB tmpfs, unmounted on drop; `None` (with a note) where mounting is not allowed.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(name: &str) -> Option<SmallFs> {
        let dir = fresh(name);
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs", s(&dir)])
            .stderr(Stdio::null())
            .status();
        if matches!(status, Ok(st) if st.success()) {
            Some(SmallFs(dir))
        } else {
            eprintln!("note: cannot mount a tmpfs here (not root?); skipping the disk-full case");
            None
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn disk_full_while_writing() {
    let Some(fs) = SmallFs::mount("tmpfs") else {
        return;
    };
    // A 4.7 MB checkpoint into 64 KiB: no output file, no temporary file.
    let out = fs.0.join("w.safetensors");
    fails(
        &["convert", s(weights()), s(&out)],
        &["w.safetensors", "No space left on device"],
    );
    assert!(!out.exists());
    assert_no_tmp_files(&fs.0);
    // A report whose plots do not fit: a clear error; every file it did write is complete.
    let rep = fs.0.join("report");
    let err = fails(
        &[
            "compare",
            "--models",
            "mobilenet_v2,resnet18,efficientnet_b0",
            "--out",
            s(&rep),
        ],
        &["--out", "No space left on device"],
    );
    assert_eq!(
        err.matches("No space left").count(),
        1,
        "the OS error is printed once: {err}"
    );
    assert_no_tmp_files(&fs.0);
    let json = rep.join("comparison.json");
    if json.exists() {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 3);
    }
    let _ = std::io::stderr().flush();
}

#[test]
fn devices_that_cannot_be_used_are_a_clear_error() {
    // A build without the `cuda` feature says so and how to build it; a build with it, on a
    // machine without an NVIDIA driver, says that. Either way: exit 2, one line, no panic, no
    // output, nothing written. (With the feature on a machine with a driver, cuda works and
    // only the malformed names below are checked.)
    let no_cuda = if cfg!(feature = "cuda") {
        if Path::new("/proc/driver/nvidia").exists() {
            None
        } else {
            Some("no CUDA driver")
        }
    } else {
        Some("built without CUDA support (the `cuda` feature); build it with `cargo build -p effcnn --features cuda`")
    };
    let out = fresh("device-cuda").join("run");
    let missing = out.join("missing");
    if let Some(want) = no_cuda {
        for args in [
            vec![
                "bench",
                "dwsep_cnn",
                "--profile",
                "cifar",
                "--device",
                "cuda",
            ],
            vec![
                "train",
                "dwsep_cnn",
                "--data",
                "synthetic",
                "--device",
                "cuda:1",
                "--out",
                s(&out),
            ],
            vec!["eval", s(&missing), "--device", "cuda"],
            vec![
                "predict",
                "dwsep_cnn",
                "--weights",
                s(&missing),
                s(&missing),
                "--device",
                "cuda:0",
            ],
            vec!["experiment", "dwsep", "--device", "cuda", "--out", s(&out)],
        ] {
            let err = fails(&args, &[want, "device cuda:"]);
            assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
        }
        assert!(
            !out.exists(),
            "a refused device must leave no folder behind"
        );
    }
    for bad in ["tpu", "cuda:x", "cuda:", "gpu0"] {
        fails(
            &["bench", "dwsep_cnn", "--device", bad],
            &[
                &format!("unknown device '{bad}'"),
                "expected cpu, cuda or cuda:N",
            ],
        );
        fails(
            &[
                "train",
                "dwsep_cnn",
                "--data",
                "synthetic",
                "--device",
                bad,
                "--out",
                s(&out),
            ],
            &["unknown device"],
        );
    }
    fails(&["bench", "dwsep_cnn", "--engine", "fast"], &["--engine"]);
}

/// A misspelt `EFFCNN_WINOGRAD` (the training step's A/B switch) is refused before the run
/// folder is made, instead of silently measuring another path.
#[test]
fn a_bad_winograd_switch_is_refused_before_the_run_starts() {
    let out = common::tmp("bad-winograd");
    for bad in ["maybe", "OFF", ""] {
        let o = Command::new(env!("CARGO_BIN_EXE_effcnn"))
            .args(["train", "plain_cnn", "--data", "synthetic", "--epochs", "1"])
            .args(["--progress", "quiet", "--out", s(&out)])
            .env("EFFCNN_WINOGRAD", bad)
            .output()
            .expect("run effcnn");
        assert_fails(
            o,
            &format!("train with EFFCNN_WINOGRAD={bad:?}"),
            &["EFFCNN_WINOGRAD", "expected on, off, 1 or 0"],
        );
        assert!(
            !out.exists(),
            "a refused switch must leave no folder behind"
        );
    }
}
