//! Sliding-window kernels over NHWC tensors: depthwise convolution (vectorised across channels,
//! the k×k weights of a channel block held in registers for a whole output row) and max/average
//! pooling. One task computes one output row of one image.

use effcnn_arch::Act;

use super::act;
use crate::simd::{multiversion, Simd};

/// The geometry of a window op: input `n × h × w × c` (row stride `ldx`), output `oh × ow`
/// (row stride `ldy`), window `kh × kw`, stride, top/left padding, dilation.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub x: *const f32,
    pub ldx: usize,
    pub y: *mut f32,
    pub ldy: usize,
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
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

impl Window {
    pub fn tasks(&self) -> usize {
        self.n * self.oh
    }
    /// Valid tap range `[k0, k1)` of an output coordinate (dilation 1).
    #[inline(always)]
    fn taps(o: usize, s: usize, p: usize, k: usize, size: usize) -> (usize, usize, isize) {
        let i0 = (o * s) as isize - p as isize;
        let k0 = (-i0).clamp(0, k as isize) as usize;
        let k1 = (size as isize - i0).clamp(0, k as isize) as usize;
        (k0, k1, i0)
    }
}

/// Depthwise convolution (channel multiplier 1) with bias and activation.
#[derive(Debug, Clone, Copy)]
pub struct DwJob {
    pub g: Window,
    /// Weights `[kh · kw][c]` (BN folded in).
    pub w: *const f32,
    pub bias: *const f32,
    pub act: Option<Act>,
}

/// Max or average pooling.
#[derive(Debug, Clone, Copy)]
pub struct PoolJob {
    pub g: Window,
    pub max: bool,
    /// Average pooling: divide by k·k (PyTorch's `count_include_pad`) instead of the valid taps.
    pub include_pad: bool,
}

// SAFETY: jobs describe disjoint per-row writes into buffers that outlive the step.
unsafe impl Send for DwJob {}
unsafe impl Sync for DwJob {}
unsafe impl Send for PoolJob {}
unsafe impl Sync for PoolJob {}

multiversion!(
    /// Output row `t` of a depthwise convolution.
    ///
    /// # Safety
    /// The job's pointers must be valid for its geometry.
    pub fn dw_task(j: &DwJob, t: usize) => dw_task_generic
);

multiversion!(
    /// Output row `t` of a pooling op.
    ///
    /// # Safety
    /// The job's pointers must be valid for its geometry.
    pub fn pool_task(j: &PoolJob, t: usize) => pool_task_generic
);

#[inline(always)]
unsafe fn dw_task_generic<S: Simd>(j: &DwJob, t: usize) {
    let g = &j.g;
    let l = S::LANES;
    let mut cb = 0;
    while cb < g.c {
        let cnt = (g.c - cb).min(l);
        let full = cnt == l;
        match (g.kh, g.kw, g.dilation, full) {
            (3, 3, 1, true) => dw_k::<S, 3, true>(j, t, cb, cnt),
            (3, 3, 1, false) => dw_k::<S, 3, false>(j, t, cb, cnt),
            (5, 5, 1, true) => dw_k::<S, 5, true>(j, t, cb, cnt),
            (5, 5, 1, false) => dw_k::<S, 5, false>(j, t, cb, cnt),
            _ => dw_any::<S>(j, t, cb, cnt),
        }
        cb += l;
    }
}

#[inline(always)]
unsafe fn ld<S: Simd, const FULL: bool>(p: *const f32, cnt: usize) -> S::V {
    if FULL {
        S::load(p)
    } else {
        S::load_n(p, cnt)
    }
}

