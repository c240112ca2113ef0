//! Packed-panel GEMM with a fused epilogue: `out = act2(act1(A · B + bias) + residual)`.
//!
//! `A` is `m × k` row-major with a row stride (an NHWC activation: rows are pixels, so a 1×1
//! convolution reads its input in place), or an im2col view of an NHWC tensor that each task
//! gathers block by block into a small scratch buffer. `B` is packed once at plan compile time
//! into panels of `nr` = two vectors of columns, `[k][nr]` each, so the micro-kernel streams it
//! linearly. The micro-kernel keeps an `MR × nr` tile in registers, broadcasting one `A` value
//! per row and step; the epilogue (bias, activations, residual add) runs on the tile while it is
//! in L1 and writes the result once.

use effcnn_arch::Act;

use super::{act, act_rows, Geom};
use crate::simd::{multiversion, Simd};

/// `B` (`k × n`) packed into column panels of `nr`, zero-padded to whole panels.
#[derive(Debug, Clone)]
pub struct PackedB {
    pub k: usize,
    pub n: usize,
    pub nr: usize,
    data: Vec<f32>,
    /// Per-column bias, zero-padded to whole panels.
    bias: Vec<f32>,
    /// Set by [`PackedB::view_rows`]: `B` is read in place, row `kk` at `ptr + kk · ld`.
    view: Option<(RowsPtr, usize)>,
}

/// The start of a row-major `B` read in place.
#[derive(Debug, Clone, Copy)]
struct RowsPtr(*const f32);
// SAFETY: a view is only read, by the tasks of the GEMM it was set up for.
unsafe impl Send for RowsPtr {}
unsafe impl Sync for RowsPtr {}

impl PackedB {
    /// Pack `B[kk][col] = w(col, kk)` and its bias.
    pub fn pack(
        k: usize,
        n: usize,
        nr: usize,
        w: impl Fn(usize, usize) -> f32,
        bias: impl Fn(usize) -> f32,
    ) -> PackedB {
        let mut p = PackedB::empty(nr);
        p.pack_into(k, n, w, bias);
        p
    }

    /// [`PackedB::pack`] into this packing's buffers (no allocation once they are large enough).
    pub fn pack_into(
        &mut self,
        k: usize,
        n: usize,
        w: impl Fn(usize, usize) -> f32,
        bias: impl Fn(usize) -> f32,
    ) {
        let nr = self.nr;
        let panels = n.div_ceil(nr);
        self.k = k;
        self.n = n;
        self.view = None;
        self.data.clear();
        self.data.resize(panels * k * nr, 0.0);
        for p in 0..panels {
            let base = p * k * nr;
            for kk in 0..k {
                for j in 0..nr {
                    let col = p * nr + j;
                    if col < n {
                        self.data[base + kk * nr + j] = w(col, kk);
                    }
                }
            }
        }
        self.bias.clear();
        self.bias.resize(panels * nr, 0.0);
        for (col, v) in self.bias.iter_mut().enumerate().take(n) {
            *v = bias(col);
        }
    }

    /// An empty packing for [`PackedB::repack_rows`] to fill.
    pub fn empty(nr: usize) -> PackedB {
        PackedB {
            k: 0,
            n: 0,
            nr,
            data: Vec::new(),
            bias: Vec::new(),
            view: None,
        }
    }

    /// Read a row-major `k × n` source (row stride `ld`) in place, with a zero bias: no copy.
    /// The micro-kernel loads whole panels, so each row is read up to the next multiple of
    /// `nr` columns; the columns past `n` only reach tile columns that are never written out.
    ///
    /// # Safety
    /// `src` must be valid for `k` rows of `n.next_multiple_of(nr)` floats at stride `ld`, and
    /// stay so while this packing is used.
    pub unsafe fn view_rows(&mut self, k: usize, n: usize, src: *const f32, ld: usize) {
        let panels = n.div_ceil(self.nr);
        self.k = k;
        self.n = n;
        self.view = Some((RowsPtr(src), ld));
        self.bias.clear();
        self.bias.resize(panels * self.nr, 0.0);
    }

