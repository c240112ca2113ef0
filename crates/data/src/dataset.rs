//! The in-memory [`Dataset`] and the [`Splits`] pair returned by the loaders.

use crate::error::{DataError, Result};
use crate::parallel;
use crate::rng::Rng;

/// A labelled image dataset decoded once into memory as 8-bit RGB.
///
/// Invariants (checked by [`Dataset::new`], kept by every method):
/// `images.len() == labels.len() * height * width * 3`, every label is `< classes.len()`,
/// `height` and `width` are non-zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// Pixels of all images, `N × H × W × 3` (HWC, channels R, G, B), one byte each.
    pub images: Vec<u8>,
    /// Class index of each image, `N` entries, each `< classes.len()`.
    pub labels: Vec<u16>,
    /// Class names; a label is an index into this list.
    pub classes: Vec<String>,
    /// Height of every image in pixels.
    pub height: u32,
    /// Width of every image in pixels.
    pub width: u32,
    /// Human-readable description of where the data came from (a path, `synthetic(seed=…)`, …).
    pub source: String,
}

/// The train and test halves of a dataset, sharing one class list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splits {
    /// Images to train on.
    pub train: Dataset,
    /// Held-out images to evaluate on.
    pub test: Dataset,
}

impl Dataset {
    /// Builds a dataset after checking its invariants.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u16>,
        classes: Vec<String>,
        height: u32,
        width: u32,
        source: impl Into<String>,
    ) -> Result<Self> {
        let source = source.into();
        if height == 0 || width == 0 {
            return Err(DataError::invalid(
                source,
                format!("image size {width}x{height} is empty"),
            ));
        }
        let expected = (height as usize) * (width as usize) * 3 * labels.len();
        if images.len() != expected {
            return Err(DataError::invalid(
                source,
                format!(
                    "{} pixel bytes do not match {} images of {width}x{height}x3",
                    images.len(),
                    labels.len()
                ),
            ));
        }
        if classes.len() > usize::from(u16::MAX) + 1 {
            return Err(DataError::invalid(
                source,
                format!("{} classes exceed the limit of 65536", classes.len()),
            ));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| usize::from(l) >= classes.len())
        {
            return Err(DataError::invalid(
                source,
                format!("label {l} of image {i} out of range 0..{}", classes.len()),
            ));
        }
        Ok(Dataset {
            images,
            labels,
            classes,
            height,
            width,
            source,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// `true` when the dataset holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes (`classes.len()`).
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Bytes per image: `height × width × 3`.
    pub fn image_len(&self) -> usize {
        self.height as usize * self.width as usize * 3
    }

    /// Pixels of image `i` (HWC, RGB). Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Number of images of each class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }

    /// A new dataset made of the images at `indices`, in that order (repeats allowed).
    ///
    /// Fails if an index is `>= len()`.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(DataError::InvalidArgument(format!(
                "subset index {bad} out of range 0..{} of {}",
                self.len(),
                self.source
            )));
        }
        let n = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Ok(Dataset {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes.clone(),
            height: self.height,
            width: self.width,
            source: self.source.clone(),
        })
    }

    /// A stratified sample of exactly `min(n, len())` images, in their original order.
    ///
    /// Each class's images are shuffled (seeded with `seed`) and the classes are then taken in
    /// turns — first image of every class, then the second, … — so every class gets `n / K`
    /// images or one more while it has any left. The result is a pure function of
    /// `(self, n, seed)`. `n` must be at least 1.
    pub fn stratified_sample(&self, n: usize, seed: u64) -> Result<Dataset> {
        if n == 0 {
            return Err(DataError::InvalidArgument(
                "a sample needs at least one image".into(),
            ));
        }
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); self.classes.len()];
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[usize::from(l)].push(i);
        }
        for (c, members) in by_class.iter_mut().enumerate() {
            Rng::from_parts(&[seed, 0x5A3B, c as u64]).shuffle(members);
        }
        let want = n.min(self.len());
        let mut picked = Vec::with_capacity(want);
        let mut round = 0;
        while picked.len() < want {
            for members in &by_class {
                if picked.len() == want {
                    break;
                }
                if let Some(&i) = members.get(round) {
                    picked.push(i);
                }
            }
            round += 1;
        }
        picked.sort_unstable();
        let mut sample = self.subset(&picked)?;
        sample.source = format!("{} (stratified sample of {want})", self.source);
        Ok(sample)
    }

    /// Splits off a validation set: returns `(train, validation)`.
    ///
    /// The split is stratified: from each class, `round(frac × count)` images chosen by a
    /// shuffle seeded with `seed` go to validation, the rest to train. Both parts keep the
    /// original relative order of their images. The result is a pure function of
    /// `(self, frac, seed)`. `frac` must lie in `[0, 1]`.
    pub fn split_validation(&self, frac: f32, seed: u64) -> Result<(Dataset, Dataset)> {
        if !(0.0..=1.0).contains(&frac) {
            return Err(DataError::InvalidArgument(format!(
                "validation fraction {frac} is not in [0, 1]"
            )));
        }
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); self.classes.len()];
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[usize::from(l)].push(i);
        }
        let mut is_val = vec![false; self.len()];
        for (c, members) in by_class.iter_mut().enumerate() {
            let take = (frac as f64 * members.len() as f64).round() as usize;
            Rng::from_parts(&[seed, 0x5A11, c as u64]).shuffle(members);
            for &i in members.iter().take(take) {
                is_val[i] = true;
            }
        }
        let (val, train): (Vec<usize>, Vec<usize>) = (0..self.len()).partition(|&i| is_val[i]);
        let mut train = self.subset(&train)?;
        let mut val = self.subset(&val)?;
        train.source = format!(
            "{} (train part of validation split {frac}, seed {seed})",
            self.source
        );
        val.source = format!("{} (validation part {frac}, seed {seed})", self.source);
        Ok((train, val))
    }

    /// Per-channel mean and standard deviation (population) of all pixels, in `[0, 1]` units.
    ///
    /// An empty dataset gives mean 0 and standard deviation 1 for every channel.
    pub fn channel_stats(&self) -> ([f32; 3], [f32; 3]) {
        let pixels = self.images.len() / 3;
        if pixels == 0 {
            return ([0.0; 3], [1.0; 3]);
        }
        let mut sum = [0u64; 3];
        let mut sq = [0u64; 3];
        for px in self.images.chunks_exact(3) {
            for c in 0..3 {
                let v = u64::from(px[c]);
                sum[c] += v;
                sq[c] += v * v;
            }
        }
        let mut mean = [0f32; 3];
        let mut std = [0f32; 3];
        for c in 0..3 {
            let m = sum[c] as f64 / pixels as f64;
            let var = (sq[c] as f64 / pixels as f64 - m * m).max(0.0);
            mean[c] = (m / 255.0) as f32;
            std[c] = (var.sqrt() / 255.0) as f32;
        }
        (mean, std)
    }

    /// A copy with every image resized to `height × width` (bilinear, "triangle" filter).
    ///
    /// Returns an identical copy when the size already matches; fails on a zero size.
    pub fn resized(&self, height: u32, width: u32) -> Result<Dataset> {
        if height == 0 || width == 0 {
            return Err(DataError::InvalidArgument(format!(
                "cannot resize to {width}x{height}"
            )));
        }
        if height == self.height && width == self.width {
            return Ok(self.clone());
        }
        let out_len = height as usize * width as usize * 3;
        let mut images = vec![0u8; self.len() * out_len];
        let indices: Vec<usize> = (0..self.len()).collect();
        parallel::fill(&indices, &mut images, out_len, |_, &i, dst| {
            let src = image::RgbImage::from_raw(self.width, self.height, self.image(i).to_vec())
                .ok_or_else(|| {
                    DataError::invalid(self.source.clone(), "image buffer has the wrong size")
                })?;
            let out =
                image::imageops::resize(&src, width, height, image::imageops::FilterType::Triangle);
            dst.copy_from_slice(out.as_raw());
            Ok(())
        })?;
        Ok(Dataset {
            images,
            labels: self.labels.clone(),
            classes: self.classes.clone(),
            height,
            width,
            source: self.source.clone(),
        })
    }
}

