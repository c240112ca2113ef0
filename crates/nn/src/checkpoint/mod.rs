//! Checkpoint import and export: `.safetensors` and PyTorch `.pth`/`.pt` (ZIP and legacy
//! pre-1.6 containers).
//!
//! Every checkpoint is first read into a [`TensorMap`] (key → shape + f32 data). Keys are then
//! matched against the keys the *graph* derives for each [`Layout`]
//! ([`Graph::tensor_keys`]): no per-model name rules. The layout is detected as the one whose key
//! set matches best; a tie between layouts that would load different tensors is an error asking
//! for an explicit layout. `num_batches_tracked` buffers are ignored. Checkpoint shapes are
//! PyTorch's (Linear weights `[out, in]`); they are transposed into burn's `[in, out]` on load and
//! back on save.
//!
//! By job: `formats` reads files into a [`TensorMap`], `matching` assigns their keys to the
//! graph's tensors (layout and prefix detection), `binding` writes matched tensors into a model,
//! and `export` goes the other way (model → tensors → `.safetensors`, `.pth` conversion).

use std::collections::BTreeMap;
use std::path::Path;

use effcnn_arch::Layout;

use crate::error::{MismatchReport, NnError};
use crate::model::EffNet;

mod binding;
mod export;
mod formats;
mod matching;

pub use binding::apply_tensors;
pub use export::{
    convert, model_tensors, save_safetensors, write_atomic, write_safetensors, ConvertReport,
};
pub use formats::{read_checkpoint, recorded_model};
pub use matching::detect_layout;

/// One checkpoint tensor, converted to f32, in the checkpoint's (PyTorch) shape.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// Shape as stored in the checkpoint.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
    /// Whether the stored dtype was floating point (integer buffers such as
    /// `num_batches_tracked` are kept but never loaded into parameters).
    pub float: bool,
}

impl RawTensor {
    /// A float tensor.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> RawTensor {
        RawTensor {
            shape,
            data,
            float: true,
        }
    }
}

/// A checkpoint's tensors by key.
pub type TensorMap = BTreeMap<String, RawTensor>;

/// What [`load_weights`] / [`apply_tensors`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// The layout the keys were matched against.
    pub layout: Layout,
    /// A prefix stripped from every key (`module.`, `state_dict.`, …), empty if none.
    pub prefix: String,
    /// Number of tensors loaded.
    pub loaded: usize,
    /// Tensors that did not fit (empty unless `allow_partial`).
    pub skipped: MismatchReport,
    /// Keys ignored on purpose (`num_batches_tracked`).
    pub ignored: usize,
}

/// Load a checkpoint file into `model` (see [`read_checkpoint`] and [`apply_tensors`]).
pub fn load_weights(
    model: &mut EffNet,
    path: impl AsRef<Path>,
    layout: Option<Layout>,
    allow_partial: bool,
) -> Result<LoadReport, NnError> {
    let map = read_checkpoint(path.as_ref())?;
    apply_tensors(model, &map, layout, allow_partial)
}
