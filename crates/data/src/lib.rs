//! effcnn-data: datasets, augmentation and batching for effcnn.
//!
//! Datasets are decoded once into memory as 8-bit RGB ([`Dataset`], HWC layout) and turned
//! into normalized `f32` batches (NCHW) by a [`Loader`], which prepares them on a background
//! thread. Nothing here depends on a tensor library: batches are plain vectors.
//!
//! Sources:
//! * CIFAR-10 binary batches, as a folder or the official `.tar.gz` ([`load_cifar10`]);
//! * image folders in the torchvision `ImageFolder` layout, as a folder or a `.tar.gz`
//!   ([`load_image_folder`]);
//! * a built-in procedurally generated set ([`synthetic`]).
//!
//! [`load`] picks the right one from a spec string:
//!
//! ```
//! use effcnn_data::{load, LoadOptions, Loader, LoaderConfig, Normalization};
//! use std::sync::Arc;
//!
//! let splits = load("synthetic:100:20", &LoadOptions::default())?;
//! let norm = splits.train.normalization();
//! let loader = Loader::new(Arc::new(splits.train), LoaderConfig::train(32, 7, norm))?;
//! for batch in loader.epoch(0) {
//!     assert_eq!(batch.images.len(), batch.n * 3 * 32 * 32);
//! }
//! # Ok::<(), effcnn_data::DataError>(())
//! ```
//!
//! Randomness (synthetic images, shuffling, augmentation) comes from a fixed SplitMix64
//! generator seeded from explicit numbers, so results are reproducible across runs and
//! platforms.

mod archive;
mod augment;
mod cifar;
mod dataset;
mod error;
mod folder;
mod loader;
mod parallel;
pub mod rng;
mod synthetic;

use std::path::Path;

pub use augment::{Augment, Normalization};
pub use cifar::{load_cifar10, CIFAR10_CLASSES};
pub use dataset::{Dataset, Splits};
pub use error::{DataError, Result};
pub use folder::load_image_folder;
pub use loader::{Batch, BatchIter, Loader, LoaderConfig};
pub use synthetic::{
    synthetic, SYNTHETIC_CLASSES, SYNTHETIC_SIZE, SYNTHETIC_TEST, SYNTHETIC_TRAIN,
};

/// Options of [`load`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Resize every image to `size × size` (bilinear) when it differs. `None` keeps the native
    /// size (image folders must then hold images of a single size).
    pub image_size: Option<u32>,
    /// Seed of the synthetic dataset (ignored by the other sources).
    pub seed: u64,
}

/// Loads the train and test splits named by `spec`.
///
/// `spec` is one of:
/// * `synthetic` — [`synthetic`] with [`SYNTHETIC_TRAIN`] / [`SYNTHETIC_TEST`] images;
/// * `synthetic:N` — `N` train and `ceil(N / 5)` test images; `synthetic:N:M` — `N` and `M`;
/// * a folder of CIFAR-10 batch files, or one holding `cifar-10-batches-bin/` ([`load_cifar10`]);
/// * a folder with `train/` and `test/` (or `val/`) class folders ([`load_image_folder`]);
/// * a `.tar.gz` or `.tar` archive of either, recognised by its content.
///
/// With [`LoadOptions::image_size`] set, every image of every source is resized to that size.
pub fn load(spec: &str, opts: &LoadOptions) -> Result<Splits> {
    if let Some(rest) = spec.strip_prefix("synthetic") {
        if rest.is_empty() || rest.starts_with(':') {
            let (train, test) = parse_synthetic(spec, rest)?;
            return resize(synthetic(train, test, opts.seed), opts.image_size);
        }
    }
    let path = Path::new(spec);
    if path.is_dir() {
        if path.join("train").is_dir() {
            return load_image_folder(path, opts.image_size);
        }
        if cifar::batch_dir(path).is_some() {
            return resize(load_cifar10(path)?, opts.image_size);
        }
        return Err(DataError::invalid(
            spec,
            "not a dataset folder: expected CIFAR-10 batch files (data_batch_1.bin …), a \
             cifar-10-batches-bin folder, or train/ and test/ class folders",
        ));
    }
    if path.is_file() {
        let contents = archive::read(path)?;
        return if cifar::archive_has_batches(&contents) {
            resize(cifar::from_archive(path, &contents)?, opts.image_size)
        } else {
            folder::from_archive(path, &contents, opts.image_size)
        };
    }
    Err(DataError::InvalidArgument(format!(
        "unknown dataset '{spec}': not 'synthetic[:N[:M]]' and no such file or folder"
    )))
}

fn parse_synthetic(spec: &str, rest: &str) -> Result<(usize, usize)> {
    let bad = || {
        DataError::InvalidArgument(format!(
            "bad dataset spec '{spec}': expected synthetic[:N[:M]] with N > 0"
        ))
    };
    let parts: Vec<&str> = rest.split(':').skip(1).collect();
    let num = |s: &str| s.parse::<usize>().map_err(|_| bad());
    let (train, test) = match parts.as_slice() {
        [] => (SYNTHETIC_TRAIN, SYNTHETIC_TEST),
        [n] => {
            let n = num(n)?;
            (n, n.div_ceil(5))
        }
        [n, m] => (num(n)?, num(m)?),
        _ => return Err(bad()),
    };
    if train == 0 {
        return Err(bad());
    }
    Ok((train, test))
}

fn resize(splits: Splits, size: Option<u32>) -> Result<Splits> {
    match size {
        Some(s) => splits.resized(s),
        None => Ok(splits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_specs() {
        assert_eq!(parse_synthetic("synthetic", "").unwrap(), (5000, 1000));
        assert_eq!(parse_synthetic("synthetic:12", ":12").unwrap(), (12, 3));
        assert_eq!(parse_synthetic("synthetic:12:7", ":12:7").unwrap(), (12, 7));
        assert!(parse_synthetic("synthetic:x", ":x").is_err());
        assert!(parse_synthetic("synthetic:0", ":0").is_err());
        assert!(parse_synthetic("synthetic:1:2:3", ":1:2:3").is_err());
        let s = load(
            "synthetic:20:10",
            &LoadOptions {
                image_size: Some(16),
                seed: 3,
            },
        )
        .unwrap();
        assert_eq!(
            (s.train.len(), s.test.len(), s.train.height, s.test.width),
            (20, 10, 16, 16)
        );
        let e = load("/no/such/dataset", &LoadOptions::default()).unwrap_err();
        assert!(e.to_string().contains("/no/such/dataset"), "{e}");
    }
}
