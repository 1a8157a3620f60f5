//! AVX-512 VNNI dots of Q4_0, Q4_1 and Q5_0 weights for [`crate::matmul`]: a group of
//! whole blocks is read with one 64-byte load (two for Q5_0), against activations that
//! [`pack`] lays out once per product to match those bytes.
//!
//! Q4_0 and Q4_1 (three blocks per load) are split into their low and high nibbles in
//! place: element `j` and `16 + j` of block `k` sit at byte `k * size + qs + j` of the two
//! registers, and the scale bytes around them (and the next blocks' bytes at the end)
//! meet zero activations, so two `vpdpbusd` give every block's integer sums without
//! moving a weight byte. Q5_0 (four blocks from two loads) first gathers its packed
//! bytes with one two-source word permute and adds its fifth bits through byte masks.
//! The weight scales come from the loaded bytes with one word permute and one
//! conversion. The offset of the signed types (-8, -16) is folded into the integer start
//! of each block's lanes (`-offset * sum(a)`), and the Q4_1 minimum term `m * s` rides
//! in a lane that holds no quants, so each group ends in one multiply and one FMA per
//! activation row.
//!
//! Full loads may read past the group into later blocks of the same row; only the last
//! group of a row uses a masked load (masked loads are slow when the bytes they leave out
//! lie in a page the TLB does not hold).

use std::arch::x86_64::*;

use crate::arch::cast::{Pod, as_bytes};
use crate::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ8_0, BlockQ8_1};

/// The activations of one group of weight blocks, laid out to match the weight bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
pub struct ActGroup {
    /// Elements 0..16 of each block, at the bytes of the block's packed quants.
    lo: [i8; 64],
    /// Elements 16..32 of each block, at the same bytes.
    hi: [i8; 64],
    /// Integer start of each lane: `-offset * sum(a)` in a lane of each block, or 1 in
    /// the lane of the Q4_1 minimum.
    init: [i32; 16],
    /// Activation scale of each lane (`d` of its block, `s` in the Q4_1 minimum lane).
    scale: [f32; 16],
}

impl Default for ActGroup {
    fn default() -> Self {
        Self {
            lo: [0; 64],
            hi: [0; 64],
            init: [0; 16],
            scale: [0.0; 16],
        }
    }
}

/// A weight block type the packed kernel reads.
pub(crate) trait Packed: Pod {
    /// Blocks per group: one 64-byte load, or two for blocks with fifth bits.
    const PER_LOAD: usize;
    /// Byte offset of the 16 packed nibbles in a block.
    const QS: usize;
    /// Subtracted from each quant (8 for Q4_0, 16 for Q5_0, 0 for Q4_1).
    const OFFSET: i32;
    /// The block has a minimum `m` right after `d` (Q4_1).
    const MIN: bool;
    /// The block has 32 fifth bits (Q5_0). A group is then four blocks from two loads
    /// of two blocks each, and a two-source word permute gathers the 16 packed bytes of
    /// block `k` to bytes `16k..16k + 16`, which are split into nibbles there; the fifth
    /// bits come in as byte masks built from `qh`.
    const FIFTH_BIT: bool;
}

impl Packed for BlockQ4_0 {
    const PER_LOAD: usize = 3;
    const QS: usize = 2;
    const OFFSET: i32 = 8;
    const MIN: bool = false;
    const FIFTH_BIT: bool = false;
}

impl Packed for BlockQ4_1 {
    const PER_LOAD: usize = 3;
    const QS: usize = 4;
    const OFFSET: i32 = 0;
    const MIN: bool = true;
    const FIFTH_BIT: bool = false;
}

impl Packed for BlockQ5_0 {
    const PER_LOAD: usize = 4;
    const QS: usize = 6;
    const OFFSET: i32 = 16;
    const MIN: bool = false;
    const FIFTH_BIT: bool = true;
}

/// Lanes (i32, 0..16) holding the quants of block `k` of a load: `first..=last`.
const fn quant_lanes<W: Packed>(k: usize) -> (usize, usize) {
    if W::FIFTH_BIT {
        return (4 * k, 4 * k + 3);
    }
    let off = k * size_of::<W>() + W::QS;
    (off / 4, (off + 15) / 4)
}

/// Lane of the minimum term of block `k` (Q4_1): the lane of its `d` and `m` bytes.
const fn min_lane<W: Packed>(k: usize) -> usize {
    k * size_of::<W>() / 4
}

/// The word (of the one load, or of the two loads one after the other) at byte `byte` of
/// block `k` of a group.
const fn word_of<W: Packed>(k: usize, byte: usize) -> i16 {
    if W::FIFTH_BIT {
        ((k / 2 * 64 + k % 2 * size_of::<W>() + byte) / 2) as i16
    } else {
        ((k * size_of::<W>() + byte) / 2) as i16
    }
}

