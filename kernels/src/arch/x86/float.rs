//! F16 weight rows times f32 activations, with AVX2+FMA and AVX-512 (F32 rows add in
//! llama.cpp's orders, in `attn_sums`).

use std::arch::x86_64::*;

use half::f16;

use super::block32::hsum_ps;

/// Loads 8 f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load8(c: &[f32]) -> __m256 {
    assert!(c.len() >= 8);
    // SAFETY: `c` has at least 8 elements (checked above); `loadu` needs no alignment.
    unsafe { _mm256_loadu_ps(c.as_ptr()) }
}

/// Loads 8 f16 as f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load8_f16(c: &[f16]) -> __m256 {
    assert!(c.len() >= 8);
    // SAFETY: `c` has at least 8 f16, 16 bytes (checked above).
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(c.as_ptr().cast()) })
}

macro_rules! float_dot_avx2 {
    ($name:ident, $elem:ty, $load:ident, $to_f32:expr) => {
        /// The dot of a weight row with an f32 activation row, AVX2.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) fn $name(x: &[$elem], y: &[f32]) -> f32 {
            assert_eq!(x.len(), y.len());
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut xc = x.chunks_exact(32);
            let mut yc = y.chunks_exact(32);
            for (xs, ys) in (&mut xc).zip(&mut yc) {
                for (k, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps($load(&xs[8 * k..]), load8(&ys[8 * k..]), *a);
                }
            }
            let (xr, yr) = (xc.remainder(), yc.remainder());
            let mut xc = xr.chunks_exact(8);
            let mut yc = yr.chunks_exact(8);
            for (xs, ys) in (&mut xc).zip(&mut yc) {
                acc[0] = _mm256_fmadd_ps($load(xs), load8(ys), acc[0]);
            }
            let tail: f32 = xc
                .remainder()
                .iter()
                .zip(yc.remainder())
                .map(|(a, b)| $to_f32(*a) * b)
                .sum();
            let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            hsum_ps(sum) + tail
        }
    };
}

float_dot_avx2!(dot_f16_avx2, f16, load8_f16, f16::to_f32);

/// Loads 16 f32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn load16(c: &[f32]) -> __m512 {
    assert!(c.len() >= 16);
    // SAFETY: `c` has at least 16 elements (checked above).
    unsafe { _mm512_loadu_ps(c.as_ptr()) }
}

/// Loads 16 f16 as f32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn load16_f16(c: &[f16]) -> __m512 {
    assert!(c.len() >= 16);
    // SAFETY: `c` has at least 16 f16, 32 bytes (checked above).
    _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(c.as_ptr().cast()) })
}

macro_rules! float_dot_avx512 {
    ($name:ident, $elem:ty, $load:ident, $to_f32:expr) => {
        /// The dot of a weight row with an f32 activation row, AVX-512.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        pub(crate) fn $name(x: &[$elem], y: &[f32]) -> f32 {
            assert_eq!(x.len(), y.len());
            let mut acc = [_mm512_setzero_ps(); 4];
            let mut xc = x.chunks_exact(64);
            let mut yc = y.chunks_exact(64);
            for (xs, ys) in (&mut xc).zip(&mut yc) {
                for (k, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps($load(&xs[16 * k..]), load16(&ys[16 * k..]), *a);
                }
            }
            let (xr, yr) = (xc.remainder(), yc.remainder());
            let mut xc = xr.chunks_exact(16);
            let mut yc = yr.chunks_exact(16);
            for (xs, ys) in (&mut xc).zip(&mut yc) {
                acc[0] = _mm512_fmadd_ps($load(xs), load16(ys), acc[0]);
            }
            let tail: f32 = xc
                .remainder()
                .iter()
                .zip(yc.remainder())
                .map(|(a, b)| $to_f32(*a) * b)
                .sum();
            let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
            _mm512_reduce_add_ps(sum) + tail
        }
    };
}

float_dot_avx512!(dot_f16_avx512, f16, load16_f16, f16::to_f32);