    /// Re-pack from a row-major `k × n` source (row stride `ld`) with a zero bias, reusing the
    /// buffers.
    ///
    /// # Safety
    /// `src` must be valid for `k` rows of `n` floats at stride `ld`.
    pub unsafe fn repack_rows(&mut self, k: usize, n: usize, src: *const f32, ld: usize) {
        let nr = self.nr;
        let panels = n.div_ceil(nr);
        self.k = k;
        self.n = n;
        self.view = None;
        self.data.clear();
        self.data.resize(panels * k * nr, 0.0);
        self.bias.clear();
        self.bias.resize(panels * nr, 0.0);
        for p in 0..panels {
            let c0 = p * nr;
            let cols = (n - c0).min(nr);
            let base = self.data.as_mut_ptr().add(p * k * nr);
            for kk in 0..k {
                std::ptr::copy_nonoverlapping(src.add(kk * ld + c0), base.add(kk * nr), cols);
            }
        }
    }

    pub fn panels(&self) -> usize {
        self.n.div_ceil(self.nr)
    }

    /// Bytes of packed weights.
    pub fn bytes(&self) -> usize {
        4 * (self.data.len() + self.bias.len())
    }
}

/// Where the rows of `A` come from.
#[derive(Debug, Clone, Copy)]
pub enum ASrc {
    /// Row `r` is `a[r * lda ..][..k]`.
    Direct { a: *const f32, lda: usize },
    /// `A` stored transposed: element `(r, kk)` is `a[kk * lda + r]` (a weight gradient's
    /// `dyᵀ`, read from the NHWC output gradient in place).
    Trans { a: *const f32, lda: usize },
    /// An im2col view of an NHWC tensor (rows = output pixels, `k = kh·kw·cin` in (ky, kx, ci)
    /// order), gathered per block.
    Im2col(Im2col),
}

/// Geometry of an im2col view: input `n × h × w` pixels with row stride `ldx`, channels
/// `c0 .. c0 + cin` of it; output `oh × ow`.
#[derive(Debug, Clone, Copy)]
pub struct Im2col {
    pub x: *const f32,
    pub ldx: usize,
    pub c0: usize,
    pub cin: usize,
    pub s: Geom,
}

multiversion!(
    /// Gather rows `r0 .. r0 + rows` of an im2col view into `dst` (`rows × k`, row-major).
    ///
    /// # Safety
    /// `g.x` must be valid for the geometry and `dst` for `rows · kh · kw · cin` floats.
    pub fn im2col_gather(g: &Im2col, r0: usize, rows: usize, dst: *mut f32) => gather_rows
);

/// Copy `n` floats with vector loads and stores (a `memcpy` call per tap costs more than the
/// copy for the few channels of a tap). The tail goes through a masked store where the
/// instruction set makes those cheap (AVX-512) and float by float elsewhere (AVX2's
/// `vmaskmovps` store is microcoded on AMD's Zen cores).
#[inline(always)]
unsafe fn copy_vec<S: Simd>(src: *const f32, dst: *mut f32, n: usize) {
    let mut i = 0;
    while i + S::LANES <= n {
        S::store(dst.add(i), S::load(src.add(i)));
        i += S::LANES;
    }
    if i < n {
        if S::FAST_MASK {
            S::store_n(dst.add(i), S::load_n(src.add(i), n - i), n - i);
        } else {
            for j in i..n {
                *dst.add(j) = *src.add(j);
            }
        }
    }
}

/// Zero `n` floats (often none, or a few: the padding taps of an im2col row) without a
/// `memset` call.
#[inline(always)]
unsafe fn zero_vec<S: Simd>(dst: *mut f32, n: usize) {
    let mut i = 0;
    while i + S::LANES <= n {
        S::store(dst.add(i), S::zero());
        i += S::LANES;
    }
    for j in i..n {
        *dst.add(j) = 0.0;
    }
}