/// For each lane, the f16 word of the loaded bytes that scales it: `d` of the block whose
/// quants the lane holds, `m` in a minimum lane, word 0 elsewhere (its activation scale
/// is 0).
const fn scale_words<W: Packed>() -> [i16; 32] {
    let mut words = [0i16; 32];
    let mut k = 0;
    while k < W::PER_LOAD {
        let d_word = word_of::<W>(k, 0);
        let (first, last) = quant_lanes::<W>(k);
        let mut lane = first;
        while lane <= last {
            words[lane] = d_word;
            lane += 1;
        }
        if W::MIN {
            words[min_lane::<W>(k)] = d_word + 1;
        }
        k += 1;
    }
    words
}

/// For blocks with fifth bits: the words of the two loads that hold the packed bytes of
/// block `k`, to words `8k..8k + 8`.
const fn quant_words<W: Packed>() -> [i16; 32] {
    let mut words = [0i16; 32];
    let mut k = 0;
    while W::FIFTH_BIT && k < W::PER_LOAD {
        let mut i = 0;
        while i < 8 {
            words[8 * k + i] = word_of::<W>(k, W::QS) + i as i16;
            i += 1;
        }
        k += 1;
    }
    words
}

/// An activation block: scale, `s` (Q8_1; 0 for Q8_0) and quants.
pub(crate) trait ActParts {
    /// `d`, `s` and the 32 quants.
    fn parts(&self) -> (f32, f32, &[i8; 32]);
}

impl ActParts for BlockQ8_0 {
    fn parts(&self) -> (f32, f32, &[i8; 32]) {
        (self.d.to_f32(), 0.0, &self.qs)
    }
}

impl ActParts for BlockQ8_1 {
    fn parts(&self) -> (f32, f32, &[i8; 32]) {
        (self.d.to_f32(), self.s.to_f32(), &self.qs)
    }
}

/// Groups [`pack`] fills for a row of `blocks` weight blocks.
pub(crate) fn groups<W: Packed>(blocks: usize) -> usize {
    blocks.div_ceil(W::PER_LOAD)
}

/// Lays out a row of activation blocks for weights of type `W`; `out` holds
/// [`groups`]`(y.len())` groups.
pub(crate) fn pack<W: Packed, A: ActParts>(y: &[A], out: &mut [ActGroup]) {
    assert_eq!(out.len(), groups::<W>(y.len()));
    for (group, blocks) in out.iter_mut().zip(y.chunks(W::PER_LOAD)) {
        *group = ActGroup::default();
        for (k, block) in blocks.iter().enumerate() {
            let (d, s, qs) = block.parts();
            let off = if W::FIFTH_BIT {
                16 * k
            } else {
                k * size_of::<W>() + W::QS
            };
            group.lo[off..off + 16].copy_from_slice(&qs[..16]);
            group.hi[off..off + 16].copy_from_slice(&qs[16..]);
            let (first, last) = quant_lanes::<W>(k);
            group.scale[first..=last].fill(d);
            if W::MIN {
                group.init[min_lane::<W>(k)] = 1;
                group.scale[min_lane::<W>(k)] = s;
            } else {
                let sum: i32 = qs.iter().map(|&q| i32::from(q)).sum();
                group.init[first] = -W::OFFSET * sum;
            }
        }
    }
}

/// Bytes `start..start + 64` of `bytes`, or those of them inside `bytes` and zeros.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn load_64(bytes: &[u8], start: usize) -> __m512i {
    if start + 64 <= bytes.len() {
        // SAFETY: bytes `start..start + 64` are inside `bytes`.
        unsafe { _mm512_loadu_si512(bytes.as_ptr().add(start).cast()) }
    } else {
        let len = bytes.len().saturating_sub(start);
        let mask = (1u64 << len) - 1;
        // SAFETY: the mask selects bytes `start..start + len` (none when `len` is 0), all
        // inside `bytes`; a masked load does not touch the bytes it leaves out.
        unsafe { _mm512_maskz_loadu_epi8(mask, bytes.as_ptr().wrapping_add(start).cast()) }
    }
}

/// For blocks with fifth bits: the words of the two loads holding the low halves of the
/// four `qh`, then the high halves.
const fn fifth_bit_words<W: Packed>() -> [i16; 8] {
    let mut words = [0i16; 8];
    let mut k = 0;
    while W::FIFTH_BIT && k < 4 {
        words[k] = word_of::<W>(k, QH);
        words[4 + k] = word_of::<W>(k, QH) + 1;
        k += 1;
    }
    words
}

/// Offset of `qh` in a block with fifth bits.
const QH: usize = 2;

