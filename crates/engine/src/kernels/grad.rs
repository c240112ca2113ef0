//! Kernels of the training step over NHWC rows (pixels × contiguous channels): batch-norm
//! statistics and backward, activation backward, depthwise convolution and pooling backward,
//! each written once and compiled per instruction set. Every `acc` flag chooses between
//! writing a gradient (`dx = …`, the first contribution) and adding to it (`dx += …`).
//!
//! Sums over rows are returned per call (the caller splits rows into a fixed set of chunks and
//! adds the chunk sums in order), so results do not depend on the number of threads.

// The plain-loop kernels take the vector type only to be compiled once per instruction set by
// `multiversion!` (the compiler vectorises their loops for it), so most do not name `S`.
#![allow(clippy::extra_unused_type_parameters, clippy::too_many_arguments)]

use effcnn_arch::Act;

use super::{ld, st, Geom};
use crate::simd::{multiversion, Simd};

/// Store `$e` (a function of index `$i`) into `dx[$i]`, or add it when `$acc`; one loop each, so
/// the choice is made once.
macro_rules! write_grad {
    ($acc:expr, $n:expr, $dx:expr, |$i:ident| $e:expr) => {{
        let dx: *mut f32 = $dx;
        if $acc {
            for $i in 0..$n {
                *dx.add($i) += $e;
            }
        } else {
            for $i in 0..$n {
                *dx.add($i) = $e;
            }
        }
    }};
}

multiversion!(
    /// `dx (+)= dy · act'(x)` over `n` values; `x` is the activation's input, `y` its output.
    ///
    /// # Safety
    /// All pointers must be valid for `n` floats.
    pub fn act_back(
        act: Act,
        n: usize,
        x: *const f32,
        y: *const f32,
        dy: *const f32,
        dx: *mut f32,
        acc: bool,
    ) => act_back_generic
);

#[inline(always)]
unsafe fn act_back_generic<S: Simd>(
    act: Act,
    n: usize,
    x: *const f32,
    y: *const f32,
    dy: *const f32,
    dx: *mut f32,
    acc: bool,
) {
    match act {
        Act::Relu => write_grad!(acc, n, dx, |i| if *x.add(i) > 0.0 {
            *dy.add(i)
        } else {
            0.0
        }),
        Act::Relu6 => write_grad!(acc, n, dx, |i| {
            let v = *x.add(i);
            if v > 0.0 && v < 6.0 {
                *dy.add(i)
            } else {
                0.0
            }
        }),
        Act::Sigmoid => write_grad!(acc, n, dx, |i| {
            let s = *y.add(i);
            *dy.add(i) * s * (1.0 - s)
        }),
        Act::HardSigmoid => write_grad!(acc, n, dx, |i| {
            let v = *x.add(i);
            if v > -3.0 && v < 3.0 {
                *dy.add(i) / 6.0
            } else {
                0.0
            }
        }),
        Act::HardSwish => write_grad!(acc, n, dx, |i| {
            let v = *x.add(i);
            let d = if v < -3.0 {
                0.0
            } else if v <= 3.0 {
                v / 3.0 + 0.5
            } else {
                1.0
            };
            *dy.add(i) * d
        }),
        Act::Silu => {
            let one = S::splat(1.0);
            let mut i = 0;
            while i < n {
                let cnt = (n - i).min(S::LANES);
                let xv = S::load_upto(x.add(i), cnt);
                let s = S::sigmoid(xv);
                let d = S::mul(s, S::add(one, S::mul(xv, S::sub(one, s))));
                let mut g = S::mul(d, S::load_upto(dy.add(i), cnt));
                if acc {
                    g = S::add(g, S::load_upto(dx.add(i), cnt));
                }
                S::store_upto(dx.add(i), g, cnt);
                i += S::LANES;
            }
        }
    }
}

multiversion!(
    /// Per-channel sums over `rows` rows of `c` channels (row stride `ld`):
    /// `s1[ch] = Σ x`, and with `dev` (a per-channel mean) `s2[ch] = Σ (x − mean)²`
    /// instead of `Σ x` when `square`.
    ///
    /// # Safety
    /// `x` must be valid for the rows; `mean` for `c` floats when `square`; `out` for `c`.
    pub fn col_sums(
        rows: usize,
        c: usize,
        x: *const f32,
        ld: usize,
        mean: *const f32,
        square: bool,
        out: *mut f32,
    ) => col_sums_generic
);

