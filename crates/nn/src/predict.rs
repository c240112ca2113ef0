//! Preprocessing and prediction helpers: images (PNG/JPEG) and `.npy` tensors in, top-k classes
//! with ImageNet labels out.
//!
//! Image preprocessing is the standard ImageNet evaluation transform: resize the shorter side to
//! `resolution · 256/224` (256 for 224) with bilinear filtering, center-crop `resolution`², scale
//! to [0, 1] and normalise per channel with the model's recorded mean/std
//! ([`effcnn_arch::ModelMeta::norm_mean`]/`norm_std`), which the caller may override. An image
//! that already has the target size is used as is (no resampling).

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use crate::engine::{Engine, Inference, PlanOptions};
use crate::error::NnError;
use crate::model::EffNet;

/// The 1000 ImageNet class names, in class-index order.
pub const IMAGENET_CLASSES: &str = include_str!("../imagenet_classes.txt");

/// The ImageNet label of class `index`, if it exists.
pub fn imagenet_label(index: usize) -> Option<&'static str> {
    IMAGENET_CLASSES.lines().nth(index)
}

pub use effcnn_arch::norm::Normalization;

/// A batch of model inputs, row-major `[N, C, H, W]`.
#[derive(Debug, Clone, PartialEq)]
pub struct InputBatch {
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
    /// Row-major values.
    pub data: Vec<f32>,
}

impl InputBatch {
    /// Upload to `device` as a tensor.
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(self.data.clone(), self.shape), device)
    }
}

/// Short side the image is resized to before center-cropping `resolution` (256 for 224).
pub fn resize_side(resolution: usize) -> usize {
    (resolution * 256 + 112) / 224
}

/// Load and preprocess an image file into a `[1, 3, resolution, resolution]` batch.
pub fn load_image(
    path: impl AsRef<Path>,
    resolution: usize,
    norm: Normalization,
) -> Result<InputBatch, NnError> {
    let path = path.as_ref();
    if resolution == 0 {
        return Err(NnError::BadInput("resolution must be at least 1".into()));
    }
    let img = image::ImageReader::open(path)
        .map_err(|e| NnError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| NnError::io(path, e))?
        .decode()
        .map_err(|e| NnError::format(path, format!("cannot decode image: {e}")))?
        .to_rgb8();
    Ok(preprocess(&img, resolution, norm))
}

/// Resize (shorter side to [`resize_side`], bilinear), center-crop and normalise an RGB image.
/// Skips the resampling when the image is already `resolution`².
pub fn preprocess(img: &image::RgbImage, resolution: usize, norm: Normalization) -> InputBatch {
    let (w, h) = img.dimensions();
    let r = resolution as u32;
    let cropped;
    let src = if (w, h) == (r, r) {
        img
    } else {
        let side = resize_side(resolution) as u32;
        // torchvision Resize(int): the shorter side becomes `side`, the other is truncated.
        let (nw, nh) = if w <= h {
            (side, ((side as u64 * h as u64) / w.max(1) as u64) as u32)
        } else {
            (((side as u64 * w as u64) / h.max(1) as u64) as u32, side)
        };
        let resized = image::imageops::resize(
            img,
            nw.max(r),
            nh.max(r),
            image::imageops::FilterType::Triangle,
        );
        let (rw, rh) = resized.dimensions();
        let left = ((rw - r) as f64 / 2.0).round() as u32;
        let top = ((rh - r) as f64 / 2.0).round() as u32;
        cropped = image::imageops::crop_imm(&resized, left, top, r, r).to_image();
        &cropped
    };
    let plane = resolution * resolution;
    let mut data = vec![0f32; 3 * plane];
    for (x, y, p) in src.enumerate_pixels() {
        let i = y as usize * resolution + x as usize;
        for c in 0..3 {
            data[c * plane + i] = (p[c] as f32 / 255.0 - norm.mean[c]) / norm.std[c];
        }
    }
    InputBatch {
        shape: [1, 3, resolution, resolution],
        data,
    }
}

/// Parse a `.npy` file holding a float32 (`<f4`), C-ordered `[N, 3, H, W]` tensor.
pub fn read_npy(path: impl AsRef<Path>) -> Result<InputBatch, NnError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| NnError::io(path, e))?;
    parse_npy(&bytes).map_err(|msg| NnError::format(path, msg))
}