/// Group `g` of weight blocks: the low and high nibble registers and the lane scales.
/// Bytes after the group's blocks meet zero activations and scale no lane.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn load<W: Packed>(bytes: &[u8], g: usize, words: __m512i) -> (__m512i, __m512i, __m512) {
    let low4 = _mm512_set1_epi8(0x0f);
    if W::FIFTH_BIT {
        const { assert!(!W::FIFTH_BIT || (W::PER_LOAD == 4 && 2 * size_of::<W>() <= 64)) };
        let start = g * W::PER_LOAD * size_of::<W>();
        let first = load_64(bytes, start);
        let second = load_64(bytes, start + 2 * size_of::<W>());
        let table = const { quant_words::<W>() };
        // SAFETY: reads the 64 bytes of `table`.
        let moves = unsafe { _mm512_loadu_si512(table.as_ptr().cast()) };
        let packed = _mm512_permutex2var_epi16(first, moves, second);
        let sixteen = _mm512_set1_epi8(16);
        let lo = _mm512_and_si512(packed, low4);
        let qh_table = const { fifth_bit_words::<W>() };
        // SAFETY: reads the 16 bytes of `qh_table`.
        let qh_words = unsafe { _mm_loadu_si128(qh_table.as_ptr().cast()) };
        // The fifth bits of elements 0..16 of the four blocks, then of elements 16..32.
        let qh = _mm512_castsi512_si128(_mm512_permutex2var_epi16(
            first,
            _mm512_castsi128_si512(qh_words),
            second,
        ));
        let set_lo = _mm_cvtsi128_si64(qh) as u64;
        let set_hi = _mm_extract_epi64::<1>(qh) as u64;
        let lo = _mm512_mask_add_epi8(lo, set_lo, lo, sixteen);
        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(packed), low4);
        let hi = _mm512_mask_add_epi8(hi, set_hi, hi, sixteen);
        let halves = _mm512_permutex2var_epi16(first, words, second);
        (lo, hi, _mm512_cvtph_ps(_mm512_castsi512_si256(halves)))
    } else {
        let v = load_64(bytes, g * W::PER_LOAD * size_of::<W>());
        let lo = _mm512_and_si512(v, low4);
        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low4);
        let halves = _mm512_permutexvar_epi16(words, v);
        (lo, hi, _mm512_cvtph_ps(_mm512_castsi512_si256(halves)))
    }
}

/// `acc + (init + lo . a_lo + hi . a_hi) * w * a_scale`, lane by lane.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn step(acc: __m512, lo: __m512i, hi: __m512i, w: __m512, a: &ActGroup) -> __m512 {
    // SAFETY: each load reads exactly one 64-byte field of `a`, which is 64-byte aligned.
    let (a_lo, a_hi, init, scale) = unsafe {
        (
            _mm512_load_si512(a.lo.as_ptr().cast()),
            _mm512_load_si512(a.hi.as_ptr().cast()),
            _mm512_load_si512(a.init.as_ptr().cast()),
            _mm512_load_ps(a.scale.as_ptr()),
        )
    };
    let sums = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(init, lo, a_lo), hi, a_hi);
    _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(w, scale), acc)
}

/// The dot of one weight row with `N` packed activation rows (each [`groups`] long).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_packed<W: Packed, const N: usize>(x: &[W], ys: [&[ActGroup]; N]) -> [f32; N] {
    let n_groups = groups::<W>(x.len());
    assert!(ys.iter().all(|y| y.len() == n_groups));
    let bytes = as_bytes(x);
    let table = scale_words::<W>();
    // SAFETY: reads the 64 bytes of `table`.
    let words = unsafe { _mm512_loadu_si512(table.as_ptr().cast()) };
    // Two accumulators per row, so consecutive loads do not wait on each other's FMA.
    let mut even = [_mm512_setzero_ps(); N];
    let mut odd = [_mm512_setzero_ps(); N];
    let mut g = 0;
    while g + 1 < n_groups {
        let (lo, hi, w) = load::<W>(bytes, g, words);
        for t in 0..N {
            even[t] = step(even[t], lo, hi, w, &ys[t][g]);
        }
        let (lo, hi, w) = load::<W>(bytes, g + 1, words);
        for t in 0..N {
            odd[t] = step(odd[t], lo, hi, w, &ys[t][g + 1]);
        }
        g += 2;
    }
    if g < n_groups {
        let (lo, hi, w) = load::<W>(bytes, g, words);
        for t in 0..N {
            even[t] = step(even[t], lo, hi, w, &ys[t][g]);
        }
    }
    std::array::from_fn(|t| _mm512_reduce_add_ps(_mm512_add_ps(even[t], odd[t])))
}
