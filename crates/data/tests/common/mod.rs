//! Helpers shared by the integration tests: temporary folders, image encoding, archives.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use image::{DynamicImage, ImageFormat};

/// Bytes of one CIFAR-10 record: a label byte and a 32×32 RGB image.
pub const CIFAR_RECORD: usize = 3073;
/// The six batch files of CIFAR-10's binary distribution.
pub const CIFAR_FILES: [&str; 6] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];

/// A fresh folder under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("effcnn-data-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `data` at `root/rel`, creating parent folders.
pub fn write(root: &Path, rel: &str, data: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

pub fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, format).unwrap();
    buf.into_inner()
}

/// A PNG of `w × h` pixels all of colour `rgb`.
pub fn png(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    encode(
        DynamicImage::ImageRgb8(image::RgbImage::from_pixel(w, h, image::Rgb(rgb))),
        ImageFormat::Png,
    )
}

/// A JPEG of `w × h` pixels all of colour `rgb`.
pub fn jpg(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    encode(
        DynamicImage::ImageRgb8(image::RgbImage::from_pixel(w, h, image::Rgb(rgb))),
        ImageFormat::Jpeg,
    )
}

/// Writes a `.tar.gz` holding `files` (path, bytes) and directory entries `dirs`.
pub fn targz(path: &Path, dirs: &[&str], files: &[(String, Vec<u8>)]) {
    let file = std::fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for d in dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(&mut h, d, std::io::empty()).unwrap();
    }
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}
