//! AVX2 and AVX-512 pieces of flash attention (see [`crate::ops::flash_attn`]): widening a
//! cached value row to f32, and adding probability-weighted value rows into several output
//! rows at once. Both give the bits of their scalar twins in `ops/flash_attn_values.rs`:
//! the dequantizers do the same one or two roundings per value, and the weighted sum does
//! the same fused multiply-add per value and cell, in the same cell order.

use std::arch::x86_64::*;

use half::f16;

use super::block32::Block32;
use super::{Avx2Token, Avx512Token};
use crate::blocks::{BlockIQ4NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};

/// 32-element blocks to f32: `q * d`, plus `m` for the types with a minimum (a multiply
/// then an add, as the scalar dequantizers round).
#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_block32<W: Block32>(x: &[W], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * 32, "dequantize: length mismatch");
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(32)) {
        // SAFETY: this function enables AVX2, FMA and F16C, which `quants` needs.
        let q = unsafe { xb.quants() };
        let bits = xb.scale_bits();
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
        let d = _mm256_broadcastss_ps(dm);
        let m = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
        let halves = [_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q)];
        for (h, part) in halves.into_iter().enumerate() {
            let quads = [part, _mm_srli_si128::<8>(part)];
            for (k, quad) in quads.into_iter().enumerate() {
                // Every type's quants fit in i8 (the unsigned ones stay below 32).
                let v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(quad)), d);
                let v = if W::SIGNED { v } else { _mm256_add_ps(v, m) };
                let out = &mut yb[16 * h + 8 * k..16 * h + 8 * k + 8];
                // SAFETY: `out` holds exactly 8 f32; `storeu` needs no alignment.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
            }
        }
    }
}

