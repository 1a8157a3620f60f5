//! ggml's vector `exp` (`ggml_v_expf`, the AVX-512 version) in AVX-512 and AVX2, and the
//! two loops built on it: SiLU (times a gate) and the exponentials of a softmax row.
//!
//! Both versions give the bits of the scalar twin [`crate::ops::expf_ggml`]. AVX-512 has
//! `scalef`; AVX2 multiplies by `2^a` then `2^b` (`a + b = n`, both at most 96 in
//! magnitude): the first product is exact, so the one rounding is `scalef`'s.

use std::arch::x86_64::*;

use crate::ops::expf_consts as c;

/// `ggml_v_expf` on 16 lanes.
#[target_feature(enable = "avx512f")]
fn exp16(x: __m512) -> __m512 {
    let r = _mm512_set1_ps(c::SHIFT);
    let z = _mm512_fmadd_ps(x, _mm512_set1_ps(c::LOG2E), r);
    let n = _mm512_sub_ps(z, r);
    let b = _mm512_fnmadd_ps(
        n,
        _mm512_set1_ps(c::LN2_LO),
        _mm512_fnmadd_ps(n, _mm512_set1_ps(c::LN2_HI), x),
    );
    let far = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192.0), _CMP_GT_OQ);
    let u = _mm512_mul_ps(b, b);
    let j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(
            _mm512_fmadd_ps(_mm512_set1_ps(c::P5), b, _mm512_set1_ps(c::P4)),
            u,
            _mm512_fmadd_ps(_mm512_set1_ps(c::P3), b, _mm512_set1_ps(c::P2)),
        ),
        u,
        _mm512_fmadd_ps(_mm512_set1_ps(c::P1), b, _mm512_set1_ps(1.0)),
    );
    let res = _mm512_scalef_ps(j, n);
    if far == 0 {
        return res;
    }
    let zero = _mm512_setzero_ps();
    let non_positive = _mm512_cmp_ps_mask(n, zero, _CMP_LE_OQ);
    let alt = _mm512_mask_blend_ps(non_positive, _mm512_set1_ps(f32::INFINITY), zero);
    _mm512_mask_blend_ps(far, res, alt)
}

/// `ggml_v_expf` (AVX-512 rounding) on 8 lanes of AVX2.
#[target_feature(enable = "avx2,fma")]
pub(super) fn exp8(x: __m256) -> __m256 {
    let r = _mm256_set1_ps(c::SHIFT);
    let z = _mm256_fmadd_ps(x, _mm256_set1_ps(c::LOG2E), r);
    let n = _mm256_sub_ps(z, r);
    let b = _mm256_fnmadd_ps(
        n,
        _mm256_set1_ps(c::LN2_LO),
        _mm256_fnmadd_ps(n, _mm256_set1_ps(c::LN2_HI), x),
    );
    let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    let far = _mm256_cmp_ps(abs_n, _mm256_set1_ps(192.0), _CMP_GT_OQ);
    let u = _mm256_mul_ps(b, b);
    let j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(_mm256_set1_ps(c::P5), b, _mm256_set1_ps(c::P4)),
            u,
            _mm256_fmadd_ps(_mm256_set1_ps(c::P3), b, _mm256_set1_ps(c::P2)),
        ),
        u,
        _mm256_fmadd_ps(_mm256_set1_ps(c::P1), b, _mm256_set1_ps(1.0)),
    );
    // `n` is a whole number; lanes with |n| > 192 are replaced below.
    let ni = _mm256_cvtps_epi32(n);
    let a = _mm256_srai_epi32(ni, 1);
    let rest = _mm256_sub_epi32(ni, a);
    let bias = _mm256_set1_epi32(127);
    let pow_a = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(a, bias), 23));
    let pow_b = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(rest, bias), 23));
    let res = _mm256_mul_ps(_mm256_mul_ps(j, pow_a), pow_b);
    if _mm256_movemask_ps(far) == 0 {
        return res;
    }
    let zero = _mm256_setzero_ps();
    let non_positive = _mm256_cmp_ps(n, zero, _CMP_LE_OQ);
    let alt = _mm256_blendv_ps(_mm256_set1_ps(f32::INFINITY), zero, non_positive);
    _mm256_blendv_ps(res, alt, far)
}

