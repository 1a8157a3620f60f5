//! Dot products of the 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL)
//! with Q8_0/Q8_1 activations, for one to four activation rows at a time.
//!
//! Each weight block is decoded once into 32 8-bit quants in a 256-bit register, then
//! multiplied with the block of every activation row: so a tile of N activation rows reads
//! and decodes each weight block once. The float additions are ggml's, in its order (see
//! [`crate::dot::scalar`]): the scalar twins give the same bits. The multiply is `maddubs` + `madd` on AVX2 and one
//! `vpdpbusd` on AVX-512 VNNI; both need an unsigned left operand, so signed quants use
//! the sign trick (|w| times a·sign(w)).

use std::arch::x86_64::*;

use crate::blocks::{BlockIQ4NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};
use crate::dot::scalar_fast::FastBlock;
use crate::quant::KVALUES_IQ4NL;

/// f16 bits to f32 with F16C.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn f16_to_f32(h: half::f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h.to_bits()))))
}

/// Sum of the eight lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// 16 packed nibbles as 32 bytes: low nibbles (elements 0..16) then high nibbles.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn nibbles(qs: &[u8; 16]) -> __m256i {
    // SAFETY: reads exactly the 16 bytes of `qs`; `loadu` needs no alignment.
    let packed = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    // Both halves hold the 16 bytes; the high half's shift by 4 brings its high nibbles down.
    let both = _mm256_srlv_epi64(
        _mm256_broadcastsi128_si256(packed),
        _mm256_set_epi64x(4, 4, 0, 0),
    );
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// Bit `j` of the 32-bit `qh` as byte `j`: 0xff when set, 0 when clear.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn bits_to_bytes(qh: &[u8; 4]) -> __m256i {
    let word = _mm256_set1_epi32(i32::from_le_bytes(*qh));
    // Byte j takes byte j / 8 of the word, then keeps bit j % 8.
    let spread = _mm256_shuffle_epi8(
        word,
        _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        ),
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit)
}

/// A weight block of 32 elements, decoded into one register.
pub(crate) trait Block32: Copy + FastBlock {
    /// Signed quants (the dot uses the sign trick); otherwise unsigned with a minimum.
    const SIGNED: bool;
    /// Bits of the unsigned values the products take (after the sign trick for the
    /// signed types without an offset): how many `maddubs` results fit an i16 sum.
    const RAW_BITS: u32 = 8;
    /// The stored unsigned values (`quants() + OFFSET`, [`FastBlock::OFFSET`]), for the
    /// types with an offset.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    unsafe fn raw_quants(&self) -> __m256i {
        // SAFETY: the caller's contract is this one's.
        unsafe { self.quants() }
    }
    /// The 32 quants, element `j` in byte `j`.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    unsafe fn quants(&self) -> __m256i;
    /// The f16 bits of the scale (low half) and the minimum (high half, 0 when none).
    fn scale_bits(&self) -> u32;
}

/// An activation block of 32 elements.
pub(crate) trait Act32: Copy {
    /// The 32 quants.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    unsafe fn quants(&self) -> __m256i;
    /// Quants `4k..4k + 4` as one little-endian word, to broadcast (`k < 8`).
    fn quant_word(&self, k: usize) -> i32;
    /// The f16 bits of the scale (low half) and of `d * sum(quants)` (high half; Q8_1
    /// only, 0 for Q8_0).
    fn scale_bits(&self) -> u32;
}

