//! Convolution kernels on plain `f32` slices in NCHW layout: forward, input gradient and weight
//! gradient, for dense, grouped and depthwise 2-D convolutions (any kernel size, stride and
//! per-side zero padding, dilation 1).
//!
//! Two algorithms:
//! - **depthwise** (`groups == C_in == C_out`): direct loops over each channel plane. Forward and
//!   input gradient run one plane per task; the weight gradient runs one channel per task (it
//!   sums over the batch), so no reduction between threads is needed.
//! - **everything else**: per image and group, `im2col` then one GEMM (`Y = W · col`); the input
//!   gradient is `col2im(Wᵀ · dY)` and the weight gradient `dW += dY · colᵀ`. A 1×1 stride-1
//!   unpadded convolution skips `im2col`: the image itself is the column matrix. Images run in
//!   parallel (each task with its own column buffer), each GEMM single-threaded, which suits
//!   small feature maps and few cores. The weight gradient sums fixed chunks of images and adds
//!   the chunk sums in order, so results are bit-identical whatever the thread count.
//!
//! All three passes are checked against burn's own `conv2d` and its autodiff gradients on random
//! shapes in `tests/conv_kernels.rs`.

use std::borrow::Cow;

use effcnn_arch::Act;
use rayon::prelude::*;

/// Defines a leaf loop function twice — as written (baseline x86-64 / any target) and compiled
/// with AVX2 + FMA — and dispatches at run time (the check is a cached load). The bodies are
/// plain loops over slices that the compiler vectorises; this only widens the vectors.
macro_rules! simd_fn {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports the features `wide` is compiled for.
                    return unsafe { wide($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}

/// Chunks of images whose weight gradients are summed separately (and in parallel) before being
/// added in order; fixed, so the summation order never depends on the thread count.
const DW_CHUNKS: usize = 8;

/// The shape of one 2-D convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub co: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Zero rows added above the input.
    pub pt: usize,
    /// Zero rows added below the input.
    pub pb: usize,
    /// Zero columns added left of the input.
    pub pl: usize,
    /// Zero columns added right of the input.
    pub pr: usize,
    /// Groups (`c` and `co` are multiples of it).
    pub groups: usize,
}

impl ConvGeom {
    /// Whether the shape is valid: non-zero sizes, channels divisible by groups, kernel fits.
    pub fn is_valid(&self) -> bool {
        self.n > 0
            && self.c > 0
            && self.co > 0
            && self.kh > 0
            && self.kw > 0
            && self.sh > 0
            && self.sw > 0
            && self.groups > 0
            && self.c % self.groups == 0
            && self.co % self.groups == 0
            && self.h + self.pt + self.pb >= self.kh
            && self.w + self.pl + self.pr >= self.kw
    }
    /// Output height.
    pub fn ho(&self) -> usize {
        (self.h + self.pt + self.pb - self.kh) / self.sh + 1
    }
    /// Output width.
    pub fn wo(&self) -> usize {
        (self.w + self.pl + self.pr - self.kw) / self.sw + 1
    }
    /// Input channels per group.
    pub fn cg(&self) -> usize {
        self.c / self.groups
    }
    /// Output channels per group.
    pub fn cog(&self) -> usize {
        self.co / self.groups
    }
    /// One filter per channel (`groups == c == co`).
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.c && self.co == self.c
    }
    /// A 1×1, stride-1, unpadded convolution: a plain matrix product per image.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sh == 1
            && self.sw == 1
            && self.pt + self.pb + self.pl + self.pr == 0
    }
    /// Elements of the input.
    pub fn x_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    /// Elements of the weight `[co, c/groups, kh, kw]`.
    pub fn w_len(&self) -> usize {
        self.co * self.cg() * self.kh * self.kw
    }
    /// Elements of the output.
    pub fn y_len(&self) -> usize {
        self.n * self.co * self.ho() * self.wo()
    }
    /// Rows of one group's column matrix (`c/groups · kh · kw`).
    fn col_rows(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
}

