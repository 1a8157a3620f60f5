//! Fast-numerics dots of the 32-element block types with Q8_0/Q8_1 activations, one weight
//! row at a time against one to a few activation rows (decode and a few streams), in the
//! order [`crate::dot::scalar_fast`] defines.
//!
//! The exact kernels ([`super::block32`]) turn every block's integer sum into a float and
//! add it to one accumulator, as ggml does: about nineteen instructions a block and a chain
//! of dependent additions. Here eight blocks are reduced together: their integer sums are
//! folded by horizontal additions into one vector of eight block sums (lane `j` is block
//! `j` of the group, so the lanes are the definition's eight partial sums), converted
//! once, multiplied by the eight weight scales times the eight activation scales, and
//! added in one fused multiply-add. A last group of fewer than eight blocks takes the same
//! path with its missing lanes zero (rows of 576 or 640 values end in such a group).

use std::arch::x86_64::*;

use super::block32::{Act32, Block32, hsum_ps, mul_sum_avx2, mul_sum_vnni};

/// The f16 scales of eight blocks as f32, and their minimums (zero for the types without
/// one), from each block's `scale_bits` (zero for the lanes of a short last group). The
/// bits are packed in general registers first, two blocks to a 64-bit word: the shifts
/// and ors run beside the vector work, where sixteen `pinsrw` would compete with it for
/// the shuffle port. One byte shuffle puts the scales before the minimums, one lane
/// permute joins the halves.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn scale_min_pairs(bits: impl Fn(usize) -> u32) -> (__m256, __m256) {
    let pair = |k: usize| u64::from(bits(2 * k)) | (u64::from(bits(2 * k + 1)) << 32);
    let v = _mm256_set_epi64x(
        pair(3) as i64,
        pair(2) as i64,
        pair(1) as i64,
        pair(0) as i64,
    );
    let order = _mm256_setr_epi8(
        0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, //
        0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
    );
    let v = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(v, order));
    (
        _mm256_cvtph_ps(_mm256_castsi256_si128(v)),
        _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(v)),
    )
}

/// Four vectors of eight i32 partial sums, one per block, folded into their four block
/// totals: the low 128 bits of the result hold the totals of the lanes 0..4 of each
/// block, the high 128 bits those of lanes 4..8.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn fold4(s: [__m256i; 4]) -> __m256i {
    _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]))
}

/// Signed quants without an offset (Q8_0, IQ4_NL) multiply by the sign trick, as in the
/// exact kernels; the others multiply their stored unsigned values directly.
const fn sign_trick<W: Block32>() -> bool {
    W::SIGNED && W::OFFSET == 0
}

/// The stored values are the quants plus an offset (Q4_0, Q5_0): each block's integer sum
/// loses `OFFSET·Σa` (the activation's second term), exactly, in f32.
const fn offset<W: Block32>() -> bool {
    W::SIGNED && W::OFFSET != 0
}

/// The unsigned left operand of the 8-bit products, and the signed quants the sign trick
/// needs (for the types that use it).
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn unsigned<W: Block32>(x: &W) -> (__m256i, __m256i) {
    if sign_trick::<W>() {
        // SAFETY: the caller's contract.
        let q = unsafe { x.quants() };
        (_mm256_sign_epi8(q, q), q)
    } else {
        // SAFETY: the caller's contract.
        let u = unsafe { x.raw_quants() };
        (u, u)
    }
}

/// The integer sums of `count` (at most eight) consecutive weight blocks `xb` with the
/// blocks of each activation row from `first`: lane `j` of row `t`'s vector is block
/// `j`'s sum, zero past `count`.
macro_rules! group_sums {
    ($mul_sum:ident, $xb:expr, $ys:expr, $first:expr, $count:expr) => {{
        let (xb, ys, first, count) = ($xb, $ys, $first, $count);
        let mut quads = [[_mm256_setzero_si256(); 2]; N];
        for (half, quad) in [0usize, 4].into_iter().enumerate() {
            let mut s = [[_mm256_setzero_si256(); 4]; N];
            for k in 0..4 {
                let b = quad + k;
                if b >= count {
                    break;
                }
                // SAFETY: this function's target features include AVX2, FMA and F16C.
                let (u, q) = unsafe { unsigned::<W>(&xb[b]) };
                for t in 0..N {
                    // SAFETY: as above.
                    let a = unsafe { ys[t][first + b].quants() };
                    let a = if sign_trick::<W>() {
                        _mm256_sign_epi8(a, q)
                    } else {
                        a
                    };
                    s[t][k] = $mul_sum(u, a);
                }
            }
            for t in 0..N {
                quads[t][half] = fold4(s[t]);
            }
        }
        let sums: [__m256i; N] = std::array::from_fn(|t| {
            let [q0, q1] = quads[t];
            let lo = _mm256_permute2x128_si256::<0x20>(q0, q1);
            let hi = _mm256_permute2x128_si256::<0x31>(q0, q1);
            _mm256_add_epi32(lo, hi)
        });
        sums
    }};
}

