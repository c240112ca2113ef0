//! Batching: shapes, determinism, coverage, augmentation and normalization.

use std::sync::Arc;

use effcnn_data::{synthetic, Augment, Batch, Dataset, Loader, LoaderConfig, Normalization};

fn dataset(n: usize) -> Arc<Dataset> {
    Arc::new(synthetic(n, 10, 5).train)
}

fn config(batch: usize, augment: Augment) -> LoaderConfig {
    LoaderConfig {
        augment,
        ..LoaderConfig::train(batch, 42, Normalization::IDENTITY)
    }
}

fn collect(loader: &Loader, epoch: u64) -> Vec<Batch> {
    loader.epoch(epoch).collect()
}

/// Pixel `(c, y, x)` of sample `k` of a batch, back in 0..=255 (identity normalization).
fn px(b: &Batch, k: usize, c: usize, y: usize, x: usize) -> u8 {
    let v = b.images[((k * 3 + c) * b.height + y) * b.width + x];
    (v * 255.0).round() as u8
}

#[test]
fn shapes_labels_and_normalization() {
    let ds = dataset(70);
    let norm = Normalization {
        mean: [0.5, 0.4, 0.3],
        std: [0.2, 0.25, 0.5],
    };
    let loader = Loader::new(ds.clone(), LoaderConfig::eval(32, norm)).unwrap();
    let batches = collect(&loader, 0);
    assert_eq!(loader.num_batches(), 3);
    assert_eq!(
        batches.iter().map(|b| b.n).collect::<Vec<_>>(),
        vec![32, 32, 6]
    );
    let b = &batches[1];
    assert_eq!(b.shape(), [32, 3, 32, 32]);
    assert_eq!(b.images.len(), 32 * 3 * 32 * 32);
    assert_eq!(b.index, 1);
    // Evaluation order is the dataset order, without augmentation.
    assert_eq!(b.indices, (32..64).collect::<Vec<_>>());
    for k in 0..b.n {
        let i = b.indices[k];
        assert_eq!(b.labels[k], i64::from(ds.labels[i]));
        for (c, y, x) in [(0, 0, 0), (1, 7, 30), (2, 31, 31)] {
            let raw = ds.image(i)[(y * 32 + x) * 3 + c] as f32 / 255.0;
            let want = (raw - norm.mean[c]) / norm.std[c];
            let got = b.images[((k * 3 + c) * 32 + y) * 32 + x];
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
    }
}

#[test]
fn every_sample_once_per_epoch_and_drop_last() {
    let ds = dataset(103);
    let loader = Loader::new(ds.clone(), config(10, Augment::default())).unwrap();
    for epoch in 0..3 {
        let mut seen: Vec<usize> = collect(&loader, epoch)
            .into_iter()
            .flat_map(|b| b.indices)
            .collect();
        assert_eq!(seen.len(), 103);
        seen.sort_unstable();
        assert_eq!(seen, (0..103).collect::<Vec<_>>());
    }
    let dropping = Loader::new(
        ds,
        LoaderConfig {
            drop_last: true,
            ..config(10, Augment::default())
        },
    )
    .unwrap();
    let batches = collect(&dropping, 0);
    assert_eq!((dropping.num_batches(), batches.len()), (10, 10));
    assert!(batches.iter().all(|b| b.n == 10));
    let mut seen: Vec<usize> = batches.into_iter().flat_map(|b| b.indices).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 100);
}

#[test]
fn batches_are_a_function_of_seed_and_epoch() {
    let ds = dataset(90);
    let loader = Loader::new(ds.clone(), config(16, Augment::default())).unwrap();
    let a = collect(&loader, 3);
    // A separate loader, consumed slowly (the producer runs ahead and blocks), gives the same.
    let again = Loader::new(ds.clone(), config(16, Augment::default())).unwrap();
    let b: Vec<Batch> = again
        .epoch(3)
        .inspect(|_| std::thread::sleep(std::time::Duration::from_millis(2)))
        .collect();
    assert_eq!(a, b);
    // Random access and resuming mid-epoch agree with iteration.
    assert_eq!(loader.batch(3, 2).as_ref(), Some(&a[2]));
    assert_eq!(loader.batch(3, a.len()), None);
    assert_eq!(loader.epoch_from(3, 4).collect::<Vec<_>>(), a[4..].to_vec());
    // Another epoch or seed gives another order.
    let other_epoch = collect(&loader, 4);
    assert_ne!(a[0].indices, other_epoch[0].indices);
    let other_seed = Loader::new(
        ds,
        LoaderConfig {
            seed: 43,
            ..config(16, Augment::default())
        },
    )
    .unwrap();
    assert_ne!(a[0].indices, collect(&other_seed, 3)[0].indices);
    assert_eq!(
        loader.order(3),
        a.iter().flat_map(|b| b.indices.clone()).collect::<Vec<_>>()
    );
}

