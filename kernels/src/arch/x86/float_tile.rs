//! The fast-numerics float product: a tile of up to `R` weight rows (F32 or F16) by up to
//! `N` f32 activation rows, AVX2 + FMA (see [`crate::dot::float_tile`] for the order of the
//! additions, which its scalar twin reproduces bit for bit).
//!
//! Each loaded weight vector serves `N` tokens and each activation vector `R` rows, so a
//! 4 × 3 tile does 12 FMAs per 7 loads where a row-at-a-time dot does one per two.

use std::arch::x86_64::*;

use half::f16;

use super::block32::hsum_ps;

/// Loads 8 f32 from `p`.
///
/// # Safety
/// `p` must be valid for reading 8 f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_f32(p: *const f32) -> __m256 {
    // SAFETY: the caller's promise; `loadu` needs no alignment.
    unsafe { _mm256_loadu_ps(p) }
}

/// Loads 8 f16 from `p` as f32.
///
/// # Safety
/// `p` must be valid for reading 8 f16.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_f16(p: *const f16) -> __m256 {
    // SAFETY: the caller's promise (16 bytes); `loadu` needs no alignment.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
}

macro_rules! float_tile_avx2 {
    ($name:ident, $elem:ty, $load:ident) => {
        /// The `R × N` dots of weight rows `w` with activation rows `x` (all of one length),
        /// AVX2.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) fn $name<const R: usize, const N: usize>(
            w: [&[$elem]; R],
            x: [&[f32]; N],
        ) -> [[f32; N]; R] {
            let cols = x.first().map_or(0, |x| x.len());
            assert!(w.iter().all(|w| w.len() == cols) && x.iter().all(|x| x.len() == cols));
            let mut acc = [[_mm256_setzero_ps(); N]; R];
            let body = cols - cols % 8;
            let mut k = 0;
            while k < body {
                let mut xv = [_mm256_setzero_ps(); N];
                for (v, x) in xv.iter_mut().zip(&x) {
                    // SAFETY: `k + 8 <= body <= cols`, the length of every row (checked).
                    *v = unsafe { load_f32(x.as_ptr().add(k)) };
                }
                for (acc, w) in acc.iter_mut().zip(&w) {
                    // SAFETY: as above.
                    let wv = unsafe { $load(w.as_ptr().add(k)) };
                    for (a, v) in acc.iter_mut().zip(&xv) {
                        *a = _mm256_fmadd_ps(wv, *v, *a);
                    }
                }
                k += 8;
            }
            let mut out = [[0.0; N]; R];
            for ((out, acc), w) in out.iter_mut().zip(&acc).zip(&w) {
                for ((o, a), x) in out.iter_mut().zip(acc).zip(&x) {
                    let tail = (w[body..].iter().zip(&x[body..]))
                        .fold(0.0f32, |t, (w, x)| t + f32::from(*w) * x);
                    *o = hsum_ps(*a) + tail;
                }
            }
            out
        }
    };
}

float_tile_avx2!(tile_f32_avx2, f32, load_f32);
float_tile_avx2!(tile_f16_avx2, f16, load_f16);
