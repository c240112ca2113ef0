//! The kernels of [`effcnn_kernels::cpu`] as a burn backend extension: an operation `effcnn_conv2d` on the
//! flex backend, with a hand-written backward pass for `Autodiff<flex>`, reachable from ordinary
//! `Tensor`s through burn's `Dispatch`.
//!
//! Shapes the kernels do not cover (dilation ≠ 1, a dtype other than f32) fall back to burn's own
//! `conv2d` and its backward, so the operation is total on flex tensors. Tensors on any other
//! backend must not be passed here: [`accelerated`] says whether a device qualifies.

use std::borrow::Cow;

use burn::backend::ops::{ActivationOps, FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, DType, Dispatch, DispatchDevice, Flex};
use burn::backend::{Shape, TensorMetadata};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::CheckpointStrategy;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_autodiff::NodeId;
use burn_flex::FlexTensor;
use effcnn_arch::Act;

use effcnn_kernels::cpu::{
    batch_norm_train_backward, batch_norm_train_forward, conv2d_backward, conv2d_forward,
    conv2d_forward_fused, Activation, ConvGeom, Epilogue,
};

/// effcnn's convolution as a backend operation (bias-free; add a bias separately).
#[backend_extension(Flex, Autodiff)]
pub trait ConvKernels: Backend {
    /// 2-D convolution of `x [N, C, H, W]` with `weight [Co, C/groups, kh, kw]`.
    fn effcnn_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// Inference convolution with a fused per-channel affine map and activation:
    /// `act(conv(x, weight) · scale[c] + shift[c])` (dilation 1).
    fn effcnn_conv2d_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        options: ConvOptions<2>,
        act: Activation,
    ) -> FloatTensor<Self>;

    /// Batch normalisation in training mode followed by `act` (identity, ReLU or ReLU6):
    /// `(output, batch mean, biased batch variance)`, differentiable in the output only (the
    /// statistics come back detached).
    fn effcnn_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        act: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// The kernel geometry of a convolution, or `None` where the kernels do not apply.
fn geometry(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> Option<ConvGeom> {
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 {
        return None;
    }
    shape_geometry(x, weight, options)
}

/// The convolution's geometry from shapes alone (`None` for dilation ≠ 1 or bad shapes).
fn shape_geometry(
    x: &FlexTensor,
    weight: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<ConvGeom> {
    if options.dilation != [1, 1] {
        return None;
    }
    let (xs, ws) = (x.layout().shape(), weight.layout().shape());
    if xs.num_dims() != 4 || ws.num_dims() != 4 {
        return None;
    }
    let g = ConvGeom {
        n: xs[0],
        c: xs[1],
        h: xs[2],
        w: xs[3],
        co: ws[0],
        kh: ws[2],
        kw: ws[3],
        sh: options.stride[0],
        sw: options.stride[1],
        pt: options.padding[0].0,
        pb: options.padding[0].1,
        pl: options.padding[1].0,
        pr: options.padding[1].1,
        groups: options.groups,
    };
    (g.is_valid() && ws[1] == g.cg()).then_some(g)
}

/// The elements of a float32 flex tensor in row-major order (borrowed when already contiguous).
fn f32s(t: &FlexTensor) -> Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(
            t.clone()
                .into_data()
                .try_into_vec::<f32>()
                .expect("float32 tensor data"),
        ),
    }
}

/// `(n, c, spatial)` of a float32 `[N, C, …]` input whose parameters have `c` elements, or `None`
/// where the batch-norm kernels do not apply.
fn bn_geometry(x: &FlexTensor, params: &[&FlexTensor]) -> Option<(usize, usize, usize)> {
    let s = x.layout().shape();
    if s.num_dims() < 2 {
        return None;
    }
    let (n, c) = (s[0], s[1]);
    let hw = (2..s.num_dims()).map(|d| s[d]).product();
    (n * hw > 0
        && params
            .iter()
            .all(|p| p.layout().shape().num_elements() == c))
    .then_some((n, c, hw))
}

/// The elements of any float flex tensor as f32 (converted when stored otherwise).
fn as_f32(t: &FlexTensor) -> Cow<'_, [f32]> {
    if t.dtype() == DType::F32 {
        return f32s(t);
    }
    Cow::Owned(
        t.clone()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("float32 tensor data"),
    )
}

fn vector(values: Vec<f32>) -> FlexTensor {
    let len = values.len();
    FlexTensor::from_data(TensorData::new(values, [len]))
}