/// For output columns `0..wo`, the range whose input column `ow·s + j − pad` lies inside `0..w`.
fn valid_cols(wo: usize, w: usize, s: usize, j: usize, pad: usize) -> (usize, usize) {
    // ow·s + j ≥ pad  ⇔  ow ≥ ceil((pad − j) / s)
    let lo = if pad > j { (pad - j).div_ceil(s) } else { 0 };
    // ow·s + j − pad ≤ w − 1  ⇔  ow ≤ (w − 1 + pad − j) / s
    let hi = if w + pad > j {
        (w - 1 + pad - j) / s + 1
    } else {
        0
    };
    (lo.min(wo), hi.min(wo).max(lo.min(wo)))
}

/// Input row of output row `oh` and kernel row `i`, if it is inside the image.
#[inline]
fn in_row(oh: usize, i: usize, g: &ConvGeom) -> Option<usize> {
    let r = oh * g.sh + i;
    (r >= g.pt && r - g.pt < g.h).then(|| r - g.pt)
}

/// Column matrix of one group of one image: `x` holds `cg` planes of `h × w`, `col` receives
/// `cg·kh·kw` rows of `ho·wo`.
fn im2col(x: &[f32], g: &ConvGeom, col: &mut [f32]) {
    let (ho, wo, hw) = (g.ho(), g.wo(), g.h * g.w);
    for ci in 0..g.cg() {
        let plane = &x[ci * hw..][..hw];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &mut col[((ci * g.kh + i) * g.kw + j) * ho * wo..][..ho * wo];
                let (lo, hi) = valid_cols(wo, g.w, g.sw, j, g.pl);
                for oh in 0..ho {
                    let out = &mut row[oh * wo..][..wo];
                    let Some(ih) = in_row(oh, i, g) else {
                        out.fill(0.0);
                        continue;
                    };
                    let xr = &plane[ih * g.w..][..g.w];
                    out[..lo].fill(0.0);
                    out[hi..].fill(0.0);
                    if g.sw == 1 {
                        let start = lo + j - g.pl;
                        out[lo..hi].copy_from_slice(&xr[start..start + (hi - lo)]);
                    } else {
                        for (ow, o) in out[lo..hi].iter_mut().enumerate() {
                            *o = xr[(lo + ow) * g.sw + j - g.pl];
                        }
                    }
                }
            }
        }
    }
}

/// Adjoint of [`im2col`]: adds every column entry back into the input position it was read from.
fn col2im_add(col: &[f32], g: &ConvGeom, x: &mut [f32]) {
    let (ho, wo, hw) = (g.ho(), g.wo(), g.h * g.w);
    for ci in 0..g.cg() {
        let plane = &mut x[ci * hw..][..hw];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &col[((ci * g.kh + i) * g.kw + j) * ho * wo..][..ho * wo];
                let (lo, hi) = valid_cols(wo, g.w, g.sw, j, g.pl);
                for oh in 0..ho {
                    let Some(ih) = in_row(oh, i, g) else {
                        continue;
                    };
                    let src = &row[oh * wo..][..wo];
                    let xr = &mut plane[ih * g.w..][..g.w];
                    if g.sw == 1 {
                        let start = lo + j - g.pl;
                        for (d, s) in xr[start..start + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                            *d += s;
                        }
                    } else {
                        for ow in lo..hi {
                            xr[ow * g.sw + j - g.pl] += src[ow];
                        }
                    }
                }
            }
        }
    }
}

