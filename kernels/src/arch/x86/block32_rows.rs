//! Fast-numerics dots of eight weight rows at once, one row in each lane, with one to a
//! few activation rows: decode steps of several streams, in the order
//! [`crate::dot::scalar_fast`] defines.
//!
//! The one-row kernels ([`super::block32_fast`]) fold each block's 32 products across a
//! register with horizontal additions, once per activation row. Here the eight rows'
//! blocks are transposed once (lane `j` holds row `j`'s four bytes `4k..4k + 4` in
//! register `k`), and each activation row's four bytes are broadcast against them: a
//! block's integer sums for the eight rows come out in the lanes, with no horizontal
//! work, and the transposition is shared by every activation row. Lane `j` of partial
//! sum `b mod 8` is row `j`'s partial, so the eight partials of the definition are eight
//! registers, added at the end in its tree, vertically.

use std::arch::x86_64::*;

use super::block32::{Act32, Block32};
use super::block32_lanes::tree8;

/// Rows multiplied together, one per lane.
pub(crate) const ROWS: usize = crate::dot::ROWS8;

/// The 8×8 transpose of 32-bit words: word `k` of `v[j]` becomes word `j` of the
/// result's register `k`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn transpose8(v: [__m256i; 8]) -> [__m256i; 8] {
    let lo = |a, b| _mm256_unpacklo_epi32(a, b);
    let hi = |a, b| _mm256_unpackhi_epi32(a, b);
    let (t0, t1, t2, t3) = (
        lo(v[0], v[1]),
        hi(v[0], v[1]),
        lo(v[2], v[3]),
        hi(v[2], v[3]),
    );
    let (t4, t5, t6, t7) = (
        lo(v[4], v[5]),
        hi(v[4], v[5]),
        lo(v[6], v[7]),
        hi(v[6], v[7]),
    );
    let lo64 = |a, b| _mm256_unpacklo_epi64(a, b);
    let hi64 = |a, b| _mm256_unpackhi_epi64(a, b);
    // Rows 0..4 (and 4..8) of words k and k + 4 in each 128-bit half.
    let (s0, s1, s2, s3) = (lo64(t0, t2), hi64(t0, t2), lo64(t1, t3), hi64(t1, t3));
    let (s4, s5, s6, s7) = (lo64(t4, t6), hi64(t4, t6), lo64(t5, t7), hi64(t5, t7));
    [
        _mm256_permute2x128_si256::<0x20>(s0, s4),
        _mm256_permute2x128_si256::<0x20>(s1, s5),
        _mm256_permute2x128_si256::<0x20>(s2, s6),
        _mm256_permute2x128_si256::<0x20>(s3, s7),
        _mm256_permute2x128_si256::<0x31>(s0, s4),
        _mm256_permute2x128_si256::<0x31>(s1, s5),
        _mm256_permute2x128_si256::<0x31>(s2, s6),
        _mm256_permute2x128_si256::<0x31>(s3, s7),
    ]
}

/// The eight rows' block scales (and minimums: zero for the types without one) as f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn scales<W: Block32>(blocks: [&W; 8]) -> (__m256, __m256) {
    let bits = blocks.map(|b| b.scale_bits());
    let d = _mm_setr_epi16(
        bits[0] as i16,
        bits[1] as i16,
        bits[2] as i16,
        bits[3] as i16,
        bits[4] as i16,
        bits[5] as i16,
        bits[6] as i16,
        bits[7] as i16,
    );
    let m = _mm_setr_epi16(
        (bits[0] >> 16) as i16,
        (bits[1] >> 16) as i16,
        (bits[2] >> 16) as i16,
        (bits[3] >> 16) as i16,
        (bits[4] >> 16) as i16,
        (bits[5] >> 16) as i16,
        (bits[6] >> 16) as i16,
        (bits[7] >> 16) as i16,
    );
    (_mm256_cvtph_ps(d), _mm256_cvtph_ps(m))
}

/// The fast dots of the eight weight rows `rows` with the `N` activation rows `ys`:
/// element `t` lane `j` is row `j`'s dot with `ys[t]`, the bits of
/// [`crate::dot::scalar_fast::dot_fast`].
///
/// `da[t]` holds the f32 scale of each block of `ys[t]`; `aux[t]` its second term
/// ([`crate::dot::scalar_fast::act_terms`]), read for the weight types with a minimum or
/// an offset.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_rows8_avx2<W: Block32, A: Act32, const N: usize>(
    rows: [&[W]; ROWS],
    ys: [&[A]; N],
    da: [&[f32]; N],
    aux: [&[f32]; N],
) -> [[f32; ROWS]; N] {
    let n = ys.first().map_or(0, |y| y.len());
    assert!(rows.iter().all(|r| r.len() == n));
    assert!(ys.iter().all(|y| y.len() == n) && da.iter().all(|d| d.len() == n));
    let signed_plain = W::SIGNED && W::OFFSET == 0;
    assert!(signed_plain || aux.iter().all(|s| s.len() == n));
    // How many i16 `maddubs` sums add without overflow: 8·2·15·127 and 4·2·31·127 stay
    // below 2^15; 8-bit magnitudes take one each.
    let per_madd = match W::RAW_BITS {
        4 => 8,
        5 => 4,
        _ => 1,
    };
    let ones = _mm256_set1_epi16(1);
    let mut p = [[_mm256_setzero_ps(); 8]; N];
    let mut m = [[_mm256_setzero_ps(); 8]; N];
    for b in 0..n {
        let j = b % 8;
        let blocks = rows.map(|r| &r[b]);
        super::prefetch_ahead(std::ptr::from_ref(blocks[0]), size_of::<W>());
        // The signed quants for the sign trick, else the stored unsigned values.
        let words = transpose8(blocks.map(|w| {
            // SAFETY: this function's target features include AVX2, FMA and F16C.
            unsafe {
                if signed_plain {
                    w.quants()
                } else {
                    w.raw_quants()
                }
            }
        }));
        let unsigned = if signed_plain {
            words.map(|q| _mm256_sign_epi8(q, q))
        } else {
            words
        };
        let (dw, mw) = scales(blocks);
        for t in 0..N {
            let y = &ys[t][b];
            let mut acc = _mm256_setzero_si256();
            let mut k = 0;
            while k < 8 {
                let mut p16 = _mm256_setzero_si256();
                for kk in k..k + per_madd {
                    let a = _mm256_set1_epi32(y.quant_word(kk));
                    let a = if signed_plain {
                        _mm256_sign_epi8(a, words[kk])
                    } else {
                        a
                    };
                    p16 = _mm256_add_epi16(p16, _mm256_maddubs_epi16(unsigned[kk], a));
                }
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p16, ones));
                k += per_madd;
            }
            let mut s = _mm256_cvtepi32_ps(acc);
            if W::SIGNED && W::OFFSET != 0 {
                s = _mm256_sub_ps(s, _mm256_set1_ps(aux[t][b]));
            }
            let c = _mm256_mul_ps(dw, _mm256_set1_ps(da[t][b]));
            p[t][j] = _mm256_fmadd_ps(s, c, p[t][j]);
            if !W::SIGNED {
                m[t][j] = _mm256_fmadd_ps(mw, _mm256_set1_ps(aux[t][b]), m[t][j]);
            }
        }
    }
    std::array::from_fn(|t| {
        let mut total = tree8(&p[t]);
        if !W::SIGNED {
            total = _mm256_add_ps(total, tree8(&m[t]));
        }
        let mut out = [0.0f32; ROWS];
        // SAFETY: `out` holds eight f32.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), total) };
        out
    })
}
