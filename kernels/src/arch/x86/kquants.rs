//! AVX2 dot products of the k-quants with Q8_K activations.
//!
//! Each run of 32 weights is unpacked to unsigned bytes and multiplied with `maddubs`;
//! the 16-bit pair sums are weighted by their sub-block scale with `madd`, so a whole
//! super-block accumulates as 32-bit integers and is scaled once. Offsets (Q3_K's -4,
//! Q6_K's -32) and minimums are applied through the activation `bsums`. On AVX-512 CPUs
//! these kernels are used as they are: the scale multiply, not the byte product, bounds
//! them, and VNNI does not shorten it.

use std::arch::x86_64::*;

use super::block32::{f16_to_f32, hsum_ps};
use crate::blocks::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};

/// Loads 32 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load32<T>(bytes: &[T; 32]) -> __m256i {
    // SAFETY: `T` is a byte type here (u8 or i8), so the array spans exactly 32 bytes.
    unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
}

/// The 32 activation quants starting at element `at`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn act32(y: &BlockQ8K, at: usize) -> __m256i {
    load32(y.qs[at..at + 32].try_into().expect("32 quants"))
}

/// The 16 `bsums` as 16-bit lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn bsums(y: &BlockQ8K) -> __m256i {
    // SAFETY: `bsums` is 16 i16, exactly 32 bytes.
    unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) }
}

/// Eight 8-bit scales as eight 16-bit lanes, repeated in both 128-bit halves.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn scales8(bytes: u64, signed: bool) -> __m256i {
    let v = _mm_cvtsi64_si128(bytes as i64);
    let wide = if signed {
        _mm_cvtepi8_epi16(v)
    } else {
        _mm_cvtepu8_epi16(v)
    };
    _mm256_broadcastsi128_si256(wide)
}

/// From [`scales8`] lanes, a vector with scale `2r` in the low half and `2r + 1` in the
/// high half: the scales of the two sub-blocks of 16 in the `r`-th run of 32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn pair_scales(scales: __m256i, r: usize) -> __m256i {
    let lo = (4 * r) as i16 | (((4 * r + 1) as i16) << 8);
    let hi = (4 * r + 2) as i16 | (((4 * r + 3) as i16) << 8);
    let ctl = _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo));
    _mm256_shuffle_epi8(scales, ctl)
}

/// `sum(u * a)` in pairs, weighted by 16-bit `scales`: eight i32 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn scaled_dot(u: __m256i, a: __m256i, scales: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), scales)
}

/// Bits `shift..shift + width` of each byte of `v` (width 1 or 2), as 0..4.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn bit_field(v: __m256i, shift: u32, mask: i8) -> __m256i {
    let shifted = _mm256_srl_epi16(v, _mm_cvtsi32_si128(shift as i32));
    _mm256_and_si256(shifted, _mm256_set1_epi8(mask))
}

/// Q2_K weights times Q8_K activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q2_k(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len());
    let (mut acc, mut acc_min) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for (xb, yb) in x.iter().zip(y) {
        super::prefetch_ahead(xb, size_of_val(xb));
        let packed = u128::from_le_bytes(xb.scales);
        let low = packed & 0x0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f;
        let high = (packed >> 4) & 0x0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f;
        let mins = _mm256_cvtepu8_epi16(_mm_set_epi64x((high >> 64) as i64, high as i64));
        let summs = _mm256_madd_epi16(bsums(yb), mins);
        let mut isum = _mm256_setzero_si256();
        for h in 0..2 {
            let scales = scales8((low >> (64 * h)) as u64, false);
            let q = load32(xb.qs[32 * h..32 * h + 32].try_into().expect("32 bytes"));
            for r in 0..4 {
                let w = bit_field(q, 2 * r as u32, 3);
                let a = act32(yb, 128 * h + 32 * r);
                isum = _mm256_add_epi32(isum, scaled_dot(w, a, pair_scales(scales, r)));
            }
        }
        let d = _mm256_set1_ps(yb.d * f16_to_f32(xb.d));
        let dmin = _mm256_set1_ps(yb.d * f16_to_f32(xb.dmin));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum), acc);
        acc_min = _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(summs), acc_min);
    }
    hsum_ps(acc) - hsum_ps(acc_min)
}

/// The 16 unsigned 6-bit scales of Q3_K (before the -32), as packed bytes.
fn q3_k_scale_bytes(packed: &[u8; 12]) -> u128 {
    let word = |i: usize| u32::from_le_bytes(packed[4 * i..4 * i + 4].try_into().expect("4"));
    let (a0, a1, tmp) = (word(0), word(1), word(2));
    let (m4, m2) = (0x0f0f_0f0f_u32, 0x0303_0303_u32);
    let s0 = (a0 & m4) | ((tmp & m2) << 4);
    let s1 = (a1 & m4) | (((tmp >> 2) & m2) << 4);
    let s2 = ((a0 >> 4) & m4) | (((tmp >> 4) & m2) << 4);
    let s3 = ((a1 >> 4) & m4) | (((tmp >> 6) & m2) << 4);
    u128::from(s0) | u128::from(s1) << 32 | u128::from(s2) << 64 | u128::from(s3) << 96
}