/// A row-major matrix view for [`matmul`]: pointer, row stride and column stride in elements.
#[derive(Clone, Copy)]
struct Mat {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

impl Mat {
    fn rows(s: &[f32], cols: usize) -> Mat {
        Mat {
            ptr: s.as_ptr(),
            rs: cols as isize,
            cs: 1,
        }
    }
    /// The transpose of a row-major `rows × cols` matrix stored in `s`.
    fn transposed(s: &[f32], cols: usize) -> Mat {
        Mat {
            ptr: s.as_ptr(),
            rs: 1,
            cs: cols as isize,
        }
    }
}

/// `dst[m×n] (+)= a[m×k] · b[k×n]`, `dst` row-major and contiguous, single-threaded.
fn matmul(m: usize, n: usize, k: usize, dst: &mut [f32], accumulate: bool, a: Mat, b: Mat) {
    assert!(dst.len() >= m * n, "matmul: destination too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: the callers derive `a` and `b` from slices holding at least the `m×k` and `k×n`
    // elements their strides address (checked by the shape arithmetic of `ConvGeom`), and
    // `dst` holds `m×n` elements (asserted above); the three do not alias mutably.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.ptr,
            a.cs,
            a.rs,
            b.ptr,
            b.cs,
            b.rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

fn check(g: &ConvGeom, x: usize, w: usize, y: usize, xl: usize, wl: usize, yl: usize) {
    assert!(g.is_valid(), "invalid convolution geometry {g:?}");
    assert_eq!(x, xl, "input length does not match {g:?}");
    assert_eq!(w, wl, "weight length does not match {g:?}");
    assert_eq!(y, yl, "output length does not match {g:?}");
}

/// The activation an [`Epilogue`] or a fused batch norm applies: a graph activation, or `None`
/// for the identity.
pub type Activation = Option<Act>;

/// `act(v)` for one value.
#[inline]
fn activate(act: Activation, v: f32) -> f32 {
    match act {
        None => v,
        Some(Act::Relu) => v.max(0.0),
        Some(Act::Relu6) => v.clamp(0.0, 6.0),
        Some(Act::Silu) => v / (1.0 + (-v).exp()),
        Some(Act::Sigmoid) => 1.0 / (1.0 + (-v).exp()),
        Some(Act::HardSwish) => v * (v + 3.0).clamp(0.0, 6.0) / 6.0,
        Some(Act::HardSigmoid) => (v + 3.0).clamp(0.0, 6.0) / 6.0,
    }
}

/// Per-output-channel work fused into a forward convolution while its output is in cache:
/// `y = act(conv · scale[c] + shift[c])` — an inference-time batch norm (and bias) folded into
/// `scale`/`shift`, then the activation.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    /// Multiplier per output channel.
    pub scale: &'a [f32],
    /// Offset per output channel.
    pub shift: &'a [f32],
    /// Activation applied last.
    pub act: Activation,
}

impl Epilogue<'_> {
    fn apply(&self, ch: usize, plane: &mut [f32]) {
        affine_act(plane, self.scale[ch], self.shift[ch], self.act);
    }
}

simd_fn! {
    /// `v = act(v · a + b)` over a plane.
    fn affine_act(plane: &mut [f32], a: f32, b: f32, act: Activation) {
        match act {
            None => plane.iter_mut().for_each(|v| *v = *v * a + b),
            Some(Act::Relu) => plane.iter_mut().for_each(|v| *v = (*v * a + b).max(0.0)),
            Some(Act::Relu6) => plane
                .iter_mut()
                .for_each(|v| *v = (*v * a + b).clamp(0.0, 6.0)),
            act => plane.iter_mut().for_each(|v| *v = activate(act, *v * a + b)),
        }
    }
}

/// Forward convolution: `y[n, co, ho, wo]` from `x[n, c, h, w]` and `weight[co, c/groups, kh, kw]`.
pub fn conv2d_forward(x: &[f32], weight: &[f32], g: &ConvGeom) -> Vec<f32> {
    conv2d_forward_fused(x, weight, g, None)
}

/// [`conv2d_forward`] followed by an [`Epilogue`] on each output plane.
pub fn conv2d_forward_fused(
    x: &[f32],
    weight: &[f32],
    g: &ConvGeom,
    epilogue: Option<&Epilogue>,
) -> Vec<f32> {
    let mut y = vec![0.0f32; g.y_len()];
    check(
        g,
        x.len(),
        weight.len(),
        y.len(),
        g.x_len(),
        g.w_len(),
        g.y_len(),
    );
    if let Some(e) = epilogue {
        assert!(
            e.scale.len() == g.co && e.shift.len() == g.co,
            "epilogue length"
        );
    }
    let (hw, howo) = (g.h * g.w, g.ho() * g.wo());
    if g.is_depthwise() {
        let kk = g.kh * g.kw;
        y.par_chunks_mut(howo)
            .enumerate()
            .for_each_init(Vec::new, |scratch, (p, out)| {
                let ch = p % g.c;
                let k = &weight[ch * kk..][..kk];
                depthwise_plane_forward(&x[p * hw..][..hw], k, g, out, scratch);
                if let Some(e) = epilogue {
                    e.apply(ch, out);
                }
            });
        return y;
    }
    let (cg, cog, rows) = (g.cg(), g.cog(), g.col_rows());
    y.par_chunks_mut(g.co * howo).enumerate().for_each_init(
        || vec![0.0f32; if g.is_pointwise() { 0 } else { rows * howo }],
        |col, (img, out)| {
            for grp in 0..g.groups {
                let xg = &x[(img * g.c + grp * cg) * hw..][..cg * hw];
                let wg = &weight[grp * cog * rows..][..cog * rows];
                let yg = &mut out[grp * cog * howo..][..cog * howo];
                let b = if g.is_pointwise() {
                    Mat::rows(xg, howo)
                } else {
                    im2col(xg, g, col);
                    Mat::rows(col, howo)
                };
                matmul(cog, howo, rows, yg, false, Mat::rows(wg, rows), b);
            }
            if let Some(e) = epilogue {
                for (ch, plane) in out.chunks_exact_mut(howo).enumerate() {
                    e.apply(ch, plane);
                }
            }
        },
    );
    y
}

/// Gradients of [`conv2d_forward`] for an output gradient `dy`: the input gradient when `want_dx`
/// and the weight gradient when `want_dw`.
pub fn conv2d_backward(
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    g: &ConvGeom,
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    check(
        g,
        x.len(),
        weight.len(),
        dy.len(),
        g.x_len(),
        g.w_len(),
        g.y_len(),
    );
    if g.is_depthwise() {
        let dx = want_dx.then(|| depthwise_dx(weight, dy, g));
        let dw = want_dw.then(|| depthwise_dw(x, dy, g));
        return (dx, dw);
    }
    let (hw, howo) = (g.h * g.w, g.ho() * g.wo());
    let (cg, cog, rows) = (g.cg(), g.cog(), g.col_rows());
    let col_len = if g.is_pointwise() { 0 } else { rows * howo };

    let dx = want_dx.then(|| {
        let mut dx = vec![0.0f32; g.x_len()];
        dx.par_chunks_mut(g.c * hw).enumerate().for_each_init(
            || vec![0.0f32; col_len],
            |col, (img, dxi)| {
                for grp in 0..g.groups {
                    let wg = &weight[grp * cog * rows..][..cog * rows];
                    let dyg = &dy[(img * g.co + grp * cog) * howo..][..cog * howo];
                    let dxg = &mut dxi[grp * cg * hw..][..cg * hw];
                    if g.is_pointwise() {
                        // dx_g [cg × hw] = W_gᵀ [cg × cog] · dY_g [cog × hw]
                        matmul(
                            cg,
                            hw,
                            cog,
                            dxg,
                            false,
                            Mat::transposed(wg, rows),
                            Mat::rows(dyg, howo),
                        );
                    } else {
                        matmul(
                            rows,
                            howo,
                            cog,
                            col,
                            false,
                            Mat::transposed(wg, rows),
                            Mat::rows(dyg, howo),
                        );
                        col2im_add(col, g, dxg);
                    }
                }
            },
        );
        dx
    });

    let dw = want_dw.then(|| {
        // Images are summed in fixed chunks, partial sums added in chunk order: the result does
        // not depend on the thread count or on work stealing (training is reproducible).
        let chunk = g.n.div_ceil(DW_CHUNKS);
        let partials: Vec<Vec<f32>> = (0..g.n.div_ceil(chunk))
            .into_par_iter()
            .map(|ci| {
                let mut acc = vec![0.0f32; g.w_len()];
                let mut col = vec![0.0f32; col_len];
                for img in ci * chunk..((ci + 1) * chunk).min(g.n) {
                    for grp in 0..g.groups {
                        let xg = &x[(img * g.c + grp * cg) * hw..][..cg * hw];
                        let dyg = &dy[(img * g.co + grp * cog) * howo..][..cog * howo];
                        let b = if g.is_pointwise() {
                            Mat::transposed(xg, howo)
                        } else {
                            im2col(xg, g, &mut col);
                            Mat::transposed(&col, howo)
                        };
                        // dW_g [cog × rows] += dY_g [cog × howo] · colᵀ [howo × rows]
                        let dwg = &mut acc[grp * cog * rows..][..cog * rows];
                        matmul(cog, rows, howo, dwg, true, Mat::rows(dyg, howo), b);
                    }
                }
                acc
            })
            .collect();
        let mut parts = partials.into_iter();
        let mut total = parts.next().unwrap_or_else(|| vec![0.0; g.w_len()]);
        for p in parts {
            for (t, v) in total.iter_mut().zip(&p) {
                *t += v;
            }
        }
        total
    });
    (dx, dw)
}

simd_fn! {
/// One depthwise plane: `out[ho × wo] = Σ_ij k[i, j] · x[oh·s + i − p, ow·s + j − p]`.
///
/// Loops run kernel tap by kernel tap over whole output rows, so the innermost loop is a
/// contiguous multiply-add the compiler vectorises. For a horizontal stride `s > 1` the input
/// plane is first split into its `s` column phases (`phase[p][r][m] = x[r][m·s + p]`, in
/// `scratch`), which makes the strided reads contiguous too.
fn depthwise_plane_forward(
    x: &[f32],
    k: &[f32],
    g: &ConvGeom,
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let (ho, wo, s) = (g.ho(), g.wo(), g.sw);
    out.fill(0.0);
    // Source rows: the plane itself (stride 1) or its column phases.
    let wp = g.w.div_ceil(s);
    if s > 1 {
        scratch.clear();
        scratch.resize(s * g.h * wp, 0.0);
        for r in 0..g.h {
            let xr = &x[r * g.w..][..g.w];
            for (m, chunk) in xr.chunks(s).enumerate() {
                for (p, &v) in chunk.iter().enumerate() {
                    scratch[(p * g.h + r) * wp + m] = v;
                }
            }
        }
    }
    for j in 0..g.kw {
        let (lo, hi) = valid_cols(wo, g.w, s, j, g.pl);
        if lo >= hi {
            continue;
        }
        // Input column of output column `ow` is `ow·s + d` = `(ow + q)·s + p`.
        let d = j as isize - g.pl as isize;
        let (p, q) = (d.rem_euclid(s as isize) as usize, d.div_euclid(s as isize));
        let start = (lo as isize + q) as usize;
        for i in 0..g.kh {
            let kv = k[i * g.kw + j];
            for oh in 0..ho {
                let Some(ih) = in_row(oh, i, g) else {
                    continue;
                };
                let src = if s == 1 {
                    &x[ih * g.w..][..g.w]
                } else {
                    &scratch[(p * g.h + ih) * wp..][..wp]
                };
                let o = &mut out[oh * wo..][..wo];
                for (d, v) in o[lo..hi].iter_mut().zip(&src[start..start + (hi - lo)]) {
                    *d += kv * v;
                }
            }
        }
    }
}
}

/// Depthwise input gradient: one plane per task.
fn depthwise_dx(weight: &[f32], dy: &[f32], g: &ConvGeom) -> Vec<f32> {
    let (hw, howo, kk) = (g.h * g.w, g.ho() * g.wo(), g.kh * g.kw);
    let mut dx = vec![0.0f32; g.x_len()];
    dx.par_chunks_mut(hw).enumerate().for_each(|(p, dxp)| {
        let k = &weight[(p % g.c) * kk..][..kk];
        depthwise_plane_dx(k, &dy[p * howo..][..howo], g, dxp);
    });
    dx
}

simd_fn! {
    /// One plane of the depthwise input gradient: `dx[ih, iw] += k[i, j] · dy[oh, ow]`.
    fn depthwise_plane_dx(k: &[f32], dyp: &[f32], g: &ConvGeom, dxp: &mut [f32]) {
        let wo = g.wo();
        for (oh, dyr) in dyp.chunks_exact(wo).enumerate() {
            for i in 0..g.kh {
                let Some(ih) = in_row(oh, i, g) else {
                    continue;
                };
                let xr = &mut dxp[ih * g.w..][..g.w];
                for j in 0..g.kw {
                    let kv = k[i * g.kw + j];
                    let (lo, hi) = valid_cols(wo, g.w, g.sw, j, g.pl);
                    if g.sw == 1 {
                        let start = lo + j - g.pl;
                        for (d, s) in xr[start..start + (hi - lo)].iter_mut().zip(&dyr[lo..hi]) {
                            *d += kv * s;
                        }
                    } else {
                        for ow in lo..hi {
                            xr[ow * g.sw + j - g.pl] += kv * dyr[ow];
                        }
                    }
                }
            }
        }
    }
}

/// Depthwise weight gradient: one channel per task, summed over the batch.
fn depthwise_dw(x: &[f32], dy: &[f32], g: &ConvGeom) -> Vec<f32> {
    let (hw, howo, kk) = (g.h * g.w, g.ho() * g.wo(), g.kh * g.kw);
    let mut dw = vec![0.0f32; g.w_len()];
    dw.par_chunks_mut(kk).enumerate().for_each(|(ch, k)| {
        let mut acc = vec![0.0f64; kk];
        for img in 0..g.n {
            let p = img * g.c + ch;
            depthwise_plane_dw(&x[p * hw..][..hw], &dy[p * howo..][..howo], g, &mut acc);
        }
        for (d, a) in k.iter_mut().zip(&acc) {
            *d = *a as f32;
        }
    });
    dw
}

simd_fn! {
    /// One plane's contribution to the depthwise weight gradient:
    /// `acc[i, j] += Σ_{oh, ow} dy[oh, ow] · x[oh·s + i − p, ow·s + j − p]`.
    fn depthwise_plane_dw(xp: &[f32], dyp: &[f32], g: &ConvGeom, acc: &mut [f64]) {
        let wo = g.wo();
        for (oh, dyr) in dyp.chunks_exact(wo).enumerate() {
            for i in 0..g.kh {
                let Some(ih) = in_row(oh, i, g) else {
                    continue;
                };
                let xr = &xp[ih * g.w..][..g.w];
                for j in 0..g.kw {
                    let (lo, hi) = valid_cols(wo, g.w, g.sw, j, g.pl);
                    acc[i * g.kw + j] += if g.sw == 1 {
                        let start = lo + j - g.pl;
                        lane_sum(&xr[start..start + (hi - lo)], &dyr[lo..hi], |a, b| a * b)
                    } else {
                        (lo..hi)
                            .map(|ow| (xr[ow * g.sw + j - g.pl] * dyr[ow]) as f64)
                            .sum::<f64>()
                    };
                }
            }
        }
    }
}

/// Lanes of the vectorised reductions below (independent f32 accumulators, combined in f64).
const LANES: usize = 16;

/// `Σ f(a[i], b[i])` with [`LANES`] f32 accumulators (vectorisable), the total in f64.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += f(x[l], y[l]);
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(&x, &y)| f(x, y) as f64).sum();
    acc.iter().map(|&v| v as f64).sum::<f64>() + tail
}

