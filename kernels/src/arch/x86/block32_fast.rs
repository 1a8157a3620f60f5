//! Fast-numerics dots of the 32-element block types with Q8_0/Q8_1 activations, for one to
//! four activation rows (decode and a few streams).
//!
//! The exact kernels ([`super::block32`]) turn every block's integer sum into a float and
//! add it to one accumulator, as ggml does: about nineteen instructions a block and a chain
//! of dependent additions. Here eight blocks are reduced together: their integer sums are
//! folded by horizontal additions into one vector of eight block sums, converted once,
//! multiplied by the eight weight scales (one `vcvtph2ps`) and the eight activation scales
//! (converted to f32 once per product, see [`crate::matmul`]), and added in one fused
//! multiply-add. The blocks' results are the same numbers; only the order of the float
//! additions differs, so the result is within a few ulps of the exact dot, not equal to it.

use std::arch::x86_64::*;

use super::block32::{Act32, Block32, f16_to_f32, hsum_ps, mul_sum_avx2, mul_sum_vnni};

/// The f16 scales of eight blocks as f32, and their minimums (zero for the types without
/// one). The bits are packed in general registers first, two blocks' `scale_bits` to a
/// 64-bit word: the shifts and ors run beside the vector work, where sixteen `pinsrw`
/// would compete with it for the shuffle port. One byte shuffle puts the scales before
/// the minimums, one lane permute joins the halves.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn scale_min_pairs<W: Block32>(xb: &[W]) -> (__m256, __m256) {
    let pair = |k: usize| {
        u64::from(xb[2 * k].scale_bits()) | (u64::from(xb[2 * k + 1].scale_bits()) << 32)
    };
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

