//! The bridge from a burn [`EffNet`] to effcnn's compiled CPU training step
//! ([`effcnn_engine::TrainPlan`]): burn keeps the model, the optimizer and the records, the plan
//! computes the loss, the gradients and the batch statistics of one step.
//!
//! Both sides name tensors by their canonical keys (`<node path>.<suffix>`, see
//! [`effcnn_arch::graph::tensor_suffixes`]) in PyTorch shapes. burn's `Linear` stores its weight
//! as `[in, out]`, so linear weights (and their gradients) are transposed on the way in and out;
//! every other tensor has the same shape on both sides.
//!
//! Batch norm in training (see [`crate::model`]): with momentum `m` ([`crate::model::BN_MOMENTUM`],
//! the weight of the new batch statistic), `running_mean ← (1 − m)·running_mean + m·mean` and
//! `running_var ← (1 − m)·running_var + m·var_unbiased`, where `var_unbiased` is the batch's
//! variance over the `M = N·H·W` values of a channel scaled by `M / (M − 1)` (PyTorch's
//! semantics; for `M = 1` the biased variance, 0, is used). The plan reports `mean` and
//! `var_unbiased` per channel; [`apply_batch_stats`] applies this update.

use std::collections::BTreeMap;

use burn::module::ParamId;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use effcnn_arch::graph::TensorKey;
use effcnn_arch::Layout;
pub use effcnn_engine::{check_switches, EngineError, StepInput, StepOutput, TrainPlan};

use crate::engine::{PlanOptions, WeightMap};
use crate::model::{EffNet, Slot};
use crate::NnError;

/// Which burn tensor a trainable canonical key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    ConvWeight(usize),
    ConvBias(usize),
    BnGamma(usize),
    BnBeta(usize),
    LinearWeight(usize),
    LinearBias(usize),
}

/// The trainable tensors of `model` by canonical key, in graph order.
fn trainable(model: &EffNet) -> Vec<(TensorKey, Target)> {
    model
        .graph()
        .tensor_keys(Layout::Canonical)
        .into_iter()
        .filter(|k| k.trainable)
        .map(|k| {
            let t = match (model.slot(k.node), k.suffix) {
                (Slot::Conv(i), "weight") => Target::ConvWeight(i),
                (Slot::Conv(i), "bias") => Target::ConvBias(i),
                (Slot::Bn(i), "weight") => Target::BnGamma(i),
                (Slot::Bn(i), "bias") => Target::BnBeta(i),
                (Slot::Linear(i), "weight") => Target::LinearWeight(i),
                (Slot::Linear(i), "bias") => Target::LinearBias(i),
                (slot, suffix) => unreachable!("{slot:?} has no trainable tensor {suffix}"),
            };
            (k, t)
        })
        .collect()
}

impl Target {
    fn id(self, model: &EffNet) -> ParamId {
        let bias = |b: &Option<burn::module::Param<Tensor<1>>>| {
            b.as_ref().expect("the graph says the layer has a bias").id
        };
        match self {
            Target::ConvWeight(i) => model.convs[i].weight.id,
            Target::ConvBias(i) => bias(&model.convs[i].bias),
            Target::BnGamma(i) => model.bns[i].gamma.id,
            Target::BnBeta(i) => model.bns[i].beta.id,
            Target::LinearWeight(i) => model.linears[i].weight.id,
            Target::LinearBias(i) => bias(&model.linears[i].bias),
        }
    }

    fn device(self, model: &EffNet) -> Device {
        let bias = |b: &Option<burn::module::Param<Tensor<1>>>| {
            b.as_ref()
                .expect("the graph says the layer has a bias")
                .lazy_device()
        };
        match self {
            Target::ConvWeight(i) => model.convs[i].weight.lazy_device(),
            Target::ConvBias(i) => bias(&model.convs[i].bias),
            Target::BnGamma(i) => model.bns[i].gamma.lazy_device(),
            Target::BnBeta(i) => model.bns[i].beta.lazy_device(),
            Target::LinearWeight(i) => model.linears[i].weight.lazy_device(),
            Target::LinearBias(i) => bias(&model.linears[i].bias),
        }
    }
}