/// Batch normalisation in training mode over `x [n, c, hw]` (NCHW with the spatial axes
/// flattened): per-channel batch mean and biased variance, then
/// `y = act((x − mean) / √(var + ε) · γ + β)` with `act` the identity, ReLU or ReLU6.
/// Returns `(y, mean, var)`.
pub fn batch_norm_train_forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    (n, c, hw): (usize, usize, usize),
    eps: f64,
    act: Activation,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), n * c * hw, "batch norm: input length");
    assert!(
        gamma.len() == c && beta.len() == c,
        "batch norm: parameter length"
    );
    assert!(
        bn_act_supported(act),
        "batch norm: unsupported fused activation {act:?}"
    );
    let count = (n * hw) as f64;
    // Two passes per channel: the mean, then the centred sum of squares.
    let stats: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| channel_stats(x, n, c, hw, ch, count))
        .collect();
    let (mean, var): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
    let scale: Vec<f32> = (0..c)
        .map(|ch| (gamma[ch] as f64 / (var[ch] as f64 + eps).sqrt()) as f32)
        .collect();
    let shift: Vec<f32> = (0..c).map(|ch| beta[ch] - mean[ch] * scale[ch]).collect();
    let epilogue = Epilogue {
        scale: &scale,
        shift: &shift,
        act,
    };
    let mut y = x.to_vec();
    y.par_chunks_mut(hw)
        .enumerate()
        .for_each(|(p, out)| epilogue.apply(p % c, out));
    (y, mean, var)
}