impl Splits {
    /// Both splits resized to `size × size` (see [`Dataset::resized`]).
    pub fn resized(&self, size: u32) -> Result<Splits> {
        Ok(Splits {
            train: self.train.resized(size, size)?,
            test: self.test.resized(size, size)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_sample_is_exact_balanced_and_ordered() {
        // 3 classes of 5, 3 and 1 images.
        let labels: Vec<u16> = [0u16, 0, 1, 0, 2, 1, 0, 1, 0].to_vec();
        let ds = Dataset::new(
            vec![0; labels.len() * 3],
            labels,
            vec!["a".into(), "b".into(), "c".into()],
            1,
            1,
            "t",
        )
        .unwrap();
        for n in 1..=ds.len() + 2 {
            let s = ds.stratified_sample(n, 7).unwrap();
            assert_eq!(s.len(), n.min(ds.len()), "exact size for n = {n}");
            let counts = s.class_counts();
            // Turn by turn: no class is two images ahead of another that still had images.
            let full = ds.class_counts();
            for a in 0..3 {
                for b in 0..3 {
                    if counts[b] < full[b] {
                        assert!(counts[a] <= counts[b] + 1, "n = {n}: {counts:?}");
                    }
                }
            }
        }
        assert_eq!(
            ds.stratified_sample(4, 7).unwrap().labels,
            ds.stratified_sample(4, 7).unwrap().labels
        );
        assert!(ds.stratified_sample(0, 7).is_err());
    }

    fn toy(n: usize, classes: usize) -> Dataset {
        let images = (0..n * 2 * 2 * 3).map(|v| (v % 251) as u8).collect();
        let labels = (0..n).map(|i| (i % classes) as u16).collect();
        let names = (0..classes).map(|c| format!("c{c}")).collect();
        Dataset::new(images, labels, names, 2, 2, "toy").unwrap()
    }

    #[test]
    fn new_checks_invariants() {
        assert!(Dataset::new(vec![0; 11], vec![0], vec!["a".into()], 2, 2, "x").is_err());
        let e = Dataset::new(vec![0; 12], vec![3], vec!["a".into()], 2, 2, "x").unwrap_err();
        assert!(e.to_string().contains("label 3"), "{e}");
        assert!(Dataset::new(vec![], vec![], vec![], 0, 2, "x").is_err());
    }

    #[test]
    fn subset_and_counts() {
        let d = toy(10, 3);
        assert_eq!(d.class_counts(), vec![4, 3, 3]);
        let s = d.subset(&[9, 0, 9]).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.image(0), d.image(9));
        assert_eq!(s.image(1), d.image(0));
        assert_eq!(s.labels, vec![0, 0, 0]);
        assert!(d.subset(&[10]).is_err());
    }

    #[test]
    fn split_validation_is_stratified_deterministic_and_disjoint() {
        let d = toy(100, 4);
        let (t1, v1) = d.split_validation(0.2, 5).unwrap();
        let (t2, v2) = d.split_validation(0.2, 5).unwrap();
        let (_, v3) = d.split_validation(0.2, 6).unwrap();
        assert_eq!((t1.clone(), v1.clone()), (t2, v2));
        assert_ne!(v1.images, v3.images);
        assert_eq!(v1.class_counts(), vec![5, 5, 5, 5]);
        assert_eq!(t1.class_counts(), vec![20, 20, 20, 20]);
        assert_eq!(t1.len() + v1.len(), d.len());
        assert!(d.split_validation(1.5, 0).is_err());
        let (all, none) = d.split_validation(0.0, 0).unwrap();
        assert_eq!(all.images, d.images);
        assert!(none.is_empty());
    }

    #[test]
    fn channel_stats_match_hand_computation() {
        // Two pixels: (0, 255, 51) and (255, 255, 153).
        let d = Dataset::new(
            vec![0, 255, 51, 255, 255, 153],
            vec![0],
            vec!["a".into()],
            1,
            2,
            "x",
        )
        .unwrap();
        let (m, s) = d.channel_stats();
        assert!((m[0] - 0.5).abs() < 1e-6 && (s[0] - 0.5).abs() < 1e-6);
        assert!((m[1] - 1.0).abs() < 1e-6 && s[1].abs() < 1e-6);
        assert!((m[2] - 0.4).abs() < 1e-6 && (s[2] - 0.2).abs() < 1e-6);
    }

    #[test]
    fn resized_changes_shape_and_keeps_flat_colour() {
        let d = Dataset::new(
            [10u8, 20, 30].repeat(16),
            vec![0],
            vec!["a".into()],
            4,
            4,
            "x",
        )
        .unwrap();
        let r = d.resized(8, 6).unwrap();
        assert_eq!((r.height, r.width, r.images.len()), (8, 6, 8 * 6 * 3));
        assert!(r.images.chunks(3).all(|p| p == [10, 20, 30]));
    }
}