/// The burn [`ParamId`] of every trainable tensor of `model` (conv and linear weights and
/// biases, batch-norm γ and β), by canonical key. Running statistics are not parameters and are
/// not listed.
pub fn param_ids(model: &EffNet) -> BTreeMap<String, ParamId> {
    trainable(model)
        .into_iter()
        .map(|(k, t)| (k.key, t.id(model)))
        .collect()
}

/// `[out, in]` row-major → `[in, out]` row-major (and back: the same function with the
/// dimensions swapped).
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, NnError> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| NnError::BadInput(format!("cannot read a gradient: {e:?}")))
}

/// burn [`GradientsParams`] for `model` from gradients by canonical key in PyTorch shapes (what
/// [`TrainPlan::step`] returns in [`StepOutput::grads`]).
///
/// Every trainable tensor must have its gradient, of exactly its shape; a missing, mis-shaped or
/// unknown key is an error naming it. Each gradient is registered under its parameter's id, on
/// the parameter's device without autodiff (where burn's backward puts gradients), so burn's
/// optimizers treat it exactly as a gradient from [`Tensor::backward`].
pub fn gradients_from_map(model: &EffNet, grads: &WeightMap) -> Result<GradientsParams, NnError> {
    let targets = trainable(model);
    let mut out = GradientsParams::new();
    for (k, t) in &targets {
        let (shape, data) = grads
            .get(&k.key)
            .ok_or_else(|| NnError::BadInput(format!("no gradient for `{}`", k.key)))?;
        if shape != &k.shape || data.len() != k.shape.iter().product::<usize>() {
            return Err(NnError::BadInput(format!(
                "the gradient of `{}` has shape {shape:?} ({} values), the model needs {:?}",
                k.key,
                data.len(),
                k.shape
            )));
        }
        let device = t.device(model).inner();
        let id = t.id(model);
        let s = &k.shape;
        match t {
            Target::ConvWeight(_) => out.register::<4>(
                id,
                Tensor::from_data(
                    TensorData::new(data.clone(), [s[0], s[1], s[2], s[3]]),
                    &device,
                ),
            ),
            Target::LinearWeight(_) => {
                // PyTorch [out, in] → burn [in, out].
                let (o, i) = (s[0], s[1]);
                out.register::<2>(
                    id,
                    Tensor::from_data(TensorData::new(transpose(data, o, i), [i, o]), &device),
                )
            }
            _ => out.register::<1>(
                id,
                Tensor::from_data(TensorData::new(data.clone(), [s[0]]), &device),
            ),
        }
    }
    if grads.len() != targets.len() {
        let known: std::collections::BTreeSet<&str> =
            targets.iter().map(|(k, _)| k.key.as_str()).collect();
        let unknown: Vec<&str> = grads
            .keys()
            .map(String::as_str)
            .filter(|k| !known.contains(k))
            .collect();
        return Err(NnError::BadInput(format!(
            "gradients for tensors that are not trainable parameters of {}: {}",
            model.graph().meta.name,
            unknown.join(", ")
        )));
    }
    Ok(out)
}

