//! Element-wise and per-pixel kernels over NHWC rows: the affine/activation/residual chain of a
//! standalone batch norm, activation or add; the SE channel gate; global average pooling; and
//! the copies that implement concatenation, channel shuffle and the layout changes at the
//! plan's edges.

use effcnn_arch::Act;

use super::act;
use crate::simd::{multiversion, Simd};

/// `y = act2(act1(x · scale + shift) + res)` over `rows × c`, each part optional.
#[derive(Debug, Clone, Copy)]
pub struct MapJob {
    pub rows: usize,
    pub c: usize,
    pub x: *const f32,
    pub ldx: usize,
    /// Per-channel scale and shift (a folded batch norm), or null for none.
    pub scale: *const f32,
    pub shift: *const f32,
    pub act1: Option<Act>,
    /// Residual `res[r · ldr + ch]`, or null.
    pub res: *const f32,
    pub ldr: usize,
    pub act2: Option<Act>,
    pub y: *mut f32,
    pub ldy: usize,
    /// Rows per task.
    pub rc: usize,
}

/// SE recalibration: `y[n, p, ch] = x[n, p, ch] · gate[n, ch]` for `hw` pixels per image.
#[derive(Debug, Clone, Copy)]
pub struct GateJob {
    pub n: usize,
    pub hw: usize,
    pub c: usize,
    pub x: *const f32,
    pub ldx: usize,
    pub gate: *const f32,
    pub ldg: usize,
    pub y: *mut f32,
    pub ldy: usize,
    /// Rows (pixels) per task.
    pub rc: usize,
}

/// Global average pooling of each image: `y[n, ch] = mean_p x[n, p, ch]`.
#[derive(Debug, Clone, Copy)]
pub struct GapJob {
    pub n: usize,
    pub hw: usize,
    pub c: usize,
    pub x: *const f32,
    pub ldx: usize,
    pub y: *mut f32,
    pub ldy: usize,
}

// SAFETY: jobs describe disjoint writes into buffers that outlive the step.
unsafe impl Send for MapJob {}
unsafe impl Sync for MapJob {}
unsafe impl Send for GateJob {}
unsafe impl Sync for GateJob {}
unsafe impl Send for GapJob {}
unsafe impl Sync for GapJob {}

impl MapJob {
    pub fn tasks(&self) -> usize {
        self.rows.div_ceil(self.rc)
    }
}

impl GateJob {
    pub fn tasks(&self) -> usize {
        (self.n * self.hw).div_ceil(self.rc)
    }
}

multiversion!(
    /// Rows of task `t` of a [`MapJob`].
    ///
    /// # Safety
    /// The job's pointers must be valid for its geometry.
    pub fn map_task(j: &MapJob, t: usize) => map_task_generic
);

multiversion!(
    /// Rows of task `t` of a [`GateJob`].
    ///
    /// # Safety
    /// The job's pointers must be valid for its geometry.
    pub fn gate_task(j: &GateJob, t: usize) => gate_task_generic
);

multiversion!(
    /// Image `t` of a [`GapJob`].
    ///
    /// # Safety
    /// The job's pointers must be valid for its geometry.
    pub fn gap_task(j: &GapJob, t: usize) => gap_task_generic
);

#[inline(always)]
unsafe fn map_task_generic<S: Simd>(j: &MapJob, t: usize) {
    let l = S::LANES;
    let r0 = t * j.rc;
    let r1 = (r0 + j.rc).min(j.rows);
    for r in r0..r1 {
        let x = j.x.add(r * j.ldx);
        let y = j.y.add(r * j.ldy);
        let mut c = 0;
        while c < j.c {
            let cnt = (j.c - c).min(l);
            let mut v = S::load_upto(x.add(c), cnt);
            if !j.scale.is_null() {
                v = S::fma(
                    v,
                    S::load_upto(j.scale.add(c), cnt),
                    S::load_upto(j.shift.add(c), cnt),
                );
            }
            v = act::<S>(j.act1, v);
            if !j.res.is_null() {
                v = S::add(v, S::load_upto(j.res.add(r * j.ldr + c), cnt));
            }
            v = act::<S>(j.act2, v);
            S::store_upto(y.add(c), v, cnt);
            c += l;
        }
    }
}

