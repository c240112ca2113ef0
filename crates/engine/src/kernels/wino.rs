//! Winograd F(2×2, 3×3) convolution for 3×3, stride-1, undilated, ungrouped layers: each 2×2
//! block of outputs ("tile") is computed from a 4×4 input patch with 16 multiplications per
//! channel pair instead of 36 (Lavin & Gray, 2016), so the GEMM work of these layers drops
//! 2.25×.
//!
//! `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A`, summed over input channels. The weights are transformed
//! once per step into 16 GEMM packings `U_ξ` (`cin × cout`); a task takes a block of tiles,
//! transforms their patches into 16 matrices `V_ξ` (`tiles × cin`, NHWC channel vectors),
//! multiplies `M_ξ = V_ξ · U_ξ` with the packed GEMM micro-kernel, and transforms `M` back into
//! the 2×2 outputs (bias and accumulation in the same pass). Every output belongs to one task
//! and every sum has a fixed order, so the result does not depend on the thread count.

use super::gemm::{self, ASrc, GemmJob, PackedB};
use super::Geom;
use crate::simd::{multiversion, Isa, Simd};

/// Whether a convolution can run as F(2×2, 3×3): 3×3, stride 1, dilation 1, one group, and
/// padding within the kernel's reach (so the flipped convolution of its input gradient is one
/// too).
pub fn applies(c: &effcnn_arch::Conv, g: &Geom) -> bool {
    c.k == (3, 3)
        && c.stride == (1, 1)
        && c.dilation == 1
        && c.groups == 1
        && g.pt <= 2
        && g.pl <= 2
}

/// `G g Gᵀ` of one 3×3 kernel (`g[ky][kx]`), row-major 4×4, computed in f64.
pub fn transform_kernel(g: [[f32; 3]; 3]) -> [f32; 16] {
    let gm = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let mut t = [[0f64; 3]; 4];
    for (i, row) in gm.iter().enumerate() {
        for j in 0..3 {
            t[i][j] = (0..3).map(|k| row[k] * f64::from(g[k][j])).sum();
        }
    }
    let mut u = [0f32; 16];
    for i in 0..4 {
        for (j, row) in gm.iter().enumerate() {
            u[i * 4 + j] = (0..3).map(|k| t[i][k] * row[k]).sum::<f64>() as f32;
        }
    }
    u
}

/// Pack the 16 transformed weight matrices: `U_ξ[ci][co] = (G g(co, ci) Gᵀ)[ξ]`, `g(co, ci)`
/// the 3×3 kernel from input channel `ci` to output channel `co`.
pub fn pack_weights(
    packs: &mut Vec<PackedB>,
    nr: usize,
    cin: usize,
    cout: usize,
    g: impl Fn(usize, usize) -> [[f32; 3]; 3],
) {
    let mut u = vec![0f32; cin * cout * 16];
    for co in 0..cout {
        for ci in 0..cin {
            let t = transform_kernel(g(co, ci));
            u[(co * cin + ci) * 16..][..16].copy_from_slice(&t);
        }
    }
    packs.resize_with(16, || PackedB::empty(nr));
    for (xi, p) in packs.iter_mut().enumerate() {
        p.pack_into(cin, cout, |co, ci| u[(co * cin + ci) * 16 + xi], |_| 0.0);
    }
}

/// One Winograd convolution: `out (+)= conv(x) + bias` over `n` images of geometry `s`.
#[derive(Debug, Clone, Copy)]
pub struct WinoJob<'a> {
    pub isa: Isa,
    /// NHWC input, pixel stride `ldx`, `cin` channels.
    pub x: *const f32,
    pub ldx: usize,
    pub cin: usize,
    pub n: usize,
    pub s: Geom,
    /// The 16 packings of [`pack_weights`].
    pub u: &'a [PackedB],
    /// Per output channel, or null.
    pub bias: *const f32,
    pub out: *mut f32,
    pub ldc: usize,
    pub cout: usize,
    /// Add to `out` instead of writing it.
    pub acc: bool,
    /// Tiles per task.
    pub tt: usize,
}