#[inline(always)]
unsafe fn col_sums_generic<S: Simd>(
    rows: usize,
    c: usize,
    x: *const f32,
    ld: usize,
    mean: *const f32,
    square: bool,
    out: *mut f32,
) {
    for ch in 0..c {
        *out.add(ch) = 0.0;
    }
    for r in 0..rows {
        let xr = x.add(r * ld);
        if square {
            for ch in 0..c {
                let d = *xr.add(ch) - *mean.add(ch);
                *out.add(ch) += d * d;
            }
        } else {
            for ch in 0..c {
                *out.add(ch) += *xr.add(ch);
            }
        }
    }
}

/// The activation fused into a batch norm, for its backward: the output gradient passes where
/// `0 < z < hi`, `z = x · scale + shift` the activation's input, recomputed from the batch
/// norm's input with the forward's own instructions (so the mask is bit for bit the one the
/// forward applied) instead of reading the activation's output back from memory.
#[derive(Debug, Clone, Copy)]
pub struct BnMask {
    pub scale: *const f32,
    pub shift: *const f32,
    pub hi: f32,
}

// SAFETY: the mask's pointers are only read, by the tasks of one step, while their vectors live.
unsafe impl Send for BnMask {}
unsafe impl Sync for BnMask {}

/// The (masked) output gradient of channels `ch .. ch + cnt` of a row.
#[inline(always)]
unsafe fn bn_grad<S: Simd, const FULL: bool>(
    dr: *const f32,
    xv: S::V,
    mask: Option<&BnMask>,
    ch: usize,
    cnt: usize,
) -> S::V {
    let g = ld::<S, FULL>(dr.add(ch), cnt);
    match mask {
        None => g,
        Some(m) => {
            let z = S::fma(
                xv,
                ld::<S, FULL>(m.scale.add(ch), cnt),
                ld::<S, FULL>(m.shift.add(ch), cnt),
            );
            S::keep_open(z, S::splat(m.hi), g)
        }
    }
}

multiversion!(
    /// Batch-norm backward sums: `sdy[ch] = Σ g`, `sdyx[ch] = Σ g · (x − mean)`, where `g = dy`,
    /// or, for a batch norm fused with the ReLU / ReLU6 that follows it, `g = dy` where the
    /// activation passes its input ([`BnMask`]) and 0 elsewhere. Rows are added in order per
    /// channel.
    ///
    /// # Safety
    /// `dy`, `x` must be valid for `rows × c` (contiguous), the others for `c` floats.
    pub fn bn_back_sums(
        rows: usize,
        c: usize,
        dy: *const f32,
        x: *const f32,
        mean: *const f32,
        mask: Option<&BnMask>,
        sdy: *mut f32,
        sdyx: *mut f32,
    ) => bn_back_sums_generic
);

