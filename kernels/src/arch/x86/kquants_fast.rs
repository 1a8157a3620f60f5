//! Fast-numerics kernels of Q4_K, Q5_K and Q6_K, in the order [`crate::dot::kfast`]
//! defines: a one-row kernel for decode and a token-lane kernel for prompts.
//!
//! The one-row kernel takes each super-block's integer lanes from the exact kernels'
//! shared bodies ([`super::kquants`]), folds the totals of eight super-blocks into one
//! vector and makes one fused multiply-add of it. The token-lane kernel multiplies decoded
//! rows ([`DecodedRows`]) with a [`KTile`] of eight tokens: four weight values broadcast
//! against four values of every token, the byte products summed as i16 as far as they
//! cannot overflow, then weighted by the sub-block's scale in one `madd`.

use std::arch::x86_64::*;

use half::f16;

use super::block32::{f16_to_f32, hsum_ps};
use super::block32_lanes::{broadcast4, tree8};
use super::kquants::{q6_k_block, q45_k_block};
use crate::blocks::{BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};
use crate::dot::kfast::{FastK, K_TILE_BLOCK_BYTES, KTile};
use crate::dot::lanes::{DecodedRows, LANES};

/// Eight vectors of i32 lanes folded into one vector of their eight totals (lane `k`
/// is the total of `v[k]`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn totals8(v: &[__m256i; 8]) -> __m256i {
    let q0 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    let q1 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(q0, q1),
        _mm256_permute2x128_si256::<0x31>(q0, q1),
    )
}

/// Eight vectors of four i32 lanes folded into one vector of their eight totals.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn totals8_128(v: &[__m128i; 8]) -> __m256i {
    let half =
        |v: &[__m128i]| _mm_hadd_epi32(_mm_hadd_epi32(v[0], v[1]), _mm_hadd_epi32(v[2], v[3]));
    _mm256_set_m128i(half(&v[4..]), half(&v[..4]))
}

/// A row's super-blocks eight at a time: `parts(b)` gives super-block `b`'s integer
/// lanes (their total is `S1`), its minimum products (total `S2`), and its two scales
/// `d·d'` and `dmin·d'`. The totals of a group land in the lanes of one vector, lane `k`
/// for super-block `8g + k`, the definition's partial sums, and take one fused
/// multiply-add each; a short last group leaves its missing lanes' scales at zero.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn fold_rows(n: usize, parts: impl Fn(usize) -> (__m256i, __m128i, f32, f32)) -> (__m256, __m256) {
    let (mut acc, mut macc) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for first in (0..n).step_by(8) {
        let mut s = [_mm256_setzero_si256(); 8];
        let mut m = [_mm_setzero_si128(); 8];
        let mut c1 = [0.0f32; 8];
        let mut c2 = [0.0f32; 8];
        for k in 0..(n - first).min(8) {
            (s[k], m[k], c1[k], c2[k]) = parts(first + k);
        }
        // SAFETY: `c1` and `c2` hold eight f32.
        let (c1, c2) = unsafe { (_mm256_loadu_ps(c1.as_ptr()), _mm256_loadu_ps(c2.as_ptr())) };
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(totals8(&s)), c1, acc);
        macc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(totals8_128(&m)), c2, macc);
    }
    (acc, macc)
}

/// The fast dot of one Q4_K row with one activation row.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_fast_q4_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    q45_k(x, y, |xb| (&xb.qs, None, &xb.scales, xb.d, xb.dmin))
}

/// The fast dot of one Q5_K row with one activation row.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_fast_q5_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    q45_k(x, y, |xb| (&xb.qs, Some(&xb.qh), &xb.scales, xb.d, xb.dmin))
}

/// The parts of a Q4_K or Q5_K super-block the shared body reads.
type Q45Parts<'a> = (&'a [u8; 128], Option<&'a [u8; 32]>, &'a [u8; 12], f16, f16);

/// Q4_K and Q5_K, from each super-block's parts.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q45_k<B>(x: &[B], y: &[BlockQ8K], parts: impl Fn(&B) -> Q45Parts<'_>) -> f32 {
    assert_eq!(x.len(), y.len());
    let (acc, macc) = fold_rows(x.len(), |b| {
        let (xb, yb) = (&x[b], &y[b]);
        super::prefetch_ahead(xb, size_of_val(xb));
        let (qs, qh, scales, d, dmin) = parts(xb);
        let (isum, mins) = q45_k_block(qs, qh, scales, yb);
        (isum, mins, f16_to_f32(d) * yb.d, f16_to_f32(dmin) * yb.d)
    });
    hsum_ps(acc) - hsum_ps(macc)
}

/// The fast dot of one Q6_K row with one activation row.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_fast_q6_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len());
    let (acc, _) = fold_rows(x.len(), |b| {
        let (xb, yb) = (&x[b], &y[b]);
        super::prefetch_ahead(xb, size_of_val(xb));
        let isum = q6_k_block(xb, yb);
        (isum, _mm_setzero_si128(), f16_to_f32(xb.d) * yb.d, 0.0)
    });
    hsum_ps(acc)
}

