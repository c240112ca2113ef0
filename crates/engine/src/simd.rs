//! A small SIMD abstraction: every kernel is written once over [`Simd`] and compiled three times,
//! for AVX-512F, for AVX2 + FMA and for a portable baseline, and the instruction set is chosen at
//! run time ([`Isa::detect`]). The portable build is plain Rust over fixed-size arrays, so it runs
//! on any CPU and is tested like the others.

/// An instruction set the engine can run its kernels with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX-512F, 16 lanes.
    Avx512,
    /// AVX2 + FMA, 8 lanes.
    Avx2,
    /// Plain Rust (whatever the compiler's baseline target vectorises to), 8 lanes.
    Portable,
}

impl Isa {
    /// The best instruction set this CPU supports. `EFFCNN_ISA=avx512|avx2|portable` caps it
    /// (a request the CPU cannot run falls back to the best available one).
    pub fn detect() -> Isa {
        let best = Isa::available()[0];
        match std::env::var("EFFCNN_ISA")
            .ok()
            .as_deref()
            .and_then(Isa::parse)
        {
            Some(want) if Isa::available().contains(&want) => want,
            _ => best,
        }
    }

    /// Every instruction set this CPU can run, best first (the portable one always last).
    pub fn available() -> Vec<Isa> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                v.push(Isa::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                v.push(Isa::Avx2);
            }
        }
        v.push(Isa::Portable);
        v
    }

    pub fn parse(s: &str) -> Option<Isa> {
        match s {
            "avx512" => Some(Isa::Avx512),
            "avx2" => Some(Isa::Avx2),
            "portable" => Some(Isa::Portable),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// Lanes of one vector.
    pub fn lanes(&self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2 | Isa::Portable => 8,
        }
    }

    /// Columns of a packed GEMM panel (two vectors).
    pub fn nr(&self) -> usize {
        2 * self.lanes()
    }

    /// Rows of the GEMM micro-kernel.
    pub fn mr(&self) -> usize {
        match self {
            Isa::Avx512 => 8,
            Isa::Avx2 => 6,
            Isa::Portable => 2,
        }
    }
}