// SAFETY: a job describes disjoint writes (each task owns its tiles' outputs) into buffers that
// outlive the step; it is shared between the step's worker threads only.
unsafe impl Send for WinoJob<'_> {}
unsafe impl Sync for WinoJob<'_> {}

impl WinoJob<'_> {
    fn tiles_hw(&self) -> (usize, usize) {
        (self.s.oh.div_ceil(2), self.s.ow.div_ceil(2))
    }

    /// Number of tasks.
    pub fn tasks(&self) -> usize {
        let (th, tw) = self.tiles_hw();
        (self.n * th * tw).div_ceil(self.tt)
    }

    /// Tiles per task for `cin` → `cout` channels: the block's 16 `V` and `M` matrices stay
    /// within about 256 KB (L2).
    pub fn tile_block(cin: usize, cout: usize) -> usize {
        (4096 / (cin + cout).max(1)).clamp(12, 96)
    }
}

/// Run `$body` for each channel vector of `c` channels (`$ch` its first channel), with the
/// constant `FULL` true for whole vectors and false for the partial last one.
macro_rules! each_vector {
    ($s:ty, $c:expr, |$ch:ident, FULL| $body:expr) => {{
        let mut $ch = 0;
        while $ch + <$s>::LANES <= $c {
            const FULL: bool = true;
            $body;
            $ch += <$s>::LANES;
        }
        if $ch < $c {
            const FULL: bool = false;
            $body;
        }
    }};
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// This thread's transform buffer, grown to at least `n` floats; valid until the next call on
/// the same thread (a thread runs one task at a time).
fn scratch(n: usize) -> *mut f32 {
    super::grown(&SCRATCH, n)
}

multiversion!(
    /// Run task `t` of `job`.
    ///
    /// # Safety
    /// The job's pointers must be valid for its geometry; tasks of one job may run concurrently.
    pub fn wino_task(job: &WinoJob, t: usize) => wino_task_generic
);

#[inline(always)]
unsafe fn wino_task_generic<S: Simd>(job: &WinoJob, t: usize) {
    let (th, tw) = job.tiles_hw();
    let total = job.n * th * tw;
    let t0 = t * job.tt;
    let tiles = (total - t0).min(job.tt);
    let (cin, cout) = (job.cin, job.cout);
    let need = 16 * tiles * (cin + cout);
    let v = scratch(need);
    let m = v.add(16 * tiles * cin);
    let src = Patches {
        x: job.x,
        ldx: job.ldx,
        cin,
        s: &job.s,
    };
    // Input transform: V_ξ[tile][ci], ξ = 4·i + j.
    for tt in 0..tiles {
        let (img, ty, tx) = tile_pos(t0 + tt, th, tw);
        each_vector!(S, cin, |ch, FULL| input_tile::<S, FULL, false>(
            &src,
            img,
            ty,
            tx,
            ch,
            v.add(tt * cin),
            tiles * cin
        ));
    }
    // The 16 products M_ξ = V_ξ · U_ξ.
    for (xi, u) in job.u.iter().enumerate() {
        let g = GemmJob {
            m: tiles,
            a: ASrc::Direct {
                a: v.add(xi * tiles * cin),
                lda: cin,
            },
            b: u,
            out: m.add(xi * tiles * cout),
            ldc: cout,
            act1: None,
            res: None,
            act2: None,
            mc: tiles,
            pc: u.panels(),
        };
        gemm::gemm_task(job.isa, &g, 0);
    }
    // Output transform.
    for tt in 0..tiles {
        let (img, ty, tx) = tile_pos(t0 + tt, th, tw);
        each_vector!(S, cout, |co, FULL| output_tile::<S, FULL>(
            job,
            img,
            ty,
            tx,
            co,
            m.add(tt * cout),
            tiles * cout
        ));
    }
}

#[inline(always)]
fn tile_pos(i: usize, th: usize, tw: usize) -> (usize, usize, usize) {
    (i / (th * tw), (i / tw) % th, i % tw)
}

/// An NHWC input read in 4×4 patches: `cin` channels, pixel stride `ldx`, geometry `s`.
struct Patches<'a> {
    x: *const f32,
    ldx: usize,
    cin: usize,
    s: &'a Geom,
}

