//! The real CIFAR-10-as-JPEG archive shipped in `shared/data`, when present.
//!
//! Loading all 60 000 images is slow in unoptimized builds, so the test is ignored by default:
//! `cargo test -p effcnn-data --release --test real_data -- --ignored --nocapture`.

use std::path::PathBuf;

use effcnn_data::{load, LoadOptions, CIFAR10_CLASSES};

fn archive() -> Option<PathBuf> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [
        here.join("../../../shared/data/cifar10-jpg.tar.gz"),
        here.join("../../shared/data/cifar10-jpg.tar.gz"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

#[test]
#[ignore = "loads 60 000 JPEGs; run with --release -- --ignored"]
fn cifar10_jpg_archive_loads() {
    let Some(path) = archive() else {
        eprintln!("cifar10-jpg.tar.gz not found; skipping");
        return;
    };
    let t = std::time::Instant::now();
    let s = load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{}: {} train + {} test images in {secs:.2} s",
        path.display(),
        s.train.len(),
        s.test.len()
    );
    assert_eq!((s.train.len(), s.test.len()), (50_000, 10_000));
    assert_eq!(s.train.classes, CIFAR10_CLASSES.to_vec());
    assert_eq!(s.train.class_counts(), vec![5000; 10]);
    assert_eq!(s.test.class_counts(), vec![1000; 10]);
    assert_eq!((s.train.height, s.train.width), (32, 32));
    let (mean, std) = s.train.channel_stats();
    println!("train mean {mean:?} std {std:?}");
    // Close to the published CIFAR-10 statistics (JPEG compression moves them slightly).
    for c in 0..3 {
        assert!(
            (mean[c] - [0.491, 0.482, 0.447][c]).abs() < 0.02,
            "{mean:?}"
        );
        assert!((std[c] - [0.247, 0.243, 0.262][c]).abs() < 0.02, "{std:?}");
    }
}