/// F16 values to f32, eight at a time (the conversion is exact).
#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_f16(x: &[f16], y: &mut [f32]) {
    assert_eq!(y.len(), x.len(), "dequantize: length mismatch");
    let mut xc = x.chunks_exact(8);
    let mut yc = y.chunks_exact_mut(8);
    for (xs, ys) in (&mut xc).zip(&mut yc) {
        // SAFETY: `xs` holds 8 f16 (16 bytes) and `ys` 8 f32; neither access needs alignment.
        unsafe {
            let h = _mm_loadu_si128(xs.as_ptr().cast());
            _mm256_storeu_ps(ys.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
    }
    for (o, v) in yc.into_remainder().iter_mut().zip(xc.remainder()) {
        *o = v.to_f32();
    }
}

macro_rules! dequantize_entry {
    ($($name:ident => $block:ty;)*) => {$(
        #[doc = concat!("`", stringify!($block), "` blocks to f32, AVX2.")]
        pub(crate) fn $name(_: Avx2Token, x: &[$block], y: &mut [f32]) {
            // SAFETY: the token proves the CPU has AVX2, FMA and F16C.
            unsafe { dequantize_block32(x, y) }
        }
    )*};
}

dequantize_entry! {
    dequantize_q4_0_avx2 => BlockQ4_0;
    dequantize_q4_1_avx2 => BlockQ4_1;
    dequantize_q5_0_avx2 => BlockQ5_0;
    dequantize_q5_1_avx2 => BlockQ5_1;
    dequantize_q8_0_avx2 => BlockQ8_0;
    dequantize_iq4_nl_avx2 => BlockIQ4NL;
}

/// F16 to f32, AVX2 with F16C.
pub(crate) fn dequantize_f16_avx2(_: Avx2Token, x: &[f16], y: &mut [f32]) {
    // SAFETY: the token proves the CPU has AVX2, FMA and F16C.
    unsafe { dequantize_f16(x, y) }
}

/// Where a weighted sum reads cell `i`'s values: an f32 buffer (rows `stride` apart), or
/// the cache's F16 rows in place, widened as they load (exactly, so with the bits of
/// widening them into a buffer first).
pub(crate) trait ValueRows: Copy {
    /// Values `d..d + 16` of cell `i`.
    ///
    /// # Safety
    ///
    /// AVX-512 F; cell `i` exists and `d + 16` is within its row.
    unsafe fn load16(self, i: usize, d: usize) -> __m512;
    /// Values `d..d + 8` of cell `i`.
    ///
    /// # Safety
    ///
    /// AVX2 and F16C; cell `i` exists and `d + 8` is within its row.
    unsafe fn load8(self, i: usize, d: usize) -> __m256;
}

/// f32 rows `stride` apart from `ptr`.
#[derive(Clone, Copy)]
pub(crate) struct F32Rows {
    ptr: *const f32,
    stride: usize,
}

impl ValueRows for F32Rows {
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load16(self, i: usize, d: usize) -> __m512 {
        // SAFETY: the caller's contract.
        unsafe { _mm512_loadu_ps(self.ptr.add(i * self.stride + d)) }
    }
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn load8(self, i: usize, d: usize) -> __m256 {
        // SAFETY: the caller's contract.
        unsafe { _mm256_loadu_ps(self.ptr.add(i * self.stride + d)) }
    }
}

/// F16 rows, one per cell, wherever they lie.
#[derive(Clone, Copy)]
pub(crate) struct F16Rows<'a>(pub(crate) &'a [&'a [f16]]);

impl ValueRows for F16Rows<'_> {
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load16(self, i: usize, d: usize) -> __m512 {
        // SAFETY: the caller's contract: row `i` exists and holds `d + 16` values.
        unsafe {
            _mm512_cvtph_ps(_mm256_loadu_si256(
                self.0.get_unchecked(i).as_ptr().add(d).cast(),
            ))
        }
    }
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn load8(self, i: usize, d: usize) -> __m256 {
        // SAFETY: the caller's contract: row `i` exists and holds `d + 8` values.
        unsafe {
            _mm256_cvtph_ps(_mm_loadu_si128(
                self.0.get_unchecked(i).as_ptr().add(d).cast(),
            ))
        }
    }
}

/// The shape of a weighted sum of value rows into `R` output rows (see
/// [`weighted_rows_avx512`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowsShape {
    /// Cells (value rows) to add.
    pub n: usize,
    /// Distance between the probability rows of two outputs.
    pub p_stride: usize,
    /// Distance between two value rows.
    pub v_stride: usize,
    /// Values per output row (and distance between output rows).
    pub dv: usize,
}

impl RowsShape {
    /// Asserts that `rows` output rows and their probabilities fit the slices; the
    /// kernels rely on it.
    fn check(&self, rows: usize, p: &[f32], acc: &[f32]) {
        let fits = rows == 0
            || (rows * self.dv <= acc.len()
                && (self.n == 0 || (rows - 1) * self.p_stride + self.n <= p.len()));
        assert!(fits, "weighted rows: slices too short");
    }
}

