//! The token-lane kernels of the fast 32-element block product (see
//! [`crate::dot::lanes`]): one decoded weight row against a tile of eight tokens, lane `t`
//! of every register belonging to token `t`.
//!
//! For each block, eight times: four weight values broadcast to all lanes, multiplied with
//! four values of each token (`maddubs` + `madd` on AVX2, `vpdpbusd` on AVX-512 VNNI).
//! The 4- and 5-bit unsigned types add eight or four `maddubs` results as i16 before one
//! `madd` (their sums cannot overflow), so most blocks take one multiply per group. Then
//! the block's eight integer sums (one per token) become f32 and are added to partial sum
//! `b mod 8` by one fused multiply-add, as [`crate::dot::scalar_fast`] defines.

use std::arch::x86_64::*;

use super::block32::Block32;
use crate::dot::lanes::{DecodedRows, LANES, LaneTile, TILE_BLOCK_BYTES};

/// Signed quants without an offset multiply by the sign trick.
const fn sign_trick<W: Block32>() -> bool {
    W::SIGNED && W::OFFSET == 0
}

/// Decodes whole weight rows into `rows` from row `at`, AVX2.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn decode_avx2<W: Block32>(x: &[W], at: usize, rows: &mut DecodedRows) {
    let first = at * rows.per_row;
    let end = first + x.len();
    assert!(rows.dw.len() >= end && rows.u.len() >= end * 32 && rows.w.len() >= end * 32);
    for (i, xb) in x.iter().enumerate() {
        let b = first + i;
        // SAFETY: the caller's contract.
        let (u, w) = unsafe {
            if sign_trick::<W>() {
                let q = xb.quants();
                (_mm256_sign_epi8(q, q), q)
            } else {
                (xb.raw_quants(), _mm256_setzero_si256())
            }
        };
        // SAFETY: `u` and `w` hold at least `end * 32` bytes (asserted), so 32 from `b * 32`.
        unsafe {
            _mm256_storeu_si256(rows.u.as_mut_ptr().add(b * 32).cast(), u);
            _mm256_storeu_si256(rows.w.as_mut_ptr().add(b * 32).cast(), w);
        }
        let bits = xb.scale_bits();
        rows.dw[b] = half::f16::from_bits(bits as u16).to_f32();
        rows.mw[b] = half::f16::from_bits((bits >> 16) as u16).to_f32();
    }
}

/// Four bytes from `p` in every 32-bit lane.
///
/// # Safety
/// `p` must be valid for reads of four bytes; the CPU must have AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn broadcast4(p: *const u8) -> __m256i {
    // SAFETY: the caller's contract.
    _mm256_set1_epi32(unsafe { p.cast::<i32>().read_unaligned() })
}

/// `H(v)` over eight registers: each lane's eight partial sums in the definition's tree.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn tree8(v: &[__m256; 8]) -> __m256 {
    _mm256_add_ps(
        _mm256_add_ps(_mm256_add_ps(v[0], v[4]), _mm256_add_ps(v[2], v[6])),
        _mm256_add_ps(_mm256_add_ps(v[1], v[5]), _mm256_add_ps(v[3], v[7])),
    )
}

/// One group's products: into the i32 sums directly (VNNI) or into the i16 sums (AVX2).
macro_rules! multiply {
    (true, $acc:expr, $p16:expr, $u:expr, $a:expr) => {
        $acc = _mm256_dpbusd_epi32($acc, $u, $a)
    };
    (false, $acc:expr, $p16:expr, $u:expr, $a:expr) => {
        $p16 = _mm256_add_epi16($p16, _mm256_maddubs_epi16($u, $a))
    };
}

/// The i16 sums into the i32 sums (AVX2; nothing to do with VNNI).
macro_rules! fold {
    (true, $acc:expr, $p16:expr, $ones:expr) => {
        let _ = ($p16, $ones);
    };
    (false, $acc:expr, $p16:expr, $ones:expr) => {
        $acc = _mm256_add_epi32($acc, _mm256_madd_epi16($p16, $ones))
    };
}