#[inline(always)]
unsafe fn bn_back_sums_generic<S: Simd>(
    rows: usize,
    c: usize,
    dy: *const f32,
    x: *const f32,
    mean: *const f32,
    mask: Option<&BnMask>,
    sdy: *mut f32,
    sdyx: *mut f32,
) {
    for ch in 0..c {
        *sdy.add(ch) = 0.0;
        *sdyx.add(ch) = 0.0;
    }
    /// Channels `ch .. ch + V·LANES` (the last vector partial unless `FULL`) down all rows,
    /// the sums in registers: each row reads whole cache lines of the block.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn run<S: Simd, const FULL: bool, const V: usize>(
        rows: usize,
        c: usize,
        ch: usize,
        dy: *const f32,
        x: *const f32,
        mean: *const f32,
        mask: Option<&BnMask>,
        sdy: *mut f32,
        sdyx: *mut f32,
    ) {
        let l = S::LANES;
        let cnt = c - (ch + (V - 1) * l);
        let mut mv = [S::zero(); V];
        for (v, m) in mv.iter_mut().enumerate() {
            *m = ld::<S, FULL>(mean.add(ch + v * l), cnt);
        }
        let mut s1 = [S::zero(); V];
        let mut s2 = [S::zero(); V];
        for r in 0..rows {
            for v in 0..V {
                let c0 = ch + v * l;
                let xv = ld::<S, FULL>(x.add(r * c + c0), cnt);
                let g = bn_grad::<S, FULL>(dy.add(r * c), xv, mask, c0, cnt);
                s1[v] = S::add(s1[v], g);
                s2[v] = S::add(s2[v], S::mul(g, S::sub(xv, mv[v])));
            }
        }
        for v in 0..V {
            st::<S, FULL>(sdy.add(ch + v * l), s1[v], cnt);
            st::<S, FULL>(sdyx.add(ch + v * l), s2[v], cnt);
        }
    }
    // Blocks of four, two, then one channel vector.
    let l = S::LANES;
    let mut ch = 0;
    while ch + 4 * l <= c {
        run::<S, true, 4>(rows, c, ch, dy, x, mean, mask, sdy, sdyx);
        ch += 4 * l;
    }
    while ch + 2 * l <= c {
        run::<S, true, 2>(rows, c, ch, dy, x, mean, mask, sdy, sdyx);
        ch += 2 * l;
    }
    while ch + l <= c {
        run::<S, true, 1>(rows, c, ch, dy, x, mean, mask, sdy, sdyx);
        ch += l;
    }
    if ch < c {
        run::<S, false, 1>(rows, c, ch, dy, x, mean, mask, sdy, sdyx);
    }
}

multiversion!(
    /// Batch-norm input gradient: `dx (+)= a · (g − b − (x − mean) · k)` per channel, `g` the
    /// (masked, see [`bn_back_sums`]) output gradient.
    ///
    /// # Safety
    /// `dy`, `x`, `dx` must be valid for `rows × c` (contiguous), the others for `c` floats.
    pub fn bn_back_dx(
        rows: usize,
        c: usize,
        dy: *const f32,
        x: *const f32,
        mean: *const f32,
        mask: Option<&BnMask>,
        a: *const f32,
        b: *const f32,
        k: *const f32,
        dx: *mut f32,
        acc: bool,
    ) => bn_back_dx_generic
);

#[inline(always)]
unsafe fn bn_back_dx_generic<S: Simd>(
    rows: usize,
    c: usize,
    dy: *const f32,
    x: *const f32,
    mean: *const f32,
    mask: Option<&BnMask>,
    a: *const f32,
    b: *const f32,
    k: *const f32,
    dx: *mut f32,
    acc: bool,
) {
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn one<S: Simd, const FULL: bool>(
        r: usize,
        c: usize,
        ch: usize,
        dy: *const f32,
        x: *const f32,
        mean: *const f32,
        mask: Option<&BnMask>,
        a: *const f32,
        b: *const f32,
        k: *const f32,
        dx: *mut f32,
        acc: bool,
    ) {
        let cnt = c - ch;
        let xv = ld::<S, FULL>(x.add(r * c + ch), cnt);
        let g = bn_grad::<S, FULL>(dy.add(r * c), xv, mask, ch, cnt);
        let centred = S::sub(xv, ld::<S, FULL>(mean.add(ch), cnt));
        let t = S::sub(
            S::sub(g, ld::<S, FULL>(b.add(ch), cnt)),
            S::mul(centred, ld::<S, FULL>(k.add(ch), cnt)),
        );
        let mut v = S::mul(ld::<S, FULL>(a.add(ch), cnt), t);
        let o = dx.add(r * c + ch);
        if acc {
            v = S::add(ld::<S, FULL>(o, cnt), v);
        }
        st::<S, FULL>(o, v, cnt);
    }
    for r in 0..rows {
        let mut ch = 0;
        while ch + S::LANES <= c {
            one::<S, true>(r, c, ch, dy, x, mean, mask, a, b, k, dx, acc);
            ch += S::LANES;
        }
        if ch < c {
            one::<S, false>(r, c, ch, dy, x, mean, mask, a, b, k, dx, acc);
        }
    }
}

multiversion!(
    /// `dx (+)= dy` or `dx (+)= dy · s` over `n` values (`s` a constant).
    ///
    /// # Safety
    /// Both pointers must be valid for `n` floats.
    pub fn add_scaled(n: usize, dy: *const f32, s: f32, dx: *mut f32, acc: bool) => add_scaled_generic
);