#[inline(always)]
unsafe fn gate_task_generic<S: Simd>(j: &GateJob, t: usize) {
    let l = S::LANES;
    let r0 = t * j.rc;
    let r1 = (r0 + j.rc).min(j.n * j.hw);
    for r in r0..r1 {
        let g = j.gate.add((r / j.hw) * j.ldg);
        let x = j.x.add(r * j.ldx);
        let y = j.y.add(r * j.ldy);
        let mut c = 0;
        while c < j.c {
            let cnt = (j.c - c).min(l);
            let v = S::mul(S::load_upto(x.add(c), cnt), S::load_upto(g.add(c), cnt));
            S::store_upto(y.add(c), v, cnt);
            c += l;
        }
    }
}

#[inline(always)]
unsafe fn gap_task_generic<S: Simd>(j: &GapJob, t: usize) {
    let l = S::LANES;
    let inv = S::splat(1.0 / j.hw as f32);
    let img = j.x.add(t * j.hw * j.ldx);
    let y = j.y.add(t * j.ldy);
    let mut c = 0;
    while c < j.c {
        let cnt = (j.c - c).min(l);
        // Four partial sums: shorter dependency chains, and the same order for every run.
        let mut acc = [S::zero(); 4];
        let mut p = 0;
        while p + 4 <= j.hw {
            for (q, a) in acc.iter_mut().enumerate() {
                *a = S::add(*a, S::load_upto(img.add((p + q) * j.ldx + c), cnt));
            }
            p += 4;
        }
        while p < j.hw {
            acc[0] = S::add(acc[0], S::load_upto(img.add(p * j.ldx + c), cnt));
            p += 1;
        }
        let s = S::add(S::add(acc[0], acc[1]), S::add(acc[2], acc[3]));
        S::store_upto(y.add(c), S::mul(s, inv), cnt);
        c += l;
    }
}

/// Copy `rows × c` (concatenation parts, channel slices).
///
/// # Safety
/// Both views must be valid and must not overlap.
pub unsafe fn copy_rows(rows: usize, c: usize, x: *const f32, ldx: usize, y: *mut f32, ldy: usize) {
    for r in 0..rows {
        std::ptr::copy_nonoverlapping(x.add(r * ldx), y.add(r * ldy), c);
    }
}

/// Channel shuffle with `groups` groups: output channel `i · groups + g` is input channel
/// `g · (c / groups) + i` (reshape (g, c/g) → transpose → flatten).
///
/// # Safety
/// Both views must be valid and must not overlap.
pub unsafe fn shuffle_rows(
    rows: usize,
    c: usize,
    groups: usize,
    x: *const f32,
    ldx: usize,
    y: *mut f32,
    ldy: usize,
) {
    let cpg = c / groups;
    for r in 0..rows {
        let (xr, yr) = (x.add(r * ldx), y.add(r * ldy));
        for g in 0..groups {
            for i in 0..cpg {
                *yr.add(i * groups + g) = *xr.add(g * cpg + i);
            }
        }
    }
}

/// NCHW (`n × c × hw`, contiguous) to NHWC rows with stride `ldy`.
///
/// # Safety
/// `x` must hold `n · c · hw` floats and `y` `n · hw` rows.
pub unsafe fn nchw_to_nhwc(n: usize, c: usize, hw: usize, x: *const f32, y: *mut f32, ldy: usize) {
    for img in 0..n {
        for ch in 0..c {
            let src = x.add((img * c + ch) * hw);
            let dst = y.add(img * hw * ldy + ch);
            for p in 0..hw {
                *dst.add(p * ldy) = *src.add(p);
            }
        }
    }
}

/// NHWC rows (stride `ldx`) to NCHW (`n × c × hw`, contiguous).
///
/// # Safety
/// `x` must hold `n · hw` rows and `y` `n · c · hw` floats.
pub unsafe fn nhwc_to_nchw(n: usize, c: usize, hw: usize, x: *const f32, ldx: usize, y: *mut f32) {
    for img in 0..n {
        for ch in 0..c {
            let dst = y.add((img * c + ch) * hw);
            let src = x.add(img * hw * ldx + ch);
            for p in 0..hw {
                *dst.add(p) = *src.add(p * ldx);
            }
        }
    }
}
