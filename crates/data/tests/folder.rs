//! Image folders on disk and inside `.tar.gz` archives.

mod common;

use common::{encode, jpg, png, targz, write, TempDir};
use effcnn_data::{load, load_image_folder, DataError, LoadOptions, Splits};
use image::{DynamicImage, ImageFormat};

/// Colour that encodes (class, file number) so tests can check labels against pixels.
fn colour(class: usize, k: usize) -> [u8; 3] {
    [class as u8 * 40, k as u8, 7]
}

/// A small dataset: train classes b_dog (3), a_cat (2), c_frog (1); test a_cat (1), c_frog (2).
fn files(prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    // Class index = position in sorted order: a_cat 0, b_dog 1, c_frog 2.
    for (split, class, idx, n) in [
        ("train", "b_dog", 1, 3),
        ("train", "a_cat", 0, 2),
        ("train", "c_frog", 2, 1),
        ("test", "c_frog", 2, 2),
        ("test", "a_cat", 0, 1),
    ] {
        for k in 0..n {
            out.push((
                format!("{prefix}{split}/{class}/{k:04}.png"),
                png(4, 3, colour(idx, k)),
            ));
        }
    }
    out
}

fn write_tree(root: &std::path::Path, files: &[(String, Vec<u8>)]) {
    for (name, data) in files {
        write(root, name, data);
    }
}

fn check_small(s: &Splits) {
    assert_eq!(s.train.classes, vec!["a_cat", "b_dog", "c_frog"]);
    assert_eq!(s.test.classes, s.train.classes);
    assert_eq!(s.train.class_counts(), vec![2, 3, 1]);
    assert_eq!(s.test.class_counts(), vec![1, 0, 2]);
    assert_eq!((s.train.height, s.train.width), (3, 4));
    for ds in [&s.train, &s.test] {
        for i in 0..ds.len() {
            // Every pixel's red channel encodes the class index.
            let img = ds.image(i);
            assert!(
                img.chunks(3)
                    .all(|p| p[0] == ds.labels[i] as u8 * 40 && p[2] == 7),
                "image {i}"
            );
        }
    }
    // Files are read in name order within a class.
    assert_eq!(s.train.image(2)[1], 0);
    assert_eq!(s.train.image(4)[1], 2);
}