/// Q3_K weights times Q8_K activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q3_k(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len());
    let mut acc = _mm256_setzero_ps();
    for (xb, yb) in x.iter().zip(y) {
        super::prefetch_ahead(xb, size_of_val(xb));
        let bytes = q3_k_scale_bytes(&xb.scales);
        let raw = _mm_set_epi64x((bytes >> 64) as i64, bytes as i64);
        let signed = _mm_sub_epi8(raw, _mm_set1_epi8(32));
        // Quants are stored as low2 + 4 * hbit - 4; the -4 goes through bsums.
        let offset = _mm256_madd_epi16(bsums(yb), _mm256_cvtepi8_epi16(signed));
        let mut isum = _mm256_slli_epi32::<2>(offset);
        isum = _mm256_sub_epi32(_mm256_setzero_si256(), isum);
        let hmask = load32(&xb.hmask);
        let lanes = (
            _mm_cvtsi128_si64(signed) as u64,
            _mm_extract_epi64::<1>(signed) as u64,
        );
        for h in 0..2 {
            let scales = scales8(if h == 0 { lanes.0 } else { lanes.1 }, true);
            let q = load32(xb.qs[32 * h..32 * h + 32].try_into().expect("32 bytes"));
            for r in 0..4 {
                let low = bit_field(q, 2 * r as u32, 3);
                let high = bit_field(hmask, (4 * h + r) as u32, 1);
                let w = _mm256_or_si256(low, _mm256_slli_epi16::<2>(high));
                let a = act32(yb, 128 * h + 32 * r);
                isum = _mm256_add_epi32(isum, scaled_dot(w, a, pair_scales(scales, r)));
            }
        }
        let d = _mm256_set1_ps(yb.d * f16_to_f32(xb.d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum), acc);
    }
    hsum_ps(acc)
}

/// Scales (low 64 bits) and minimums (high 64 bits) of Q4_K/Q5_K, one byte each.
fn q45_k_scale_bytes(packed: &[u8; 12]) -> (u64, u64) {
    let word = |i: usize| u32::from_le_bytes(packed[4 * i..4 * i + 4].try_into().expect("4"));
    let (u0, u1, u2) = (word(0), word(1), word(2));
    let (m6, m4, m2) = (0x3f3f_3f3f_u32, 0x0f0f_0f0f_u32, 0x0303_0303_u32);
    let scales_lo = u0 & m6;
    let scales_hi = (u2 & m4) | (((u0 >> 6) & m2) << 4);
    let mins_lo = u1 & m6;
    let mins_hi = ((u2 >> 4) & m4) | (((u1 >> 6) & m2) << 4);
    (
        u64::from(scales_lo) | u64::from(scales_hi) << 32,
        u64::from(mins_lo) | u64::from(mins_hi) << 32,
    )
}

/// The shared body of Q4_K and Q5_K once the four 32-byte runs of 4-bit quants (and, for
/// Q5_K, the high bits) are known.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn q45_k_block(
    qs: &[u8; 128],
    qh: Option<&[u8; 32]>,
    scales: &[u8; 12],
    yb: &BlockQ8K,
) -> (__m256i, __m128i) {
    let (sc, mn) = q45_k_scale_bytes(scales);
    // Group sums of 32 from the pairs of bsums, times the mins, in four lanes.
    let b = bsums(yb);
    let groups = _mm_hadd_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256::<1>(b));
    let mins = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(mn as i64));
    let min_products = _mm_madd_epi16(mins, groups);
    let scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
    let high = qh.map(|h| load32(h));
    let low_mask = _mm256_set1_epi8(0x0f);
    let mut isum = _mm256_setzero_si256();
    for j in 0..4 {
        let q = load32(qs[32 * j..32 * j + 32].try_into().expect("32 bytes"));
        let mut lo = _mm256_and_si256(q, low_mask);
        let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), low_mask);
        if let Some(h) = high {
            lo = _mm256_or_si256(lo, _mm256_slli_epi16::<4>(bit_field(h, 2 * j as u32, 1)));
            hi = _mm256_or_si256(
                hi,
                _mm256_slli_epi16::<4>(bit_field(h, 2 * j as u32 + 1, 1)),
            );
        }
        let sc_lo =
            _mm256_shuffle_epi8(scales, _mm256_set1_epi16((0x0100 + 0x0202 * 2 * j) as i16));
        let sc_hi = _mm256_shuffle_epi8(
            scales,
            _mm256_set1_epi16((0x0100 + 0x0202 * (2 * j + 1)) as i16),
        );
        let p_lo = scaled_dot(lo, act32(yb, 64 * j), sc_lo);
        let p_hi = scaled_dot(hi, act32(yb, 64 * j + 32), sc_hi);
        isum = _mm256_add_epi32(isum, _mm256_add_epi32(p_lo, p_hi));
    }
    (isum, min_products)
}

