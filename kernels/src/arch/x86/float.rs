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

/// The dot of an F16 weight row with an f32 activation row, AVX-512.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_f16_avx512(x: &[f16], y: &[f32]) -> f32 {
    let (sum, tail) = f16_partial(x, y);
    _mm512_reduce_add_ps(sum) + tail
}

/// The four accumulators of [`dot_f16_avx512`] for one row, added as that kernel adds
/// them, before the horizontal sum; and the scalar tail of the values past the last 16.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn f16_partial(x: &[f16], y: &[f32]) -> (__m512, f32) {
    assert_eq!(x.len(), y.len());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut xc = x.chunks_exact(64);
    let mut yc = y.chunks_exact(64);
    for (xs, ys) in (&mut xc).zip(&mut yc) {
        for (k, a) in acc.iter_mut().enumerate() {
            *a = _mm512_fmadd_ps(load16_f16(&xs[16 * k..]), load16(&ys[16 * k..]), *a);
        }
    }
    let (xr, yr) = (xc.remainder(), yc.remainder());
    let mut xc = xr.chunks_exact(16);
    let mut yc = yr.chunks_exact(16);
    for (xs, ys) in (&mut xc).zip(&mut yc) {
        acc[0] = _mm512_fmadd_ps(load16_f16(xs), load16(ys), acc[0]);
    }
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a.to_f32() * b)
        .sum();
    let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    (sum, tail)
}

/// The horizontal sums of sixteen vectors at once, each lane pairing as
/// `_mm512_reduce_add_ps` pairs them (the 256-bit halves, then the 128-bit halves, then
/// the 64-bit halves, then the two last values): so each sum has that reduction's bits,
/// and the work is 15 vector additions and 30 shuffles instead of sixteen dependent
/// chains. Element `4e + k` of the result is vector `4k + e`'s sum.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn reduce16(v: &[__m512; 16]) -> __m512 {
    // Halves of 256 bits: vectors 2m and 2m + 1 side by side.
    let w: [__m512; 8] = std::array::from_fn(|m| {
        let (a, b) = (v[2 * m], v[2 * m + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(a, b),
            _mm512_shuffle_f32x4::<0xEE>(a, b),
        )
    });
    // Halves of 128 bits: 128-bit lane k of y[n] is vector 4n + k's.
    let y: [__m512; 4] = std::array::from_fn(|n| {
        let (a, b) = (w[2 * n], w[2 * n + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(a, b),
            _mm512_shuffle_f32x4::<0xDD>(a, b),
        )
    });
    // Halves of 64 bits: in 128-bit lane k, values 0..2 are vector 8p + k's, 2..4 vector
    // 8p + 4 + k's.
    let u: [__m512; 2] = std::array::from_fn(|p| {
        let (a, b) = (y[2 * p], y[2 * p + 1]);
        _mm512_add_ps(
            _mm512_shuffle_ps::<0x44>(a, b),
            _mm512_shuffle_ps::<0xEE>(a, b),
        )
    });
    _mm512_add_ps(
        _mm512_shuffle_ps::<0x88>(u[0], u[1]),
        _mm512_shuffle_ps::<0xDD>(u[0], u[1]),
    )
}

/// The dots of up to sixteen F16 rows `xs` with one f32 row `y`, into `out` (as many as
/// `xs`), each with [`dot_f16_avx512`]'s bits: flash attention's F16 keys against one
/// query row, whose horizontal sums are done together ([`reduce16`]).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_f16_keys_avx512(xs: &[&[f16]], y: &[f32], out: &mut [f32]) {
    assert!(xs.len() <= 16 && out.len() == xs.len());
    let mut sums = [_mm512_setzero_ps(); 16];
    let mut tails = [0.0f32; 16];
    for (i, x) in xs.iter().enumerate() {
        (sums[i], tails[i]) = f16_partial(x, y);
    }
    let mut r = [0.0f32; 16];
    // SAFETY: `r` holds sixteen f32.
    unsafe { _mm512_storeu_ps(r.as_mut_ptr(), reduce16(&sums)) };
    for (i, o) in out.iter_mut().enumerate() {
        *o = r[4 * (i % 4) + i / 4] + tails[i];
    }
}

/// [`dot_f16_keys_avx512`] for `R` query rows at once: each key is widened once for all
/// of them, and each row's sums are those of [`f16_partial`] (the same operations in the
/// same order), so every dot has [`dot_f16_avx512`]'s bits. Rows a multiple of 16 long.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_f16_keys_rows_avx512<const R: usize>(
    xs: &[&[f16]],
    ys: [&[f32]; R],
    out: [&mut [f32]; R],
) {
    let dk = ys[0].len();
    assert!(xs.len() <= 16 && dk.is_multiple_of(16));
    assert!(ys.iter().all(|y| y.len() == dk) && xs.iter().all(|x| x.len() == dk));
    assert!(out.iter().all(|o| o.len() == xs.len()));
    let mut sums = [[_mm512_setzero_ps(); 16]; R];
    for (i, x) in xs.iter().enumerate() {
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        let mut c = 0;
        while c + 64 <= dk {
            let xv: [__m512; 4] = std::array::from_fn(|k| load16_f16(&x[c + 16 * k..]));
            for (a, y) in acc.iter_mut().zip(&ys) {
                for (k, ak) in a.iter_mut().enumerate() {
                    *ak = _mm512_fmadd_ps(xv[k], load16(&y[c + 16 * k..]), *ak);
                }
            }
            c += 64;
        }
        while c + 16 <= dk {
            let xv = load16_f16(&x[c..]);
            for (a, y) in acc.iter_mut().zip(&ys) {
                a[0] = _mm512_fmadd_ps(xv, load16(&y[c..]), a[0]);
            }
            c += 16;
        }
        for (s, a) in sums.iter_mut().zip(&acc) {
            s[i] = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
        }
    }
    for (s, o) in sums.iter().zip(out) {
        let mut r = [0.0f32; 16];
        // SAFETY: `r` holds sixteen f32.
        unsafe { _mm512_storeu_ps(r.as_mut_ptr(), reduce16(s)) };
        for (i, o) in o.iter_mut().enumerate() {
            // The empty scalar tail of `f16_partial`, added as it is there (so -0 stays +0).
            *o = r[4 * (i % 4) + i / 4] + 0.0f32;
        }
    }
}
