//! effcnn-arch: efficient CNN architectures as data.
//!
//! spec (the paper's table) ──resolve(width, depth, resolution, profile)──► [`Graph`] (every node:
//! path, op, in/out shape) ──► cost analyzer ([`cost`]), runnable model (effcnn-nn), checkpoint key
//! maps ([`Graph::tensor_keys`]), diagrams.

pub mod blocks;
pub mod builder;
pub mod calc;
pub mod cost;
pub mod diagram;
pub mod error;
pub mod files;
pub mod graph;
pub mod liveness;
pub mod norm;
pub mod zoo;

pub use error::ArchError;
pub use graph::{Act, Conv, Graph, Layout, ModelMeta, Node, NodeId, Op, Pad, Profile, Shape};
pub use norm::Normalization;
pub use zoo::{entries, entry, resolve, se_baseline, Options};
