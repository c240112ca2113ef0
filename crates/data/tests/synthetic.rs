//! The built-in synthetic dataset: determinism, balance, speed and learnability.

use effcnn_data::{load, synthetic, Dataset, LoadOptions, SYNTHETIC_CLASSES};

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = synthetic(200, 50, 1);
    let b = synthetic(200, 50, 1);
    let c = synthetic(200, 50, 2);
    assert_eq!(a, b);
    assert_ne!(a.train.images, c.train.images);
    assert_ne!(a.test.images, c.test.images);
    // Train and test come from independent streams.
    assert_ne!(a.train.image(0), a.test.image(0));
    // Growing a split does not change its first images.
    let big = synthetic(400, 50, 1);
    assert_eq!(
        &big.train.images[..a.train.images.len()],
        &a.train.images[..]
    );
}

#[test]
fn shape_classes_and_balance() {
    let s = synthetic(1003, 100, 0);
    assert_eq!((s.train.len(), s.test.len()), (1003, 100));
    assert_eq!((s.train.height, s.train.width), (32, 32));
    assert_eq!(s.train.classes, SYNTHETIC_CLASSES.to_vec());
    let counts = s.train.class_counts();
    assert!(counts.iter().all(|&c| c == 100 || c == 101), "{counts:?}");
    assert_eq!(s.test.class_counts(), vec![10; 10]);
    // Images are not blank: every image uses a real range of values.
    for i in 0..s.train.len() {
        let img = s.train.image(i);
        let (lo, hi) = (img.iter().min().unwrap(), img.iter().max().unwrap());
        assert!(hi - lo > 40, "image {i} is nearly flat");
    }
    let (mean, std) = s.train.channel_stats();
    assert!(
        mean.iter().all(|m| (0.25..0.75).contains(m)) && std.iter().all(|s| *s > 0.15),
        "{mean:?} {std:?}"
    );
}

#[test]
fn default_spec_has_the_documented_sizes() {
    let s = load("synthetic", &LoadOptions::default()).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (5000, 1000));
}

/// Contrast- and colour-invariant hand-made features of one image: orientation of the
/// gradient energy, its amount, high-frequency energy, and the spread of the bright area.
fn features(ds: &Dataset, i: usize) -> Vec<f32> {
    let (h, w) = (ds.height as usize, ds.width as usize);
    let img = ds.image(i);
    let g: Vec<f32> = img
        .chunks(3)
        .map(|p| (p[0] as f32 + p[1] as f32 + p[2] as f32) / 765.0)
        .collect();
    let at = |y: usize, x: usize| g[y * w + x];
    let mean = g.iter().sum::<f32>() / g.len() as f32;
    let std = (g.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / g.len() as f32)
        .sqrt()
        .max(1e-3);
    let (mut ex, mut ey, mut ed, mut ea, mut lap) = (0f32, 0f32, 0f32, 0f32, 0f32);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            ex += (at(y, x + 1) - at(y, x - 1)).abs();
            ey += (at(y + 1, x) - at(y - 1, x)).abs();
            ed += (at(y + 1, x + 1) - at(y - 1, x - 1)).abs();
            ea += (at(y + 1, x - 1) - at(y - 1, x + 1)).abs();
            lap +=
                (4.0 * at(y, x) - at(y, x + 1) - at(y, x - 1) - at(y + 1, x) - at(y - 1, x)).abs();
        }
    }
    let total = ex + ey + ed + ea + 1e-6;
    let area = ((h - 2) * (w - 2)) as f32;
    vec![
        ex / total,
        ey / total,
        ed / total,
        ea / total,
        total / area / std,
        lap / area / std,
    ]
}

/// Accuracy of a nearest-class-mean classifier fitted on `train` and scored on `test`.
fn nearest_mean_accuracy(
    train: &Dataset,
    test: &Dataset,
    f: impl Fn(&Dataset, usize) -> Vec<f32>,
) -> f64 {
    let k = train.num_classes();
    let tr: Vec<Vec<f32>> = (0..train.len()).map(|i| f(train, i)).collect();
    let dim = tr[0].len();
    // Standardize every feature with train statistics.
    let mut mu = vec![0f32; dim];
    let mut sd = vec![0f32; dim];
    for v in &tr {
        for d in 0..dim {
            mu[d] += v[d] / tr.len() as f32;
        }
    }
    for v in &tr {
        for d in 0..dim {
            sd[d] += (v[d] - mu[d]).powi(2) / tr.len() as f32;
        }
    }
    let z = |v: &[f32]| {
        (0..dim)
            .map(|d| (v[d] - mu[d]) / sd[d].sqrt().max(1e-6))
            .collect::<Vec<_>>()
    };
    let mut centroid = vec![vec![0f32; dim]; k];
    let counts = train.class_counts();
    for (i, v) in tr.iter().enumerate() {
        let c = train.labels[i] as usize;
        for (acc, x) in centroid[c].iter_mut().zip(z(v)) {
            *acc += x / counts[c] as f32;
        }
    }
    let correct = (0..test.len())
        .filter(|&i| {
            let v = z(&f(test, i));
            let dist = |c: &Vec<f32>| c.iter().zip(&v).map(|(a, b)| (a - b).powi(2)).sum::<f32>();
            let best = (0..k)
                .min_by(|&a, &b| dist(&centroid[a]).total_cmp(&dist(&centroid[b])))
                .unwrap();
            best == test.labels[i] as usize
        })
        .count();
    correct as f64 / test.len() as f64
}

#[test]
fn classes_are_learnable_but_not_trivial() {
    let s = synthetic(2000, 500, 11);
    let raw = nearest_mean_accuracy(&s.train, &s.test, |d, i| {
        d.image(i).iter().map(|&v| v as f32).collect()
    });
    let feat = nearest_mean_accuracy(&s.train, &s.test, features);
    println!("nearest class mean: raw pixels {raw:.3}, simple features {feat:.3}");
    // Raw pixels carry little class information (random colours and positions) …
    assert!(raw < 0.5, "raw-pixel nearest mean is too good: {raw}");
    // … but six generic features already separate the classes far above chance (10 %).
    assert!(feat > 0.35, "features accuracy {feat}");
}