/// One tile of `R` output rows and `C` vectors of 16 values starting at value `d`:
/// `acc[r][d..] = fma(v[i][d..], p[r][i], acc[r][d..])` for `i` in order.
///
/// # Safety
///
/// AVX-512 F; the slices hold the `R` rows of `shape` (checked by the caller) and
/// `d + 16 * C <= shape.dv`.
#[target_feature(enable = "avx512f")]
unsafe fn tile512<V: ValueRows, const R: usize, const C: usize>(
    p: &[f32],
    v: V,
    acc: &mut [f32],
    shape: RowsShape,
    d: usize,
) {
    let RowsShape {
        n, p_stride, dv, ..
    } = shape;
    let (pp, ap) = (p.as_ptr(), acc.as_mut_ptr());
    let mut a = [[_mm512_setzero_ps(); C]; R];
    for (r, row) in a.iter_mut().enumerate() {
        for (c, x) in row.iter_mut().enumerate() {
            // SAFETY: `r * dv + d + 16c + 16 <= R * dv <= acc.len()`.
            *x = unsafe { _mm512_loadu_ps(ap.add(r * dv + d + 16 * c)) };
        }
    }
    for i in 0..n {
        // SAFETY: cell `i < n` exists and `d + 16C <= dv`.
        let x: [__m512; C] = std::array::from_fn(|c| unsafe { v.load16(i, d + 16 * c) });
        for (r, row) in a.iter_mut().enumerate() {
            // SAFETY: `r * p_stride + i < (R - 1) * p_stride + n <= p.len()`.
            let w = _mm512_set1_ps(unsafe { *pp.add(r * p_stride + i) });
            for (s, &xc) in row.iter_mut().zip(&x) {
                *s = _mm512_fmadd_ps(xc, w, *s);
            }
        }
    }
    for (r, row) in a.iter().enumerate() {
        for (c, &x) in row.iter().enumerate() {
            // SAFETY: as for the loads above.
            unsafe { _mm512_storeu_ps(ap.add(r * dv + d + 16 * c), x) };
        }
    }
}

/// [`tile512`] with AVX2, `C` vectors of 8 values.
///
/// # Safety
///
/// AVX2 and FMA; as [`tile512`] with `d + 8 * C <= shape.dv`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile256<V: ValueRows, const R: usize, const C: usize>(
    p: &[f32],
    v: V,
    acc: &mut [f32],
    shape: RowsShape,
    d: usize,
) {
    let RowsShape {
        n, p_stride, dv, ..
    } = shape;
    let (pp, ap) = (p.as_ptr(), acc.as_mut_ptr());
    let mut a = [[_mm256_setzero_ps(); C]; R];
    for (r, row) in a.iter_mut().enumerate() {
        for (c, x) in row.iter_mut().enumerate() {
            // SAFETY: `r * dv + d + 8c + 8 <= R * dv <= acc.len()`.
            *x = unsafe { _mm256_loadu_ps(ap.add(r * dv + d + 8 * c)) };
        }
    }
    for i in 0..n {
        // SAFETY: cell `i < n` exists and `d + 8C <= dv`.
        let x: [__m256; C] = std::array::from_fn(|c| unsafe { v.load8(i, d + 8 * c) });
        for (r, row) in a.iter_mut().enumerate() {
            // SAFETY: `r * p_stride + i < (R - 1) * p_stride + n <= p.len()`.
            let w = _mm256_set1_ps(unsafe { *pp.add(r * p_stride + i) });
            for (s, &xc) in row.iter_mut().zip(&x) {
                *s = _mm256_fmadd_ps(xc, w, *s);
            }
        }
    }
    for (r, row) in a.iter().enumerate() {
        for (c, &x) in row.iter().enumerate() {
            // SAFETY: as for the loads above.
            unsafe { _mm256_storeu_ps(ap.add(r * dv + d + 8 * c), x) };
        }
    }
}

/// All value columns of `R` rows that whole vectors cover, AVX-512: tiles of 64, then 16.
///
/// # Safety
///
/// AVX-512 F; the slices hold the `R` rows of `shape`.
#[target_feature(enable = "avx512f")]
unsafe fn rows512<V: ValueRows, const R: usize>(
    p: &[f32],
    v: V,
    acc: &mut [f32],
    shape: RowsShape,
) {
    let mut d = 0;
    while d + 64 <= shape.dv {
        // SAFETY: the caller's contract, and `d + 64 <= dv`.
        unsafe { tile512::<V, R, 4>(p, v, acc, shape, d) };
        d += 64;
    }
    while d + 16 <= shape.dv {
        // SAFETY: as above with `d + 16 <= dv`.
        unsafe { tile512::<V, R, 1>(p, v, acc, shape, d) };
        d += 16;
    }
}