fn tensor(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

impl ConvKernels for Flex {
    fn effcnn_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        let Some(g) = geometry(&x, &weight, &options) else {
            return Flex::conv2d(x, weight, None, options);
        };
        let y = conv2d_forward(&f32s(&x), &f32s(&weight), &g);
        tensor(y, [g.n, g.co, g.ho(), g.wo()])
    }

    fn effcnn_conv2d_fused(
        x: FlexTensor,
        weight: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        options: ConvOptions<2>,
        act: Activation,
    ) -> FlexTensor {
        let g = shape_geometry(&x, &weight, &options)
            .expect("effcnn_conv2d_fused: dilation 1 and consistent NCHW shapes");
        let (scale, shift) = (as_f32(&scale), as_f32(&shift));
        let epilogue = Epilogue {
            scale: &scale,
            shift: &shift,
            act,
        };
        let y = conv2d_forward_fused(&as_f32(&x), &as_f32(&weight), &g, Some(&epilogue));
        tensor(y, [g.n, g.co, g.ho(), g.wo()])
    }

    fn effcnn_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        act: Activation,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let dims = bn_geometry(&x, &[&gamma, &beta]);
        let Some(dims) = dims.filter(|_| effcnn_kernels::cpu::bn_act_supported(act)) else {
            assert!(
                act.is_none(),
                "batch norm: unsupported shapes or activation"
            );
            let r = Flex::batch_norm_train(x, gamma, beta, epsilon);
            return (r.output, r.mean, r.variance);
        };
        let shape = x.layout().shape().clone();
        let (y, mean, var) = batch_norm_train_forward(
            &as_f32(&x),
            &as_f32(&gamma),
            &as_f32(&beta),
            dims,
            epsilon,
            act,
        );
        let y = FlexTensor::from_data(TensorData::new(y, shape));
        (y, vector(mean), vector(var))
    }
}

/// What the backward pass of `effcnn_batch_norm_train` keeps from the forward pass.
#[derive(Debug, Clone)]
struct BnSaved {
    mean: FlexTensor,
    var: FlexTensor,
    epsilon: f64,
    act: Activation,
    /// The output, for a fused activation's mask.
    y: Option<FlexTensor>,
}

/// `(dx, dγ, dβ)` of `effcnn_batch_norm_train` on flex.
fn bn_backward_flex(
    x: FlexTensor,
    gamma: FlexTensor,
    dy: FlexTensor,
    saved: BnSaved,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let BnSaved {
        mean,
        var,
        epsilon,
        act,
        y,
    } = saved;
    let Some(dims) = bn_geometry(&x, &[&gamma, &mean, &var]) else {
        // Only reachable for shapes the forward pass also handed to burn (identity only).
        assert!(act.is_none(), "batch norm backward: unexpected shapes");
        let r = Flex::batch_norm_train_backward(x, gamma, mean, var, epsilon, dy);
        return (r.x_grad, r.gamma_grad, r.beta_grad);
    };
    let shape = x.layout().shape().clone();
    let y = y.as_ref().map(as_f32);
    let (dx, dg, db) = batch_norm_train_backward(
        &as_f32(&x),
        &as_f32(&gamma),
        &as_f32(&mean),
        &as_f32(&var),
        &as_f32(&dy),
        y.as_deref(),
        dims,
        epsilon,
        act,
    );
    (
        FlexTensor::from_data(TensorData::new(dx, shape)),
        vector(dg),
        vector(db),
    )
}

#[derive(Debug)]
struct EffBatchNormBackward;

impl Backward<Flex, 3> for EffBatchNormBackward {
    type State = (NodeId, NodeId, BnSaved);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x_state, gamma_state, saved) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let gamma = checkpointer.retrieve_node_output::<FlexTensor>(gamma_state);
        let (dx, dg, db) = bn_backward_flex(x, gamma, dy, saved);
        for (node, grad) in [(node_x, dx), (node_gamma, dg), (node_beta, db)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

/// Input and weight gradients of `effcnn_conv2d` on flex (each only when asked for).
fn backward_flex(
    x: FlexTensor,
    weight: FlexTensor,
    dy: FlexTensor,
    options: ConvOptions<2>,
    want_dx: bool,
    want_dw: bool,
) -> (Option<FlexTensor>, Option<FlexTensor>) {
    let Some(g) = geometry(&x, &weight, &options) else {
        let dx = want_dx.then(|| {
            Flex::conv2d_x_backward(x.clone(), weight.clone(), dy.clone(), options.clone())
        });
        let dw = want_dw.then(|| Flex::conv2d_weight_backward(x, weight, dy, options));
        return (dx, dw);
    };
    let (dx, dw) = conv2d_backward(&f32s(&x), &f32s(&weight), &f32s(&dy), &g, want_dx, want_dw);
    (
        dx.map(|v| tensor(v, [g.n, g.c, g.h, g.w])),
        dw.map(|v| tensor(v, [g.co, g.cg(), g.kh, g.kw])),
    )
}

#[derive(Debug)]
struct EffConv2dBackward;

impl Backward<Flex, 2> for EffConv2dBackward {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x_state, w_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let weight = checkpointer.retrieve_node_output::<FlexTensor>(w_state);
        let (dx, dw) = backward_flex(x, weight, dy, options, node_x.is_some(), node_w.is_some());
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, dx);
        }
        if let (Some(node), Some(dw)) = (node_w, dw) {
            grads.register::<Flex>(node.id, dw);
        }
    }
}

