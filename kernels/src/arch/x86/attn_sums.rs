//! AVX2 and AVX-512 versions of the attention sums in llama.cpp's orders; see
//! [`crate::ops::dot_f32_ggml_isa`] and the weighted sums beside it for the orders, which the scalar
//! twins there spell out. AVX2 keeps each 16-lane vector of partial sums as two halves.

use std::arch::x86_64::*;

/// `_mm512_reduce_add_ps`'s order on 16 lanes held as `lo` (0..8) and `hi` (8..16).
#[target_feature(enable = "avx2")]
fn reduce16(lo: __m256, hi: __m256) -> f32 {
    let t = _mm256_add_ps(hi, lo);
    let h = _mm_add_ps(_mm256_extractf128_ps(t, 1), _mm256_castps256_ps128(t));
    let s = _mm_add_ps(h, _mm_movehl_ps(h, h));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// `_mm512_reduce_add_ps`'s order on a 16-lane vector.
#[target_feature(enable = "avx512f")]
fn reduce16_512(v: __m512) -> f32 {
    let lo = _mm512_castps512_ps256(v);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    reduce16(lo, hi)
}

/// `ggml_vec_dot_f32`'s whole steps of 64.
///
/// # Safety
///
/// AVX-512 F; `a` and `b` have the same length, a multiple of 64.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn dot_ggml_avx512(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [_mm512_setzero_ps(); 4];
    for i in (0..a.len()).step_by(64) {
        for (k, s) in acc.iter_mut().enumerate() {
            // SAFETY: `i + 16k + 16 <= len` for both slices (the caller's contract).
            unsafe {
                let x = _mm512_loadu_ps(a.as_ptr().add(i + 16 * k));
                let y = _mm512_loadu_ps(b.as_ptr().add(i + 16 * k));
                *s = _mm512_fmadd_ps(x, y, *s);
            }
        }
    }
    let s0 = _mm512_add_ps(acc[0], acc[2]);
    let s1 = _mm512_add_ps(acc[1], acc[3]);
    reduce16_512(_mm512_add_ps(s0, s1))
}

/// llamafile `tinyBLAS`'s dot (AVX-512 build): one vector of 16 partial sums over
/// `i mod 16`, one fused multiply-add per step, reduced as `_mm512_reduce_add_ps`.
///
/// # Safety
///
/// AVX-512 F; `a` and `b` have the same length, a multiple of 16.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn dot_tiled_avx512(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = _mm512_setzero_ps();
    for i in (0..a.len()).step_by(16) {
        // SAFETY: `i + 16 <= len` for both slices (the caller's contract).
        unsafe {
            let x = _mm512_loadu_ps(a.as_ptr().add(i));
            let y = _mm512_loadu_ps(b.as_ptr().add(i));
            acc = _mm512_fmadd_ps(x, y, acc);
        }
    }
    reduce16_512(acc)
}

/// [`dot_tiled_avx512`] with AVX2: the 16 partial sums as two halves.
///
/// # Safety
///
/// AVX2 and FMA; `a` and `b` have the same length, a multiple of 16.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_tiled_avx2(a: &[f32], b: &[f32]) -> f32 {
    let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for i in (0..a.len()).step_by(16) {
        // SAFETY: `i + 16 <= len` for both slices (the caller's contract).
        unsafe {
            let (pa, pb) = (a.as_ptr().add(i), b.as_ptr().add(i));
            lo = _mm256_fmadd_ps(_mm256_loadu_ps(pa), _mm256_loadu_ps(pb), lo);
            hi = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(8)), _mm256_loadu_ps(pb.add(8)), hi);
        }
    }
    reduce16(lo, hi)
}