/// All value columns of `R` rows that whole vectors cover, AVX2: tiles of 16, then 8.
///
/// # Safety
///
/// AVX2 and FMA; the slices hold the `R` rows of `shape`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows256<V: ValueRows, const R: usize>(
    p: &[f32],
    v: V,
    acc: &mut [f32],
    shape: RowsShape,
) {
    let mut d = 0;
    while d + 16 <= shape.dv {
        // SAFETY: the caller's contract, and `d + 16 <= dv`.
        unsafe { tile256::<V, R, 2>(p, v, acc, shape, d) };
        d += 16;
    }
    while d + 8 <= shape.dv {
        // SAFETY: as above with `d + 8 <= dv`.
        unsafe { tile256::<V, R, 1>(p, v, acc, shape, d) };
        d += 8;
    }
}

/// The output rows of a weighted sum four at a time, each group by `$rows`.
macro_rules! by_fours {
    ($rows:ident, $v:expr, $n_rows:expr, $p:expr, $acc:expr, $shape:expr) => {{
        let (v, n_rows, p, acc, shape) = ($v, $n_rows, $p, $acc, $shape);
        let mut r = 0;
        while r < n_rows {
            let t = (n_rows - r).min(4);
            let (p, acc) = (&p[r * shape.p_stride..], &mut acc[r * shape.dv..]);
            // SAFETY: the token proves the features the kernels enable; rows `r..r + t`
            // of `shape` fit the slices and every cell's row holds `dv` values (checked
            // by the caller).
            unsafe {
                match t {
                    4 => $rows::<_, 4>(p, v, acc, shape),
                    3 => $rows::<_, 3>(p, v, acc, shape),
                    2 => $rows::<_, 2>(p, v, acc, shape),
                    _ => $rows::<_, 1>(p, v, acc, shape),
                }
            }
            r += t;
        }
    }};
}

macro_rules! weighted_rows {
    ($(#[$doc:meta])* $name:ident, $(#[$doc16:meta])* $name16:ident, $token:ty, $rows:ident, $width:literal) => {
        $(#[$doc])*
        pub(crate) fn $name(
            _: $token,
            rows: usize,
            p: &[f32],
            v: &[f32],
            acc: &mut [f32],
            shape: RowsShape,
        ) -> usize {
            shape.check(rows, p, acc);
            assert!(
                shape.n == 0 || (shape.n - 1) * shape.v_stride + shape.dv <= v.len(),
                "weighted rows: value rows too short"
            );
            let v = F32Rows {
                ptr: v.as_ptr(),
                stride: shape.v_stride,
            };
            by_fours!($rows, v, rows, p, acc, shape);
            shape.dv - shape.dv % $width
        }

        $(#[$doc16])*
        pub(crate) fn $name16(
            _: $token,
            rows: usize,
            p: &[f32],
            v: &[&[f16]],
            acc: &mut [f32],
            shape: RowsShape,
        ) -> usize {
            shape.check(rows, p, acc);
            assert!(
                v.len() >= shape.n && v[..shape.n].iter().all(|r| r.len() >= shape.dv),
                "weighted rows: value rows too short"
            );
            by_fours!($rows, F16Rows(v), rows, p, acc, shape);
            shape.dv - shape.dv % $width
        }
    };
}

weighted_rows!(
    /// `acc[r][d] = fma(v[i][d], p[r][i], acc[r][d])` over cells `i` in order, for `rows`
    /// output rows and the values whole 16-lane vectors cover, AVX-512; returns how many
    /// values of each row it did.
    weighted_rows_avx512,
    /// [`weighted_rows_avx512`] over F16 value rows in place.
    weighted_f16_rows_avx512,
    Avx512Token,
    rows512,
    16
);
weighted_rows!(
    /// [`weighted_rows_avx512`] with AVX2 and 8-lane vectors.
    weighted_rows_avx2,
    /// [`weighted_rows_avx2`] over F16 value rows in place.
    weighted_f16_rows_avx2,
    Avx2Token,
    rows256,
    8
);