#[inline(always)]
unsafe fn add_scaled_generic<S: Simd>(n: usize, dy: *const f32, s: f32, dx: *mut f32, acc: bool) {
    if s == 1.0 {
        write_grad!(acc, n, dx, |i| *dy.add(i));
    } else {
        write_grad!(acc, n, dx, |i| *dy.add(i) * s);
    }
}

multiversion!(
    /// `dx (+)= dy · m` element-wise (dropout masks, gates broadcast by the caller).
    ///
    /// # Safety
    /// All pointers must be valid for `n` floats.
    pub fn mul_grad(n: usize, dy: *const f32, m: *const f32, dx: *mut f32, acc: bool) => mul_grad_generic
);

#[inline(always)]
unsafe fn mul_grad_generic<S: Simd>(
    n: usize,
    dy: *const f32,
    m: *const f32,
    dx: *mut f32,
    acc: bool,
) {
    write_grad!(acc, n, dx, |i| *dy.add(i) * *m.add(i));
}

/// One image of a depthwise convolution or pooling backward: input `h × w × c`, output
/// `oh × ow × c`, both contiguous.
#[derive(Debug, Clone, Copy)]
pub struct WinImage {
    pub c: usize,
    pub s: Geom,
}

impl WinImage {
    /// The input pixel of output `(oy, ox)` and tap `(ky, kx)`, if inside the input.
    #[inline(always)]
    pub fn src(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<usize> {
        let g = &self.s;
        let iy = (oy * g.sh + ky * g.dilation) as isize - g.pt as isize;
        let ix = (ox * g.sw + kx * g.dilation) as isize - g.pl as isize;
        if iy < 0 || ix < 0 || iy as usize >= g.h || ix as usize >= g.w {
            None
        } else {
            Some(iy as usize * g.w + ix as usize)
        }
    }
}

multiversion!(
    /// Depthwise convolution input gradient of one image: `dx[src] += w[tap] · dy[out]`
    /// (`w` is `[kh·kw][c]`); `dx` is zeroed first unless `acc`.
    ///
    /// # Safety
    /// `dy` must hold `oh·ow·c`, `dx` `h·w·c`, `w` `kh·kw·c` floats.
    pub fn dw_back_dx(j: &WinImage, w: *const f32, dy: *const f32, dx: *mut f32, acc: bool) => dw_back_dx_generic
);

#[inline(always)]
unsafe fn dw_back_dx_generic<S: Simd>(
    j: &WinImage,
    w: *const f32,
    dy: *const f32,
    dx: *mut f32,
    acc: bool,
) {
    let (c, g) = (j.c, &j.s);
    // Stride-1 3×3 only: with 5×5 the 25 weights and the accumulators no longer fit in the
    // registers and the gather measured slower than the loop below.
    if g.sh == 1 && g.sw == 1 && g.kh == 3 && g.kw == 3 {
        let mut cb = 0;
        while cb < c {
            let cnt = (c - cb).min(S::LANES);
            if cnt == S::LANES {
                dw_back_dx_gather::<S, true, 3>(j, w, dy, dx, acc, cb, cnt);
            } else {
                dw_back_dx_gather::<S, false, 3>(j, w, dy, dx, acc, cb, cnt);
            }
            cb += S::LANES;
        }
        return;
    }
    if !acc {
        std::ptr::write_bytes(dx, 0, g.h * g.w * c);
    }
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let d = dy.add((oy * g.ow + ox) * c);
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    if let Some(p) = j.src(oy, ox, ky, kx) {
                        let wt = w.add((ky * g.kw + kx) * c);
                        let o = dx.add(p * c);
                        for ch in 0..c {
                            *o.add(ch) += *wt.add(ch) * *d.add(ch);
                        }
                    }
                }
            }
        }
    }
}

