//! Fast CPU convolution kernels for effcnn's models, free of any framework.
//!
//! burn's flex backend computes a convolution's gradients through generic fallbacks: the input
//! gradient as a transposed convolution and the weight gradient as a convolution of the swapped
//! batch and channel axes — for a depthwise layer, one such convolution *per channel*. Training
//! an efficient CNN spends most of its time there. This crate provides one convolution operation
//! (forward, input gradient, weight gradient) and a batch norm (+ ReLU) forward/backward written
//! for NCHW float32 slices on few cores ([`cpu`]). `effcnn_nn::model::ext` plugs them into burn
//! as a backend extension with its own backward pass, so models keep using ordinary `Tensor`s;
//! burn's `conv2d` stays the reference there: every kernel is tested against it, and
//! `EFFCNN_KERNELS=burn` switches the kernels off.

pub mod cpu;

pub use cpu::Activation;