/// `x / (1 + exp(0 - x))` on 16 lanes (`ggml_v_silu`).
#[target_feature(enable = "avx512f")]
fn silu16(x: __m512) -> __m512 {
    let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
    _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0), e))
}

/// `x / (1 + exp(0 - x))` on 8 lanes.
#[target_feature(enable = "avx2,fma")]
fn silu8(x: __m256) -> __m256 {
    let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
    _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e))
}

/// `out[i] = silu(x[i]) * up[i]` (or `silu(x[i])` without `up`) over whole groups of 16.
///
/// # Safety
///
/// AVX-512 F must be available; `x`, `out` (and `up`) have the same length, a multiple
/// of 16.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn silu_avx512(x: &[f32], up: Option<&[f32]>, out: &mut [f32]) {
    for i in (0..x.len()).step_by(16) {
        // SAFETY: `i + 16 <= len` for every slice (the caller's contract).
        unsafe {
            let mut v = silu16(_mm512_loadu_ps(x.as_ptr().add(i)));
            if let Some(up) = up {
                v = _mm512_mul_ps(v, _mm512_loadu_ps(up.as_ptr().add(i)));
            }
            _mm512_storeu_ps(out.as_mut_ptr().add(i), v);
        }
    }
}

/// [`silu_avx512`] with AVX2.
///
/// # Safety
///
/// AVX2 and FMA must be available; the slices as for [`silu_avx512`].
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn silu_avx2(x: &[f32], up: Option<&[f32]>, out: &mut [f32]) {
    for i in (0..x.len()).step_by(8) {
        // SAFETY: `i + 8 <= len` for every slice (lengths are multiples of 16).
        unsafe {
            let mut v = silu8(_mm256_loadu_ps(x.as_ptr().add(i)));
            if let Some(up) = up {
                v = _mm256_mul_ps(v, _mm256_loadu_ps(up.as_ptr().add(i)));
            }
            _mm256_storeu_ps(out.as_mut_ptr().add(i), v);
        }
    }
}

/// `x[i] = exp(x[i] - max)` over whole groups of 16, returning the sum of the groups'
/// sums (each summed as `_mm512_reduce_add_ps` does) in `f64`, in group order.
///
/// # Safety
///
/// AVX-512 F must be available; `x.len()` is a multiple of 16.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn exp_sum_avx512(x: &mut [f32], max: f32) -> f64 {
    let m = _mm512_set1_ps(max);
    let mut sum = 0.0f64;
    for i in (0..x.len()).step_by(16) {
        // SAFETY: `i + 16 <= x.len()` (the caller's contract).
        unsafe {
            let p = x.as_mut_ptr().add(i);
            let v = exp16(_mm512_sub_ps(_mm512_loadu_ps(p), m));
            _mm512_storeu_ps(p, v);
            let lo = _mm512_castps512_ps256(v);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
            sum += f64::from(reduce8(_mm256_add_ps(hi, lo)));
        }
    }
    sum
}

/// [`exp_sum_avx512`] with AVX2.
///
/// # Safety
///
/// AVX2 and FMA must be available; `x.len()` is a multiple of 16.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp_sum_avx2(x: &mut [f32], max: f32) -> f64 {
    let m = _mm256_set1_ps(max);
    let mut sum = 0.0f64;
    for i in (0..x.len()).step_by(16) {
        // SAFETY: `i + 16 <= x.len()` (the caller's contract).
        unsafe {
            let p = x.as_mut_ptr().add(i);
            let lo = exp8(_mm256_sub_ps(_mm256_loadu_ps(p), m));
            let hi = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(8)), m));
            _mm256_storeu_ps(p, lo);
            _mm256_storeu_ps(p.add(8), hi);
            sum += f64::from(reduce8(_mm256_add_ps(hi, lo)));
        }
    }
    sum
}

/// The last three steps of `_mm512_reduce_add_ps` (GCC's order): halves of 4, then lanes
/// `(0 + 2) + (1 + 3)`.
#[target_feature(enable = "avx2")]
fn reduce8(v: __m256) -> f32 {
    let h = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    let s = _mm_add_ps(h, _mm_movehl_ps(h, h));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}