/// The input gradient of a stride-1 `K × K` depthwise convolution for the `cnt` channels from
/// `cb`, gathered: each input pixel sums its `K²` taps in a register (the weights stay in
/// registers) and is written once, four pixels of a row at a time.
#[inline(always)]
unsafe fn dw_back_dx_gather<S: Simd, const FULL: bool, const K: usize>(
    j: &WinImage,
    w: *const f32,
    dy: *const f32,
    dx: *mut f32,
    acc: bool,
    cb: usize,
    cnt: usize,
) {
    let (c, g) = (j.c, &j.s);
    debug_assert!(g.sh == 1 && g.sw == 1 && g.kh == K && g.kw == K);
    macro_rules! ld {
        ($p:expr) => {
            ld::<S, FULL>($p, cnt)
        };
    }
    let wv: [[S::V; K]; K] =
        std::array::from_fn(|ky| std::array::from_fn(|kx| ld!(w.add((ky * K + kx) * c + cb))));
    let d = g.dilation as isize;
    let (pt, pl) = (g.pt as isize, g.pl as isize);
    // Input columns whose every tap reads an output column inside `0..ow`:
    // ox = ix + pl - kx·d for kx in 0..K.
    let lo = ((K as isize - 1) * d - pl).max(0) as usize;
    let hi = ((g.ow as isize - pl).max(0) as usize).min(g.w).max(lo);
    for iy in 0..g.h {
        let row = dx.add(iy * g.w * c + cb);
        // Kernel rows whose output row is inside: oy = iy + pt - ky·d.
        let oys: [Option<*const f32>; K] = std::array::from_fn(|ky| {
            let oy = iy as isize + pt - ky as isize * d;
            (oy >= 0 && (oy as usize) < g.oh).then(|| dy.add(oy as usize * g.ow * c + cb))
        });
        macro_rules! init {
            ($ix:expr) => {
                if acc {
                    ld!(row.add($ix * c))
                } else {
                    S::zero()
                }
            };
        }
        macro_rules! put {
            ($ix:expr, $v:expr) => {
                st::<S, FULL>(row.add($ix * c), $v, cnt)
            };
        }
        macro_rules! edge {
            ($ix:expr) => {{
                let mut s = init!($ix);
                for ky in 0..K {
                    if let Some(dr) = oys[ky] {
                        for kx in 0..K {
                            let ox = $ix as isize + pl - kx as isize * d;
                            if ox >= 0 && (ox as usize) < g.ow {
                                s = S::fma(ld!(dr.add(ox as usize * c)), wv[ky][kx], s);
                            }
                        }
                    }
                }
                put!($ix, s);
            }};
        }
        for ix in 0..lo.min(g.w) {
            edge!(ix);
        }
        let mut ix = lo;
        while ix + 4 <= hi {
            let mut s: [S::V; 4] = std::array::from_fn(|u| init!(ix + u));
            for ky in 0..K {
                if let Some(dr) = oys[ky] {
                    for (kx, &wk) in wv[ky].iter().enumerate() {
                        let base = dr.offset((ix as isize + pl - kx as isize * d) * c as isize);
                        for (u, v) in s.iter_mut().enumerate() {
                            *v = S::fma(ld!(base.add(u * c)), wk, *v);
                        }
                    }
                }
            }
            for (u, v) in s.into_iter().enumerate() {
                put!(ix + u, v);
            }
            ix += 4;
        }
        while ix < g.w {
            edge!(ix);
            ix += 1;
        }
    }
}

multiversion!(
    /// Depthwise convolution weight gradient of one image, added to `dw` (`[kh·kw][c]`):
    /// `dw[tap] += x[src] · dy[out]`.
    ///
    /// # Safety
    /// `x` must hold `h·w·c`, `dy` `oh·ow·c`, `dw` `kh·kw·c` floats.
    pub fn dw_back_dw(j: &WinImage, x: *const f32, dy: *const f32, dw: *mut f32) => dw_back_dw_generic
);

#[inline(always)]
unsafe fn dw_back_dw_generic<S: Simd>(j: &WinImage, x: *const f32, dy: *const f32, dw: *mut f32) {
    let c = j.c;
    let mut cb = 0;
    while cb < c {
        let cnt = (c - cb).min(S::LANES);
        match (j.s.kw, cnt == S::LANES) {
            (3, true) => dw_back_dw_rows::<S, true, 3>(j, x, dy, dw, cb, cnt),
            (3, false) => dw_back_dw_rows::<S, false, 3>(j, x, dy, dw, cb, cnt),
            (5, true) => dw_back_dw_rows::<S, true, 5>(j, x, dy, dw, cb, cnt),
            (5, false) => dw_back_dw_rows::<S, false, 5>(j, x, dy, dw, cb, cnt),
            (_, true) => dw_back_dw_lanes::<S, true>(j, x, dy, dw, cb, cnt),
            (_, false) => dw_back_dw_lanes::<S, false>(j, x, dy, dw, cb, cnt),
        }
        cb += S::LANES;
    }
}