/// burn's gradients of `model` (e.g. `GradientsParams::from_grads(loss.backward(), &model)`) by
/// canonical key in PyTorch shapes: the inverse of [`gradients_from_map`]. A trainable tensor
/// without a gradient is an error naming it.
pub fn gradients_to_map(model: &EffNet, grads: &GradientsParams) -> Result<WeightMap, NnError> {
    let mut out = WeightMap::new();
    for (k, t) in trainable(model) {
        let id = t.id(model);
        let missing = || NnError::BadInput(format!("no gradient for `{}`", k.key));
        let data = match t {
            Target::ConvWeight(_) => values(grads.get::<4>(id).ok_or_else(missing)?)?,
            Target::LinearWeight(_) => {
                // burn [in, out] → PyTorch [out, in].
                let g = grads.get::<2>(id).ok_or_else(missing)?;
                let [i, o] = g.dims();
                transpose(&values(g)?, i, o)
            }
            _ => values(grads.get::<1>(id).ok_or_else(missing)?)?,
        };
        if data.len() != k.shape.iter().product::<usize>() {
            return Err(NnError::BadInput(format!(
                "the gradient of `{}` has {} values, the model needs {:?}",
                k.key,
                data.len(),
                k.shape
            )));
        }
        out.insert(k.key, (k.shape, data));
    }
    Ok(out)
}

/// Updates every batch norm's running statistics from one training batch's statistics, exactly
/// as a training forward of [`EffNet`] does: with momentum `m`,
/// `running_mean ← (1 − m)·running_mean + m·mean` and
/// `running_var ← (1 − m)·running_var + m·var`, where `stats` holds, for every batch norm,
/// `<path>.running_mean` = the batch mean and `<path>.running_var` = the batch's **unbiased**
/// variance (as [`StepOutput::batch_stats`]). A missing or mis-shaped entry is an error, and
/// then no statistic is changed.
///
/// The running statistics are updated in place ([`burn::module::RunningState`] is shared by
/// clones of a model, as in a burn forward); the model is returned for chaining.
pub fn apply_batch_stats(model: EffNet, stats: &WeightMap) -> Result<EffNet, NnError> {
    let keys = model.graph().tensor_keys(Layout::Canonical);
    let mut staged = Vec::new();
    for k in keys.iter().filter(|k| !k.trainable) {
        let Slot::Bn(i) = model.slot(k.node) else {
            unreachable!("only batch norms have untrainable tensors")
        };
        let (shape, data) = stats
            .get(&k.key)
            .ok_or_else(|| NnError::BadInput(format!("no batch statistic `{}`", k.key)))?;
        if shape != &k.shape || data.len() != k.shape[0] {
            return Err(NnError::BadInput(format!(
                "the batch statistic `{}` has shape {shape:?} ({} values), the model needs {:?}",
                k.key,
                data.len(),
                k.shape
            )));
        }
        staged.push((i, k.suffix == "running_mean", data));
    }
    if stats.len() != staged.len() {
        let known: std::collections::BTreeSet<&str> = keys
            .iter()
            .filter(|k| !k.trainable)
            .map(|k| k.key.as_str())
            .collect();
        let unknown: Vec<&str> = stats
            .keys()
            .map(String::as_str)
            .filter(|k| !known.contains(k))
            .collect();
        return Err(NnError::BadInput(format!(
            "batch statistics for tensors that are not batch-norm statistics of {}: {}",
            model.graph().meta.name,
            unknown.join(", ")
        )));
    }
    for (i, is_mean, data) in staged {
        let bn = &model.bns[i];
        let state = if is_mean {
            &bn.running_mean
        } else {
            &bn.running_var
        };
        let old = state.value_sync();
        let batch =
            Tensor::<1>::from_data(TensorData::new(data.clone(), [data.len()]), &old.device());
        let m = bn.momentum;
        let new = old.mul_scalar(1.0 - m).add(batch.mul_scalar(m));
        state.update(new.detach());
    }
    Ok(model)
}

/// Compile `model`'s graph into a training step for batches of `dims`
/// (`[batch, channels, height, width]`). The plan reads the weights at every step (pass
/// [`crate::engine::engine_weights`] of the current model). An input that does not fit the
/// model is [`NnError`]; a graph the engine cannot train is the engine's error (the caller
/// then trains on burn).
pub fn compile_train_plan(
    model: &EffNet,
    dims: [usize; 4],
    opts: PlanOptions,
) -> Result<Result<TrainPlan, EngineError>, NnError> {
    model.check_input(dims)?;
    Ok(TrainPlan::compile(model.graph(), dims, opts))
}