impl Block32 for BlockQ4_0 {
    const RAW_BITS: u32 = 4;
    const SIGNED: bool = true;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn raw_quants(&self) -> __m256i {
        nibbles(&self.qs)
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn quants(&self) -> __m256i {
        _mm256_sub_epi8(nibbles(&self.qs), _mm256_set1_epi8(8))
    }
    fn scale_bits(&self) -> u32 {
        u32::from(self.d.to_bits())
    }
}

impl Block32 for BlockQ4_1 {
    const RAW_BITS: u32 = 4;
    const SIGNED: bool = false;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn quants(&self) -> __m256i {
        nibbles(&self.qs)
    }
    fn scale_bits(&self) -> u32 {
        u32::from(self.d.to_bits()) | (u32::from(self.m.to_bits()) << 16)
    }
}

impl Block32 for BlockQ5_0 {
    const RAW_BITS: u32 = 5;
    const SIGNED: bool = true;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn raw_quants(&self) -> __m256i {
        let high = _mm256_and_si256(bits_to_bytes(&self.qh), _mm256_set1_epi8(0x10));
        _mm256_or_si256(nibbles(&self.qs), high)
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn quants(&self) -> __m256i {
        // q - 16 + 16 * bit: a clear fifth bit sets the high nibble (0xf0 | q == q - 16).
        let clear = _mm256_andnot_si256(bits_to_bytes(&self.qh), _mm256_set1_epi8(0xf0_u8 as i8));
        _mm256_or_si256(nibbles(&self.qs), clear)
    }
    fn scale_bits(&self) -> u32 {
        u32::from(self.d.to_bits())
    }
}

impl Block32 for BlockQ5_1 {
    const RAW_BITS: u32 = 5;
    const SIGNED: bool = false;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn quants(&self) -> __m256i {
        let high = _mm256_and_si256(bits_to_bytes(&self.qh), _mm256_set1_epi8(0x10));
        _mm256_or_si256(nibbles(&self.qs), high)
    }
    fn scale_bits(&self) -> u32 {
        u32::from(self.d.to_bits()) | (u32::from(self.m.to_bits()) << 16)
    }
}

impl Block32 for BlockQ8_0 {
    const SIGNED: bool = true;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn quants(&self) -> __m256i {
        // SAFETY: reads exactly the 32 bytes of `qs`; `loadu` needs no alignment.
        unsafe { _mm256_loadu_si256(self.qs.as_ptr().cast()) }
    }
    fn scale_bits(&self) -> u32 {
        u32::from(self.d.to_bits())
    }
}

impl Block32 for BlockIQ4NL {
    const SIGNED: bool = true;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn quants(&self) -> __m256i {
        let table = i128::from_le_bytes(KVALUES_IQ4NL.map(|v| v as u8));
        let table = _mm256_set_epi64x(
            (table >> 64) as i64,
            table as i64,
            (table >> 64) as i64,
            table as i64,
        );
        _mm256_shuffle_epi8(table, nibbles(&self.qs))
    }
    fn scale_bits(&self) -> u32 {
        u32::from(self.d.to_bits())
    }
}

impl Act32 for BlockQ8_0 {
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn quants(&self) -> __m256i {
        // SAFETY: reads exactly the 32 bytes of `qs`.
        unsafe { _mm256_loadu_si256(self.qs.as_ptr().cast()) }
    }
    fn quant_word(&self, k: usize) -> i32 {
        let q = &self.qs[4 * k..4 * k + 4];
        i32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8])
    }
    fn scale_bits(&self) -> u32 {
        u32::from(self.d.to_bits())
    }
}

impl Act32 for BlockQ8_1 {
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn quants(&self) -> __m256i {
        // SAFETY: reads exactly the 32 bytes of `qs`.
        unsafe { _mm256_loadu_si256(self.qs.as_ptr().cast()) }
    }
    fn quant_word(&self, k: usize) -> i32 {
        let q = &self.qs[4 * k..4 * k + 4];
        i32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8])
    }
    fn scale_bits(&self) -> u32 {
        u32::from(self.d.to_bits()) | (u32::from(self.s.to_bits()) << 16)
    }
}

/// `maddubs` + `madd`: eight i32 sums of four u8 x i8 products.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn mul_sum_avx2(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// `vpdpbusd`: eight i32 sums of four u8 x i8 products.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(super) fn mul_sum_vnni(u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
}

/// `[d, m]` of a weight block and `[d, s]` of an activation block as f32:
/// `[d, m, d', s]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn scales(w: u32, a: u32) -> __m128 {
    _mm_cvtph_ps(_mm_set_epi32(0, 0, a as i32, w as i32))
}

macro_rules! block32_dot {
    ($(#[$doc:meta])* $name:ident, $features:literal, $mul_sum:ident) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        pub(crate) fn $name<W: Block32, A: Act32, const N: usize>(
            x: &[W],
            ys: [&[A]; N],
        ) -> [f32; N] {
            assert!(ys.iter().all(|y| y.len() == x.len()));
            let mut acc = [_mm256_setzero_ps(); N];
            let mut mins = [_mm_setzero_ps(); N];
            for (i, xb) in x.iter().enumerate() {
                if i % 8 == 0 {
                    super::prefetch_ahead(xb, size_of::<[W; 8]>());
                }
                // SAFETY: this function's target features include AVX2, FMA and F16C.
                let q = unsafe { xb.quants() };
                let u = if W::SIGNED { _mm256_sign_epi8(q, q) } else { q };
                let w_bits = xb.scale_bits();
                for t in 0..N {
                    let yb = &ys[t][i];
                    // SAFETY: as above.
                    let a = unsafe { yb.quants() };
                    let a = if W::SIGNED { _mm256_sign_epi8(a, q) } else { a };
                    let sums = _mm256_cvtepi32_ps($mul_sum(u, a));
                    let both = scales(w_bits, yb.scale_bits());
                    let partner = _mm_movehl_ps(both, both);
                    let d = _mm_mul_ss(both, partner);
                    acc[t] = _mm256_fmadd_ps(_mm256_broadcastss_ps(d), sums, acc[t]);
                    if !W::SIGNED {
                        // Lane 1: `summs = fma(m, s, summs)`, as GCC compiles ggml's loop.
                        mins[t] = _mm_fmadd_ps(both, partner, mins[t]);
                    }
                }
            }
            std::array::from_fn(|t| {
                let min_term = if W::SIGNED { 0.0 } else { _mm_cvtss_f32(_mm_movehdup_ps(mins[t])) };
                hsum_ps(acc[t]) + min_term
            })
        }
    };
}