#[inline(always)]
unsafe fn gather_rows<S: Simd>(g: &Im2col, r0: usize, rows: usize, dst: *mut f32) {
    let s = &g.s;
    let k = s.kh * s.kw * g.cin;
    // With whole pixels (`ldx == cin`) and no dilation, the taps of one kernel row that fall
    // inside the image are one contiguous run of the input: copied at once, so a layer with
    // few channels (a 3-channel stem) copies 9 floats per kernel row instead of 3 per tap.
    let runs = g.ldx == g.cin && s.dilation == 1;
    // The output pixel of row `r0`, then stepped along (no divisions per row).
    let (mut ox, mut oy, mut n) = (r0 % s.ow, (r0 / s.ow) % s.oh, r0 / (s.ow * s.oh));
    for r in 0..rows {
        if r > 0 {
            ox += 1;
            if ox == s.ow {
                ox = 0;
                oy += 1;
                if oy == s.oh {
                    oy = 0;
                    n += 1;
                }
            }
        }
        let d = dst.add(r * k);
        for ky in 0..s.kh {
            let iy = (oy * s.sh + ky * s.dilation) as isize - s.pt as isize;
            let drow = d.add(ky * s.kw * g.cin);
            if iy < 0 || iy as usize >= s.h {
                zero_vec::<S>(drow, s.kw * g.cin);
                continue;
            }
            let line = (n * s.h + iy as usize) * s.w;
            if runs {
                // Taps kx0..kx1 are inside the row; the others are padding.
                let ix0 = (ox * s.sw) as isize - s.pl as isize;
                let kx0 = (-ix0).clamp(0, s.kw as isize) as usize;
                let kx1 = (s.w as isize - ix0).clamp(kx0 as isize, s.kw as isize) as usize;
                zero_vec::<S>(drow, kx0 * g.cin);
                if kx1 > kx0 {
                    let pix = line + (ix0 + kx0 as isize) as usize;
                    copy_vec::<S>(
                        g.x.add(pix * g.ldx + g.c0),
                        drow.add(kx0 * g.cin),
                        (kx1 - kx0) * g.cin,
                    );
                }
                zero_vec::<S>(drow.add(kx1 * g.cin), (s.kw - kx1) * g.cin);
                continue;
            }
            for kx in 0..s.kw {
                let ix = (ox * s.sw + kx * s.dilation) as isize - s.pl as isize;
                let dd = drow.add(kx * g.cin);
                if ix < 0 || ix as usize >= s.w {
                    zero_vec::<S>(dd, g.cin);
                } else {
                    copy_vec::<S>(g.x.add((line + ix as usize) * g.ldx + g.c0), dd, g.cin);
                }
            }
        }
    }
}

/// One GEMM with its epilogue; all pointers refer to the plan's arena or weights.
#[derive(Debug, Clone, Copy)]
pub struct GemmJob<'a> {
    pub m: usize,
    pub a: ASrc,
    pub b: &'a PackedB,
    pub out: *mut f32,
    pub ldc: usize,
    pub act1: Option<Act>,
    /// Added after `act1`, before `act2`: `res[r * ldr + col]`.
    pub res: Option<(*const f32, usize)>,
    pub act2: Option<Act>,
    /// Rows per task.
    pub mc: usize,
    /// Panels per task.
    pub pc: usize,
}

// SAFETY: a job is a description of disjoint writes (each task owns its rows × panels) into
// buffers that outlive the step; it is shared between the step's worker threads only.
unsafe impl Send for GemmJob<'_> {}
unsafe impl Sync for GemmJob<'_> {}

impl GemmJob<'_> {
    /// Number of independent tasks (row blocks × panel groups).
    pub fn tasks(&self) -> usize {
        self.m.div_ceil(self.mc) * self.b.panels().div_ceil(self.pc)
    }
}

const TILE: usize = 8 * 32;