/// `Bᵀ d B` of the 4×4 patch of tile `(ty, tx)` of image `img`, channels `ch ..` (a vector),
/// stored at `v + ξ · stride + ch`: F(2×2, 3×3)'s `Bᵀ`, or with `GRAD` F(3×3, 2×2)'s (the weight
/// gradient's), whose last row has the opposite sign.
#[inline(always)]
unsafe fn input_tile<S: Simd, const FULL: bool, const GRAD: bool>(
    src: &Patches,
    img: usize,
    ty: usize,
    tx: usize,
    ch: usize,
    v: *mut f32,
    stride: usize,
) {
    let s = src.s;
    let cnt = src.cin - ch;
    let mut d = [S::zero(); 16];
    for i in 0..4 {
        let iy = (2 * ty + i) as isize - s.pt as isize;
        if iy < 0 || iy as usize >= s.h {
            continue;
        }
        let row = (img * s.h + iy as usize) * s.w;
        for j in 0..4 {
            let ix = (2 * tx + j) as isize - s.pl as isize;
            if ix >= 0 && (ix as usize) < s.w {
                let p = src.x.add((row + ix as usize) * src.ldx + ch);
                d[i * 4 + j] = super::ld::<S, FULL>(p, cnt);
            }
        }
    }
    // Rows: Bᵀ d.
    let mut r = [S::zero(); 16];
    for j in 0..4 {
        let (d0, d1, d2, d3) = (d[j], d[4 + j], d[8 + j], d[12 + j]);
        r[j] = S::sub(d0, d2);
        r[4 + j] = S::add(d1, d2);
        r[8 + j] = S::sub(d2, d1);
        r[12 + j] = if GRAD { S::sub(d3, d1) } else { S::sub(d1, d3) };
    }
    // Columns: (Bᵀ d) B.
    for i in 0..4 {
        let (a0, a1, a2, a3) = (r[i * 4], r[i * 4 + 1], r[i * 4 + 2], r[i * 4 + 3]);
        let o = [
            S::sub(a0, a2),
            S::add(a1, a2),
            S::sub(a2, a1),
            if GRAD { S::sub(a3, a1) } else { S::sub(a1, a3) },
        ];
        for (j, val) in o.into_iter().enumerate() {
            super::st::<S, FULL>(v.add((i * 4 + j) * stride + ch), val, cnt);
        }
    }
}

/// `Aᵀ M A` of one tile, channels `co ..` (a vector), plus bias, written (or added) to the
/// outputs of the tile that lie inside the image.
#[inline(always)]
unsafe fn output_tile<S: Simd, const FULL: bool>(
    job: &WinoJob,
    img: usize,
    ty: usize,
    tx: usize,
    co: usize,
    m: *const f32,
    stride: usize,
) {
    let s = &job.s;
    let cnt = job.cout - co;
    let mut mv = [S::zero(); 16];
    for (xi, slot) in mv.iter_mut().enumerate() {
        *slot = super::ld::<S, FULL>(m.add(xi * stride + co), cnt);
    }
    // Rows: Aᵀ M (2 × 4).
    let mut r = [S::zero(); 8];
    for j in 0..4 {
        let (m0, m1, m2, m3) = (mv[j], mv[4 + j], mv[8 + j], mv[12 + j]);
        r[j] = S::add(S::add(m0, m1), m2);
        r[4 + j] = S::sub(S::sub(m1, m2), m3);
    }
    let bias = if job.bias.is_null() {
        S::zero()
    } else {
        super::ld::<S, FULL>(job.bias.add(co), cnt)
    };
    for i in 0..2 {
        let oy = 2 * ty + i;
        if oy >= s.oh {
            continue;
        }
        let (a0, a1, a2, a3) = (r[i * 4], r[i * 4 + 1], r[i * 4 + 2], r[i * 4 + 3]);
        let y = [
            S::add(S::add(S::add(a0, a1), a2), bias),
            S::add(S::sub(S::sub(a1, a2), a3), bias),
        ];
        for (j, val) in y.into_iter().enumerate() {
            let ox = 2 * tx + j;
            if ox >= s.ow {
                continue;
            }
            let o = job.out.add(((img * s.oh + oy) * s.ow + ox) * job.ldc + co);
            let val = if job.acc {
                S::add(super::ld::<S, FULL>(o, cnt), val)
            } else {
                val
            };
            super::st::<S, FULL>(o, val, cnt);
        }
    }
}

