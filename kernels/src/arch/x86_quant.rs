//! AVX2 activation quantizers: Q8_0, Q8_1 and Q8_K rows, byte-identical to their scalar
//! twins in [`crate::quant`] for finite inputs.
//!
//! Activations are quantized before every quantized product, so these run once per row
//! of every matrix product. Q8_0 and Q8_1 use llama.cpp's runtime rounding (multiply by
//! `127 / amax`, round halves to even); Q8_K uses its reference rounding, which is also
//! what llama.cpp runs.

use std::arch::x86_64::*;

use half::f16;

use crate::blocks::{BlockQ8_0, BlockQ8_1, BlockQ8K, QK_K, QK8_0, QK8_1};
use crate::cpu::Avx2Token;

/// Quantizes `x` to Q8_0 blocks with AVX2.
///
/// # Panics
///
/// When `x.len() != y.len() * 32`.
pub fn quantize_row_q8_0_avx2(_: Avx2Token, x: &[f32], y: &mut [BlockQ8_0]) {
    assert_eq!(
        x.len(),
        y.len() * QK8_0,
        "quantize_row_q8_0: length mismatch"
    );
    for (xb, yb) in x.chunks_exact(QK8_0).zip(y.iter_mut()) {
        let xb: &[f32; QK8_0] = xb.try_into().expect("chunks of 32");
        // SAFETY: the token proves the CPU has AVX2 (and FMA, F16C).
        let (d, _) = unsafe { block32(xb, &mut yb.qs) };
        yb.d = f16::from_f32(d);
    }
}

/// Quantizes `x` to Q8_1 blocks with AVX2, with `s = d * sum(qs)`.
///
/// # Panics
///
/// When `x.len() != y.len() * 32`.
pub fn quantize_row_q8_1_avx2(_: Avx2Token, x: &[f32], y: &mut [BlockQ8_1]) {
    assert_eq!(
        x.len(),
        y.len() * QK8_1,
        "quantize_row_q8_1: length mismatch"
    );
    for (xb, yb) in x.chunks_exact(QK8_1).zip(y.iter_mut()) {
        let xb: &[f32; QK8_1] = xb.try_into().expect("chunks of 32");
        // SAFETY: the token proves the CPU has AVX2 (and FMA, F16C).
        let (d, sum) = unsafe { block32(xb, &mut yb.qs) };
        yb.d = f16::from_f32(d);
        yb.s = f16::from_f32(sum as f32 * d);
    }
}

/// Quantizes `x` to Q8_K super-blocks with AVX2, with the sum of each 16 quants.
///
/// # Panics
///
/// When `x.len() != y.len() * 256`.
pub fn quantize_row_q8_k_avx2(_: Avx2Token, x: &[f32], y: &mut [BlockQ8K]) {
    assert_eq!(
        x.len(),
        y.len() * QK_K,
        "quantize_row_q8_k: length mismatch"
    );
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let xb: &[f32; QK_K] = xb.try_into().expect("chunks of 256");
        // SAFETY: the token proves the CPU has AVX2 (and FMA, F16C).
        unsafe { super_block(xb, yb) }
    }
}

/// Largest `|v|` of `n` vectors of 8 starting at `p`.
///
/// # Safety
///
/// AVX2 must be available and `p` must point at `8 * n` readable floats.
#[target_feature(enable = "avx2")]
unsafe fn abs_max(p: *const f32, n: usize) -> f32 {
    let sign = _mm256_set1_ps(-0.0);
    let mut m = _mm256_setzero_ps();
    for i in 0..n {
        // SAFETY: `i < n`, so the 8 floats at `p + 8i` are in the caller's range.
        let v = unsafe { _mm256_loadu_ps(p.add(8 * i)) };
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
    }
    let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    let m1 = _mm_max_ss(m2, _mm_movehdup_ps(m2));
    _mm_cvtss_f32(m1)
}

/// Packs four vectors of 8 integers in `-127..=127` into 32 bytes in element order.
#[target_feature(enable = "avx2")]
fn pack_i8(q: [__m256i; 4]) -> __m256i {
    let lo = _mm256_packs_epi32(q[0], q[1]);
    let hi = _mm256_packs_epi32(q[2], q[3]);
    let bytes = _mm256_packs_epi16(lo, hi);
    _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Sum of the 8 lanes.
#[target_feature(enable = "avx2")]
fn hsum_i32(v: __m256i) -> i32 {
    let s4 = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
    let s1 = _mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0b01));
    _mm_cvtsi128_si32(s1)
}

/// One block of 32 to Q8_0/Q8_1 quants with the runtime rounding: returns the f32 scale
/// and the sum of the quants.
///
/// # Safety
///
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
unsafe fn block32(x: &[f32; 32], qs: &mut [i8; 32]) -> (f32, i32) {
    // SAFETY: `x` holds 4 vectors of 8.
    let amax = unsafe { abs_max(x.as_ptr(), 4) };
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mul = _mm256_set1_ps(id);
    let mut q = [_mm256_setzero_si256(); 4];
    for (k, qk) in q.iter_mut().enumerate() {
        // SAFETY: `8k + 8 <= 32`.
        let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * k)) };
        let r = _mm256_round_ps(
            _mm256_mul_ps(v, mul),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        *qk = _mm256_cvtps_epi32(r);
    }
    let sum = hsum_i32(_mm256_add_epi32(
        _mm256_add_epi32(q[0], q[1]),
        _mm256_add_epi32(q[2], q[3]),
    ));
    // SAFETY: `qs` is 32 writable bytes; the store is unaligned.
    unsafe { _mm256_storeu_si256(qs.as_mut_ptr().cast(), pack_i8(q)) };
    (d, sum)
}

/// One super-block of 256 to Q8_K.
///
/// # Safety
///
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
unsafe fn super_block(x: &[f32; QK_K], y: &mut BlockQ8K) {
    // SAFETY: `x` holds 32 vectors of 8.
    let amax = unsafe { abs_max(x.as_ptr(), QK_K / 8) };
    if amax == 0.0 {
        *y = BlockQ8K::ZERO;
        return;
    }
    // The reference keeps the sign of the first value of largest magnitude.
    let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
    let iscale = -127.0 / max;
    let mul = _mm256_set1_ps(iscale);
    let cap = _mm256_set1_epi32(127);
    for group in 0..QK_K / 32 {
        let mut q = [_mm256_setzero_si256(); 4];
        for (k, qk) in q.iter_mut().enumerate() {
            // SAFETY: `32 group + 8k + 8 <= 256`.
            let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(32 * group + 8 * k)) };
            let r = _mm256_round_ps(
                _mm256_mul_ps(v, mul),
                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
            );
            *qk = _mm256_min_epi32(_mm256_cvtps_epi32(r), cap);
        }
        y.bsums[2 * group] = hsum_i32(_mm256_add_epi32(q[0], q[1])) as i16;
        y.bsums[2 * group + 1] = hsum_i32(_mm256_add_epi32(q[2], q[3])) as i16;
        // SAFETY: bytes 32 group .. 32 group + 32 of `qs` are in bounds; unaligned store.
        unsafe {
            _mm256_storeu_si256(y.qs.as_mut_ptr().add(32 * group).cast(), pack_i8(q));
        }
    }
    y.d = 1.0 / iscale;
}
