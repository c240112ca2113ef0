//! Parameter bookkeeping on an [`EffNet`]: stable ids, the no-decay group, gradient checks.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use effcnn_arch::Op;
use effcnn_nn::EffNet;

use crate::files::fnv1a;

/// Gives every parameter an id derived from its module path (`convs.3.weight`, …).
///
/// burn keys optimizer state by [`ParamId`], and a freshly built or loaded model gets random
/// ids; with path-derived ids a saved optimizer record applies to a rebuilt model.
pub fn stable_ids(model: EffNet) -> EffNet {
    struct Stamp(Vec<String>);
    impl ModuleMapper for Stamp {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.0.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (_, tensor, mapper) = param.consume();
            let id = ParamId::from(fnv1a(self.0.join(".").as_bytes()));
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    model.map(&mut Stamp(Vec::new()))
}

/// Ids of the BatchNorm γ/β and of every bias: the parameters exempt from weight decay.
pub fn no_decay_ids(model: &EffNet) -> Vec<ParamId> {
    struct Collect {
        path: Vec<String>,
        ids: Vec<ParamId>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let top = self.path.first().map(String::as_str);
            let leaf = self.path.last().map(String::as_str);
            let is_bn_affine = top == Some("bns") && matches!(leaf, Some("gamma" | "beta"));
            if is_bn_affine || leaf == Some("bias") {
                self.ids.push(param.id);
            }
        }
    }
    let mut c = Collect {
        path: Vec::new(),
        ids: Vec::new(),
    };
    model.visit(&mut c);
    c.ids
}

fn finite<const D: usize>(t: Option<Tensor<D>>) -> bool {
    t.is_none_or(|t| {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .is_ok_and(|v| v.iter().all(|x| x.is_finite()))
    })
}

/// The graph path of the first layer, in graph order, with a non-finite gradient.
pub fn first_nonfinite_grad(model: &EffNet, grads: &GradientsParams) -> Option<String> {
    let (mut ci, mut bi, mut li) = (0, 0, 0);
    for node in &model.graph().nodes {
        let ok = match &node.op {
            Op::Conv(_) => {
                let c = &model.convs[ci];
                ci += 1;
                finite(grads.get::<4>(c.weight.id))
                    && c.bias.as_ref().is_none_or(|b| finite(grads.get::<1>(b.id)))
            }
            Op::BatchNorm { .. } => {
                let b = &model.bns[bi];
                bi += 1;
                finite(grads.get::<1>(b.gamma.id)) && finite(grads.get::<1>(b.beta.id))
            }
            Op::Linear { .. } => {
                let l = &model.linears[li];
                li += 1;
                finite(grads.get::<2>(l.weight.id))
                    && l.bias.as_ref().is_none_or(|b| finite(grads.get::<1>(b.id)))
            }
            _ => true,
        };
        if !ok {
            return Some(node.path.clone());
        }
    }
    None
}
