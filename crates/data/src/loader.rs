//! Deterministic, prefetching mini-batch iteration.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use crate::augment::{write_chw, Augment, Normalization, Transform};
use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::rng::Rng;

/// How a [`Loader`] turns a dataset into batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoaderConfig {
    /// Samples per batch (the last batch may be smaller unless `drop_last`).
    pub batch_size: usize,
    /// Shuffle the sample order every epoch (order = f(seed, epoch)).
    pub shuffle: bool,
    /// Seed of the shuffle and of the augmentation.
    pub seed: u64,
    /// Augmentation applied to every sample.
    pub augment: Augment,
    /// Normalization applied to every pixel.
    pub normalization: Normalization,
    /// Drop the final batch when it would hold fewer than `batch_size` samples.
    pub drop_last: bool,
    /// Number of batches prepared ahead on the background thread (at least 1).
    pub prefetch: usize,
}

impl LoaderConfig {
    /// Training defaults: shuffled, default augmentation (pad-crop 4, flip), `drop_last`
    /// off, 4 batches of prefetch.
    pub fn train(batch_size: usize, seed: u64, normalization: Normalization) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: true,
            seed,
            augment: Augment::default(),
            normalization,
            drop_last: false,
            prefetch: 4,
        }
    }

    /// Evaluation defaults: dataset order, no augmentation, every sample kept.
    pub fn eval(batch_size: usize, normalization: Normalization) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            seed: 0,
            augment: Augment::NONE,
            normalization,
            drop_last: false,
            prefetch: 4,
        }
    }
}

/// One mini-batch, ready to become tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Normalized pixels, `n × 3 × height × width` (NCHW), row-major.
    pub images: Vec<f32>,
    /// Class index of each sample.
    pub labels: Vec<i64>,
    /// Index in the dataset of each sample.
    pub indices: Vec<usize>,
    /// Number of samples.
    pub n: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Position of this batch within its epoch (0-based).
    pub index: usize,
}

impl Batch {
    /// `[n, 3, height, width]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.n, 3, self.height, self.width]
    }
}

/// Produces the batches of a dataset, epoch by epoch.
///
/// Everything is a pure function of the configuration and the epoch number: the sample order
/// of epoch `e` depends only on `(seed, e)` and the augmentation of batch `b` only on
/// `(seed, e, b)`, so a resumed run sees exactly the batches an uninterrupted one would, no
/// matter how the background thread is scheduled.
#[derive(Debug, Clone)]
pub struct Loader {
    dataset: Arc<Dataset>,
    config: LoaderConfig,
}

impl Loader {
    /// Checks the configuration (positive batch size, valid normalization) and the dataset's
    /// pixel buffer size (its fields are public, so it may have been edited).
    pub fn new(dataset: Arc<Dataset>, config: LoaderConfig) -> Result<Self> {
        if dataset.height == 0
            || dataset.width == 0
            || dataset.images.len() != dataset.len() * dataset.image_len()
        {
            return Err(DataError::InvalidArgument(format!(
                "dataset {} is inconsistent: {} pixel bytes for {} images of {}x{}x3",
                dataset.source,
                dataset.images.len(),
                dataset.len(),
                dataset.width,
                dataset.height
            )));
        }
        if config.batch_size == 0 {
            return Err(DataError::InvalidArgument(
                "batch size must be positive".into(),
            ));
        }
        if !config.normalization.is_valid() {
            return Err(DataError::InvalidArgument(format!(
                "invalid normalization {:?}: values must be finite and std positive",
                config.normalization
            )));
        }
        Ok(Loader { dataset, config })
    }

    /// The dataset being iterated.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Number of batches per epoch.
    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.dataset.len(), self.config.batch_size);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Sample order of `epoch`: a permutation of `0..len` (the identity without shuffling).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.config.shuffle {
            Rng::from_parts(&[self.config.seed, 0x5F1, epoch]).shuffle(&mut order);
        }
        order
    }

    /// Builds batch `index` of `epoch` on the calling thread, `None` past the last batch.
    ///
    /// Recomputes the epoch order on every call; iterate with [`Loader::epoch`] instead.
    pub fn batch(&self, epoch: u64, index: usize) -> Option<Batch> {
        (index < self.num_batches()).then(|| {
            make_batch(
                &self.dataset,
                &self.config,
                &self.order(epoch),
                epoch,
                index,
            )
        })
    }

    /// Iterates over all batches of `epoch`, prepared on a background thread.
    pub fn epoch(&self, epoch: u64) -> BatchIter {
        self.epoch_from(epoch, 0)
    }

    /// Iterates over the batches of `epoch` starting at batch `first` (to resume mid-epoch).
    pub fn epoch_from(&self, epoch: u64, first: usize) -> BatchIter {
        let total = self.num_batches();
        let first = first.min(total);
        let (tx, rx) = sync_channel(self.config.prefetch.max(1));
        let dataset = Arc::clone(&self.dataset);
        let config = self.config.clone();
        let order = self.order(epoch);
        let handle = std::thread::spawn(move || {
            for b in first..total {
                if tx
                    .send(make_batch(&dataset, &config, &order, epoch, b))
                    .is_err()
                {
                    break; // The consumer dropped the iterator.
                }
            }
        });
        BatchIter {
            rx: Some(rx),
            handle: Some(handle),
            remaining: total - first,
        }
    }
}

/// Iterator over the batches of one epoch; see [`Loader::epoch`].
///
/// Dropping it early stops the background thread.
#[derive(Debug)]
pub struct BatchIter {
    rx: Option<Receiver<Batch>>,
    handle: Option<JoinHandle<()>>,
    remaining: usize,
}

impl Iterator for BatchIter {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        match self.rx.as_ref()?.recv() {
            Ok(batch) => {
                self.remaining = self.remaining.saturating_sub(1);
                Some(batch)
            }
            Err(_) => {
                self.remaining = 0;
                self.rx = None;
                if let Some(Err(panic)) = self.handle.take().map(JoinHandle::join) {
                    std::panic::resume_unwind(panic);
                }
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for BatchIter {}

impl Drop for BatchIter {
    fn drop(&mut self) {
        self.rx = None; // Unblocks a producer waiting on a full channel.
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn make_batch(
    dataset: &Dataset,
    config: &LoaderConfig,
    order: &[usize],
    epoch: u64,
    index: usize,
) -> Batch {
    let start = index * config.batch_size;
    let end = (start + config.batch_size).min(order.len());
    let indices = order[start..end].to_vec();
    let (h, w) = (dataset.height as usize, dataset.width as usize);
    let per = 3 * h * w;
    let mut images = vec![0f32; indices.len() * per];
    let mut rng = Rng::from_parts(&[config.seed, 0xA06, epoch, index as u64]);
    let pad = i64::from(config.augment.pad_crop);
    for (k, &i) in indices.iter().enumerate() {
        let mut t = Transform::default();
        if pad > 0 {
            t.dy = rng.below(2 * pad as u64 + 1) as i64 - pad;
            t.dx = rng.below(2 * pad as u64 + 1) as i64 - pad;
        }
        t.flip = config.augment.hflip && rng.coin();
        write_chw(
            dataset.image(i),
            h,
            w,
            t,
            &config.normalization,
            &mut images[k * per..(k + 1) * per],
        );
    }
    Batch {
        labels: indices
            .iter()
            .map(|&i| i64::from(dataset.labels[i]))
            .collect(),
        n: indices.len(),
        indices,
        images,
        height: h,
        width: w,
        index,
    }
}
