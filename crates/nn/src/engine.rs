//! The bridge from a burn [`EffNet`] to effcnn's compiled CPU inference engine: the model's
//! tensors (BN running statistics included) are read once and compiled into a
//! [`effcnn_engine::Plan`] for one input size.

use effcnn_arch::Layout;
pub use effcnn_engine::{Isa, Plan, PlanOptions, WeightMap};

use crate::checkpoint::model_tensors;
use crate::{EffNet, NnError};

/// The model's tensors by canonical key, in the form the engine reads.
pub fn engine_weights(model: &EffNet) -> Result<WeightMap, NnError> {
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
    Ok(Plan::compile(model.graph(), &weights, dims, opts)?)
}

/// Which implementation runs inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// effcnn's compiled plan on the CPU (falls back to burn on other devices).
    #[default]
    Plan,
    /// burn's module forward, op by op (the reference; also the GPU path).
    Burn,
}

impl Engine {
    /// `plan` or `burn`.
    pub fn parse(s: &str) -> Option<Engine> {
        match s {
            "plan" => Some(Engine::Plan),
            "burn" => Some(Engine::Burn),
            _ => None,
        }
    }
    /// The name used on the command line and in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Plan => "plan",
            Engine::Burn => "burn",
        }
    }
}

/// Eval-mode inference of one model: logits from NCHW float32 inputs through the chosen
/// engine. With [`Engine::Plan`] a plan is compiled on first use for each input size and kept
/// (a plan refuses other sizes, so a new size compiles a new plan rather than giving a wrong
/// answer); the weights are read when the `Inference` is made, so later changes to the model are
/// not seen.
pub struct Inference<'m> {
    model: &'m EffNet,
    engine: Engine,
    opts: PlanOptions,
    weights: Option<WeightMap>,
    plans: Vec<Plan>,
}

impl<'m> Inference<'m> {
    /// Inference of `model` (which should be in eval mode, see [`burn::module::Module::valid`])
    /// with `engine`; the plan engine is used only for models on the CPU (flex) device.
    pub fn new(model: &'m EffNet, engine: Engine, opts: PlanOptions) -> Result<Self, NnError> {
        let on_cpu = crate::model::ext::is_flex(&model_device(model));
        let engine = if on_cpu { engine } else { Engine::Burn };
        let weights = match engine {
            Engine::Plan => Some(engine_weights(model)?),
            Engine::Burn => None,
        };
        Ok(Inference {
            model,
            engine,
            opts,
            weights,
            plans: Vec::new(),
        })
    }

    /// The engine actually used.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The compiled plan for `dims`, if the plan engine has run that size.
    pub fn plan(&self, dims: [usize; 4]) -> Option<&Plan> {
        self.plans.iter().find(|p| p.dims() == dims)
    }

    /// Logits `[N, classes]`, row-major, for the NCHW input `x` of `dims`.
    pub fn logits(&mut self, x: &[f32], dims: [usize; 4]) -> Result<Vec<f32>, NnError> {
        self.model.check_input(dims)?;
        if x.len() != dims.iter().product::<usize>() {
            return Err(NnError::BadInput(format!(
                "input of {} values does not have the shape {dims:?}",
                x.len()
            )));
        }
        match &self.weights {
            None => {
                let device = model_device(self.model);
                let t = burn::tensor::Tensor::<4>::from_data(
                    burn::tensor::TensorData::new(x.to_vec(), dims),
                    &device,
                );
                self.model
                    .forward(t)
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .map_err(|e| NnError::BadInput(format!("cannot read logits: {e:?}")))
            }
            Some(w) => {
                let i = match self.plans.iter().position(|p| p.dims() == dims) {
                    Some(i) => i,
                    None => {
                        let plan = Plan::compile(self.model.graph(), w, dims, self.opts)?;
                        self.plans.push(plan);
                        self.plans.len() - 1
                    }
                };
                Ok(self.plans[i].run(x)?)
            }
        }
    }
}

/// The device a model's parameters live on.
pub fn model_device(model: &EffNet) -> burn::tensor::Device {
    model
        .convs
        .first()
        .map(|c| c.weight.lazy_device())
        .unwrap_or_default()
}
