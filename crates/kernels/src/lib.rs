//! Fast CPU convolution kernels for effcnn's models.
//!
//! burn's flex backend computes a convolution's gradients through generic fallbacks: the input
//! gradient as a transposed convolution and the weight gradient as a convolution of the swapped
//! batch and channel axes — for a depthwise layer, one such convolution *per channel*. Training
//! an efficient CNN spends most of its time there. This crate provides one convolution operation
//! (forward, input gradient, weight gradient) written for NCHW float32 on few cores
//! ([`cpu`]) and plugs it into burn as a backend extension with its own backward pass ([`ext`]),
//! so models keep using ordinary `Tensor`s. burn's `conv2d` stays the reference: every kernel is
//! tested against it, and `EFFCNN_KERNELS=burn` switches the kernels off.

pub mod cpu;
pub mod ext;

pub use cpu::Activation;
pub use ext::{accelerated, batch_norm_train, conv2d, conv2d_fused};