/// [`read_npy`] on bytes in memory; errors are plain messages.
pub fn parse_npy(bytes: &[u8]) -> Result<InputBatch, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (hlen, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated .npy header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        _ => return Err(format!("unsupported .npy version {major}.{minor}")),
    };
    let end = start
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or("truncated .npy header")?;
    let header =
        std::str::from_utf8(&bytes[start..end]).map_err(|_| "the .npy header is not text")?;
    let field = |name: &str| -> Result<&str, String> {
        let key = format!("'{name}':");
        let at = header
            .find(&key)
            .ok_or(format!("the .npy header has no '{name}'"))?;
        Ok(header[at + key.len()..].trim_start())
    };
    let descr = field("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|s| s.split('\'').next())
        .ok_or("malformed 'descr' in the .npy header")?;
    if descr != "<f4" {
        return Err(format!(
            "dtype '{descr}' is not supported: save the array as little-endian float32 ('<f4', \
             e.g. x.astype(np.float32))"
        ));
    }
    let fortran = field("fortran_order")?;
    if fortran.starts_with("True") {
        return Err("Fortran-ordered arrays are not supported: save a C-ordered array".into());
    } else if !fortran.starts_with("False") {
        return Err("malformed 'fortran_order' in the .npy header".into());
    }
    let shape = field("shape")?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("malformed 'shape' in the .npy header")?;
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad dimension '{s}' in the .npy shape"))
        })
        .collect::<Result<_, _>>()?;
    if dims.len() != 4 {
        return Err(format!(
            "expected a rank-4 [N, 3, H, W] array, got shape {dims:?}"
        ));
    }
    if dims[1] != 3 {
        return Err(format!(
            "expected 3 channels in NCHW order ([N, 3, H, W]), got shape {dims:?}"
        ));
    }
    if dims.contains(&0) {
        return Err(format!("empty array of shape {dims:?}"));
    }
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("array too large")?;
    let body = &bytes[end..];
    let need = n.checked_mul(4).ok_or("array too large")?;
    if body.len() < need {
        return Err(format!(
            "truncated data: shape {dims:?} needs {need} bytes, the file has {}",
            body.len()
        ));
    }
    if body.len() > need {
        return Err(format!(
            "{} unexpected trailing bytes after the array data",
            body.len() - need
        ));
    }
    let data: Vec<f32> = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if data.iter().any(|v| !v.is_finite()) {
        return Err("the array holds NaN or infinite values".into());
    }
    Ok(InputBatch {
        shape: [dims[0], dims[1], dims[2], dims[3]],
        data,
    })
}

/// Load a model input: a `.npy` tensor (used as is) or an image (preprocessed for the model's
/// resolution with `norm`, default the model's recorded normalisation).
pub fn load_input(
    path: impl AsRef<Path>,
    model: &EffNet,
    norm: Option<Normalization>,
) -> Result<InputBatch, NnError> {
    let path = path.as_ref();
    let is_npy = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let batch = if is_npy {
        read_npy(path)?
    } else {
        load_image(
            path,
            model.graph().meta.resolution,
            norm.unwrap_or_else(|| model.graph().meta.normalization()),
        )?
    };
    model.check_input(batch.shape)?;
    Ok(batch)
}

/// One of the top-k classes of a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct TopClass {
    /// Class index.
    pub index: usize,
    /// ImageNet label for 1000-class models, `class N` otherwise.
    pub label: String,
    /// Softmax probability.
    pub prob: f32,
}

/// The prediction for one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Best classes first.
    pub top: Vec<TopClass>,
    /// All logits.
    pub logits: Vec<f32>,
}

/// Softmax in f64 over one row of logits.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}

/// The `k` most probable classes of one row of logits (ties keep the lower index first).
pub fn top_k(logits: &[f32], k: usize) -> Vec<TopClass> {
    let probs = softmax(logits);
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let imagenet = logits.len() == 1000;
    idx.into_iter()
        .take(k)
        .map(|i| TopClass {
            index: i,
            label: if imagenet {
                imagenet_label(i).unwrap_or("?").to_string()
            } else {
                format!("class {i}")
            },
            prob: probs[i],
        })
        .collect()
}