#[test]
fn folder_class_mapping_and_counts() {
    let tmp = TempDir::new("folder-ok");
    let mut f = files("");
    f.push(("train/a_cat/.DS_Store".into(), b"junk".to_vec()));
    f.push(("train/.hidden/x.txt".into(), b"junk".to_vec()));
    f.push(("README.md".into(), b"not part of a split".to_vec()));
    write_tree(tmp.path(), &f);
    let s = load_image_folder(tmp.path(), None).unwrap();
    check_small(&s);
    let via_load = load(tmp.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert_eq!(via_load, s);
}

#[test]
fn archive_with_leading_folder_matches_folder() {
    let tmp = TempDir::new("folder-tgz");
    write_tree(&tmp.join("tree"), &files(""));
    let mut f = files("cifar10/");
    f.push((
        "cifar10/train/a_cat/._0000.png".into(),
        b"apple double".to_vec(),
    ));
    f.push(("cifar10/LICENSE".into(), b"ignored".to_vec()));
    let archive = tmp.join("small.tar.gz");
    targz(
        &archive,
        &["cifar10/", "cifar10/train/", "cifar10/train/a_cat/"],
        &f,
    );
    let a = load_image_folder(&archive, None).unwrap();
    check_small(&a);
    let d = load_image_folder(&tmp.join("tree"), None).unwrap();
    assert_eq!(
        (&a.train.images, &a.train.labels),
        (&d.train.images, &d.train.labels)
    );
    assert_eq!(
        (&a.test.images, &a.test.labels),
        (&d.test.images, &d.test.labels)
    );
    let via_load = load(archive.to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert_eq!(via_load, a);

    // No leading folder works too.
    targz(&archive, &[], &files(""));
    check_small(&load_image_folder(&archive, None).unwrap());
}

#[test]
fn val_is_used_when_there_is_no_test() {
    let tmp = TempDir::new("folder-val");
    let f: Vec<_> = files("")
        .into_iter()
        .map(|(n, d)| (n.replace("test/", "val/"), d))
        .collect();
    write_tree(tmp.path(), &f);
    check_small(&load_image_folder(tmp.path(), None).unwrap());
    let archive = tmp.join("v.tar.gz");
    targz(&archive, &[], &f);
    check_small(&load_image_folder(&archive, None).unwrap());
}

#[test]
fn empty_class_folder_is_an_error() {
    let tmp = TempDir::new("folder-empty");
    write_tree(&tmp.join("d"), &files(""));
    std::fs::create_dir_all(tmp.join("d/train/dog")).unwrap();
    let e = load_image_folder(&tmp.join("d"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("train/dog") && e.contains("empty"), "{e}");

    let archive = tmp.join("e.tar.gz");
    targz(&archive, &["root/train/dog/"], &files("root/"));
    let e = load_image_folder(&archive, None).unwrap_err().to_string();
    assert!(e.contains("root/train/dog") && e.contains("empty"), "{e}");
}

#[test]
fn corrupt_image_is_named() {
    let tmp = TempDir::new("folder-corrupt");
    let mut f = files("");
    f.push((
        "train/b_dog/0012.jpg".into(),
        b"\xff\xd8\xff\xe0 definitely not a jpeg".to_vec(),
    ));
    write_tree(&tmp.join("d"), &f);
    let e = load_image_folder(&tmp.join("d"), None).unwrap_err();
    assert!(matches!(e, DataError::CorruptImage { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.contains("train/b_dog/0012.jpg") && e.contains("corrupt image"),
        "{e}"
    );

    let archive = tmp.join("c.tar.gz");
    targz(&archive, &[], &f);
    let e = load_image_folder(&archive, None).unwrap_err().to_string();
    assert!(
        e.contains("c.tar.gz:train/b_dog/0012.jpg") && e.contains("corrupt image"),
        "{e}"
    );
}

#[test]
fn unexpected_files_are_named() {
    for (extra, what) in [
        ("train/a_cat/notes.txt", "not an image"),
        ("test/c_frog/pic.bmp", "not an image"),
        ("train/labels.csv", "outside a class folder"),
        ("train/a_cat/sub/0000.png", "nested folder"),
    ] {
        let tmp = TempDir::new("folder-extra");
        let mut f = files("");
        f.push((extra.into(), png(4, 3, [0, 0, 0])));
        write_tree(&tmp.join("d"), &f);
        let e = load_image_folder(&tmp.join("d"), None)
            .unwrap_err()
            .to_string();
        // On disk a nested folder is named itself; everything else by the file's path.
        let named = extra.trim_end_matches("/0000.png");
        assert!(e.contains(named) && e.contains(what), "{extra}: {e}");
        let archive = tmp.join("x.tar.gz");
        targz(&archive, &[], &f);
        let e = load_image_folder(&archive, None).unwrap_err().to_string();
        assert!(
            e.contains(extra) && e.contains(what),
            "{extra} in archive: {e}"
        );
    }
}

#[test]
fn test_class_missing_from_train_is_an_error() {
    let tmp = TempDir::new("folder-testonly");
    let mut f = files("");
    f.push(("test/zebra/0000.png".into(), png(4, 3, [0, 0, 0])));
    write_tree(tmp.path(), &f);
    let e = load_image_folder(tmp.path(), None).unwrap_err().to_string();
    assert!(e.contains("test/zebra") && e.contains("train"), "{e}");
}

#[test]
fn missing_splits_are_errors() {
    let tmp = TempDir::new("folder-nosplit");
    write(tmp.path(), "train/a/0.png", &png(2, 2, [1, 2, 3]));
    let e = load_image_folder(tmp.path(), None).unwrap_err().to_string();
    assert!(e.contains("no test/ or val/"), "{e}");
    let e = load_image_folder(&tmp.join("nothing"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nothing"), "{e}");
}

#[test]
fn grayscale_sixteen_bit_and_rgba_become_rgb8() {
    let tmp = TempDir::new("folder-modes");
    let gray = image::GrayImage::from_pixel(2, 2, image::Luma([77]));
    let mut g16 =
        image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_pixel(2, 2, image::Luma([0xFFFF]));
    g16.put_pixel(1, 1, image::Luma([0x8080]));
    let rgb16 = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_pixel(
        2,
        2,
        image::Rgb([0x0000, 0x1010, 0xFFFF]),
    );
    let rgba = image::RgbaImage::from_pixel(2, 2, image::Rgba([10, 20, 30, 0]));
    let f = vec![
        (
            "train/a/gray.png".to_string(),
            encode(DynamicImage::ImageLuma8(gray), ImageFormat::Png),
        ),
        (
            "train/a/g16.png".to_string(),
            encode(DynamicImage::ImageLuma16(g16), ImageFormat::Png),
        ),
        (
            "train/a/rgb16.png".to_string(),
            encode(DynamicImage::ImageRgb16(rgb16), ImageFormat::Png),
        ),
        (
            "train/a/rgba.PNG".to_string(),
            encode(DynamicImage::ImageRgba8(rgba), ImageFormat::Png),
        ),
        ("test/a/x.JPEG".to_string(), jpg(2, 2, [200, 100, 50])),
    ];
    write_tree(tmp.path(), &f);
    let s = load_image_folder(tmp.path(), None).unwrap();
    // Sorted by file name: g16, gray, rgb16, rgba.
    assert_eq!(
        s.train.image(0),
        [255, 255, 255, 255, 255, 255, 255, 255, 255, 128, 128, 128]
    );
    assert_eq!(s.train.image(1), [77; 12]);
    assert_eq!(&s.train.image(2)[..3], [0, 16, 255]);
    assert_eq!(&s.train.image(3)[..3], [10, 20, 30]);
    let jpeg = &s.test.image(0)[..3];
    let close = |a: u8, b: u8| a.abs_diff(b) <= 8;
    assert!(
        close(jpeg[0], 200) && close(jpeg[1], 100) && close(jpeg[2], 50),
        "{jpeg:?}"
    );
}

#[test]
fn mismatched_sizes_fail_unless_resized() {
    let tmp = TempDir::new("folder-sizes");
    let f = vec![
        ("train/a/0.png".to_string(), png(4, 4, [10, 20, 30])),
        ("train/a/1.png".to_string(), png(4, 4, [10, 20, 30])),
        ("train/b/0.png".to_string(), png(6, 5, [40, 50, 60])),
        ("train/b/1.png".to_string(), png(7, 7, [40, 50, 60])),
        ("test/b/0.png".to_string(), png(8, 8, [40, 50, 60])),
    ];
    write_tree(tmp.path(), &f);
    let e = load_image_folder(tmp.path(), None).unwrap_err().to_string();
    assert!(
        e.contains("train/b/0.png") && e.contains("6x5") && e.contains("4x4"),
        "{e}"
    );

    let s = load_image_folder(tmp.path(), Some(8)).unwrap();
    assert_eq!(
        (s.train.height, s.train.width, s.train.len(), s.test.len()),
        (8, 8, 4, 1)
    );
    assert!(s.train.image(0).chunks(3).all(|p| p == [10, 20, 30]));
    assert!(s.train.image(2).chunks(3).all(|p| p == [40, 50, 60]));
    assert!(s.test.image(0).chunks(3).all(|p| p == [40, 50, 60]));

    let via_load = load(
        tmp.path().to_str().unwrap(),
        &LoadOptions {
            image_size: Some(8),
            seed: 0,
        },
    )
    .unwrap();
    assert_eq!(via_load, s);
    assert!(load_image_folder(tmp.path(), Some(0)).is_err());
}

#[test]
fn resize_preserves_structure() {
    // A 4x4 image with a bright left half becomes an 8x8 image with a bright left half.
    let tmp = TempDir::new("folder-resize");
    let mut img = image::RgbImage::from_pixel(4, 4, image::Rgb([0, 0, 0]));
    for y in 0..4 {
        for x in 0..2 {
            img.put_pixel(x, y, image::Rgb([255, 255, 255]));
        }
    }
    let bytes = encode(DynamicImage::ImageRgb8(img), ImageFormat::Png);
    write(tmp.path(), "train/a/0.png", &bytes);
    write(tmp.path(), "test/a/0.png", &bytes);
    let s = load_image_folder(tmp.path(), Some(8)).unwrap();
    let px = |x: usize, y: usize| s.train.image(0)[(y * 8 + x) * 3];
    assert_eq!((px(0, 3), px(1, 5)), (255, 255));
    assert_eq!((px(7, 3), px(6, 0)), (0, 0));
}
