//! The eight-row kernels of repacked weights ([`super::block32_rows`]) on 512-bit vectors:
//! two groups of eight rows side by side, the first group in the low 256 bits of every
//! register and the second in the high 256. Each lane does what the same lane of the
//! 256-bit kernel does, in the same order, so every row keeps its bits; a broadcast
//! activation word now meets sixteen rows, which halves the instructions per row and
//! token that bound several streams' decode steps.
//!
//! Q8_0 multiplies its quants plus 128 as unsigned bytes
//! ([`crate::dot::scalar_fast::FastBlock::VNNI_BIAS`]): AVX-512 has no byte sign
//! instruction for the sign trick, and the bias costs nothing per activation row.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::block32::{Act32, Block32};
use super::block32_rows::PackedWords;
use crate::dot::scalar_fast::FastBlock;

/// Rows multiplied together, one per lane.
pub(crate) const ROWS: usize = 2 * crate::dot::ROWS8;

/// Fetches the next call's memory into the second-level cache, a block at a time: at
/// block `b` of this call, the bytes of block `b` of the next call's two groups.
struct Ahead<'a, P> {
    next: [&'a [u8]; 2],
    block: std::marker::PhantomData<P>,
}

impl<'a, P> Ahead<'a, P> {
    /// `next` as the kernel gets it: each either empty or `n` blocks of `P` (anything
    /// else is not fetched).
    fn new(next: [&'a [u8]; 2], n: usize) -> Self {
        Self {
            next: next.map(|m| {
                if m.len() == n * size_of::<P>() {
                    m
                } else {
                    &[]
                }
            }),
            block: std::marker::PhantomData,
        }
    }

    /// Asks for the next call's block `b`. A fixed number of lines, one every 64 bytes
    /// from the block's start: no two asked-for addresses of consecutive blocks lie more
    /// than a line apart, so every line is asked for, and the loop has no bounds to test
    /// (this runs for every block, and its instructions compete with the arithmetic's).
    #[inline(always)]
    fn block(&self, b: usize) {
        for m in self.next {
            if !m.is_empty() {
                let at = m.as_ptr().wrapping_add(b * size_of::<P>());
                crate::arch::prefetch_l2_from(at, size_of::<P>().div_ceil(64));
            }
        }
    }
}

/// Two 256-bit registers as one: `lo` in the low half.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
#[inline]
fn join(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// [`join`] for f32 lanes.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
#[inline]
fn join_ps(lo: __m256, hi: __m256) -> __m512 {
    _mm512_castsi512_ps(join(_mm256_castps_si256(lo), _mm256_castps_si256(hi)))
}

/// `H(v)` over eight registers, lane by lane, in the definition's tree.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
#[inline]
fn tree8(v: &[__m512; 8]) -> __m512 {
    _mm512_add_ps(
        _mm512_add_ps(_mm512_add_ps(v[0], v[4]), _mm512_add_ps(v[2], v[6])),
        _mm512_add_ps(_mm512_add_ps(v[1], v[5]), _mm512_add_ps(v[3], v[7])),
    )
}

/// Adds block `b`'s terms of every token into the accumulators `p` (and the minimums'
/// into `m`), inside [`dot_rows16_vnni`] (a macro, not a function: through references the
/// accumulators would not stay in registers).
macro_rules! add_block {
    ($groups:expr, $ys:expr, $da:expr, $aux:expr, $b:expr, $p:expr, $m:expr) => {{
        let (groups, ys, da, aux, b) = ($groups, $ys, $da, $aux, $b);
        let signed = <P::Block as Block32>::SIGNED;
        // SAFETY: this function's target features include AVX2, FMA and F16C.
        let ((w0, d0, m0), (w1, d1, m1)) = unsafe { (groups[0][b].words(), groups[1][b].words()) };
        let mut words: [__m512i; 8] = std::array::from_fn(|k| join(w0[k], w1[k]));
        if <P::Block as FastBlock>::VNNI_BIAS != 0 {
            words = words.map(|q| _mm512_xor_si512(q, _mm512_set1_epi8(i8::MIN)));
        }
        let (dw, mw) = (join_ps(d0, d1), join_ps(m0, m1));
        for t in 0..N {
            let y = &ys[t][b];
            let mut acc = _mm512_setzero_si512();
            for (k, w) in words.iter().enumerate() {
                acc = _mm512_dpbusd_epi32(acc, *w, _mm512_set1_epi32(y.quant_word(k)));
            }
            let mut s = _mm512_cvtepi32_ps(acc);
            // The offset types and the biased one take their term out.
            if signed {
                s = _mm512_sub_ps(s, _mm512_set1_ps(aux[t][b]));
            }
            let c = _mm512_mul_ps(dw, _mm512_set1_ps(da[t][b]));
            $p[t] = _mm512_fmadd_ps(s, c, $p[t]);
            if !signed {
                $m[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(aux[t][b]), $m[t]);
            }
        }
    }};
}

/// The fast dots of the sixteen rows of two repacked groups (`groups[g][b]` is group
/// `g`'s block `b`) with `N` activation rows: element `t` lane `8g + j` is row `j` of group
/// `g` dotted with `ys[t]`, the bits of [`crate::dot::scalar_fast::dot_fast`]. `da[t]`
/// holds the f32 scale of each block of `ys[t]`; `aux[t]` its second term
/// ([`crate::dot::scalar_fast::act_terms`]), read for the types with a minimum, an
/// offset or a bias. `next` is the memory of the caller's next call (empty when there is
/// none): a share of its lines is fetched into the second-level cache at each block, so
/// that its loads overlap this call's arithmetic instead of stalling the next call.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_rows16_vnni<P: PackedWords, A: Act32, const N: usize>(
    groups: [&[P]; 2],
    ys: [&[A]; N],
    da: [&[f32]; N],
    aux: [&[f32]; N],
    next: [&[u8]; 2],
) -> [[f32; ROWS]; N] {
    // A signed type without an offset or a bias would need the sign trick.
    const {
        assert!(
            !<P::Block as Block32>::SIGNED
                || <P::Block as FastBlock>::OFFSET != 0
                || <P::Block as FastBlock>::VNNI_BIAS != 0
        )
    };
    let n = groups[0].len();
    assert!(groups[1].len() == n);
    assert!(ys.iter().all(|y| y.len() == n) && da.iter().all(|d| d.len() == n));
    assert!(aux.iter().all(|s| s.len() == n));
    // `p[t][j]`: token `t`'s partial sum `j` of every lane, blocks `j, j + 8, ...` in
    // turn (`m`: the minimums' terms).
    // Written below before they are read: zeroing 4 KiB of them first cost a `memset` a
    // call.
    let mut p = [[MaybeUninit::<__m512>::uninit(); 8]; N];
    let mut m = [[MaybeUninit::<__m512>::uninit(); 8]; N];
    let ahead = Ahead::<P>::new(next, n);
    if N == 1 {
        // Block after block: one token's sixteen accumulators fit the registers.
        let (mut p0, mut m0) = ([_mm512_setzero_ps(); 8], [_mm512_setzero_ps(); 8]);
        for b in 0..n {
            ahead.block(b);
            for g in groups {
                super::prefetch_ahead(&raw const g[b], size_of::<P>());
            }
            let j = b % 8;
            let (mut pj, mut mj) = ([p0[j]], [m0[j]]);
            add_block!(groups, ys, da, aux, b, pj, mj);
            (p0[j], m0[j]) = (pj[0], mj[0]);
        }
        for j in 0..8 {
            p[0][j].write(p0[j]);
            m[0][j].write(m0[j]);
        }
    } else {
        // One partial sum at a time, so that each token's two accumulators stay in
        // registers (eight of each per token would not fit), with the same additions in
        // the same order.
        for j in 0..8 {
            let mut pj = [_mm512_setzero_ps(); N];
            let mut mj = [_mm512_setzero_ps(); N];
            for b in (j..n).step_by(8) {
                ahead.block(b);
                add_block!(groups, ys, da, aux, b, pj, mj);
            }
            for t in 0..N {
                p[t][j].write(pj[t]);
                m[t][j].write(mj[t]);
            }
        }
    }
    let signed = <P::Block as Block32>::SIGNED;
    std::array::from_fn(|t| {
        // SAFETY: both branches above wrote every partial sum of every token.
        let (p, m) = unsafe { (p[t].map(|v| v.assume_init()), m[t].map(|v| v.assume_init())) };
        let mut total = tree8(&p);
        if !signed {
            total = _mm512_add_ps(total, tree8(&m));
        }
        let mut out = [0.0f32; ROWS];
        // SAFETY: `out` holds sixteen f32.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), total) };
        out
    })
}
