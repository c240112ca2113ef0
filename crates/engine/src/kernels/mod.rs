//! The engine's kernels, each written once over [`Simd`](crate::simd::Simd) and compiled per
//! instruction set. Activations are NHWC: a tensor is `rows` pixels of `c` channels, pixel `r`
//! at `ptr + r · ld` (a row stride larger than `c` is a channel slice of a wider tensor).

pub mod dw;
pub mod elem;
pub mod gemm;
pub mod grad;
pub mod wino;

use effcnn_arch::Act;

use crate::simd::Simd;

/// The geometry of a sliding-window op: input `h × w`, output `oh × ow`, window `kh × kw`,
/// stride, top/left padding and dilation. Shared by convolutions (depthwise, im2col) and
/// pooling.
#[derive(Debug, Clone, Copy)]
pub struct Geom {
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub pt: usize,
    pub pl: usize,
    pub dilation: usize,
}

impl Geom {
    /// The geometry of convolution `c` from an `h × w` input to an `oh × ow` output (its
    /// padding resolved, TF-SAME included).
    pub fn conv(c: &effcnn_arch::Conv, (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Geom {
        let (pt, pl, _, _) = c.pad.resolve(h, w, c.k, c.stride, c.dilation);
        Geom {
            h,
            w,
            oh,
            ow,
            kh: c.k.0,
            kw: c.k.1,
            sh: c.stride.0,
            sw: c.stride.1,
            pt,
            pl,
            dilation: c.dilation,
        }
    }

    /// The geometry of a `k × k` pooling window with `stride` and `pad` on every side.
    pub fn pool(
        k: usize,
        stride: usize,
        pad: usize,
        (h, w): (usize, usize),
        (oh, ow): (usize, usize),
    ) -> Geom {
        Geom {
            h,
            w,
            oh,
            ow,
            kh: k,
            kw: k,
            sh: stride,
            sw: stride,
            pt: pad,
            pl: pad,
            dilation: 1,
        }
    }
}

/// A thread-local scratch buffer grown to at least `n` floats. The pointer stays valid until the
/// buffer is next grown on the same thread (a thread runs one task at a time); each kernel
/// family keeps its own buffer, so one can call another's kernels while holding its pointer.
pub(crate) fn grown(
    key: &'static std::thread::LocalKey<std::cell::RefCell<Vec<f32>>>,
    n: usize,
) -> *mut f32 {
    key.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < n {
            s.resize(n, 0.0);
        }
        s.as_mut_ptr()
    })
}

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

/// Apply an activation in place to `rows × c` values (row stride `ld`), the choice of
/// activation made once, outside the loop, so each loop body is straight-line vector code.
#[inline(always)]
pub(crate) unsafe fn act_rows<S: Simd>(
    a: Option<Act>,
    y: *mut f32,
    rows: usize,
    c: usize,
    ld: usize,
) {
    macro_rules! pass {
        ($v:ident => $e:expr) => {
            for r in 0..rows {
                let p = y.add(r * ld);
                let mut i = 0;
                while i < c {
                    let cnt = (c - i).min(S::LANES);
                    let $v = S::load_upto(p.add(i), cnt);
                    S::store_upto(p.add(i), $e, cnt);
                    i += S::LANES;
                }
            }
        };
    }
    let (zero, three, six) = (S::zero(), S::splat(3.0), S::splat(6.0));
    match a {
        None => {}
        Some(Act::Relu) => pass!(v => S::max(v, zero)),
        Some(Act::Relu6) => pass!(v => S::min(S::max(v, zero), six)),
        Some(Act::Silu) => pass!(v => S::mul(v, S::sigmoid(v))),
        Some(Act::Sigmoid) => pass!(v => S::sigmoid(v)),
        Some(Act::HardSwish) => {
            pass!(v => S::div(S::mul(v, S::min(S::max(S::add(v, three), zero), six)), six))
        }
        Some(Act::HardSigmoid) => {
            pass!(v => S::div(S::min(S::max(S::add(v, three), zero), six), six))
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

/// `cnt` floats from `p` into a vector (all lanes when `FULL`).
#[inline(always)]
pub(crate) unsafe fn ld<S: crate::simd::Simd, const FULL: bool>(p: *const f32, cnt: usize) -> S::V {
    if FULL {
        S::load(p)
    } else {
        S::load_n(p, cnt)
    }
}

/// The first `cnt` lanes of `v` to `p` (all lanes when `FULL`).
#[inline(always)]
pub(crate) unsafe fn st<S: crate::simd::Simd, const FULL: bool>(p: *mut f32, v: S::V, cnt: usize) {
    if FULL {
        S::store(p, v)
    } else {
        S::store_n(p, v, cnt)
    }
}
