//! effcnn-engine: effcnn's compiled CPU inference engine and training step.
//!
//! A resolved [`effcnn_arch::Graph`] and its weights compile into a [`Plan`] for one input size:
//! NHWC activations in one arena laid out from the tensors' lifetimes, every
//! conv → batch norm → activation (→ residual add → activation) chain fused into one step with
//! batch norm folded into packed weights, and kernels (packed-panel GEMM, depthwise, pooling,
//! element-wise) compiled for AVX-512, AVX2 + FMA and a portable baseline, chosen at run time.
//! [`TrainPlan`] compiles the same graph into a training step (forward with batch statistics,
//! softmax cross-entropy, the backward pass of every op) over NHWC buffers allocated once; it
//! returns the gradients by canonical key and leaves the optimizer and the running statistics to
//! the caller (burn, in effcnn-train).
//! burn's forward and autodiff (effcnn-nn) are the references the plans are tested against, with
//! PyTorch in float64 for the training step.

pub mod error;
pub mod kernels;
pub mod plan;
pub mod shapes;
pub mod simd;
pub mod train;

pub use error::EngineError;
pub use plan::{Plan, PlanOptions, StepInfo, WeightMap, Weights};
pub use simd::Isa;
pub use train::{check_switches, StepInput, StepOutput, TrainPlan};
