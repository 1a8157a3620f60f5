//! The fast-numerics GELU with erf on 8 lanes of AVX2: the operations of the scalar twin
//! [`crate::ops::gelu_erf_fast`], one for one and in the same order, so the bits are the
//! same (the formula and its error are described in `ops/gelu_erf.rs`).

use std::arch::x86_64::*;

use super::expf::exp8;
use crate::ops::gelu_erf_consts as c;

/// `x·Φ(x)` on 8 lanes.
#[target_feature(enable = "avx2,fma")]
fn gelu8(x: __m256) -> __m256 {
    let a = _mm256_min_ps(
        _mm256_andnot_ps(_mm256_set1_ps(-0.0), x),
        _mm256_set1_ps(c::CLAMP),
    );
    let scale = _mm256_set1_ps(c::SCALE);
    let r = _mm256_div_ps(_mm256_set1_ps(1.0), _mm256_add_ps(scale, a));
    let (t, u) = (_mm256_mul_ps(scale, r), _mm256_mul_ps(a, r));
    let mut p = _mm256_set1_ps(c::P[11]);
    for &k in c::P[..11].iter().rev() {
        p = _mm256_fmadd_ps(p, u, _mm256_set1_ps(k));
    }
    let s = _mm256_mul_ps(a, a);
    let e = _mm256_fmsub_ps(a, a, s);
    let minus_half = _mm256_set1_ps(-0.5);
    let g = exp8(_mm256_mul_ps(minus_half, s));
    let g = _mm256_fmadd_ps(g, _mm256_mul_ps(minus_half, e), g);
    let small = _mm256_cmp_ps(a, _mm256_set1_ps(c::SMALL), _CMP_LT_OQ);
    let tp = _mm256_blendv_ps(_mm256_mul_ps(t, p), _mm256_fnmadd_ps(u, p, p), small);
    let h = _mm256_mul_ps(tp, g);
    let negative = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    let phi = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(1.0), h), h, negative);
    _mm256_mul_ps(x, phi)
}

/// `out[i] = x[i]·Φ(x[i])` over the whole groups of 8 of `x`; the last `x.len() % 8`
/// values are left to the caller.
///
/// # Safety
///
/// AVX2 and FMA must be available.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn gelu_erf_avx2(x: &[f32], out: &mut [f32]) {
    for (xs, os) in x.chunks_exact(8).zip(out.chunks_exact_mut(8)) {
        // SAFETY: both chunks hold exactly 8 `f32`, which the unaligned load and store
        // read and write.
        unsafe { _mm256_storeu_ps(os.as_mut_ptr(), gelu8(_mm256_loadu_ps(xs.as_ptr()))) };
    }
}