/// Activations [`batch_norm_train_forward`] can fuse (their gradient is a mask of the output).
pub fn bn_act_supported(act: Activation) -> bool {
    matches!(act, None | Some(Act::Relu) | Some(Act::Relu6))
}

/// Gradients of [`batch_norm_train_forward`] for an output gradient `dy`, given the batch
/// statistics and (for a fused activation) the output `y` it returned: `(dx, dγ, dβ)`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_backward(
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    dy: &[f32],
    y: Option<&[f32]>,
    (n, c, hw): (usize, usize, usize),
    eps: f64,
    act: Activation,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert!(
        x.len() == n * c * hw && dy.len() == x.len(),
        "batch norm: input length"
    );
    // The activation's gradient: dy where the output was not clipped, 0 elsewhere.
    let masked: Cow<'_, [f32]> = match (act, y) {
        (None, _) => Cow::Borrowed(dy),
        (Some(Act::Relu), Some(y)) => Cow::Owned(
            dy.iter()
                .zip(y)
                .map(|(&g, &v)| if v > 0.0 { g } else { 0.0 })
                .collect(),
        ),
        (Some(Act::Relu6), Some(y)) => Cow::Owned(
            dy.iter()
                .zip(y)
                .map(|(&g, &v)| if v > 0.0 && v < 6.0 { g } else { 0.0 })
                .collect(),
        ),
        _ => panic!("batch norm backward: activation {act:?} needs the forward output"),
    };
    let dy: &[f32] = &masked;
    let count = (n * hw) as f64;
    let inv_std: Vec<f64> = var.iter().map(|&v| 1.0 / (v as f64 + eps).sqrt()).collect();
    // Per channel: dβ = Σ dy, dγ = Σ dy · x̂ with x̂ = (x − mean) / √(var + ε).
    let sums: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (sdy, sdyx) = channel_grad_sums(x, dy, n, c, hw, ch, mean[ch]);
            ((sdyx * inv_std[ch]) as f32, sdy as f32)
        })
        .collect();
    let (dgamma, dbeta): (Vec<f32>, Vec<f32>) = sums.into_iter().unzip();
    // dx = γ · inv_std · (dy − dβ/count − x̂ · dγ/count)
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(hw).enumerate().for_each(|(p, out)| {
        let ch = p % c;
        let k = (gamma[ch] as f64 * inv_std[ch]) as f32;
        let mb = (dbeta[ch] as f64 / count) as f32;
        let is = inv_std[ch] as f32;
        let mg = (dgamma[ch] as f64 / count) as f32;
        bn_dx_plane(
            out,
            &dy[p * hw..][..hw],
            &x[p * hw..][..hw],
            k,
            mb,
            mean[ch],
            is * mg,
        );
    });
    (dx, dgamma, dbeta)
}