#[test]
fn pad_crop_shifts_content_with_black_border() {
    let ds = dataset(40);
    let pad = 4i64;
    let loader = Loader::new(
        ds.clone(),
        config(
            40,
            Augment {
                pad_crop: pad as u32,
                hflip: false,
            },
        ),
    )
    .unwrap();
    let b = &collect(&loader, 0)[0];
    assert_eq!(b.shape(), [40, 3, 32, 32]);
    let mut shifted = 0;
    for k in 0..b.n {
        let src = ds.image(b.indices[k]);
        let matches = |dy: i64, dx: i64| {
            (0..32i64).all(|y| {
                (0..32i64).all(|x| {
                    let (sy, sx) = (y + dy, x + dx);
                    (0..3).all(|c| {
                        let want = if (0..32).contains(&sy) && (0..32).contains(&sx) {
                            src[((sy * 32 + sx) * 3) as usize + c]
                        } else {
                            0
                        };
                        px(b, k, c, y as usize, x as usize) == want
                    })
                })
            })
        };
        let shift = (-pad..=pad)
            .flat_map(|dy| (-pad..=pad).map(move |dx| (dy, dx)))
            .find(|&(dy, dx)| matches(dy, dx));
        let (dy, dx) = shift.unwrap_or_else(|| panic!("sample {k} is not a shifted copy"));
        if (dy, dx) != (0, 0) {
            shifted += 1;
        }
    }
    assert!(shifted > 30, "only {shifted} of 40 samples were shifted");
}

#[test]
fn hflip_mirrors_about_half_the_samples() {
    let ds = dataset(60);
    let loader = Loader::new(
        ds.clone(),
        config(
            60,
            Augment {
                pad_crop: 0,
                hflip: true,
            },
        ),
    )
    .unwrap();
    let b = &collect(&loader, 1)[0];
    let mut flipped = 0;
    for k in 0..b.n {
        let src = ds.image(b.indices[k]);
        let same = |mirror: bool| {
            (0..32).all(|y| {
                (0..32).all(|x| {
                    let sx = if mirror { 31 - x } else { x };
                    (0..3).all(|c| px(b, k, c, y, x) == src[(y * 32 + sx) * 3 + c])
                })
            })
        };
        match (same(false), same(true)) {
            (true, false) => {}
            (false, true) => flipped += 1,
            other => panic!("sample {k}: {other:?}"),
        }
    }
    assert!((15..=45).contains(&flipped), "{flipped} of 60 flipped");
}

#[test]
fn dropping_the_iterator_early_stops_cleanly() {
    let loader = Loader::new(dataset(500), config(4, Augment::default())).unwrap();
    let mut it = loader.epoch(0);
    assert_eq!(it.len(), 125);
    assert!(it.next().is_some());
    assert_eq!(it.len(), 124);
    drop(it); // Must not hang although the producer is blocked on a full channel.
    assert_eq!(loader.epoch_from(0, 1000).count(), 0);
}

#[test]
fn invalid_configs_are_rejected() {
    let ds = dataset(10);
    assert!(Loader::new(ds.clone(), config(0, Augment::NONE)).is_err());
    let bad = Normalization {
        mean: [0.0; 3],
        std: [1.0, 0.0, 1.0],
    };
    assert!(Loader::new(ds, LoaderConfig::eval(4, bad)).is_err());
}

#[test]
fn empty_dataset_gives_no_batches() {
    let empty = Arc::new(synthetic(10, 0, 0).test);
    let loader = Loader::new(empty, config(4, Augment::default())).unwrap();
    assert_eq!(loader.num_batches(), 0);
    assert_eq!(loader.epoch(0).count(), 0);
}
