//! Sliding-window kernels over NHWC tensors: depthwise convolution (vectorised across channels,
//! the k×k weights of a channel block held in registers for a whole output row) and max/average
//! pooling. One task computes one output row of one image.

use effcnn_arch::Act;

use super::{act_rows, ld, st, Geom};
use crate::simd::{multiversion, Simd};

/// A window op over NHWC tensors: input `n × h × w × c` (row stride `ldx`), output rows of
/// stride `ldy`, and its geometry.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub x: *const f32,
    pub ldx: usize,
    pub y: *mut f32,
    pub ldy: usize,
    pub n: usize,
    pub c: usize,
    pub s: Geom,
}

impl Window {
    pub fn tasks(&self) -> usize {
        self.n * self.s.oh
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

/// Output columns computed together in the interior of a row: each weight vector is loaded once
/// per block and feeds `OB` independent accumulators.
const OB: usize = 8;

#[inline(always)]
unsafe fn dw_task_generic<S: Simd>(j: &DwJob, t: usize) {
    let g = &j.g;
    let l = S::LANES;
    let (n, oy) = (t / g.s.oh, t % g.s.oh);
    let d = g.s.dilation;
    // Valid kernel rows of this output row.
    let iy0 = (oy * g.s.sh) as isize - g.s.pt as isize;
    let ky_ok = |ky: usize| {
        let iy = iy0 + (ky * d) as isize;
        iy >= 0 && (iy as usize) < g.s.h
    };
    let ky0 = (0..g.s.kh).find(|&ky| ky_ok(ky)).unwrap_or(g.s.kh);
    let ky1 = (0..g.s.kh)
        .rev()
        .find(|&ky| ky_ok(ky))
        .map_or(ky0, |k| k + 1);
    // Output columns whose every tap is inside the input.
    let span = (g.s.kw - 1) * d;
    let ox_lo = g.s.pl.div_ceil(g.s.sw).min(g.s.ow);
    let ox_hi = if g.s.w + g.s.pl > span {
        ((g.s.w + g.s.pl - span - 1) / g.s.sw + 1).min(g.s.ow)
    } else {
        0
    }
    .max(ox_lo);
    let out_row = g.y.add((n * g.s.oh + oy) * g.s.ow * g.ldy);
    let mut cb = 0;
    while cb < g.c {
        let cnt = (g.c - cb).min(l);
        let r = Row {
            n,
            oy,
            iy0,
            ky0,
            ky1,
            cb,
            cnt,
        };
        if cnt == l {
            dw_row::<S, true>(j, &r, ox_lo, ox_hi);
        } else {
            dw_row::<S, false>(j, &r, ox_lo, ox_hi);
        }
        cb += l;
    }
    act_rows::<S>(j.act, out_row, g.s.ow, g.c, g.ldy);
}

/// One output row of one channel block.
struct Row {
    n: usize,
    oy: usize,
    iy0: isize,
    ky0: usize,
    ky1: usize,
    cb: usize,
    cnt: usize,
}

#[inline(always)]
unsafe fn dw_row<S: Simd, const FULL: bool>(j: &DwJob, r: &Row, ox_lo: usize, ox_hi: usize) {
    let g = &j.g;
    let mut ox = 0;
    while ox < ox_lo {
        dw_edge::<S, FULL>(j, r, ox);
        ox += 1;
    }
    while ox + OB <= ox_hi {
        dw_block::<S, FULL, OB>(j, r, ox);
        ox += OB;
    }
    // The rest in fours, twos, then ones: a lone column is one chain of dependent FMAs.
    while ox + 4 <= ox_hi {
        dw_block::<S, FULL, 4>(j, r, ox);
        ox += 4;
    }
    while ox + 2 <= ox_hi {
        dw_block::<S, FULL, 2>(j, r, ox);
        ox += 2;
    }
    while ox < ox_hi {
        dw_block::<S, FULL, 1>(j, r, ox);
        ox += 1;
    }
    while ox < g.s.ow {
        dw_edge::<S, FULL>(j, r, ox);
        ox += 1;
    }
}

/// `B` interior output columns from `ox`: no bounds checks in the tap loops.
#[inline(always)]
unsafe fn dw_block<S: Simd, const FULL: bool, const B: usize>(j: &DwJob, r: &Row, ox: usize) {
    let g = &j.g;
    let d = g.s.dilation;
    let bias = ld::<S, FULL>(j.bias.add(r.cb), r.cnt);
    let img = g.x.add(r.n * g.s.h * g.s.w * g.ldx + r.cb);
    let ix0 = ox * g.s.sw - g.s.pl;
    let step = g.s.sw * g.ldx;
    let out =
        g.y.add(((r.n * g.s.oh + r.oy) * g.s.ow + ox) * g.ldy + r.cb);
    // The accumulators are named one by one (not an indexed array) so that they stay in
    // registers across the runtime-length tap loops.
    macro_rules! taps {
        ($($a:ident $b:literal)*) => {{
            $(let mut $a = bias;)*
            for ky in r.ky0..r.ky1 {
                let iy = (r.iy0 + (ky * d) as isize) as usize;
                let row = img.add((iy * g.s.w + ix0) * g.ldx);
                let wrow = j.w.add(ky * g.s.kw * g.c + r.cb);
                for kx in 0..g.s.kw {
                    let wv = ld::<S, FULL>(wrow.add(kx * g.c), r.cnt);
                    let x = row.add(kx * d * g.ldx);
                    $($a = S::fma(ld::<S, FULL>(x.add($b * step), r.cnt), wv, $a);)*
                }
            }
            $(st::<S, FULL>(out.add($b * g.ldy), $a, r.cnt);)*
        }};
    }
    if B == 8 {
        taps!(a0 0 a1 1 a2 2 a3 3 a4 4 a5 5 a6 6 a7 7);
    } else if B == 4 {
        taps!(a0 0 a1 1 a2 2 a3 3);
    } else if B == 2 {
        taps!(a0 0 a1 1);
    } else {
        debug_assert_eq!(B, 1);
        taps!(a0 0);
    }
}

/// One output column with some taps outside the input.
#[inline(always)]
unsafe fn dw_edge<S: Simd, const FULL: bool>(j: &DwJob, r: &Row, ox: usize) {
    let g = &j.g;
    let d = g.s.dilation;
    let mut acc = ld::<S, FULL>(j.bias.add(r.cb), r.cnt);
    for ky in r.ky0..r.ky1 {
        let iy = (r.iy0 + (ky * d) as isize) as usize;
        for kx in 0..g.s.kw {
            let ix = (ox * g.s.sw + kx * d) as isize - g.s.pl as isize;
            if ix < 0 || ix as usize >= g.s.w {
                continue;
            }
            let pix = (r.n * g.s.h + iy) * g.s.w + ix as usize;
            let xv = ld::<S, FULL>(g.x.add(pix * g.ldx + r.cb), r.cnt);
            let wv = ld::<S, FULL>(j.w.add((ky * g.s.kw + kx) * g.c + r.cb), r.cnt);
            acc = S::fma(xv, wv, acc);
        }
    }
    let out =
        g.y.add(((r.n * g.s.oh + r.oy) * g.s.ow + ox) * g.ldy + r.cb);
    st::<S, FULL>(out, acc, r.cnt);
}

#[inline(always)]
unsafe fn pool_task_generic<S: Simd>(j: &PoolJob, t: usize) {
    let g = &j.g;
    let l = S::LANES;
    let (n, oy) = (t / g.s.oh, t % g.s.oh);
    let (ky0, ky1, iy0) = Window::taps(oy, g.s.sh, g.s.pt, g.s.kh, g.s.h);
    for ox in 0..g.s.ow {
        let (kx0, kx1, ix0) = Window::taps(ox, g.s.sw, g.s.pl, g.s.kw, g.s.w);
        let taps = (ky1 - ky0) * (kx1 - kx0);
        let div = if j.include_pad { g.s.kh * g.s.kw } else { taps };
        let inv = S::splat(1.0 / div.max(1) as f32);
        let out = g.y.add(((n * g.s.oh + oy) * g.s.ow + ox) * g.ldy);
        let mut cb = 0;
        while cb < g.c {
            let cnt = (g.c - cb).min(l);
            let mut acc = S::splat(if j.max { f32::NEG_INFINITY } else { 0.0 });
            for ky in ky0..ky1 {
                let iy = (iy0 + ky as isize) as usize;
                for kx in kx0..kx1 {
                    let ix = (ix0 + kx as isize) as usize;
                    let xv =
                        S::load_upto(g.x.add(((n * g.s.h + iy) * g.s.w + ix) * g.ldx + cb), cnt);
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
