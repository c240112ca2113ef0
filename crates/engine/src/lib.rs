//! effcnn-engine: effcnn's compiled CPU inference engine.
//!
//! A resolved [`effcnn_arch::Graph`] and its weights compile into a [`Plan`] for one input size:
//! NHWC activations in one arena laid out from the tensors' lifetimes, every
//! conv → batch norm → activation (→ residual add → activation) chain fused into one step with
//! batch norm folded into packed weights, and kernels (packed-panel GEMM, depthwise, pooling,
//! element-wise) compiled for AVX-512, AVX2 + FMA and a portable baseline, chosen at run time.
//! burn's forward (effcnn-nn) is the reference the plan is tested against.

pub mod error;
pub mod kernels;
pub mod plan;
pub mod shapes;
pub mod simd;

pub use error::EngineError;
pub use plan::{Plan, PlanOptions, StepInfo, WeightMap, Weights};
pub use simd::Isa;
