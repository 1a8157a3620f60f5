//! Fast-numerics dots of eight weight rows at once, one row in each lane, with one to a
//! few activation rows, in the order [`crate::dot::scalar_fast`] defines: every product
//! over weights repacked at load ([`crate::repack`]), and decode steps of several streams
//! over rows as the file stores them.
//!
//! The one-row kernels ([`super::block32_fast`]) fold each block's 32 products across a
//! register with horizontal additions, once per activation row. Here lane `j` holds row
//! `j`'s four bytes `4k..4k + 4` in register `k`, and each activation row's four bytes
//! are broadcast against them: a block's integer sums for the eight rows come out in the
//! lanes, with no horizontal work. Repacked weights load in that form; rows as stored
//! are transposed per block (shared by the activation rows). Lane `j` of partial sum
//! `b mod 8` is row `j`'s partial, so the eight partials of the definition are eight
//! registers, added at the end in its tree, vertically.

use std::arch::x86_64::*;

use super::block32::{Act32, Block32};
use super::block32_lanes::tree8;
use crate::repack::{Packed8, Rows8Q4_0, Rows8Q4_1, Rows8Q5_0, Rows8Q8_0};

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

/// Where the eight rows' blocks come from: rows as the file stores them, transposed per
/// block, or rows repacked at load ([`crate::repack`]), whose registers load as they are.
pub(crate) trait Rows8Source<W: Block32> {
    /// Blocks per row.
    fn blocks(&self) -> usize;
    /// The address of block `b`'s bytes, for the prefetch.
    fn at(&self, b: usize) -> *const u8;
    /// Block `b`'s quant words (register `k`, lane `j`: row `j`'s quants `4k..4k + 4`,
    /// signed for the sign-trick types, else the stored unsigned values) and the eight
    /// scales and minimums (zero for the types without one).
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    unsafe fn block(&self, b: usize) -> ([__m256i; 8], __m256, __m256);
}

/// Eight rows as the file stores them.
pub(crate) struct Transposed<'a, W>(pub(crate) [&'a [W]; ROWS]);

impl<W: Block32> Rows8Source<W> for Transposed<'_, W> {
    fn blocks(&self) -> usize {
        self.0[0].len()
    }
    fn at(&self, b: usize) -> *const u8 {
        std::ptr::from_ref(&self.0[0][b]).cast()
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn block(&self, b: usize) -> ([__m256i; 8], __m256, __m256) {
        let blocks = self.0.map(|r| &r[b]);
        let words = transpose8(blocks.map(|w| {
            // SAFETY: this function's target features include AVX2, FMA and F16C.
            unsafe {
                if W::SIGNED && W::OFFSET == 0 {
                    w.quants()
                } else {
                    w.raw_quants()
                }
            }
        }));
        let (d, m) = scales(blocks);
        (words, d, m)
    }
}

/// A group of eight rows repacked at load: block `b` of the group is `self.0[b]`.
pub(crate) struct Packed<'a, P>(pub(crate) &'a [P]);

/// The eight nibble words of a packed Q4_0/Q4_1 block's four registers: low nibbles are
/// words `0..4`, high nibbles words `4..8`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn nibble_words(qs: &[[u8; 4]; 32]) -> [__m256i; 8] {
    let mask = _mm256_set1_epi8(0x0f);
    // SAFETY: register `m` reads the 32 bytes `qs[8m..8m + 8]`, inside `qs`.
    let v: [__m256i; 4] =
        std::array::from_fn(|m| unsafe { _mm256_loadu_si256(qs[8 * m..].as_ptr().cast()) });
    std::array::from_fn(|k| {
        if k < 4 {
            _mm256_and_si256(v[k], mask)
        } else {
            _mm256_and_si256(_mm256_srli_epi16::<4>(v[k - 4]), mask)
        }
    })
}

/// Eight f16 values as f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn halves(h: &[half::f16; ROWS]) -> __m256 {
    // SAFETY: reads the 16 bytes of `h`.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(h.as_ptr().cast()) })
}