/// The activations' `d * sum(q)` enters the dot: times the minimum (Q4_1, Q5_1) or times
/// `-offset * d` (Q4_0, Q5_0), which takes the offset of the stored values back out.
const fn reads_sums<W: Block32>() -> bool {
    !sign_trick::<W>()
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
            sa: &[f32],
            out: &mut [f32],
        ) {
            let per_row = y.len();
            assert_eq!(x.len(), out.len() * per_row);
            for (row, o) in x.chunks_exact(per_row.max(1)).zip(out.iter_mut()) {
                *o = $name::<W, A, 1>(row, [y], [da], [sa])[0];
            }
            if per_row == 0 {
                out.fill(0.0);
            }
        }

        $(#[$doc])*
        ///
        /// `da[t]` holds the f32 scale of each block of `ys[t]`; `sa[t]` its `d * sum(q)`
        /// (read for the weight types with a minimum or an offset).
        #[target_feature(enable = $features)]
        #[inline]
        pub(crate) fn $name<W: Block32, A: Act32, const N: usize>(
            x: &[W],
            ys: [&[A]; N],
            da: [&[f32]; N],
            sa: [&[f32]; N],
        ) -> [f32; N] {
            let n = x.len();
            assert!(ys.iter().all(|y| y.len() == n) && da.iter().all(|d| d.len() == n));
            assert!(!reads_sums::<W>() || sa.iter().all(|s| s.len() == n));
            let mut acc = [_mm256_setzero_ps(); N];
            let mut macc = [_mm256_setzero_ps(); N];
            let mut tail_min = [0.0f32; N];
            let groups = n / 8;
            for g in 0..groups {
                let xb = &x[g * 8..g * 8 + 8];
                super::prefetch_ahead(xb.as_ptr(), size_of::<[W; 8]>());
                let mut quads = [[_mm256_setzero_si256(); 2]; N];
                for (half, quad) in [0usize, 4].into_iter().enumerate() {
                    let mut s = [[_mm256_setzero_si256(); 4]; N];
                    for k in 0..4 {
                        let b = quad + k;
                        // SAFETY: this function's target features include AVX2, FMA and F16C.
                        let (u, q) = unsafe { unsigned::<W>(&xb[b]) };
                        for t in 0..N {
                            // SAFETY: as above.
                            let a = unsafe { ys[t][g * 8 + b].quants() };
                            let a = if sign_trick::<W>() { _mm256_sign_epi8(a, q) } else { a };
                            s[t][k] = $mul_sum(u, a);
                        }
                    }
                    for t in 0..N {
                        quads[t][half] = fold4(s[t]);
                    }
                }
                // What multiplies the activations' `d * sum(q)`: the minimum, or -offset * d.
                let (dw, mw) = scale_min_pairs(xb);
                let mw = if W::SIGNED { _mm256_mul_ps(dw, _mm256_set1_ps(-(W::OFFSET as f32))) } else { mw };
                for t in 0..N {
                    let [q0, q1] = quads[t];
                    let lo = _mm256_permute2x128_si256::<0x20>(q0, q1);
                    let hi = _mm256_permute2x128_si256::<0x31>(q0, q1);
                    let sums = _mm256_cvtepi32_ps(_mm256_add_epi32(lo, hi));
                    // SAFETY: `da[t]` holds `n` scales (asserted), so 8 from `g * 8` exist.
                    let d = unsafe { _mm256_loadu_ps(da[t].as_ptr().add(g * 8)) };
                    acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, d), sums, acc[t]);
                    if reads_sums::<W>() {
                        // SAFETY: as for `da`, `sa[t]` holds `n` values.
                        let s = unsafe { _mm256_loadu_ps(sa[t].as_ptr().add(g * 8)) };
                        macc[t] = _mm256_fmadd_ps(mw, s, macc[t]);
                    }
                }
            }
            // Four more blocks folded together, in 128-bit lanes (rows of 20 blocks, as in
            // Gemma 3, would otherwise take a fifth of their blocks one at a time).
            let mut acc4 = [_mm_setzero_ps(); N];
            let mut macc4 = [_mm_setzero_ps(); N];
            let mut rest = groups * 8;
            if n - rest >= 4 {
                let xb = &x[rest..rest + 4];
                let mut s = [[_mm256_setzero_si256(); 4]; N];
                for (k, block) in xb.iter().enumerate() {
                    // SAFETY: as above.
                    let (u, q) = unsafe { unsigned::<W>(block) };
                    for t in 0..N {
                        // SAFETY: as above.
                        let a = unsafe { ys[t][rest + k].quants() };
                        let a = if sign_trick::<W>() { _mm256_sign_epi8(a, q) } else { a };
                        s[t][k] = $mul_sum(u, a);
                    }
                }
                let halves = |shift: u32| {
                    (0..4).fold(0u64, |word, k| {
                        word | (u64::from((xb[k].scale_bits() >> shift) as u16) << (16 * k))
                    })
                };
                let dw = _mm_cvtph_ps(_mm_cvtsi64_si128(halves(0) as i64));
                let mw = if !W::SIGNED {
                    _mm_cvtph_ps(_mm_cvtsi64_si128(halves(16) as i64))
                } else {
                    _mm_mul_ps(dw, _mm_set1_ps(-(W::OFFSET as f32)))
                };
                for t in 0..N {
                    let quad = fold4(s[t]);
                    let sums = _mm_cvtepi32_ps(_mm_add_epi32(
                        _mm256_castsi256_si128(quad),
                        _mm256_extracti128_si256::<1>(quad),
                    ));
                    // SAFETY: `da[t]` holds `n` scales, so 4 from `rest` exist.
                    let d = unsafe { _mm_loadu_ps(da[t].as_ptr().add(rest)) };
                    acc4[t] = _mm_fmadd_ps(_mm_mul_ps(dw, d), sums, acc4[t]);
                    if reads_sums::<W>() {
                        // SAFETY: as for `da`.
                        let sa4 = unsafe { _mm_loadu_ps(sa[t].as_ptr().add(rest)) };
                        macc4[t] = _mm_fmadd_ps(mw, sa4, macc4[t]);
                    }
                }
                rest += 4;
            }
            for t in 0..N {
                acc[t] = _mm256_add_ps(acc[t], _mm256_zextps128_ps256(acc4[t]));
                macc[t] = _mm256_add_ps(macc[t], _mm256_zextps128_ps256(macc4[t]));
            }
            for b in rest..n {
                let bits = x[b].scale_bits();
                let dw = f16_to_f32(half::f16::from_bits(bits as u16));
                // SAFETY: as above.
                let (u, q) = unsafe { unsigned::<W>(&x[b]) };
                let mw = if W::SIGNED {
                    -(W::OFFSET as f32) * dw
                } else {
                    f16_to_f32(half::f16::from_bits((bits >> 16) as u16))
                };
                for t in 0..N {
                    // SAFETY: as above.
                    let a = unsafe { ys[t][b].quants() };
                    let a = if sign_trick::<W>() { _mm256_sign_epi8(a, q) } else { a };
                    let sums = _mm256_cvtepi32_ps($mul_sum(u, a));
                    acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * da[t][b]), sums, acc[t]);
                    if reads_sums::<W>() {
                        tail_min[t] += mw * sa[t][b];
                    }
                }
            }
            std::array::from_fn(|t| {
                let min_term = if reads_sums::<W>() { hsum_ps(macc[t]) + tail_min[t] } else { 0.0 };
                hsum_ps(acc[t]) + min_term
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