/// [`dw_back_dw_lanes`] for a kernel `KW` wide: the `KW` taps of a kernel row are summed
/// together (each `dy` vector loaded once for all of them), two output columns at a time.
#[inline(always)]
unsafe fn dw_back_dw_rows<S: Simd, const FULL: bool, const KW: usize>(
    j: &WinImage,
    x: *const f32,
    dy: *const f32,
    dw: *mut f32,
    cb: usize,
    cnt: usize,
) {
    let (c, g) = (j.c, &j.s);
    debug_assert_eq!(g.kw, KW);
    // Closures would not inherit the function's target features: macros keep every load inline.
    macro_rules! ld {
        ($p:expr) => {
            ld::<S, FULL>($p, cnt)
        };
    }
    let offs: [isize; KW] = std::array::from_fn(|kx| (kx * g.dilation) as isize - g.pl as isize);
    // Output columns whose every tap of the row lies inside the input.
    let (lo, _) = inside(offs[0], g.sw, g.w, g.ow);
    let (_, hi) = inside(offs[KW - 1], g.sw, g.w, g.ow);
    let hi = hi.max(lo);
    for ky in 0..g.kh {
        let (oy_lo, oy_hi) = inside((ky * g.dilation) as isize - g.pt as isize, g.sh, g.h, g.oh);
        let mut a = [[S::zero(); KW]; 2];
        for oy in oy_lo..oy_hi {
            let iy = oy * g.sh + ky * g.dilation - g.pt;
            let d = dy.add(oy * g.ow * c + cb);
            let xr = x.add(iy * g.w * c + cb);
            macro_rules! at {
                ($ox:expr, $kx:expr) => {
                    xr.offset((($ox * g.sw) as isize + offs[$kx]) * c as isize)
                };
            }
            macro_rules! edge {
                ($ox:expr) => {{
                    let dv = ld!(d.add($ox * c));
                    for kx in 0..KW {
                        let ix = ($ox * g.sw) as isize + offs[kx];
                        if ix >= 0 && (ix as usize) < g.w {
                            a[0][kx] = S::fma(ld!(at!($ox, kx)), dv, a[0][kx]);
                        }
                    }
                }};
            }
            for ox in 0..lo.min(g.ow) {
                edge!(ox);
            }
            let mut ox = lo;
            while ox + 2 <= hi {
                let (d0, d1) = (ld!(d.add(ox * c)), ld!(d.add((ox + 1) * c)));
                for kx in 0..KW {
                    a[0][kx] = S::fma(ld!(at!(ox, kx)), d0, a[0][kx]);
                    a[1][kx] = S::fma(ld!(at!(ox + 1, kx)), d1, a[1][kx]);
                }
                ox += 2;
            }
            while ox < g.ow {
                edge!(ox);
                ox += 1;
            }
        }
        for (kx, (&a0, &a1)) in a[0].iter().zip(&a[1]).enumerate() {
            let o = dw.add((ky * g.kw + kx) * c + cb);
            let v = S::add(ld!(o), S::add(a0, a1));
            st::<S, FULL>(o, v, cnt)
        }
    }
}

/// The output columns `ox` whose input column `ox·stride + off` lies inside `0..size`.
#[inline(always)]
fn inside(off: isize, stride: usize, size: usize, out: usize) -> (usize, usize) {
    let s = stride as isize;
    let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
    let hi = if size as isize <= off {
        0
    } else {
        (size as isize - off + s - 1) / s
    };
    (lo as usize, (hi as usize).min(out))
}

