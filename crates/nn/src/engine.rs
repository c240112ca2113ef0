//! The bridge from a burn [`EffNet`] to effcnn's compiled CPU inference engine: the model's
//! tensors (BN running statistics included) are read once and compiled into a
//! [`effcnn_engine::Plan`] for one input size.

use std::collections::BTreeMap;

use effcnn_arch::Layout;
use effcnn_engine::{Plan, PlanOptions};

use crate::checkpoint::model_tensors;
use crate::{EffNet, NnError};

/// The model's tensors by canonical key, in the form the engine reads.
pub fn engine_weights(model: &EffNet) -> Result<BTreeMap<String, (Vec<usize>, Vec<f32>)>, NnError> {
    Ok(model_tensors(model, Layout::Canonical)?
        .into_iter()
        .map(|(k, t)| (k, (t.shape, t.data)))
        .collect())
}

/// Compile `model` (eval mode: BN running statistics, no dropout) for inputs of `dims`
/// (`[batch, channels, height, width]`).
pub fn compile_plan(model: &EffNet, dims: [usize; 4], opts: PlanOptions) -> Result<Plan, NnError> {
    model.check_input(dims)?;
    let weights = engine_weights(model)?;
    Plan::compile(model.graph(), &weights, dims, opts).map_err(|e| NnError::BadInput(e.to_string()))
}