thread_local! {
    /// Per-thread scratch for the im2col rows of a block.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

multiversion!(
    /// Run task `t` of `job`.
    ///
    /// # Safety
    /// The job's pointers must be valid for its geometry; tasks of one job may run concurrently.
    pub fn gemm_task(job: &GemmJob, t: usize) => gemm_task_generic
);

#[inline(always)]
unsafe fn gemm_task_generic<S: Simd>(job: &GemmJob, t: usize) {
    let pgroups = job.b.panels().div_ceil(job.pc);
    let (mb, pg) = (t / pgroups, t % pgroups);
    let m0 = mb * job.mc;
    let m1 = (m0 + job.mc).min(job.m);
    let p0 = pg * job.pc;
    let p1 = (p0 + job.pc).min(job.b.panels());
    let k = job.b.k;
    let rows = m1 - m0;
    match job.a {
        ASrc::Direct { a, lda } => block::<S, false>(job, a.add(m0 * lda), lda, m0, m1, p0, p1),
        ASrc::Trans { a, lda } => block::<S, true>(job, a.add(m0), lda, m0, m1, p0, p1),
        ASrc::Im2col(g) => {
            let s = scratch(rows * k);
            gather_rows::<S>(&g, m0, rows, s);
            block::<S, false>(job, s, k, m0, m1, p0, p1)
        }
    }
}

/// This thread's im2col buffer, grown to at least `n` floats. The pointer stays valid until the
/// next call on the same thread (a thread runs one task at a time). No closure reaches the
/// kernels, so they stay inlined into the instruction set's wrapper.
fn scratch(n: usize) -> *mut f32 {
    super::grown(&SCRATCH, n)
}

/// Rows `m0..m1` (the block's `A` at `a`, row stride `lda`, or column stride if `T`) × panels
/// `p0..p1`.
#[inline(always)]
unsafe fn block<S: Simd, const T: bool>(
    job: &GemmJob,
    a: *const f32,
    lda: usize,
    m0: usize,
    m1: usize,
    p0: usize,
    p1: usize,
) {
    let b = job.b;
    debug_assert_eq!(
        b.nr,
        2 * S::LANES,
        "panels packed for another instruction set"
    );
    let mut tile = [0.0f32; TILE];
    for p in p0..p1 {
        let (bp, ldb) = match b.view {
            Some((RowsPtr(src), ld)) => (src.add(p * b.nr), ld),
            None => (b.data.as_ptr().add(p * b.k * b.nr), b.nr),
        };
        let full_panel = (p + 1) * b.nr <= b.n;
        let mut r = m0;
        while r < m1 {
            let rows = (m1 - r).min(S::MR);
            let ar = a.add((r - m0) * if T { 1 } else { lda });
            if rows == S::MR && full_panel {
                // The common case: the epilogue straight from the accumulators.
                match S::MR {
                    8 => micro_out::<S, T, 8>(job, b.k, ar, lda, bp, ldb, r, p),
                    6 => micro_out::<S, T, 6>(job, b.k, ar, lda, bp, ldb, r, p),
                    4 => micro_out::<S, T, 4>(job, b.k, ar, lda, bp, ldb, r, p),
                    _ => micro_out::<S, T, 2>(job, b.k, ar, lda, bp, ldb, r, p),
                }
            } else {
                micro_rows::<S, T>(rows, b.k, ar, lda, bp, ldb, tile.as_mut_ptr());
                epilogue::<S>(job, tile.as_ptr(), r, rows, p);
            }
            r += rows;
        }
    }
    // The last activation over the block's output, while it is in cache.
    let last = if job.res.is_some() {
        job.act2
    } else {
        job.act1
    };
    if last.is_some() {
        let c0 = p0 * b.nr;
        let c1 = (p1 * b.nr).min(b.n);
        act_rows::<S>(
            last,
            job.out.add(m0 * job.ldc + c0),
            m1 - m0,
            c1 - c0,
            job.ldc,
        );
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_rows<S: Simd, const T: bool>(
    rows: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    tile: *mut f32,
) {
    macro_rules! arms {
        ($($n:literal)*) => {
            match rows {
                $($n => micro::<S, T, $n>(k, a, lda, b, ldb, tile),)*
                _ => unreachable!("rows ≤ MR ≤ 8"),
            }
        };
    }
    if rows == S::MR {
        // The common case first: one full-height instantiation per instruction set.
        match S::MR {
            8 => micro::<S, T, 8>(k, a, lda, b, ldb, tile),
            6 => micro::<S, T, 6>(k, a, lda, b, ldb, tile),
            4 => micro::<S, T, 4>(k, a, lda, b, ldb, tile),
            _ => micro::<S, T, 2>(k, a, lda, b, ldb, tile),
        }
    } else {
        arms!(1 2 3 4 5 6 7)
    }
}

/// The register-tiled kernel: `tile[r][..nr] = Σ_k a[r][k] · b[k][..nr]` for `R` rows read in
/// place (row stride `lda`; with `T`, the `R` values of step `kk` side by side at
/// `a + kk · lda`), each `A` value broadcast straight from memory into its FMAs; row `kk` of
/// the panel at `b + kk · ldb`.
#[inline(always)]
unsafe fn micro<S: Simd, const T: bool, const R: usize>(
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    tile: *mut f32,
) {
    let l = S::LANES;
    let (acc0, acc1) = micro_acc::<S, T, R>(k, a, lda, b, ldb);
    for r in 0..R {
        S::store(tile.add(r * 2 * l), acc0[r]);
        S::store(tile.add(r * 2 * l + l), acc1[r]);
    }
}

/// [`micro`] for a full tile (`R = MR` rows, a whole panel of columns), with [`epilogue`]'s
/// arithmetic applied to the accumulators and the result written to the output directly: no
/// round trip through the tile buffer.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_out<S: Simd, const T: bool, const R: usize>(
    job: &GemmJob,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    r0: usize,
    p: usize,
) {
    let l = S::LANES;
    let (acc0, acc1) = micro_acc::<S, T, R>(k, a, lda, b, ldb);
    let col0 = p * job.b.nr;
    let bias = job.b.bias.as_ptr().add(col0);
    let (b0, b1) = (S::load(bias), S::load(bias.add(l)));
    for r in 0..R {
        let row = r0 + r;
        let out = job.out.add(row * job.ldc + col0);
        let mut v0 = S::add(acc0[r], b0);
        let mut v1 = S::add(acc1[r], b1);
        if let Some((res, ldr)) = job.res {
            if job.act1.is_some() {
                v0 = act::<S>(job.act1, v0);
                v1 = act::<S>(job.act1, v1);
            }
            let rp = res.add(row * ldr + col0);
            v0 = S::add(v0, S::load(rp));
            v1 = S::add(v1, S::load(rp.add(l)));
        }
        S::store(out, v0);
        S::store(out.add(l), v1);
    }
}

/// The accumulators of [`micro`].
#[inline(always)]
unsafe fn micro_acc<S: Simd, const T: bool, const R: usize>(
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
) -> ([S::V; R], [S::V; R]) {
    let l = S::LANES;
    let mut acc0 = [S::zero(); R];
    let mut acc1 = [S::zero(); R];
    let mut bp = b;
    if T {
        let mut ap = a;
        for _ in 0..k {
            let b0 = S::load(bp);
            let b1 = S::load(bp.add(l));
            for r in 0..R {
                let av = S::splat(*ap.add(r));
                acc0[r] = S::fma(av, b0, acc0[r]);
                acc1[r] = S::fma(av, b1, acc1[r]);
            }
            ap = ap.add(lda);
            bp = bp.add(ldb);
        }
    } else {
        let mut rows = [a; R];
        for (r, p) in rows.iter_mut().enumerate() {
            *p = a.add(r * lda);
        }
        for kk in 0..k {
            let b0 = S::load(bp);
            let b1 = S::load(bp.add(l));
            for r in 0..R {
                let av = S::splat(*rows[r].add(kk));
                acc0[r] = S::fma(av, b0, acc0[r]);
                acc1[r] = S::fma(av, b1, acc1[r]);
            }
            bp = bp.add(ldb);
        }
    }
    (acc0, acc1)
}

#[inline(always)]
unsafe fn epilogue<S: Simd>(job: &GemmJob, tile: *const f32, r0: usize, rows: usize, p: usize) {
    let l = S::LANES;
    let nr = job.b.nr;
    let col0 = p * nr;
    let ncols = (job.b.n - col0).min(nr);
    let bias = job.b.bias.as_ptr().add(col0);
    for r in 0..rows {
        let row = r0 + r;
        let out = job.out.add(row * job.ldc + col0);
        let mut c = 0;
        while c < ncols {
            let cnt = (ncols - c).min(l);
            let mut v = S::add(S::load(tile.add(r * nr + c)), S::load(bias.add(c)));
            if let Some((res, ldr)) = job.res {
                // The rare chain with an activation before the residual add.
                if job.act1.is_some() {
                    v = act::<S>(job.act1, v);
                }
                v = S::add(v, S::load_upto(res.add(row * ldr + col0 + c), cnt));
            }
            S::store_upto(out.add(c), v, cnt);
            c += l;
        }
    }
}