/// The weight gradient of a Winograd-shaped convolution as F(3×3, 2×2): the gradient of the
/// 3×3 kernel is the correlation of each 4×4 input patch with the 2×2 tile of output gradient
/// it produced, so `dW = A'ᵀ [ Σ_tiles (G' dy G'ᵀ) ⊙ (B'ᵀ d B') ] A'`: the transformed tiles are
/// multiplied and summed over the batch as 16 GEMMs (`M_ξ = Σ D_ξᵀ V_ξ`, `cout × cin`), and
/// only the sum is transformed back, once per channel pair. The tiles are split into a fixed
/// number of parts, each summed in order into its own `M`, so the result does not depend on
/// the thread count.
#[derive(Debug, Clone, Copy)]
pub struct WinoGradJob {
    pub isa: Isa,
    /// The layer's NHWC input, `cin` channels, and its output gradient, `cout` channels.
    pub x: *const f32,
    pub cin: usize,
    pub dy: *const f32,
    pub cout: usize,
    pub n: usize,
    /// The forward geometry.
    pub s: Geom,
    /// Tiles per part (the last part may have fewer) and per block within a part.
    pub per: usize,
    pub tt: usize,
}

// SAFETY: the job's inputs are only read.
unsafe impl Send for WinoGradJob {}
unsafe impl Sync for WinoGradJob {}

impl WinoGradJob {
    /// Tiles of the whole batch.
    pub fn tiles(&self) -> usize {
        self.n * self.s.oh.div_ceil(2) * self.s.ow.div_ceil(2)
    }
}

thread_local! {
    static VIEW: std::cell::RefCell<Option<PackedB>> = const { std::cell::RefCell::new(None) };
}

/// This thread's packing for in-place views, with panels of `nr`. The pointer stays valid for
/// the thread's life; no closure reaches the kernels, so they stay inlined into the
/// instruction set's wrapper.
fn view_packing(nr: usize) -> *mut PackedB {
    VIEW.with(|v| {
        let mut v = v.borrow_mut();
        let p = v.get_or_insert_with(|| PackedB::empty(nr));
        if p.nr != nr {
            *p = PackedB::empty(nr);
        }
        p as *mut PackedB
    })
}

multiversion!(
    /// Add part `part` of `job` (its tiles' transformed products) into `m`, `16 × cout × cin`
    /// (`m[ξ][co][ci]`, zeroed by the caller).
    ///
    /// # Safety
    /// The job's pointers must be valid for its geometry, `m` for `16 · cout · cin` floats;
    /// parts may run concurrently into different `m`.
    pub fn wino_grad_part(job: &WinoGradJob, part: usize, m: *mut f32) => wino_grad_part_generic
);