/// One vector type and its operations.
///
/// # Safety
/// All methods are `unsafe`: pointers must be valid for the lanes they touch, and the
/// instruction set must be available (guaranteed by [`Isa::available`]).
#[allow(clippy::missing_safety_doc)]
pub trait Simd: Copy + Send + Sync + 'static {
    const LANES: usize;
    /// Rows of the GEMM micro-kernel (its tile is `MR × 2·LANES`), sized to the register file.
    const MR: usize;
    /// Masked loads and stores of a partial vector cost about as much as full ones.
    const FAST_MASK: bool;
    type V: Copy;
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn zero() -> Self::V {
        Self::splat(0.0)
    }
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Load the first `n < LANES` lanes, the rest zero.
    unsafe fn load_n(p: *const f32, n: usize) -> Self::V;
    /// Store the first `n < LANES` lanes.
    unsafe fn store_n(p: *mut f32, v: Self::V, n: usize);
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    /// a · b + c
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    /// Round to the nearest integer.
    unsafe fn round(a: Self::V) -> Self::V;
    /// 2^n for integral `n` in [-126, 127].
    unsafe fn pow2i(n: Self::V) -> Self::V;
    /// `v` where `0 < z < hi`, 0 elsewhere (NaN in `z` gives 0).
    unsafe fn keep_open(z: Self::V, hi: Self::V, v: Self::V) -> Self::V;
    /// A max-pooling scan step: where `v > best` or `v` is NaN (PyTorch's rule), `(v, t)`
    /// replace `(best, idx)`.
    unsafe fn take_max(v: Self::V, best: Self::V, t: Self::V, idx: Self::V) -> (Self::V, Self::V);
    /// `v` where `idx == t`, 0 elsewhere.
    unsafe fn pick(idx: Self::V, t: Self::V, v: Self::V) -> Self::V;

    /// Load `n` lanes (`n <= LANES`).
    #[inline(always)]
    unsafe fn load_upto(p: *const f32, n: usize) -> Self::V {
        if n >= Self::LANES {
            Self::load(p)
        } else {
            Self::load_n(p, n)
        }
    }
    /// Store `n` lanes (`n <= LANES`).
    #[inline(always)]
    unsafe fn store_upto(p: *mut f32, v: Self::V, n: usize) {
        if n >= Self::LANES {
            Self::store(p, v)
        } else {
            Self::store_n(p, v, n)
        }
    }

    /// e^x, relative error about 2e-7 (Cephes' polynomial), inputs clamped to ±87.
    #[inline(always)]
    unsafe fn exp(x: Self::V) -> Self::V {
        let x = Self::min(Self::max(x, Self::splat(-87.0)), Self::splat(87.0));
        let n = Self::round(Self::mul(x, Self::splat(std::f32::consts::LOG2_E)));
        let r = Self::fma(n, Self::splat(-0.693_359_4), x);
        let r = Self::fma(n, Self::splat(2.121_944_4e-4), r);
        let mut p = Self::splat(1.987_569_1e-4);
        p = Self::fma(p, r, Self::splat(1.398_199_9e-3));
        p = Self::fma(p, r, Self::splat(8.333_452e-3));
        p = Self::fma(p, r, Self::splat(4.166_579_6e-2));
        p = Self::fma(p, r, Self::splat(0.166_666_65));
        p = Self::fma(p, r, Self::splat(0.5));
        let r2 = Self::mul(r, r);
        let y = Self::add(Self::fma(p, r2, r), Self::splat(1.0));
        Self::mul(y, Self::pow2i(n))
    }

    /// 1 / (1 + e^-x)
    #[inline(always)]
    unsafe fn sigmoid(x: Self::V) -> Self::V {
        let one = Self::splat(1.0);
        Self::div(one, Self::add(one, Self::exp(Self::sub(Self::zero(), x))))
    }
}

/// Plain-Rust vectors of 8 lanes.
#[derive(Clone, Copy)]
pub struct Portable;

macro_rules! lanewise {
    ($a:expr, $b:expr, |$x:ident, $y:ident| $e:expr) => {{
        let (a, b) = ($a, $b);
        let mut o = [0.0f32; 8];
        for i in 0..8 {
            let ($x, $y) = (a[i], b[i]);
            o[i] = $e;
        }
        o
    }};
}