/// The weight gradient of the `cnt` channels from `cb`, tap by tap: each tap's sum over the
/// image stays in registers (four accumulators) and is added to `dw` once.
#[inline(always)]
unsafe fn dw_back_dw_lanes<S: Simd, const FULL: bool>(
    j: &WinImage,
    x: *const f32,
    dy: *const f32,
    dw: *mut f32,
    cb: usize,
    cnt: usize,
) {
    let (c, g) = (j.c, &j.s);
    for ky in 0..g.kh {
        let (oy_lo, oy_hi) = inside((ky * g.dilation) as isize - g.pt as isize, g.sh, g.h, g.oh);
        for kx in 0..g.kw {
            let off = (kx * g.dilation) as isize - g.pl as isize;
            let (ox_lo, ox_hi) = inside(off, g.sw, g.w, g.ow);
            let mut a = [S::zero(); 4];
            for oy in oy_lo..oy_hi {
                let iy = oy * g.sh + ky * g.dilation - g.pt;
                let d = dy.add(oy * g.ow * c + cb);
                let xr = x.offset(((iy * g.w) as isize + off) * c as isize + cb as isize);
                let (step, mut ox) = (g.sw * c, ox_lo);
                while ox + 4 <= ox_hi {
                    for (u, acc) in a.iter_mut().enumerate() {
                        let o = ox + u;
                        let (xv, dv) = (
                            ld::<S, FULL>(xr.add(o * step), cnt),
                            ld::<S, FULL>(d.add(o * c), cnt),
                        );
                        *acc = S::fma(xv, dv, *acc);
                    }
                    ox += 4;
                }
                while ox < ox_hi {
                    let (xv, dv) = (
                        ld::<S, FULL>(xr.add(ox * step), cnt),
                        ld::<S, FULL>(d.add(ox * c), cnt),
                    );
                    a[0] = S::fma(xv, dv, a[0]);
                    ox += 1;
                }
            }
            let sum = S::add(S::add(a[0], a[1]), S::add(a[2], a[3]));
            let o = dw.add((ky * g.kw + kx) * c + cb);
            let v = S::add(ld::<S, FULL>(o, cnt), sum);
            st::<S, FULL>(o, v, cnt)
        }
    }
}

/// Max pooling whose windows tile the input exactly (stride = window, no padding, no
/// remainder: the 2×2 / 2 pools of the CIFAR nets): every input pixel lies in one window, so
/// each is written once (`dy` at the window's first maximum, 0 elsewhere), channel vectors at
/// a time, with no zeroing pass and no scattered adds.
#[inline(always)]
unsafe fn max_pool_back_tiled<S: Simd>(
    j: &WinImage,
    x: *const f32,
    dy: *const f32,
    dx: *mut f32,
    acc: bool,
) {
    #[inline(always)]
    unsafe fn window<S: Simd, const FULL: bool>(
        j: &WinImage,
        oy: usize,
        ox: usize,
        ch: usize,
        x: *const f32,
        dy: *const f32,
        dx: *mut f32,
        acc: bool,
    ) {
        let (c, g) = (j.c, &j.s);
        let cnt = c - ch;
        let pix = |ky: usize, kx: usize| ((oy * g.kh + ky) * g.w + ox * g.kw + kx) * c + ch;
        let mut best = S::splat(f32::NEG_INFINITY);
        let mut idx = S::splat(-1.0);
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let v = ld::<S, FULL>(x.add(pix(ky, kx)), cnt);
                let t = S::splat((ky * g.kw + kx) as f32);
                (best, idx) = S::take_max(v, best, t, idx);
            }
        }
        let d = ld::<S, FULL>(dy.add((oy * g.ow + ox) * c + ch), cnt);
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let o = dx.add(pix(ky, kx));
                let mut v = S::pick(idx, S::splat((ky * g.kw + kx) as f32), d);
                if acc {
                    v = S::add(ld::<S, FULL>(o, cnt), v);
                }
                st::<S, FULL>(o, v, cnt);
            }
        }
    }
    let (c, g) = (j.c, &j.s);
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let mut ch = 0;
            while ch + S::LANES <= c {
                window::<S, true>(j, oy, ox, ch, x, dy, dx, acc);
                ch += S::LANES;
            }
            if ch < c {
                window::<S, false>(j, oy, ox, ch, x, dy, dx, acc);
            }
        }
    }
}