/// A packed block's registers, as [`Rows8Source::block`] gives them.
pub(crate) trait PackedWords: Packed8<Block: Block32> {
    /// The quant words, scales and minimums of this block of eight rows.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    unsafe fn words(&self) -> ([__m256i; 8], __m256, __m256);
}

impl PackedWords for Rows8Q4_0 {
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn words(&self) -> ([__m256i; 8], __m256, __m256) {
        (nibble_words(&self.qs), halves(&self.d), _mm256_setzero_ps())
    }
}

impl PackedWords for Rows8Q4_1 {
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn words(&self) -> ([__m256i; 8], __m256, __m256) {
        (nibble_words(&self.qs), halves(&self.d), halves(&self.m))
    }
}

impl PackedWords for Rows8Q5_0 {
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn words(&self) -> ([__m256i; 8], __m256, __m256) {
        // SAFETY: reads the 32 bytes of `qh`.
        let qh = unsafe { _mm256_loadu_si256(self.qh.as_ptr().cast()) };
        let fifth = _mm256_set1_epi8(0x10);
        let nibbles = nibble_words(&self.qs);
        // Word `k`'s fifth bits are bit `k` of each byte: moved to bit 4 (a 16-bit shift
        // keeps each byte's bit 4 within its byte for shifts of at most 4).
        let bits = |k: usize| match k {
            0 => _mm256_slli_epi16::<4>(qh),
            1 => _mm256_slli_epi16::<3>(qh),
            2 => _mm256_slli_epi16::<2>(qh),
            3 => _mm256_slli_epi16::<1>(qh),
            4 => qh,
            5 => _mm256_srli_epi16::<1>(qh),
            6 => _mm256_srli_epi16::<2>(qh),
            _ => _mm256_srli_epi16::<3>(qh),
        };
        let words =
            std::array::from_fn(|k| _mm256_or_si256(nibbles[k], _mm256_and_si256(bits(k), fifth)));
        (words, halves(&self.d), _mm256_setzero_ps())
    }
}

impl PackedWords for Rows8Q8_0 {
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn words(&self) -> ([__m256i; 8], __m256, __m256) {
        // SAFETY: register `k` reads the 32 bytes `qs[8k..8k + 8]`, inside `qs`.
        let words = std::array::from_fn(|k| unsafe {
            _mm256_loadu_si256(self.qs[8 * k..].as_ptr().cast())
        });
        (words, halves(&self.d), _mm256_setzero_ps())
    }
}

impl<P: PackedWords> Rows8Source<P::Block> for Packed<'_, P> {
    fn blocks(&self) -> usize {
        self.0.len()
    }
    fn at(&self, b: usize) -> *const u8 {
        std::ptr::from_ref(&self.0[b]).cast()
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn block(&self, b: usize) -> ([__m256i; 8], __m256, __m256) {
        // SAFETY: the caller's contract is this one's.
        unsafe { self.0[b].words() }
    }
}

/// One block's products of the eight rows' words `unsigned` (signed `words` for the sign
/// trick) with an activation block: into the i32 sums directly (VNNI), or through the i16
/// sums of `maddubs`, as many as cannot overflow (AVX2). Either way the sum is exact.
macro_rules! block_sums {
    (true, $w:ty, $words:expr, $unsigned:expr, $y:expr) => {{
        let (words, unsigned, y) = ($words, $unsigned, $y);
        let mut acc = _mm256_setzero_si256();
        for k in 0..8 {
            let a = _mm256_set1_epi32(y.quant_word(k));
            let a = if sign_trick::<$w>() && !biased::<$w>(true) {
                _mm256_sign_epi8(a, words[k])
            } else {
                a
            };
            acc = _mm256_dpbusd_epi32(acc, unsigned[k], a);
        }
        acc
    }};
    (false, $w:ty, $words:expr, $unsigned:expr, $y:expr) => {{
        let (words, unsigned, y) = ($words, $unsigned, $y);
        // How many i16 `maddubs` sums add without overflow: 8·2·15·127 and 4·2·31·127 stay
        // below 2^15; 8-bit magnitudes take one each.
        let per_madd = match <$w>::RAW_BITS {
            4 => 8,
            5 => 4,
            _ => 1,
        };
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_si256();
        let mut k = 0;
        while k < 8 {
            let mut p16 = _mm256_setzero_si256();
            for kk in k..k + per_madd {
                let a = _mm256_set1_epi32(y.quant_word(kk));
                let a = if sign_trick::<$w>() {
                    _mm256_sign_epi8(a, words[kk])
                } else {
                    a
                };
                p16 = _mm256_add_epi16(p16, _mm256_maddubs_epi16(unsigned[kk], a));
            }
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p16, ones));
            k += per_madd;
        }
        acc
    }};
}