/// [`dot_ggml_avx512`] with AVX2.
///
/// # Safety
///
/// AVX2 and FMA; `a` and `b` have the same length, a multiple of 64.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_ggml_avx2(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 8];
    for i in (0..a.len()).step_by(64) {
        for (k, s) in acc.iter_mut().enumerate() {
            // SAFETY: `i + 8k + 8 <= len` for both slices (the caller's contract).
            unsafe {
                let x = _mm256_loadu_ps(a.as_ptr().add(i + 8 * k));
                let y = _mm256_loadu_ps(b.as_ptr().add(i + 8 * k));
                *s = _mm256_fmadd_ps(x, y, *s);
            }
        }
    }
    // Vector k of 16 lanes is halves 2k and 2k + 1.
    let lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
    let hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
    reduce16(lo, hi)
}

/// The 16-way tree over partial-sum vectors (one per `j mod 16`), value by value: the
/// same additions as [`reduce16`] applied to every output position at once. With 64
/// partial sums (`j mod 64`, ggml's order) they are first folded `(k0 + k2) + (k1 + k3)`
/// lane by lane.
macro_rules! reduce_partials {
    ($acc:expr, $add:ident) => {{
        let a = $acc;
        let folded: [_; 16] = if a.len() == 64 {
            std::array::from_fn(|l| $add($add(a[l], a[32 + l]), $add(a[16 + l], a[48 + l])))
        } else {
            std::array::from_fn(|l| a[l])
        };
        let h: [_; 8] = std::array::from_fn(|i| $add(folded[i + 8], folded[i]));
        let q: [_; 4] = std::array::from_fn(|i| $add(h[i + 4], h[i]));
        $add($add(q[0], q[2]), $add(q[1], q[3]))
    }};
}

/// `Σ_j w[j] · rows[j * stride + d]` for the first `out.len() / 16 * 16` outputs, with `L`
/// partial sums over positions `j mod L`: 16 is llamafile `tinyBLAS`'s order, 64 ggml's
/// `ggml_vec_dot_f32`'s. Returns how many outputs it wrote.
///
/// # Safety
///
/// AVX-512 F; `L` is 16 or 64; `rows` holds `w.len()` rows of `stride >= out.len()`
/// values (the last one may end after `out.len()` values).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn weighted_sum_avx512<const L: usize>(
    w: &[f32],
    rows: &[f32],
    stride: usize,
    out: &mut [f32],
) -> usize {
    let done = out.len() - out.len() % 16;
    for d in (0..done).step_by(16) {
        let mut acc = [_mm512_setzero_ps(); L];
        for (j, &p) in w.iter().enumerate() {
            // SAFETY: `j * stride + d + 16 <= rows.len()` (the caller's contract).
            let v = unsafe { _mm512_loadu_ps(rows.as_ptr().add(j * stride + d)) };
            acc[j % L] = _mm512_fmadd_ps(v, _mm512_set1_ps(p), acc[j % L]);
        }
        let sum = reduce_partials!(acc, _mm512_add_ps);
        // SAFETY: `d + 16 <= done <= out.len()`.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(d), sum) };
    }
    done
}

/// [`weighted_sum_avx512`] with AVX2, 8 outputs at a time.
///
/// # Safety
///
/// AVX2 and FMA; `L` and `rows` as for [`weighted_sum_avx512`].
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn weighted_sum_avx2<const L: usize>(
    w: &[f32],
    rows: &[f32],
    stride: usize,
    out: &mut [f32],
) -> usize {
    let done = out.len() - out.len() % 8;
    for d in (0..done).step_by(8) {
        let mut acc = [_mm256_setzero_ps(); L];
        for (j, &p) in w.iter().enumerate() {
            // SAFETY: `j * stride + d + 8 <= rows.len()` (the caller's contract).
            let v = unsafe { _mm256_loadu_ps(rows.as_ptr().add(j * stride + d)) };
            acc[j % L] = _mm256_fmadd_ps(v, _mm256_set1_ps(p), acc[j % L]);
        }
        let sum = reduce_partials!(acc, _mm256_add_ps);
        // SAFETY: `d + 8 <= done <= out.len()`.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(d), sum) };
    }
    done
}
