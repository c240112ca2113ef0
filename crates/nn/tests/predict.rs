//! Prediction helpers end to end: `.npy` and image inputs, top-k with labels.

use effcnn_arch::Options;
use effcnn_nn::predict::{load_input, predict, Normalization};
use effcnn_nn::{EffNet, InitConfig, NnError};

fn npy_bytes(shape: [usize; 4], values: &[f32]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}, {}, {}), }}",
        shape[0], shape[1], shape[2], shape[3]
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

#[test]
fn npy_and_image_inputs() {
    let dir = std::env::temp_dir().join(format!("effcnn-nn-predict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let device = effcnn_nn::cpu();

    let cifar = EffNet::from_zoo(
        "mobilenet_v2",
        &Options::cifar(),
        &device,
        InitConfig::default(),
    )
    .unwrap();
    let npy = dir.join("x.npy");
    let vals = effcnn_nn::parity::fill(0, 1.0, 0.0, 2 * 3 * 32 * 32);
    std::fs::write(&npy, npy_bytes([2, 3, 32, 32], &vals)).unwrap();
    let batch = load_input(&npy, &cifar, None).unwrap();
    assert_eq!(batch.shape, [2, 3, 32, 32]);
    let preds = predict(&cifar, &batch, 3).unwrap();
    assert_eq!(preds.len(), 2);
    assert_eq!(preds[0].logits.len(), 10);
    assert_eq!(preds[0].top.len(), 3);
    assert!(preds[0].top[0].label.starts_with("class "));
    assert!(preds[0].top[0].prob >= preds[0].top[1].prob);

    // A 1-channel array is refused with a clear message.
    let bad = dir.join("bad.npy");
    std::fs::write(&bad, npy_bytes([1, 1, 32, 32], &vals[..1024])).unwrap();
    let e = load_input(&bad, &cifar, None).unwrap_err();
    assert!(matches!(e, NnError::Format { .. }), "{e}");
    assert!(e.to_string().contains("3 channels"), "{e}");

    // An image of another size is resized and center-cropped to the model's resolution.
    let imagenet = EffNet::from_zoo(
        "mobilenet_v3_small",
        &Options::imagenet(),
        &device,
        InitConfig::default(),
    )
    .unwrap();
    let png = dir.join("x.png");
    image::RgbImage::from_fn(300, 200, |x, y| image::Rgb([x as u8, y as u8, 128]))
        .save(&png)
        .unwrap();
    let batch = load_input(&png, &imagenet, Some(Normalization::IMAGENET)).unwrap();
    assert_eq!(batch.shape, [1, 3, 224, 224]);
    let p = predict(&imagenet, &batch, 5).unwrap().remove(0);
    assert_eq!(p.logits.len(), 1000);
    assert_eq!(
        p.top[0].label,
        effcnn_nn::predict::imagenet_label(p.top[0].index).unwrap()
    );
    // Not an image.
    let junk = dir.join("junk.png");
    std::fs::write(&junk, b"nope").unwrap();
    assert!(load_input(&junk, &imagenet, None).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