impl Simd for Portable {
    const LANES: usize = 8;
    const MR: usize = 2;
    const FAST_MASK: bool = false;
    type V = [f32; 8];
    #[inline(always)]
    unsafe fn splat(x: f32) -> [f32; 8] {
        [x; 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> [f32; 8] {
        std::ptr::read_unaligned(p as *const [f32; 8])
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: [f32; 8]) {
        std::ptr::write_unaligned(p as *mut [f32; 8], v)
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> [f32; 8] {
        let mut o = [0.0; 8];
        std::ptr::copy_nonoverlapping(p, o.as_mut_ptr(), n.min(8));
        o
    }
    #[inline(always)]
    unsafe fn store_n(p: *mut f32, v: [f32; 8], n: usize) {
        std::ptr::copy_nonoverlapping(v.as_ptr(), p, n.min(8));
    }
    #[inline(always)]
    unsafe fn add(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        lanewise!(a, b, |x, y| x + y)
    }
    #[inline(always)]
    unsafe fn sub(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        lanewise!(a, b, |x, y| x - y)
    }
    #[inline(always)]
    unsafe fn mul(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        lanewise!(a, b, |x, y| x * y)
    }
    #[inline(always)]
    unsafe fn div(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        lanewise!(a, b, |x, y| x / y)
    }
    #[inline(always)]
    unsafe fn fma(a: [f32; 8], b: [f32; 8], c: [f32; 8]) -> [f32; 8] {
        let ab = Self::mul(a, b);
        Self::add(ab, c)
    }
    #[inline(always)]
    unsafe fn max(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        // NaN in `a` propagates, like PyTorch's clamp/relu.
        lanewise!(a, b, |x, y| if x < y { y } else { x })
    }
    #[inline(always)]
    unsafe fn min(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        lanewise!(a, b, |x, y| if x > y { y } else { x })
    }
    #[inline(always)]
    unsafe fn round(a: [f32; 8]) -> [f32; 8] {
        lanewise!(a, a, |x, _y| x.round_ties_even())
    }
    #[inline(always)]
    unsafe fn keep_open(z: [f32; 8], hi: [f32; 8], v: [f32; 8]) -> [f32; 8] {
        let mut o = [0.0f32; 8];
        for i in 0..8 {
            if z[i] > 0.0 && z[i] < hi[i] {
                o[i] = v[i];
            }
        }
        o
    }
    #[inline(always)]
    unsafe fn take_max(
        v: [f32; 8],
        best: [f32; 8],
        t: [f32; 8],
        idx: [f32; 8],
    ) -> ([f32; 8], [f32; 8]) {
        let (mut b, mut i) = (best, idx);
        for l in 0..8 {
            if v[l] > best[l] || v[l].is_nan() {
                b[l] = v[l];
                i[l] = t[l];
            }
        }
        (b, i)
    }
    #[inline(always)]
    unsafe fn pick(idx: [f32; 8], t: [f32; 8], v: [f32; 8]) -> [f32; 8] {
        let mut o = [0.0f32; 8];
        for l in 0..8 {
            if idx[l] == t[l] {
                o[l] = v[l];
            }
        }
        o
    }
    #[inline(always)]
    unsafe fn pow2i(n: [f32; 8]) -> [f32; 8] {
        lanewise!(n, n, |x, _y| f32::from_bits(
            ((x as i32 + 127) as u32) << 23
        ))
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Simd;
    use std::arch::x86_64::*;

    /// AVX2 + FMA, 8 lanes.
    #[derive(Clone, Copy)]
    pub struct Avx2;

    #[inline(always)]
    unsafe fn mask8(n: usize) -> __m256i {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    impl Simd for Avx2 {
        const LANES: usize = 8;
        const MR: usize = 6;
        const FAST_MASK: bool = false;
        type V = __m256;
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            _mm256_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn load_n(p: *const f32, n: usize) -> __m256 {
            _mm256_maskload_ps(p, mask8(n))
        }
        #[inline(always)]
        unsafe fn store_n(p: *mut f32, v: __m256, n: usize) {
            _mm256_maskstore_ps(p, mask8(n), v)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sub(a: __m256, b: __m256) -> __m256 {
            _mm256_sub_ps(a, b)
        }
        #[inline(always)]
        unsafe fn mul(a: __m256, b: __m256) -> __m256 {
            _mm256_mul_ps(a, b)
        }
        #[inline(always)]
        unsafe fn div(a: __m256, b: __m256) -> __m256 {
            _mm256_div_ps(a, b)
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn max(a: __m256, b: __m256) -> __m256 {
            // vmaxps returns the second operand when either is NaN: put `a` second so NaN propagates.
            _mm256_max_ps(b, a)
        }
        #[inline(always)]
        unsafe fn min(a: __m256, b: __m256) -> __m256 {
            _mm256_min_ps(b, a)
        }
        #[inline(always)]
        unsafe fn round(a: __m256) -> __m256 {
            _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a)
        }
        #[inline(always)]
        unsafe fn keep_open(z: __m256, hi: __m256, v: __m256) -> __m256 {
            let m = _mm256_and_ps(
                _mm256_cmp_ps::<_CMP_GT_OQ>(z, _mm256_setzero_ps()),
                _mm256_cmp_ps::<_CMP_LT_OQ>(z, hi),
            );
            _mm256_and_ps(m, v)
        }
        #[inline(always)]
        unsafe fn take_max(v: __m256, best: __m256, t: __m256, idx: __m256) -> (__m256, __m256) {
            let take = _mm256_or_ps(
                _mm256_cmp_ps::<_CMP_GT_OQ>(v, best),
                _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v),
            );
            (
                _mm256_blendv_ps(best, v, take),
                _mm256_blendv_ps(idx, t, take),
            )
        }
        #[inline(always)]
        unsafe fn pick(idx: __m256, t: __m256, v: __m256) -> __m256 {
            _mm256_and_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(idx, t), v)
        }
        #[inline(always)]
        unsafe fn pow2i(n: __m256) -> __m256 {
            let i = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(i))
        }
    }

    /// AVX-512F, 16 lanes.
    #[derive(Clone, Copy)]
    pub struct Avx512;

    impl Simd for Avx512 {
        const LANES: usize = 16;
        const MR: usize = 8;
        const FAST_MASK: bool = true;
        type V = __m512;
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            _mm512_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn load_n(p: *const f32, n: usize) -> __m512 {
            _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, p)
        }
        #[inline(always)]
        unsafe fn store_n(p: *mut f32, v: __m512, n: usize) {
            _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as u16, v)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sub(a: __m512, b: __m512) -> __m512 {
            _mm512_sub_ps(a, b)
        }
        #[inline(always)]
        unsafe fn mul(a: __m512, b: __m512) -> __m512 {
            _mm512_mul_ps(a, b)
        }
        #[inline(always)]
        unsafe fn div(a: __m512, b: __m512) -> __m512 {
            _mm512_div_ps(a, b)
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn max(a: __m512, b: __m512) -> __m512 {
            _mm512_max_ps(b, a)
        }
        #[inline(always)]
        unsafe fn min(a: __m512, b: __m512) -> __m512 {
            _mm512_min_ps(b, a)
        }
        #[inline(always)]
        unsafe fn round(a: __m512) -> __m512 {
            _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a)
        }
        #[inline(always)]
        unsafe fn keep_open(z: __m512, hi: __m512, v: __m512) -> __m512 {
            let m = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(z, _mm512_setzero_ps())
                & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(z, hi);
            _mm512_maskz_mov_ps(m, v)
        }
        #[inline(always)]
        unsafe fn take_max(v: __m512, best: __m512, t: __m512, idx: __m512) -> (__m512, __m512) {
            let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best)
                | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            (
                _mm512_mask_blend_ps(take, best, v),
                _mm512_mask_blend_ps(take, idx, t),
            )
        }
        #[inline(always)]
        unsafe fn pick(idx: __m512, t: __m512, v: __m512) -> __m512 {
            _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(idx, t), v)
        }
        #[inline(always)]
        unsafe fn pow2i(n: __m512) -> __m512 {
            let i = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
            _mm512_castsi512_ps(_mm512_slli_epi32::<23>(i))
        }
    }
}

/// Define `pub fn $name(isa, args…)` that runs the generic kernel `$generic::<S>(args…)` with the
/// vector type of `isa`, compiled with that instruction set enabled: the `#[inline(always)]`
/// generic body is inlined into a `#[target_feature]` wrapper per instruction set.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) => $generic:ident) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis unsafe fn $name(isa: $crate::simd::Isa, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn v512($($arg: $ty),*) {
                unsafe { $generic::<$crate::simd::Avx512>($($arg),*) }
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn v256($($arg: $ty),*) {
                unsafe { $generic::<$crate::simd::Avx2>($($arg),*) }
            }
            // SAFETY: `isa` comes from `Isa::available()`, so the CPU runs its instructions; the
            // kernel's pointer contract is this function's.
            match isa {
                #[cfg(target_arch = "x86_64")]
                $crate::simd::Isa::Avx512 => unsafe { v512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::simd::Isa::Avx2 => unsafe { v256($($arg),*) },
                _ => unsafe { $generic::<$crate::simd::Portable>($($arg),*) },
            }
        }
    };
}
pub(crate) use multiversion;