block32_dot!(
    /// The dot of one weight row with `N` activation rows, AVX2.
    dot_avx2,
    "avx2,fma,f16c",
    mul_sum_avx2
);
block32_dot!(
    /// The dot of one weight row with `N` activation rows, AVX-512 VNNI on 256-bit vectors
    /// (one block at a time, so the additions keep ggml's order).
    dot_vnni_256,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    mul_sum_vnni
);

/// The dot of one weight row with `N` activation rows, AVX-512 VNNI: two activation rows
/// share a 512-bit register (one in each half, against the same weight block), so each
/// half adds exactly as [`dot_vnni_256`] does for its row while one `vpdpbusd` serves
/// both. An odd last row goes through [`dot_vnni_256`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_vnni_pairs<W: Block32, A: Act32, const N: usize>(
    x: &[W],
    ys: [&[A]; N],
) -> [f32; N] {
    assert!(ys.iter().all(|y| y.len() == x.len()));
    let pairs = N / 2;
    let mut acc = [_mm512_setzero_ps(); N];
    // Per pair: lanes 1 and 3 hold the two rows' running min terms.
    let mut mins = [_mm_setzero_ps(); N];
    // Lane 0 of a pair's scale products to the low half, lane 2 to the high half.
    let spread = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    for (i, xb) in x.iter().enumerate() {
        if i % 8 == 0 {
            super::prefetch_ahead(xb, size_of::<[W; 8]>());
        }
        // SAFETY: this function's target features include AVX2, FMA and F16C.
        let q = unsafe { xb.quants() };
        let q = _mm512_broadcast_i64x4(q);
        let (u, negative) = if W::SIGNED {
            (_mm512_abs_epi8(q), _mm512_movepi8_mask(q))
        } else {
            (q, 0)
        };
        // [d, m, d, m] of the weight block.
        let w = _mm_cvtph_ps(_mm_set1_epi32(xb.scale_bits() as i32));
        for p in 0..pairs {
            let (y0, y1) = (&ys[2 * p][i], &ys[2 * p + 1][i]);
            // SAFETY: as above.
            let (a0, a1) = unsafe { (y0.quants(), y1.quants()) };
            let a = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a0), a1);
            let a = _mm512_mask_sub_epi8(a, negative, _mm512_setzero_si512(), a);
            let sums = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, a));
            // [d', s'] of both activation blocks; the products are each row's d·d' (lanes
            // 0 and 2) and m·s' (lanes 1 and 3), rounded as the one-row kernels do.
            let ys = _mm_cvtph_ps(_mm_set_epi32(
                0,
                0,
                y1.scale_bits() as i32,
                y0.scale_bits() as i32,
            ));
            let d = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_mul_ps(w, ys)));
            acc[p] = _mm512_fmadd_ps(d, sums, acc[p]);
            if !W::SIGNED {
                mins[p] = _mm_fmadd_ps(w, ys, mins[p]);
            }
        }
    }
    let last: [f32; 1] = if N % 2 == 1 {
        dot_vnni_256(x, [ys[N - 1]])
    } else {
        [0.0]
    };
    std::array::from_fn(|t| {
        if t == N - 1 && N % 2 == 1 {
            return last[0];
        }
        let v = acc[t / 2];
        let half = if t % 2 == 0 {
            _mm512_castps512_ps256(v)
        } else {
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)))
        };
        let min_term = if W::SIGNED {
            0.0
        } else {
            let m = mins[t / 2];
            let lane = if t % 2 == 0 {
                _mm_movehdup_ps(m)
            } else {
                _mm_permute_ps::<0b11_11_11_11>(m)
            };
            _mm_cvtss_f32(lane)
        };
        hsum_ps(half) + min_term
    })
}
