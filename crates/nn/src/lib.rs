//! effcnn-nn: runnable effcnn models on burn, checkpoint import/export and PyTorch parity.
//!
//! - [`model::EffNet`]: a burn module that interprets an [`effcnn_arch::Graph`] (any backend;
//!   the backend is the [`burn::tensor::Device`] the model lives on).
//! - [`device`]: `cpu` / `cuda[:N]` selection; CUDA (burn's CUDA backend) with the `cuda` feature.
//! - [`checkpoint`]: `.safetensors` and PyTorch `.pth` import (keys mapped through the graph's
//!   layouts), safetensors export, `.pth` → `.safetensors` conversion. PyTorch pickles are
//!   checked weights-only before they are read ([`NnError::UnsafePickle`]).
//! - [`parity`]: the deterministic-weight fixture format used to prove PyTorch parity.
//! - [`predict`]: image / `.npy` preprocessing, top-k with ImageNet labels.
//! - [`train_step`]: the bridge to the engine's compiled training step (gradients into burn's
//!   optimizers, batch statistics into the running statistics).

#![warn(missing_docs)]

pub mod checkpoint;
pub mod device;
pub mod engine;
pub mod error;
pub mod latency;
pub mod model;
pub mod parity;
mod pickle_guard;
pub mod predict;
pub mod train_step;

pub use checkpoint::{
    apply_tensors, convert, detect_layout, load_weights, read_checkpoint, save_safetensors,
    ConvertReport, LoadReport, RawTensor, TensorMap,
};
pub use device::{configure_threads, ComputeDevice, DeviceError};
pub use error::{MismatchReport, NnError};
pub use model::{EffNet, InitConfig};

/// The flex (pure-Rust CPU) device.
pub fn cpu() -> burn::tensor::Device {
    burn::tensor::Device::flex()
}