/// k×k depthwise (dilation 1) for channels `cb .. cb + cnt`, the weights in registers.
#[inline(always)]
unsafe fn dw_k<S: Simd, const K: usize, const FULL: bool>(
    j: &DwJob,
    t: usize,
    cb: usize,
    cnt: usize,
) {
    let g = &j.g;
    let (n, oy) = (t / g.oh, t % g.oh);
    let (ky0, ky1, iy0) = Window::taps(oy, g.sh, g.pt, K, g.h);
    let mut wv = [[S::zero(); K]; K];
    for (ky, wrow) in wv.iter_mut().enumerate() {
        for (kx, wk) in wrow.iter_mut().enumerate() {
            *wk = ld::<S, FULL>(j.w.add((ky * K + kx) * g.c + cb), cnt);
        }
    }
    let bias = ld::<S, FULL>(j.bias.add(cb), cnt);
    let img = g.x.add(n * g.h * g.w * g.ldx + cb);
    let out = g.y.add((n * g.oh + oy) * g.ow * g.ldy + cb);
    for ox in 0..g.ow {
        let (kx0, kx1, ix0) = Window::taps(ox, g.sw, g.pl, K, g.w);
        let mut acc = bias;
        if ky0 == 0 && ky1 == K && kx0 == 0 && kx1 == K {
            for (ky, wrow) in wv.iter().enumerate() {
                let row = img
                    .wrapping_offset((((iy0 + ky as isize) * g.w as isize) + ix0) * g.ldx as isize);
                for (kx, &wk) in wrow.iter().enumerate() {
                    acc = S::fma(ld::<S, FULL>(row.wrapping_add(kx * g.ldx), cnt), wk, acc);
                }
            }
        } else {
            for (ky, wrow) in wv.iter().enumerate() {
                if ky < ky0 || ky >= ky1 {
                    continue;
                }
                let row = img
                    .wrapping_offset((((iy0 + ky as isize) * g.w as isize) + ix0) * g.ldx as isize);
                for (kx, &wk) in wrow.iter().enumerate() {
                    if kx < kx0 || kx >= kx1 {
                        continue;
                    }
                    acc = S::fma(ld::<S, FULL>(row.wrapping_add(kx * g.ldx), cnt), wk, acc);
                }
            }
        }
        let v = act::<S>(j.act, acc);
        if FULL {
            S::store(out.add(ox * g.ldy), v);
        } else {
            S::store_n(out.add(ox * g.ldy), v, cnt);
        }
    }
}

/// Any kernel size and dilation: weights read per tap.
#[inline(always)]
unsafe fn dw_any<S: Simd>(j: &DwJob, t: usize, cb: usize, cnt: usize) {
    let g = &j.g;
    let (n, oy) = (t / g.oh, t % g.oh);
    let bias = S::load_upto(j.bias.add(cb), cnt);
    for ox in 0..g.ow {
        let mut acc = bias;
        for ky in 0..g.kh {
            let iy = (oy * g.sh + ky * g.dilation) as isize - g.pt as isize;
            if iy < 0 || iy as usize >= g.h {
                continue;
            }
            for kx in 0..g.kw {
                let ix = (ox * g.sw + kx * g.dilation) as isize - g.pl as isize;
                if ix < 0 || ix as usize >= g.w {
                    continue;
                }
                let pix = (n * g.h + iy as usize) * g.w + ix as usize;
                let xv = S::load_upto(g.x.add(pix * g.ldx + cb), cnt);
                let wv = S::load_upto(j.w.add((ky * g.kw + kx) * g.c + cb), cnt);
                acc = S::fma(xv, wv, acc);
            }
        }
        let v = act::<S>(j.act, acc);
        S::store_upto(g.y.add(((n * g.oh + oy) * g.ow + ox) * g.ldy + cb), v, cnt);
    }
}

#[inline(always)]
unsafe fn pool_task_generic<S: Simd>(j: &PoolJob, t: usize) {
    let g = &j.g;
    let l = S::LANES;
    let (n, oy) = (t / g.oh, t % g.oh);
    let (ky0, ky1, iy0) = Window::taps(oy, g.sh, g.pt, g.kh, g.h);
    for ox in 0..g.ow {
        let (kx0, kx1, ix0) = Window::taps(ox, g.sw, g.pl, g.kw, g.w);
        let taps = (ky1 - ky0) * (kx1 - kx0);
        let div = if j.include_pad { g.kh * g.kw } else { taps };
        let inv = S::splat(1.0 / div.max(1) as f32);
        let out = g.y.add(((n * g.oh + oy) * g.ow + ox) * g.ldy);
        let mut cb = 0;
        while cb < g.c {
            let cnt = (g.c - cb).min(l);
            let mut acc = S::splat(if j.max { f32::NEG_INFINITY } else { 0.0 });
            for ky in ky0..ky1 {
                let iy = (iy0 + ky as isize) as usize;
                for kx in kx0..kx1 {
                    let ix = (ix0 + kx as isize) as usize;
                    let xv = S::load_upto(g.x.add(((n * g.h + iy) * g.w + ix) * g.ldx + cb), cnt);
                    acc = if j.max {
                        S::max(xv, acc)
                    } else {
                        S::add(acc, xv)
                    };
                }
            }
            if !j.max {
                acc = S::mul(acc, inv);
            }
            S::store_upto(out.add(cb), acc, cnt);
            cb += l;
        }
    }
}