#[inline(always)]
unsafe fn wino_grad_part_generic<S: Simd>(job: &WinoGradJob, part: usize, m: *mut f32) {
    let (cin, cout) = (job.cin, job.cout);
    let (th, tw) = (job.s.oh.div_ceil(2), job.s.ow.div_ceil(2));
    let total = job.tiles();
    let p0 = (part * job.per).min(total);
    let p1 = ((part + 1) * job.per).min(total);
    let nr = 2 * S::LANES;
    // V (with a panel of slack: the GEMM reads whole panels of its rows) and D.
    let need = 16 * job.tt * (cin + cout) + nr;
    let v = scratch(need);
    let src = Patches {
        x: job.x,
        ldx: cin,
        cin,
        s: &job.s,
    };
    // SAFETY: this thread's packing, used by this call only (a thread runs one part at a time).
    let packed = &mut *view_packing(nr);
    let mut b0 = p0;
    while b0 < p1 {
        let tiles = (p1 - b0).min(job.tt);
        // This block's V_ξ (`tiles × cin` each), then its D_ξ (`tiles × cout`).
        let d = v.add(16 * tiles * cin);
        for t in 0..tiles {
            let (img, ty, tx) = tile_pos(b0 + t, th, tw);
            each_vector!(S, cin, |ch, FULL| input_tile::<S, FULL, true>(
                &src,
                img,
                ty,
                tx,
                ch,
                v.add(t * cin),
                tiles * cin,
            ));
            each_vector!(S, cout, |co, FULL| grad_tile::<S, FULL>(
                job,
                img,
                ty,
                tx,
                co,
                d.add(t * cout),
                tiles * cout
            ));
        }
        for xi in 0..16 {
            packed.view_rows(tiles, cin, v.add(xi * tiles * cin), cin);
            let mx = m.add(xi * cout * cin);
            let g = GemmJob {
                m: cout,
                a: ASrc::Trans {
                    a: d.add(xi * tiles * cout),
                    lda: cout,
                },
                b: packed,
                out: mx,
                ldc: cin,
                act1: None,
                res: Some((mx as *const f32, cin)),
                act2: None,
                mc: cout,
                pc: packed.panels(),
            };
            gemm::gemm_task(job.isa, &g, 0);
        }
        b0 += tiles;
    }
}

/// `G' g G'ᵀ` of the 2×2 output-gradient tile `(ty, tx)` (zero past the image edge), channels
/// `co ..` (a vector), stored at `d + ξ · stride + co`.
#[inline(always)]
unsafe fn grad_tile<S: Simd, const FULL: bool>(
    job: &WinoGradJob,
    img: usize,
    ty: usize,
    tx: usize,
    co: usize,
    d: *mut f32,
    stride: usize,
) {
    let s = &job.s;
    let cnt = job.cout - co;
    let mut g = [S::zero(); 4];
    for a in 0..2 {
        let oy = 2 * ty + a;
        if oy >= s.oh {
            continue;
        }
        for b in 0..2 {
            let ox = 2 * tx + b;
            if ox < s.ow {
                let p = job.dy.add(((img * s.oh + oy) * s.ow + ox) * job.cout + co);
                g[a * 2 + b] = super::ld::<S, FULL>(p, cnt);
            }
        }
    }
    let half = S::splat(0.5);
    // G' = [1 0; ½ ½; ½ −½; 0 1] on rows, then on columns.
    let g4 = |a: S::V, b: S::V| [a, S::mul(S::add(a, b), half), S::mul(S::sub(a, b), half), b];
    let c0 = g4(g[0], g[2]);
    let c1 = g4(g[1], g[3]);
    for i in 0..4 {
        for (j, val) in g4(c0[i], c1[i]).into_iter().enumerate() {
            super::st::<S, FULL>(d.add((i * 4 + j) * stride + co), val, cnt);
        }
    }
}

/// `dW[co][ci][ky][kx]` (PyTorch's layout) from the summed transformed products
/// `m[ξ][co][ci]`: `A'ᵀ M A'` per channel pair, `A'ᵀ = [1 1 1 0; 0 1 −1 0; 0 1 1 1]`.
pub fn grad_output_transform(m: &[f32], cout: usize, cin: usize, dw: &mut [f32]) {
    let at = [
        [1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 0.0],
        [0.0, 1.0, 1.0, 1.0],
    ];
    for co in 0..cout {
        for ci in 0..cin {
            let mv = |xi: usize| f64::from(m[(xi * cout + co) * cin + ci]);
            // A'ᵀ M, then (A'ᵀ M) A'.
            let r = at.map(|row| {
                [0, 1, 2, 3].map(|j| (0..4).map(|k| row[k] * mv(k * 4 + j)).sum::<f64>())
            });
            for (ky, rk) in r.iter().enumerate() {
                for (kx, row) in at.iter().enumerate() {
                    let v: f64 = (0..4).map(|k| rk[k] * row[k]).sum();
                    dw[(co * cin + ci) * 9 + ky * 3 + kx] = v as f32;
                }
            }
        }
    }
}