/// Signed quants without an offset (Q8_0, IQ4_NL) multiply by the sign trick, except
/// where [`biased`].
const fn sign_trick<W: Block32>() -> bool {
    W::SIGNED && W::OFFSET == 0
}

/// Whether the VNNI kernels multiply `W`'s quants plus [`crate::dot::scalar_fast::FastBlock::VNNI_BIAS`] as
/// unsigned bytes (Q8_0), instead of the sign trick.
const fn biased<W: Block32>(vnni: bool) -> bool {
    vnni && W::VNNI_BIAS != 0
}

/// Whether a block's integer sum has the activation's second term taken out: the offset
/// types' `OFFSET·Σa`, or the biased ones' `VNNI_BIAS·Σa`.
const fn less_aux<W: Block32>(vnni: bool) -> bool {
    (W::SIGNED && W::OFFSET != 0) || biased::<W>(vnni)
}

macro_rules! rows8 {
    ($(#[$doc:meta])* $name:ident, $features:literal, $vnni:tt) => {
        $(#[$doc])*
        ///
        /// Element `t` lane `j` is row `j`'s dot with `ys[t]`, the bits of
        /// [`crate::dot::scalar_fast::dot_fast`]. `da[t]` holds the f32 scale of each block
        /// of `ys[t]`; `aux[t]` its second term
        /// ([`crate::dot::scalar_fast::act_terms`]), read for the weight types with a
        /// minimum or an offset.
        #[target_feature(enable = $features)]
        pub(crate) fn $name<W: Block32, A: Act32, S: Rows8Source<W>, const N: usize>(
            rows: &S,
            ys: [&[A]; N],
            da: [&[f32]; N],
            aux: [&[f32]; N],
        ) -> [[f32; ROWS]; N] {
            let n = rows.blocks();
            assert!(ys.iter().all(|y| y.len() == n) && da.iter().all(|d| d.len() == n));
            assert!(
                (sign_trick::<W>() && !biased::<W>($vnni)) || aux.iter().all(|s| s.len() == n)
            );
            let mut p = [[_mm256_setzero_ps(); 8]; N];
            let mut m = [[_mm256_setzero_ps(); 8]; N];
            for b in 0..n {
                let j = b % 8;
                super::prefetch_ahead(rows.at(b), size_of::<W>() * ROWS);
                // SAFETY: this function's target features include AVX2, FMA and F16C.
                let (words, dw, mw) = unsafe { rows.block(b) };
                let unsigned = if biased::<W>($vnni) {
                    words.map(|q| _mm256_xor_si256(q, _mm256_set1_epi8(i8::MIN)))
                } else if sign_trick::<W>() {
                    words.map(|q| _mm256_sign_epi8(q, q))
                } else {
                    words
                };
                for t in 0..N {
                    let y = &ys[t][b];
                    let acc = block_sums!($vnni, W, &words, &unsigned, y);
                    let mut s = _mm256_cvtepi32_ps(acc);
                    if less_aux::<W>($vnni) {
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
    };
}

rows8!(
    /// The fast dots of eight weight rows with `N` activation rows, AVX2.
    dot_rows8_avx2,
    "avx2,fma,f16c",
    false
);
rows8!(
    /// The fast dots of eight weight rows with `N` activation rows, AVX-512 VNNI on
    /// 256-bit vectors (`vpdpbusd` in place of `maddubs` + `madd`).
    dot_rows8_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    true
);