impl<C: CheckpointStrategy> ConvKernels for Autodiff<Flex, C> {
    fn effcnn_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match EffConv2dBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let w_state = prep.checkpoint(&weight);
                let y = Flex::effcnn_conv2d(
                    x.primitive().clone(),
                    weight.primitive().clone(),
                    options.clone(),
                );
                prep.finish((x_state, w_state, options), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::effcnn_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                options,
            )),
        }
    }

    /// Composed from differentiable operations (effcnn's convolution, then burn's).
    fn effcnn_conv2d_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        options: ConvOptions<2>,
        act: Activation,
    ) -> FloatTensor<Self> {
        let y = Self::effcnn_conv2d(x, weight, options);
        let co = y.shape()[1];
        let per_channel = |t| Self::float_reshape(t, Shape::new([1, co, 1, 1]));
        let y = Self::float_add(Self::float_mul(y, per_channel(scale)), per_channel(shift));
        let hard_sigmoid = |t| Self::hard_sigmoid(t, (1.0 / 6.0).into(), 0.5.into());
        match act {
            None => y,
            Some(Act::Relu) => Self::relu(y),
            Some(Act::Relu6) => Self::float_clamp(y, 0.0.into(), 6.0.into()),
            Some(Act::Sigmoid) => Self::sigmoid(y),
            Some(Act::Silu) => Self::float_mul(y.clone(), Self::sigmoid(y)),
            Some(Act::HardSigmoid) => hard_sigmoid(y),
            Some(Act::HardSwish) => Self::float_mul(y.clone(), hard_sigmoid(y)),
        }
    }

    fn effcnn_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        act: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (y, mean, var) = Flex::effcnn_batch_norm_train(
            x.primitive().clone(),
            gamma.primitive().clone(),
            beta.primitive().clone(),
            epsilon,
            act,
        );
        let stats = (
            FloatTensor::<Self>::new(mean.clone()),
            FloatTensor::<Self>::new(var.clone()),
        );
        let y = match EffBatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let saved = BnSaved {
                    mean,
                    var,
                    epsilon,
                    act,
                    y: act.is_some().then(|| y.clone()),
                };
                prep.finish((x_state, gamma_state, saved), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, stats.0, stats.1)
    }
}

/// Whether `device` is the flex (CPU) backend, with or without autodiff.
pub fn is_flex(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

/// Whether tensors on `device` can use effcnn's kernels: the flex backend, with or without
/// autodiff, unless the environment variable `EFFCNN_KERNELS=burn` asks for burn's own ops
/// everywhere (the reference path, for comparisons).
pub fn accelerated(device: &Device) -> bool {
    static BURN_ONLY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let burn_only =
        *BURN_ONLY.get_or_init(|| std::env::var("EFFCNN_KERNELS").is_ok_and(|v| v == "burn"));
    !burn_only && is_flex(device)
}

/// Bias-free 2-D convolution through effcnn's kernels. The tensors must be on a device for which
/// [`accelerated`] holds.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, options: ConvOptions<2>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as ConvKernels>::effcnn_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        options,
    ))
}

/// Batch normalisation in training mode through effcnn's kernels, followed by `act` (identity,
/// ReLU or ReLU6, see [`effcnn_kernels::cpu::bn_act_supported`]): `(output, batch mean, biased batch
/// variance)`, the statistics detached. The tensors must be on a device for which
/// [`accelerated`] holds.
pub fn batch_norm_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    act: Activation,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    let (y, mean, var) = <Dispatch as ConvKernels>::effcnn_batch_norm_train(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
        act,
    );
    (
        Tensor::from_dispatch(y),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(var),
    )
}

/// Inference convolution with a fused per-channel affine map and activation:
/// `act(conv(x, weight) · scale[c] + shift[c])`, e.g. a convolution with its batch norm folded
/// in. Dilation must be 1; the tensors must be on a device for which [`accelerated`] holds.
pub fn conv2d_fused(
    x: Tensor<4>,
    weight: Tensor<4>,
    scale: Tensor<1>,
    shift: Tensor<1>,
    options: ConvOptions<2>,
    act: Activation,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as ConvKernels>::effcnn_conv2d_fused(
        x.into_dispatch(),
        weight.into_dispatch(),
        scale.into_dispatch(),
        shift.into_dispatch(),
        options,
        act,
    ))
}