macro_rules! lanes_kernel {
    ($(#[$doc:meta])* $name:ident, $features:literal, $vnni:tt) => {
        $(#[$doc])*
        ///
        /// Rows `r..r + R` at once: each tile load serves the `R` rows, which halves the
        /// loads per product at `R = 2` (the one-row kernel waits on them); each row's
        /// sums are the one-row kernel's.
        ///
        /// # Safety
        /// The CPU must have the features this function enables.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $name<W: Block32, const R: usize>(
            rows: &DecodedRows,
            r: usize,
            tile: &LaneTile<'_>,
        ) -> [[f32; LANES]; R] {
            let per_row = rows.per_row;
            let first = r * per_row;
            let end = (r + R) * per_row;
            assert!(rows.dw.len() >= end && rows.mw.len() >= end && rows.u.len() >= end * 32);
            assert!(!sign_trick::<W>() || rows.w.len() >= end * 32);
            assert!(tile.q.len() >= per_row * TILE_BLOCK_BYTES);
            assert!(tile.d.len() >= per_row * LANES && tile.aux.len() >= per_row * LANES);
            let ones = _mm256_set1_epi16(1);
            // How many i16 `maddubs` sums add without overflow: 8·2·15·128 and 4·2·31·128
            // stay below 2^15.
            let per_madd = match W::RAW_BITS {
                4 => 8,
                5 => 4,
                _ => 1,
            };
            // The integer sums of block `b` for the eight tokens, row by row.
            let block_sums = |b: usize| -> [__m256i; R] {
                let at = |i: usize| (first + i * per_row + b) * 32;
                let q = tile.q[b * TILE_BLOCK_BYTES..].as_ptr();
                let mut acc = [_mm256_setzero_si256(); R];
                let mut g = 0;
                while g < 8 {
                    // Unused by VNNI, which adds into `acc` directly.
                    #[allow(unused_mut)]
                    let mut p16 = [_mm256_setzero_si256(); R];
                    for k in g..g + per_madd {
                        // SAFETY: `q` holds 256 bytes from the block's start (asserted
                        // above), so 32k..32k + 32 for k < 8 is in bounds.
                        let a = unsafe { _mm256_loadu_si256(q.add(32 * k).cast()) };
                        for i in 0..R {
                            // SAFETY: `u` (and `w` for the sign trick) hold 32 bytes from
                            // each row's block start (asserted above), so 4k..4k + 4 for
                            // k < 8 is in bounds.
                            let uv = unsafe { broadcast4(rows.u.as_ptr().add(at(i) + 4 * k)) };
                            let a = if sign_trick::<W>() {
                                // SAFETY: as above.
                                let w = unsafe { broadcast4(rows.w.as_ptr().add(at(i) + 4 * k).cast()) };
                                _mm256_sign_epi8(a, w)
                            } else {
                                a
                            };
                            multiply!($vnni, acc[i], p16[i], uv, a);
                        }
                    }
                    for i in 0..R {
                        fold!($vnni, acc[i], p16[i], ones);
                    }
                    g += per_madd;
                }
                acc
            };
            let terms = |v: &[f32], b: usize| {
                // SAFETY: `v` holds `per_row * 8` values (asserted), 8 of them from `b * 8`.
                unsafe { _mm256_loadu_ps(v.as_ptr().add(b * LANES)) }
            };
            let mut p = [[_mm256_setzero_ps(); 8]; R];
            let mut step = |b: usize, j: usize| {
                let sums = block_sums(b);
                let d = terms(tile.d, b);
                for i in 0..R {
                    let mut s = _mm256_cvtepi32_ps(sums[i]);
                    if W::SIGNED && W::OFFSET != 0 {
                        s = _mm256_sub_ps(s, terms(tile.aux, b));
                    }
                    let c = _mm256_mul_ps(d, _mm256_set1_ps(rows.dw[first + i * per_row + b]));
                    p[i][j] = _mm256_fmadd_ps(s, c, p[i][j]);
                }
            };
            let groups = per_row / 8;
            for g in 0..groups {
                for j in 0..8 {
                    step(g * 8 + j, j);
                }
            }
            for j in 0..per_row % 8 {
                step(groups * 8 + j, j);
            }
            std::array::from_fn(|i| {
                let mut result = tree8(&p[i]);
                if !W::SIGNED {
                    let mut m = [_mm256_setzero_ps(); 8];
                    for b in 0..per_row {
                        let mw = _mm256_set1_ps(rows.mw[first + i * per_row + b]);
                        m[b % 8] = _mm256_fmadd_ps(mw, terms(tile.aux, b), m[b % 8]);
                    }
                    result = _mm256_add_ps(result, tree8(&m));
                }
                let mut out = [0.0f32; LANES];
                // SAFETY: `out` holds 8 f32.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr(), result) };
                out
            })
        }
    };
}

lanes_kernel!(
    /// The fast dots of decoded rows `r..r + R` with the eight tokens of `tile`, AVX2.
    dot_lanes_avx2,
    "avx2,fma,f16c",
    false
);
lanes_kernel!(
    /// The fast dots of decoded rows `r..r + R` with the eight tokens of `tile`, AVX-512
    /// VNNI on 256-bit vectors.
    dot_lanes_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    true
);