/// Two i16 in every 32-bit lane.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn pair16(lo: i16, hi: i16) -> __m256i {
    _mm256_set1_epi32(i32::from(lo as u16) | (i32::from(hi) << 16))
}

/// The fast dots of decoded k-quant rows `r..r + R` with the eight tokens of `tile`, AVX2:
/// each tile load serves the `R` rows (the one-row kernel waits on its loads), and each
/// row's sums are the one-row kernel's.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_lanes_k_avx2<W: FastK, const R: usize>(
    rows: &DecodedRows,
    r: usize,
    tile: &KTile<'_>,
) -> [[f32; LANES]; R] {
    let per_row = rows.per_row;
    let end = (r + R) * per_row;
    assert!(rows.u.len() >= end * QK_K && rows.sc.len() >= end * 16 && rows.mn.len() >= end * 16);
    assert!(rows.dw.len() >= end && rows.mw.len() >= end);
    assert!(tile.bytes.len() >= per_row * K_TILE_BLOCK_BYTES);
    // Byte products per i16 sum: 8·2·15·128, 4·2·31·128 and 2·2·63·128 stay below 2^15.
    let per_madd = match W::RAW_BITS {
        4 => 8,
        5 => 4,
        _ => 2,
    }
    .min(W::SUB / 4);
    let mut p = [[_mm256_setzero_ps(); 8]; R];
    let mut m = [[_mm256_setzero_ps(); 8]; R];
    for b in 0..per_row {
        // Row `i`'s super-block `b`.
        let sb = |i: usize| (r + i) * per_row + b;
        let block = &tile.bytes[b * K_TILE_BLOCK_BYTES..(b + 1) * K_TILE_BLOCK_BYTES];
        let q = block.as_ptr();
        let load = |at: usize| {
            debug_assert!(at + 32 <= K_TILE_BLOCK_BYTES);
            // SAFETY: `block` holds K_TILE_BLOCK_BYTES bytes; every `at` below leaves 32.
            unsafe { _mm256_loadu_si256(q.add(at).cast()) }
        };
        let mut acc = [_mm256_setzero_si256(); R];
        for k in 0..QK_K / W::SUB {
            let scale: [__m256i; R] =
                std::array::from_fn(|i| _mm256_set1_epi16(rows.sc[sb(i) * 16 + k]));
            let mut g = k * W::SUB / 4;
            while g < (k + 1) * W::SUB / 4 {
                let mut p16 = [_mm256_setzero_si256(); R];
                for gg in g..g + per_madd {
                    let a = load(32 * gg);
                    for (i, p16) in p16.iter_mut().enumerate() {
                        // SAFETY: `u` holds QK_K bytes from each super-block's start
                        // (asserted) and `4 * gg + 4 <= QK_K`.
                        let uv = unsafe { broadcast4(rows.u.as_ptr().add(sb(i) * QK_K + 4 * gg)) };
                        *p16 = _mm256_add_epi16(*p16, _mm256_maddubs_epi16(uv, a));
                    }
                }
                for i in 0..R {
                    acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(p16[i], scale[i]));
                }
                g += per_madd;
            }
        }
        // Vector `j` of the sums holds each token's bsums 2j and 2j + 1.
        let sums = |j: usize| load(QK_K * LANES + 32 * j);
        // SAFETY: the scales are the last 32 bytes of `block`.
        let da = unsafe { _mm256_loadu_ps(q.add(K_TILE_BLOCK_BYTES - 32).cast()) };
        for i in 0..R {
            let sb = sb(i);
            if W::OFFSET != 0 {
                debug_assert_eq!(W::OFFSET, 32);
                let mut off = _mm256_setzero_si256();
                for j in 0..8 {
                    let sc = pair16(rows.sc[sb * 16 + 2 * j], rows.sc[sb * 16 + 2 * j + 1]);
                    off = _mm256_add_epi32(off, _mm256_madd_epi16(sums(j), sc));
                }
                acc[i] = _mm256_sub_epi32(acc[i], _mm256_slli_epi32::<5>(off));
            }
            let c1 = _mm256_mul_ps(da, _mm256_set1_ps(rows.dw[sb]));
            p[i][b % 8] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[i]), c1, p[i][b % 8]);
            if W::HAS_MIN {
                let mut s2 = _mm256_setzero_si256();
                for j in 0..8 {
                    let mn = rows.mn[sb * 16 + j];
                    s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(sums(j), pair16(mn, mn)));
                }
                let c2 = _mm256_mul_ps(da, _mm256_set1_ps(rows.mw[sb]));
                m[i][b % 8] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s2), c2, m[i][b % 8]);
            }
        }
    }
    std::array::from_fn(|i| {
        let mut result = tree8(&p[i]);
        if W::HAS_MIN {
            result = _mm256_sub_ps(result, tree8(&m[i]));
        }
        let mut out = [0.0f32; LANES];
        // SAFETY: `out` holds 8 f32.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), result) };
        out
    })
}