/// Q4_K weights times Q8_K activations, in ggml's order (see
/// [`crate::dot::scalar_k::vec_dot_q4_k_q8_k`]).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q4_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len());
    let (mut acc, mut acc_m) = (_mm256_setzero_ps(), _mm_setzero_ps());
    for (xb, yb) in x.iter().zip(y) {
        super::prefetch_ahead(xb, size_of_val(xb));
        let (isum, min_products) = q45_k_block(&xb.qs, None, &xb.scales, yb);
        let d = _mm256_set1_ps(yb.d * f16_to_f32(xb.d));
        let dmin = _mm_set1_ps(-yb.d * f16_to_f32(xb.dmin));
        acc_m = _mm_fmadd_ps(dmin, _mm_cvtepi32_ps(min_products), acc_m);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum), acc);
    }
    let m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    hsum_ps(acc) + _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)))
}

/// Q5_K weights times Q8_K activations, in ggml's order (see
/// [`crate::dot::scalar_k::vec_dot_q5_k_q8_k`]).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q5_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len());
    let (mut acc, mut summs) = (_mm256_setzero_ps(), 0.0f32);
    for (xb, yb) in x.iter().zip(y) {
        super::prefetch_ahead(xb, size_of_val(xb));
        let (isum, min_products) = q45_k_block(&xb.qs, Some(&xb.qh), &xb.scales, yb);
        let d = _mm256_set1_ps(yb.d * f16_to_f32(xb.d));
        let dmin = -yb.d * f16_to_f32(xb.dmin);
        let p = _mm_add_epi32(min_products, _mm_unpackhi_epi64(min_products, min_products));
        let total = _mm_cvtsi128_si32(_mm_add_epi32(p, _mm_shuffle_epi32::<1>(p)));
        summs = _mm_cvtss_f32(_mm_fmadd_ss(
            _mm_set_ss(dmin),
            _mm_set_ss(total as f32),
            _mm_set_ss(summs),
        ));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum), acc);
    }
    hsum_ps(acc) + summs
}

/// The integer lanes of one Q6_K super-block against its activation block: their total
/// is `Σ sc·(Σ q·a)` with the -32 of the stored values taken out through `bsums`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn q6_k_block(xb: &BlockQ6K, yb: &BlockQ8K) -> __m256i {
    let low_mask = _mm256_set1_epi8(0x0f);
    let sc = u128::from_le_bytes(xb.scales.map(|s| s as u8));
    let all = _mm_set_epi64x((sc >> 64) as i64, sc as i64);
    // Quants are stored as q + 32; the -32 goes through bsums.
    let offset = _mm256_madd_epi16(bsums(yb), _mm256_cvtepi8_epi16(all));
    let mut isum = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<5>(offset));
    for h in 0..2 {
        let scales = scales8((sc >> (64 * h)) as u64, true);
        let ql0 = load32(xb.ql[64 * h..64 * h + 32].try_into().expect("32 bytes"));
        let ql1 = load32(
            xb.ql[64 * h + 32..64 * h + 64]
                .try_into()
                .expect("32 bytes"),
        );
        let qh = load32(xb.qh[32 * h..32 * h + 32].try_into().expect("32 bytes"));
        let runs = [
            (_mm256_and_si256(ql0, low_mask), 0),
            (_mm256_and_si256(ql1, low_mask), 2),
            (_mm256_and_si256(_mm256_srli_epi16::<4>(ql0), low_mask), 4),
            (_mm256_and_si256(_mm256_srli_epi16::<4>(ql1), low_mask), 6),
        ];
        for (r, (low4, shift)) in runs.into_iter().enumerate() {
            let high2 = _mm256_slli_epi16::<4>(bit_field(qh, shift, 3));
            let w = _mm256_or_si256(low4, high2);
            let a = act32(yb, 128 * h + 32 * r);
            isum = _mm256_add_epi32(isum, scaled_dot(w, a, pair_scales(scales, r)));
        }
    }
    isum
}

/// Q6_K weights times Q8_K activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q6_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len());
    let mut acc = _mm256_setzero_ps();
    for (xb, yb) in x.iter().zip(y) {
        super::prefetch_ahead(xb, size_of_val(xb));
        let isum = q6_k_block(xb, yb);
        let d = _mm256_set1_ps(yb.d * f16_to_f32(xb.d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum), acc);
    }
    hsum_ps(acc)
}
