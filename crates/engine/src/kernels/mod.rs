//! The engine's kernels, each written once over [`Simd`](crate::simd::Simd) and compiled per
//! instruction set. Activations are NHWC: a tensor is `rows` pixels of `c` channels, pixel `r`
//! at `ptr + r · ld` (a row stride larger than `c` is a channel slice of a wider tensor).

pub mod dw;
pub mod elem;
pub mod gemm;

use effcnn_arch::Act;

use crate::simd::Simd;

/// Apply an activation (PyTorch's formulas) to one vector.
#[inline(always)]
pub(crate) unsafe fn act<S: Simd>(a: Option<Act>, x: S::V) -> S::V {
    match a {
        None => x,
        Some(Act::Relu) => S::max(x, S::zero()),
        Some(Act::Relu6) => S::min(S::max(x, S::zero()), S::splat(6.0)),
        Some(Act::Silu) => S::mul(x, S::sigmoid(x)),
        Some(Act::Sigmoid) => S::sigmoid(x),
        Some(Act::HardSwish) => {
            let t = S::min(S::max(S::add(x, S::splat(3.0)), S::zero()), S::splat(6.0));
            S::div(S::mul(x, t), S::splat(6.0))
        }
        Some(Act::HardSigmoid) => {
            let t = S::min(S::max(S::add(x, S::splat(3.0)), S::zero()), S::splat(6.0));
            S::div(t, S::splat(6.0))
        }
    }
}

/// A scalar reference of [`act`], for the naive kernels and tests.
pub fn act_scalar(a: Option<Act>, x: f32) -> f32 {
    let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
    match a {
        None => x,
        Some(Act::Relu) => x.max(0.0),
        Some(Act::Relu6) => x.clamp(0.0, 6.0),
        Some(Act::Silu) => x * sig(x),
        Some(Act::Sigmoid) => sig(x),
        Some(Act::HardSwish) => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Some(Act::HardSigmoid) => (x + 3.0).clamp(0.0, 6.0) / 6.0,
    }
}