simd_fn! {
    /// Batch mean and biased variance of channel `ch` (two passes: mean, centred squares).
    fn channel_stats(x: &[f32], n: usize, c: usize, hw: usize, ch: usize, count: f64) -> (f32, f32) {
        let plane = |img: usize| &x[(img * c + ch) * hw..][..hw];
        let sum: f64 = (0..n).map(|i| lane_sum(plane(i), plane(i), |v, _| v)).sum();
        let m = (sum / count) as f32;
        let ss: f64 = (0..n)
            .map(|i| lane_sum(plane(i), plane(i), |v, _| (v - m) * (v - m)))
            .sum();
        (m, (ss / count) as f32)
    }
}

simd_fn! {
    /// `(Σ dy, Σ dy · (x − m))` over channel `ch`.
    fn channel_grad_sums(
        x: &[f32],
        dy: &[f32],
        n: usize,
        c: usize,
        hw: usize,
        ch: usize,
        m: f32,
    ) -> (f64, f64) {
        let (mut sdy, mut sdyx) = (0.0f64, 0.0f64);
        for img in 0..n {
            let off = (img * c + ch) * hw;
            let (g, v) = (&dy[off..off + hw], &x[off..off + hw]);
            sdy += lane_sum(g, g, |a, _| a);
            sdyx += lane_sum(g, v, |a, b| a * (b - m));
        }
        (sdy, sdyx)
    }
}

