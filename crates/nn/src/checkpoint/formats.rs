//! Checkpoint files into a [`TensorMap`]: safetensors and PyTorch containers, with their
//! headers checked against their data and pickles checked weights-only first.

use std::path::Path;

use burn_store::pytorch_reader::{DType, PytorchReader};

use super::{RawTensor, TensorMap};
use crate::error::NnError;
use crate::pickle_guard;

/// Read a checkpoint (`.safetensors`, or a PyTorch `.pth`/`.pt`/`.bin`/`.tar`) into memory.
/// The format is recognised from the file's content, not its name.
///
/// Floating-point tensors of any width (F64, F32, F16, BF16) are converted to f32; integer
/// tensors are kept as non-float buffers that never load into parameters. A file whose header
/// disagrees with its data (offsets or sizes past the end, overlapping tensors, a byte count
/// that does not fit the dtype and shape) is an error, as is any pickle that references a
/// global outside the weights-only allow-list (see [`NnError::UnsafePickle`]).
pub fn read_checkpoint(path: impl AsRef<Path>) -> Result<TensorMap, NnError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| NnError::io(path, e))?;
    if looks_like_safetensors(&bytes) {
        return read_safetensors_bytes(path, &bytes);
    }
    // Weights-only check of every pickle before the reader sees the file.
    if let Err(e) = pickle_guard::check_bytes(path, &bytes) {
        return Err(match e {
            // Neither zip, legacy container nor a protocol-2+ pickle, and unreadable as a
            // pickle: most likely not a checkpoint at all.
            NnError::Format { msg, .. }
                if pickle_guard::container(&bytes) == pickle_guard::Container::Pickle
                    && !bytes.starts_with(&[0x80]) =>
            {
                NnError::format(
                    path,
                    format!(
                        "not a checkpoint: neither .safetensors, a PyTorch zip archive nor a \
                         pickle ({msg})"
                    ),
                )
            }
            e => e,
        });
    }
    drop(bytes);
    read_pytorch_checked(path)
}

/// The model name a `.safetensors` file written by effcnn records in its metadata
/// (`effcnn.model`), read from the header alone; `None` for any other file.
pub fn recorded_model(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let n = u64::from_le_bytes(len);
    if n > SAFETENSORS_MAX_HEADER {
        return None;
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&header).ok()?;
    v.get("__metadata__")?
        .get("effcnn.model")?
        .as_str()
        .map(str::to_string)
}

/// The largest header the safetensors format allows.
const SAFETENSORS_MAX_HEADER: u64 = 100_000_000;

/// A safetensors file: an 8-byte little-endian header length, then a JSON object. The length is
/// only checked for plausibility here (a zip or pickle never starts with one), so that a header
/// length running past the end of the file is reported as such rather than as a bad pickle.
fn looks_like_safetensors(bytes: &[u8]) -> bool {
    if bytes.len() < 10 {
        return false;
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    n > 0 && n <= SAFETENSORS_MAX_HEADER && bytes[8] == b'{'
}

fn read_safetensors_bytes(path: &Path, bytes: &[u8]) -> Result<TensorMap, NnError> {
    use safetensors::Dtype;
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if n > (bytes.len() - 8) as u64 {
        return Err(NnError::format(
            path,
            format!(
                "invalid safetensors file: the header length {n} runs past the end of the \
                 {}-byte file (truncated or not a safetensors file)",
                bytes.len()
            ),
        ));
    }
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
        let detail = safetensors_size_mismatch(bytes)
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        NnError::format(path, format!("invalid safetensors file: {e}{detail}"))
    })?;
    let mut out = TensorMap::new();
    for (name, view) in st.iter() {
        let d = view.data();
        let (data, float) = match view.dtype() {
            Dtype::F32 => (
                d.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                true,
            ),
            Dtype::F64 => (
                d.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                true,
            ),
            Dtype::F16 => (
                d.chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                true,
            ),
            Dtype::BF16 => (
                d.chunks_exact(2)
                    .map(|c| bf16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                true,
            ),
            Dtype::I64 => (
                d.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                false,
            ),
            Dtype::I32 => (
                d.chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                false,
            ),
            other => {
                return Err(NnError::format(
                    path,
                    format!("tensor {name}: unsupported dtype {other:?}"),
                ))
            }
        };
        out.insert(
            name.to_string(),
            RawTensor {
                shape: view.shape().to_vec(),
                data,
                float,
            },
        );
    }
    Ok(out)
}

/// Names the first tensor whose header entry disagrees with itself (the byte span of its
/// `data_offsets` is not what its dtype and shape need): the safetensors crate reports that
/// case without the tensor's name.
fn safetensors_size_mismatch(bytes: &[u8]) -> Option<String> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    header.iter().find_map(|(name, info)| {
        let width: u64 = match info.get("dtype")?.as_str()? {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            "I8" | "U8" | "BOOL" => 1,
            _ => return None,
        };
        let count = info
            .get("shape")?
            .as_array()?
            .iter()
            .try_fold(1u64, |a, d| a.checked_mul(d.as_u64()?))?;
        let offsets = info.get("data_offsets")?.as_array()?;
        let (start, end) = (offsets.first()?.as_u64()?, offsets.get(1)?.as_u64()?);
        let need = count.checked_mul(width)?;
        (end.checked_sub(start) != Some(need)).then(|| {
            format!(
                "tensor {name}: {} {} needs {need} bytes, its data_offsets [{start}, {end}] \
                 span {}",
                info["dtype"].as_str().unwrap_or("?"),
                info["shape"],
                end as i128 - start as i128
            )
        })
    })
}

/// Read a PyTorch checkpoint after its pickles passed the weights-only check.
fn read_pytorch_checked(path: &Path) -> Result<TensorMap, NnError> {
    let reader = PytorchReader::new(path)
        .map_err(|e| NnError::format(path, format!("cannot read PyTorch checkpoint: {e}")))?;
    let mut out = TensorMap::new();
    for (name, t) in reader.into_tensors() {
        let bytes = t
            .read()
            .map_err(|e| NnError::format(path, format!("tensor {name}: {e}")))?;
        let (data, float): (Vec<f32>, bool) = match t.dtype() {
            DType::F32 => (
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                true,
            ),
            DType::F64 => (
                bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                true,
            ),
            DType::F16 => (
                bytes
                    .chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                true,
            ),
            DType::BF16 => (
                bytes
                    .chunks_exact(2)
                    .map(|c| bf16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                true,
            ),
            DType::I64 => (
                bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                false,
            ),
            // Other integer and bool buffers are never weights; keep their shape only.
            _ => (Vec::new(), false),
        };
        out.insert(
            name,
            RawTensor {
                shape: t.shape().to_vec(),
                data,
                float,
            },
        );
    }
    Ok(out)
}

fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m · 2^-24.
            let v = m as f32 * (1.0 / (1u32 << 24) as f32);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}