/// Run `model` (eval mode on its device) on a batch and return the top-`k` classes of each sample.
pub fn predict(model: &EffNet, batch: &InputBatch, k: usize) -> Result<Vec<Prediction>, NnError> {
    predict_with(model, batch, k, Engine::default())
}

/// [`predict`] through a chosen inference engine.
pub fn predict_with(
    model: &EffNet,
    batch: &InputBatch,
    k: usize,
    engine: Engine,
) -> Result<Vec<Prediction>, NnError> {
    model.check_input(batch.shape)?;
    // Evaluation: running statistics, no dropout, whatever device the model is on.
    let model = model.valid();
    let mut inference = Inference::new(&model, engine, PlanOptions::default())?;
    let flat = inference.logits(&batch.data, batch.shape)?;
    let n = batch.shape[0];
    let classes = flat.len() / n.max(1);
    Ok((0..n)
        .map(|i| {
            let row = flat[i * classes..(i + 1) * classes].to_vec();
            Prediction {
                top: top_k(&row, k),
                logits: row,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, body: &[u8], version: u8) -> Vec<u8> {
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        let pre = if version == 1 { 10 } else { 12 };
        while (pre + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY".to_vec();
        out.push(version);
        out.push(0);
        if version == 1 {
            out.extend((header.len() as u16).to_le_bytes());
        } else {
            out.extend((header.len() as u32).to_le_bytes());
        }
        out.extend(header.as_bytes());
        out.extend(body);
        out
    }

    fn body(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
    }

    #[test]
    fn npy_accepts_f4_nchw() {
        for v in [1, 2] {
            let b = parse_npy(&npy("<f4", false, "(1, 3, 2, 2)", &body(12), v)).unwrap();
            assert_eq!(b.shape, [1, 3, 2, 2]);
            assert_eq!(b.data[5], 5.0);
        }
    }

    #[test]
    fn npy_rejects_bad_input() {
        let e = parse_npy(&npy("<f8", false, "(1, 3, 2, 2)", &body(24), 1)).unwrap_err();
        assert!(e.contains("'<f8'"), "{e}");
        let e = parse_npy(&npy("<f4", true, "(1, 3, 2, 2)", &body(12), 1)).unwrap_err();
        assert!(e.contains("Fortran"), "{e}");
        let e = parse_npy(&npy("<f4", false, "(3, 2, 2)", &body(12), 1)).unwrap_err();
        assert!(e.contains("rank-4"), "{e}");
        let e = parse_npy(&npy("<f4", false, "(1, 2, 2, 3)", &body(12), 1)).unwrap_err();
        assert!(e.contains("3 channels"), "{e}");
        let e = parse_npy(&npy("<f4", false, "(1, 3, 2, 2)", &body(11), 1)).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        let e = parse_npy(b"PK\x03\x04 not numpy").unwrap_err();
        assert!(e.contains("magic"), "{e}");
        let mut short = npy("<f4", false, "(1, 3, 2, 2)", &body(12), 1);
        short.truncate(30);
        assert!(parse_npy(&short).is_err());
    }

    #[test]
    fn labels_and_topk() {
        assert_eq!(imagenet_label(0), Some("tench"));
        assert_eq!(IMAGENET_CLASSES.lines().count(), 1000);
        let mut logits = vec![0f32; 1000];
        logits[285] = 5.0;
        logits[281] = 4.0;
        let t = top_k(&logits, 2);
        assert_eq!(t[0].index, 285);
        assert_eq!(t[1].index, 281);
        assert!(t[0].prob > t[1].prob);
        let p: f64 = softmax(&logits).iter().map(|&v| v as f64).sum();
        assert!((p - 1.0).abs() < 1e-5);
    }

    #[test]
    fn resize_then_center_crop() {
        let img = image::RgbImage::from_fn(300, 400, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
        });
        let b = preprocess(&img, 224, Normalization::TF127);
        assert_eq!(b.shape, [1, 3, 224, 224]);
        assert_eq!(resize_side(224), 256);
        // Exact size: no resampling, values are the pixels.
        let img = image::RgbImage::from_fn(4, 4, |x, _| image::Rgb([x as u8 * 60, 0, 255]));
        let n = Normalization {
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        let b = preprocess(&img, 4, n);
        assert_eq!(b.data[3], 180.0 / 255.0);
        assert_eq!(b.data[32], 1.0);
    }
}