macro_rules! block32_fast {
    ($(#[$doc:meta])* $name:ident, $rows:ident, $features:literal, $mul_sum:ident) => {
        /// The fast dots of consecutive weight rows (`out.len()` rows of `y.len()` blocks
        /// in `x`) with one activation row: a decode step's product, one call per run of
        /// rows. Each is the bits of the one-row dot.
        #[target_feature(enable = $features)]
        pub(crate) fn $rows<W: Block32, A: Act32>(
            x: &[W],
            y: &[A],
            da: &[f32],
            aux: &[f32],
            out: &mut [f32],
        ) {
            let per_row = y.len();
            assert_eq!(x.len(), out.len() * per_row);
            for (row, o) in x.chunks_exact(per_row.max(1)).zip(out.iter_mut()) {
                *o = $name::<W, A, 1>(row, [y], [da], [aux])[0];
            }
            if per_row == 0 {
                out.fill(0.0);
            }
        }

        $(#[$doc])*
        ///
        /// `da[t]` holds the f32 scale of each block of `ys[t]`; `aux[t]` its second term
        /// ([`crate::dot::scalar_fast::act_terms`]), read for the weight types with a
        /// minimum or an offset.
        #[target_feature(enable = $features)]
        #[inline]
        pub(crate) fn $name<W: Block32, A: Act32, const N: usize>(
            x: &[W],
            ys: [&[A]; N],
            da: [&[f32]; N],
            aux: [&[f32]; N],
        ) -> [f32; N] {
            let n = x.len();
            assert!(ys.iter().all(|y| y.len() == n) && da.iter().all(|d| d.len() == n));
            assert!(sign_trick::<W>() || aux.iter().all(|s| s.len() == n));
            let mut acc = [_mm256_setzero_ps(); N];
            let mut macc = [_mm256_setzero_ps(); N];
            // One group of `count` blocks from `first` into the lanes. A short last group
            // reads its activation terms through a mask; its missing lanes add 0 × 0,
            // which leaves the sums' bits as they are.
            macro_rules! group {
                ($first:expr, $count:expr) => {{
                    let (first, count): (usize, usize) = ($first, $count);
                    let xb = &x[first..first + count];
                    super::prefetch_ahead(xb.as_ptr(), size_of::<[W; 8]>());
                    let sums = group_sums!($mul_sum, xb, ys, first, count);
                    let (dw, mw) =
                        scale_min_pairs(|k| if k < count { xb[k].scale_bits() } else { 0 });
                    let lanes = _mm256_cmpgt_epi32(
                        _mm256_set1_epi32(count as i32),
                        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                    );
                    for t in 0..N {
                        let load = |v: &[f32]| {
                            if count == 8 {
                                // SAFETY: `v` holds `n` values (asserted), 8 of them from
                                // `first`.
                                unsafe { _mm256_loadu_ps(v.as_ptr().add(first)) }
                            } else {
                                // SAFETY: `v` holds `n` values; the mask reads only the
                                // `count` of them from `first`.
                                unsafe { _mm256_maskload_ps(v.as_ptr().add(first), lanes) }
                            }
                        };
                        let mut s = _mm256_cvtepi32_ps(sums[t]);
                        if offset::<W>() {
                            s = _mm256_sub_ps(s, load(aux[t]));
                        }
                        acc[t] = _mm256_fmadd_ps(s, _mm256_mul_ps(dw, load(da[t])), acc[t]);
                        if !W::SIGNED {
                            macc[t] = _mm256_fmadd_ps(mw, load(aux[t]), macc[t]);
                        }
                    }
                }};
            }
            let groups = n / 8;
            for g in 0..groups {
                group!(g * 8, 8);
            }
            if n % 8 != 0 {
                group!(groups * 8, n % 8);
            }
            std::array::from_fn(|t| {
                if W::SIGNED { hsum_ps(acc[t]) } else { hsum_ps(acc[t]) + hsum_ps(macc[t]) }
            })
        }
    };
}

block32_fast!(
    /// The fast dot of one weight row with `N` activation rows, AVX2.
    dot_fast_avx2,
    dot_fast_rows_avx2,
    "avx2,fma,f16c",
    mul_sum_avx2
);
block32_fast!(
    /// The fast dot of one weight row with `N` activation rows, AVX-512 VNNI on 256-bit
    /// vectors (`vpdpbusd` in place of `maddubs` + `madd`).
    dot_fast_vnni,
    dot_fast_rows_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    mul_sum_vnni
);