simd_fn! {
    /// `dx = k · (dy − mb − (x − m) · s)` over a plane.
    fn bn_dx_plane(out: &mut [f32], dy: &[f32], x: &[f32], k: f32, mb: f32, m: f32, s: f32) {
        for ((o, &g), &v) in out.iter_mut().zip(dy).zip(x) {
            *o = k * (g - mb - (v - m) * s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct 7-loop convolution, the definition.
    fn naive(x: &[f32], w: &[f32], g: &ConvGeom) -> Vec<f32> {
        let (ho, wo, cg, cog) = (g.ho(), g.wo(), g.cg(), g.cog());
        let mut y = vec![0.0f32; g.y_len()];
        for n in 0..g.n {
            for co in 0..g.co {
                let grp = co / cog;
                for oh in 0..ho {
                    for ow in 0..wo {
                        let mut s = 0.0;
                        for ci in 0..cg {
                            for i in 0..g.kh {
                                for j in 0..g.kw {
                                    let ih = (oh * g.sh + i) as isize - g.pt as isize;
                                    let iw = (ow * g.sw + j) as isize - g.pl as isize;
                                    if ih < 0 || iw < 0 || ih >= g.h as isize || iw >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xc = grp * cg + ci;
                                    s += x
                                        [((n * g.c + xc) * g.h + ih as usize) * g.w + iw as usize]
                                        * w[((co * cg + ci) * g.kh + i) * g.kw + j];
                                }
                            }
                        }
                        y[((n * g.co + co) * ho + oh) * wo + ow] = s;
                    }
                }
            }
        }
        y
    }

    fn geom(c: usize, co: usize, k: usize, s: usize, p: (usize, usize), groups: usize) -> ConvGeom {
        ConvGeom {
            n: 2,
            c,
            h: 7,
            w: 6,
            co,
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            pt: p.0,
            pb: p.1,
            pl: p.0,
            pr: p.1,
            groups,
        }
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 1000) as f32
                    / 500.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn forward_matches_the_definition() {
        for g in [
            geom(4, 6, 3, 1, (1, 1), 1),
            geom(4, 6, 3, 2, (1, 1), 2),
            geom(4, 4, 3, 2, (0, 1), 4),
            geom(4, 4, 5, 1, (2, 2), 4),
            geom(6, 4, 1, 1, (0, 0), 1),
            geom(6, 9, 1, 2, (0, 0), 3),
        ] {
            let (x, w) = (data(g.x_len(), 1), data(g.w_len(), 2));
            let (a, b) = (conv2d_forward(&x, &w, &g), naive(&x, &w, &g));
            for (p, q) in a.iter().zip(&b) {
                assert!((p - q).abs() < 1e-4, "{g:?}: {p} vs {q}");
            }
        }
    }

    #[test]
    fn valid_cols_cover_exactly_the_inside() {
        for w in 1..6 {
            for s in 1..4 {
                for j in 0..4 {
                    for pad in 0..4 {
                        if w + 2 * pad < j + 1 {
                            continue;
                        }
                        let wo = (w + 2 * pad - (j + 1)) / s + 1;
                        let (lo, hi) = valid_cols(wo, w, s, j, pad);
                        for ow in 0..wo {
                            let iw = (ow * s + j) as isize - pad as isize;
                            let inside = iw >= 0 && (iw as usize) < w;
                            assert_eq!(
                                inside,
                                (lo..hi).contains(&ow),
                                "w{w} s{s} j{j} p{pad} ow{ow}"
                            );
                        }
                    }
                }
            }
        }
    }
}
