//! CIFAR-10 binary batches: layout conversion, validation, folder and archive forms.

mod common;

use common::{targz, write, TempDir, CIFAR_FILES as FILES, CIFAR_RECORD as RECORD};
use effcnn_data::{load, load_cifar10, LoadOptions, CIFAR10_CLASSES};

/// Record `k` (global): label `k % 10`, channel plane `c` holds `(p * 7 + c * 50 + k) % 256`.
fn record(k: usize) -> Vec<u8> {
    let mut r = vec![(k % 10) as u8];
    for c in 0..3 {
        r.extend((0..1024).map(|p| ((p * 7 + c * 50 + k) % 256) as u8));
    }
    r
}

/// Batch files with 2 records each (train) and 3 (test); returns name → bytes.
fn batches() -> Vec<(String, Vec<u8>)> {
    let mut k = 0;
    FILES
        .iter()
        .map(|name| {
            let n = if name.starts_with("test") { 3 } else { 2 };
            let bytes = (0..n).flat_map(|_| {
                k += 1;
                record(k - 1)
            });
            (name.to_string(), bytes.collect())
        })
        .collect()
}

fn write_all(dir: &std::path::Path) {
    for (name, bytes) in batches() {
        write(dir, &name, &bytes);
    }
}

#[test]
fn records_become_hwc_images_with_labels() {
    let tmp = TempDir::new("cifar-ok");
    write_all(tmp.path());
    let s = load_cifar10(tmp.path()).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (10, 3));
    assert_eq!((s.train.height, s.train.width), (32, 32));
    assert_eq!(s.train.classes, CIFAR10_CLASSES.to_vec());
    assert_eq!(
        s.train.labels,
        (0..10).map(|k| (k % 10) as u16).collect::<Vec<_>>()
    );
    assert_eq!(s.test.labels, vec![0, 1, 2]);
    for (ds, offset) in [(&s.train, 0), (&s.test, 10)] {
        for i in 0..ds.len() {
            let rec = record(i + offset);
            let img = ds.image(i);
            for (row, col, ch) in [(0, 0, 0), (0, 1, 1), (5, 9, 2), (31, 31, 0), (17, 3, 1)] {
                let want = rec[1 + ch * 1024 + row * 32 + col];
                assert_eq!(
                    img[(row * 32 + col) * 3 + ch],
                    want,
                    "image {i} at ({row},{col},{ch})"
                );
            }
        }
    }
}

#[test]
fn truncated_file_is_reported_with_its_name_and_record_size() {
    let tmp = TempDir::new("cifar-trunc");
    write_all(tmp.path());
    write(tmp.path(), "data_batch_3.bin", &vec![0u8; RECORD * 2 - 5]);
    let e = load_cifar10(tmp.path()).unwrap_err().to_string();
    assert!(
        e.contains("data_batch_3.bin") && e.contains("3073") && e.contains("6141"),
        "{e}"
    );
}

#[test]
fn out_of_range_label_is_reported_with_record_and_file() {
    let tmp = TempDir::new("cifar-label");
    write_all(tmp.path());
    let mut bytes = [record(0), record(1)].concat();
    bytes[RECORD] = 10;
    write(tmp.path(), "test_batch.bin", &bytes);
    let e = load_cifar10(tmp.path()).unwrap_err().to_string();
    assert!(
        e.contains("test_batch.bin") && e.contains("label 10") && e.contains("record 1"),
        "{e}"
    );
}

#[test]
fn missing_batch_is_named() {
    let tmp = TempDir::new("cifar-missing");
    write_all(tmp.path());
    std::fs::remove_file(tmp.join("test_batch.bin")).unwrap();
    let e = load_cifar10(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("test_batch.bin") && e.contains("missing"), "{e}");

    std::fs::remove_file(tmp.join("data_batch_4.bin")).unwrap();
    let e = load_cifar10(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("data_batch_4.bin"), "{e}");
}

#[test]
fn inner_folder_meta_file_and_load_detection() {
    let tmp = TempDir::new("cifar-inner");
    let inner = tmp.join("cifar-10-batches-bin");
    write_all(&inner);
    let names = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n";
    write(&inner, "batches.meta.txt", names.as_bytes());
    let s = load(tmp.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert_eq!(
        s.train.classes,
        vec!["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
    );
    assert_eq!(s.train.len(), 10);

    write(&inner, "batches.meta.txt", b"a\nb\n");
    let e = load_cifar10(tmp.path()).unwrap_err().to_string();
    assert!(
        e.contains("batches.meta.txt") && e.contains("found 2"),
        "{e}"
    );

    std::fs::remove_file(inner.join("batches.meta.txt")).unwrap();
    let resized = load(
        tmp.path().to_str().unwrap(),
        &LoadOptions {
            image_size: Some(16),
            seed: 0,
        },
    )
    .unwrap();
    assert_eq!(
        (resized.train.height, resized.test.width, resized.test.len()),
        (16, 16, 3)
    );
}

#[test]
fn official_archive_layout_is_read_in_memory() {
    let tmp = TempDir::new("cifar-tgz");
    let mut files: Vec<(String, Vec<u8>)> = batches()
        .into_iter()
        .map(|(n, b)| (format!("cifar-10-batches-bin/{n}"), b))
        .collect();
    files.push((
        "cifar-10-batches-bin/readme.html".into(),
        b"<html/>".to_vec(),
    ));
    let archive = tmp.join("cifar-10-binary.tar.gz");
    targz(&archive, &["cifar-10-batches-bin/"], &files);

    let from_dir = {
        write_all(&tmp.join("plain"));
        load_cifar10(&tmp.join("plain")).unwrap()
    };
    let a = load_cifar10(&archive).unwrap();
    let b = load(archive.to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert_eq!(a.train.images, from_dir.train.images);
    assert_eq!(a.test.labels, from_dir.test.labels);
    assert_eq!(b.train.images, a.train.images);

    // A truncated batch inside the archive is named with the archive and entry.
    let mut truncated = files.clone();
    truncated[2].1.truncate(100);
    targz(&archive, &[], &truncated);
    let e = load_cifar10(&archive).unwrap_err().to_string();
    assert!(
        e.contains("cifar-10-binary.tar.gz")
            && e.contains("data_batch_3.bin")
            && e.contains("3073"),
        "{e}"
    );

    // A missing batch too.
    files.remove(5);
    targz(&archive, &[], &files);
    let e = load_cifar10(&archive).unwrap_err().to_string();
    assert!(e.contains("test_batch.bin"), "{e}");
}

#[test]
fn garbage_archive_is_an_error_not_a_panic() {
    let tmp = TempDir::new("cifar-garbage");
    write(tmp.path(), "x.tar.gz", &[0x1f, 0x8b, 1, 2, 3, 4, 5]);
    assert!(load_cifar10(&tmp.join("x.tar.gz")).is_err());
    assert!(load(
        tmp.join("x.tar.gz").to_str().unwrap(),
        &LoadOptions::default()
    )
    .is_err());
    let e = load(tmp.path().to_str().unwrap(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a dataset folder"), "{e}");
}