multiversion!(
    /// Pooling input gradient of one image; `dx` is zeroed first unless `acc`. Max pooling sends
    /// each output's gradient to the first maximum of its window (PyTorch's choice); average
    /// pooling spreads it over the window (divided by `k·k` with `include_pad`, else by the
    /// taps inside the input).
    ///
    /// # Safety
    /// `x` must hold `h·w·c`, `dy` `oh·ow·c`, `dx` `h·w·c` floats; `best` and `arg` `c` each.
    pub fn pool_back(
        j: &WinImage,
        max: bool,
        include_pad: bool,
        x: *const f32,
        dy: *const f32,
        dx: *mut f32,
        acc: bool,
        best: *mut f32,
        arg: *mut u32,
    ) => pool_back_generic
);

#[inline(always)]
unsafe fn pool_back_generic<S: Simd>(
    j: &WinImage,
    max: bool,
    include_pad: bool,
    x: *const f32,
    dy: *const f32,
    dx: *mut f32,
    acc: bool,
    best: *mut f32,
    arg: *mut u32,
) {
    let (c, g) = (j.c, &j.s);
    let tiled = g.pt == 0 && g.pl == 0 && g.sh == g.kh && g.sw == g.kw;
    if max && tiled && g.h == g.oh * g.kh && g.w == g.ow * g.kw {
        return max_pool_back_tiled::<S>(j, x, dy, dx, acc);
    }
    if !acc {
        std::ptr::write_bytes(dx, 0, g.h * g.w * c);
    }
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let d = dy.add((oy * g.ow + ox) * c);
            if max {
                for ch in 0..c {
                    *best.add(ch) = f32::NEG_INFINITY;
                    *arg.add(ch) = u32::MAX;
                }
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        if let Some(p) = j.src(oy, ox, ky, kx) {
                            let xs = x.add(p * c);
                            for ch in 0..c {
                                let v = *xs.add(ch);
                                if v > *best.add(ch) || v.is_nan() {
                                    *best.add(ch) = v;
                                    *arg.add(ch) = p as u32;
                                }
                            }
                        }
                    }
                }
                for ch in 0..c {
                    let p = *arg.add(ch);
                    if p != u32::MAX {
                        *dx.add(p as usize * c + ch) += *d.add(ch);
                    }
                }
            } else {
                let mut taps = 0usize;
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        taps += usize::from(j.src(oy, ox, ky, kx).is_some());
                    }
                }
                let count = if include_pad { g.kh * g.kw } else { taps };
                let inv = 1.0 / count.max(1) as f32;
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        if let Some(p) = j.src(oy, ox, ky, kx) {
                            let o = dx.add(p * c);
                            for ch in 0..c {
                                *o.add(ch) += *d.add(ch) * inv;
                            }
                        }
                    }
                }
            }
        }
    }
}

multiversion!(
    /// col2im: add the im2col-ordered gradients `cols` (rows `o0..o1` of one image's output,
    /// `k = kh·kw·cin_g` each) into the input gradient `dx` of that image (`h·w` pixels of `j.c`
    /// channels), at channels `c0 .. c0 + cin_g`.
    ///
    /// # Safety
    /// `cols` must hold `(o1 − o0) · k` floats and `dx` `h·w·c`.
    pub fn col2im_add(
        j: &WinImage,
        cin_g: usize,
        c0: usize,
        o0: usize,
        o1: usize,
        cols: *const f32,
        dx: *mut f32,
    ) => col2im_add_generic
);

#[inline(always)]
unsafe fn col2im_add_generic<S: Simd>(
    j: &WinImage,
    cin_g: usize,
    c0: usize,
    o0: usize,
    o1: usize,
    cols: *const f32,
    dx: *mut f32,
) {
    let g = &j.s;
    let k = g.kh * g.kw * cin_g;
    for o in o0..o1 {
        let (oy, ox) = (o / g.ow, o % g.ow);
        let row = cols.add((o - o0) * k);
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                if let Some(p) = j.src(oy, ox, ky, kx) {
                    let src = row.add((ky * g.kw + kx) * cin_g);
                    let dst = dx.add(p * j.c + c0);
                    for ci in 0..cin_g {
                        *dst.add(ci) += *src.add(ci);
                    }
                }
            }
        }
    }
}
