//! The value side of flash attention: a cell's cached value row widened to f32, and a
//! block's value rows, weighted by each query row's probabilities, added into every
//! row's output at once (so a value row is loaded once for all the rows of a call).
//!
//! Each piece has an AVX2 / AVX-512 version in `arch::x86::flash_attn` that gives the same
//! bits as the portable one here: the dequantizers are `crate::quant`'s, and the weighted
//! sum is one fused multiply-add per value and cell, cells in order.

use half::f16;

use crate::GgmlType;
use crate::arch::cast::as_blocks;
use crate::blocks::{BlockIQ4NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
use crate::cpu::Isa;
use crate::quant::{
    dequantize_row_f16, dequantize_row_iq4_nl, dequantize_row_q4_0, dequantize_row_q4_1,
    dequantize_row_q5_0, dequantize_row_q5_1, dequantize_row_q8_0,
};

/// True for the types a K/V cache may hold and flash attention reads.
pub(super) fn is_cache_type(ty: GgmlType) -> bool {
    CACHE_TYPES.contains(&ty)
}

/// The types a cache row may be stored in.
pub(super) const CACHE_TYPES: [GgmlType; 8] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::IQ4_NL,
];

/// Runs the typed dequantizer of `T` over `bytes`: the scalar one or the AVX2 one.
macro_rules! typed {
    ($isa:expr, $bytes:expr, $out:expr, $t:ty, $scalar:ident, $avx2:ident) => {{
        let x = as_blocks::<$t>($bytes)?;
        match $isa {
            Isa::Scalar => $scalar(x, $out),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(token) => crate::arch::x86::flash_attn::$avx2(token, x, $out),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(token) => crate::arch::x86::flash_attn::$avx2(token.avx2(), x, $out),
        }
    }};
}

/// Widens one cell's head, `bytes` of type `ty`, into `out` (its values), on `isa`; every
/// path gives the bits of [`crate::quant::dequantize_row`].
///
/// `None` when the bytes are not aligned for the type's blocks or `ty` is not a cache
/// type ([`is_cache_type`]).
///
/// # Panics
///
/// When `bytes` do not hold exactly `out.len()` values.
pub(super) fn dequantize_isa(isa: Isa, ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Option<()> {
    match ty {
        GgmlType::F32 => out.copy_from_slice(as_blocks::<f32>(bytes)?),
        GgmlType::F16 => typed!(
            isa,
            bytes,
            out,
            f16,
            dequantize_row_f16,
            dequantize_f16_avx2
        ),
        GgmlType::Q8_0 => typed!(
            isa,
            bytes,
            out,
            BlockQ8_0,
            dequantize_row_q8_0,
            dequantize_q8_0_avx2
        ),
        GgmlType::Q4_0 => typed!(
            isa,
            bytes,
            out,
            BlockQ4_0,
            dequantize_row_q4_0,
            dequantize_q4_0_avx2
        ),
        GgmlType::Q4_1 => typed!(
            isa,
            bytes,
            out,
            BlockQ4_1,
            dequantize_row_q4_1,
            dequantize_q4_1_avx2
        ),
        GgmlType::Q5_0 => typed!(
            isa,
            bytes,
            out,
            BlockQ5_0,
            dequantize_row_q5_0,
            dequantize_q5_0_avx2
        ),
        GgmlType::Q5_1 => typed!(
            isa,
            bytes,
            out,
            BlockQ5_1,
            dequantize_row_q5_1,
            dequantize_q5_1_avx2
        ),
        GgmlType::IQ4_NL => typed!(
            isa,
            bytes,
            out,
            BlockIQ4NL,
            dequantize_row_iq4_nl,
            dequantize_iq4_nl_avx2
        ),
        _ => return None,
    }
    Some(())
}

/// The probabilities of a block: row `r`'s weight for cell `i` is `p[r * stride + i]`,
/// for `i < n`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Weights<'a> {
    /// The rows of probabilities.
    pub p: &'a [f32],
    /// Distance between two rows.
    pub stride: usize,
    /// Cells per row.
    pub n: usize,
}

/// The value rows of a block: cell `i`'s row starts at `v[i * stride]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Values<'a> {
    /// The rows.
    pub v: &'a [f32],
    /// Distance between two rows.
    pub stride: usize,
}

/// Adds the weighted value rows into every output row: for each row `r` of `acc` (rows of
/// `dv`) and value `d`, `acc[r][d] = fma(v[i][d], p[r][i], acc[r][d])` for `i = 0..n` in
/// order. Every path gives the same bits.
///
/// # Panics
///
/// When `acc` is not whole rows of `dv`, or the weights or values are too short for them.
pub(super) fn add_weighted_rows(
    isa: Isa,
    w: Weights<'_>,
    values: Values<'_>,
    acc: &mut [f32],
    dv: usize,
) {
    let rows = acc.len().checked_div(dv).unwrap_or(0);
    assert_eq!(rows * dv, acc.len(), "weighted rows: partial output row");
    if rows == 0 || w.n == 0 {
        return;
    }
    assert!(
        (rows - 1) * w.stride + w.n <= w.p.len()
            && (w.n - 1) * values.stride + dv <= values.v.len(),
        "weighted rows: weights or values too short"
    );
    #[cfg(target_arch = "x86_64")]
    let shape = crate::arch::x86::flash_attn::RowsShape {
        n: w.n,
        p_stride: w.stride,
        v_stride: values.stride,
        dv,
    };
    let done = match isa {
        Isa::Scalar => 0,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(token) => {
            crate::arch::x86::flash_attn::weighted_rows_avx2(token, rows, w.p, values.v, acc, shape)
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(token) => crate::arch::x86::flash_attn::weighted_rows_avx512(
            token, rows, w.p, values.v, acc, shape,
        ),
    };
    for (r, out) in acc.chunks_exact_mut(dv).enumerate() {
        let p = &w.p[r * w.stride..r * w.stride + w.n];
        for (d, a) in out.iter_mut().enumerate().skip(done) {
            for (i, &pi) in p.iter().enumerate() {
                *a = values.v[i * values.stride + d].mul_add(pi, *a);
            }
        }
    }
}

/// [`add_weighted_rows`] over F16 value rows read in place (`rows[i]` is cell `i`'s, at
/// least `dv` values): the SIMD paths widen each vector as they load it, the scalar one
/// each value, so the bits are those of widening the rows into a buffer first.
///
/// # Panics
///
/// As [`add_weighted_rows`], or when a row is shorter than `dv`.
pub(super) fn add_weighted_f16_rows(
    isa: Isa,
    w: Weights<'_>,
    rows: &[&[f16]],
    acc: &mut [f32],
    dv: usize,
) {
    let n_out = acc.len().checked_div(dv).unwrap_or(0);
    assert_eq!(n_out * dv, acc.len(), "weighted rows: partial output row");
    if n_out == 0 || w.n == 0 {
        return;
    }
    assert!(
        (n_out - 1) * w.stride + w.n <= w.p.len()
            && rows.len() >= w.n
            && rows[..w.n].iter().all(|r| r.len() >= dv),
        "weighted rows: weights or values too short"
    );
    #[cfg(target_arch = "x86_64")]
    let shape = crate::arch::x86::flash_attn::RowsShape {
        n: w.n,
        p_stride: w.stride,
        v_stride: 0,
        dv,
    };
    let done = match isa {
        Isa::Scalar => 0,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(token) => crate::arch::x86::flash_attn::weighted_f16_rows_avx2(
            token, n_out, w.p, rows, acc, shape,
        ),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(token) => crate::arch::x86::flash_attn::weighted_f16_rows_avx512(
            token, n_out, w.p, rows, acc, shape,
        ),
    };
    for (r, out) in acc.chunks_exact_mut(dv).enumerate() {
        let p = &w.p[r * w.stride..r * w.stride + w.n];
        for (d, a) in out.iter_mut().enumerate().skip(done) {
            for (&pi, row) in p.iter().zip(rows) {
                *a = row[d].to_f32().mul_add(pi, *a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::quant::{dequantize_row, quantize_row};

    /// Awkward block counts, as the kernel tests use everywhere.
    const BLOCKS: [usize; 10] = [1, 2, 3, 5, 7, 8, 15, 17, 31, 33];

    fn floats(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 6.0
            })
            .collect()
    }

    proptest! {
        #[test]
        fn every_path_dequantizes_to_the_bits_of_the_scalar_dequantizer(
            ty in prop::sample::select(&CACHE_TYPES[..]),
            blocks in prop::sample::select(&BLOCKS[..]),
            seed in any::<u64>(),
        ) {
            let n = blocks * 32;
            let mut x = floats(n, seed);
            // Exact zeros and a constant block: the sign of zero and d == 0 must survive.
            x[..16].fill(0.0);
            let mut bytes = vec![0u16; (n / ty.block_size() * ty.type_size()).div_ceil(2)];
            let bytes = &mut crate::arch::cast::as_bytes_mut(&mut bytes)
                [..n / ty.block_size() * ty.type_size()];
            quantize_row(ty, &x, bytes).unwrap();
            let mut want = vec![0.0f32; n];
            dequantize_row(ty, bytes, &mut want).unwrap();
            for isa in Isa::available() {
                let mut got = vec![f32::NAN; n];
                dequantize_isa(isa, ty, bytes, &mut got).unwrap();
                let (g, w): (Vec<u32>, Vec<u32>) =
                    (got.iter().map(|v| v.to_bits()).collect(), want.iter().map(|v| v.to_bits()).collect());
                prop_assert_eq!(g, w, "{} on {}", ty, isa);
            }
        }

        #[test]
        fn every_path_adds_weighted_rows_to_the_bits_of_the_scalar_sum(
            rows in 1usize..10,
            n in 0usize..70,
            dv in prop::sample::select(&[1usize, 7, 8, 15, 16, 17, 33, 64, 96, 100, 256][..]),
            pad in 0usize..5,
            seed in any::<u64>(),
        ) {
            let (p_stride, v_stride) = (n + pad, dv + pad);
            let p = floats(rows * p_stride, seed);
            let v = floats(n.max(1) * v_stride, seed ^ 1);
            let start = floats(rows * dv, seed ^ 2);
            let w = Weights { p: &p, stride: p_stride, n };
            let values = Values { v: &v, stride: v_stride };
            let mut want = start.clone();
            add_weighted_rows(Isa::Scalar, w, values, &mut want, dv);
            for isa in Isa::available() {
                let mut got = start.clone();
                add_weighted_rows(isa, w, values, &mut got, dv);
                let (g, e): (Vec<u32>, Vec<u32>) =
                    (got.iter().map(|v| v.to_bits()).collect(), want.iter().map(|v| v.to_bits()).collect());
                prop_assert_eq!(g, e, "{}", isa);
            }
            // And the scalar sum is the weighted sum.
            for r in 0..rows {
                for d in 0..dv {
                    let exact: f64 = f64::from(start[r * dv + d])
                        + (0..n).map(|i| f64::from(p[r * p_stride + i]) * f64::from(v[i * v_stride + d])).sum::<f64>();
                    prop_assert!((f64::from(want[r * dv + d]) - exact).abs() < 1e-4);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn f16_rows_in_place_add_to_the_bits_of_widened_rows(
            rows in 1usize..10,
            n in 0usize..70,
            dv in prop::sample::select(&[1usize, 7, 8, 15, 16, 17, 33, 64, 96, 100, 256][..]),
            seed in any::<u64>(),
        ) {
            let p = floats(rows * n, seed);
            let wide: Vec<f32> = floats(n * dv, seed ^ 1)
                .iter()
                .map(|&x| f16::from_f32(x).to_f32())
                .collect();
            let halves: Vec<f16> = wide.iter().map(|&x| f16::from_f32(x)).collect();
            let cells: Vec<&[f16]> = halves.chunks_exact(dv).collect();
            let start = floats(rows * dv, seed ^ 2);
            let w = Weights { p: &p, stride: n, n };
            let mut want = start.clone();
            add_weighted_rows(Isa::Scalar, w, Values { v: &wide, stride: dv }, &mut want, dv);
            for isa in Isa::available() {
                let mut got = start.clone();
                add_weighted_f16_rows(isa, w, &cells, &mut got, dv);
                let (g, e): (Vec<u32>, Vec<u32>) =
                    (got.iter().map(|v| v.to_bits()).collect(), want.iter().map(|v| v.to_bits()).collect());
                prop_assert_eq!(g, e, "{}", isa);
            }
        }
    }

    #[test]
    fn misaligned_bytes_and_other_types_are_refused() {
        let storage = [0u32; 40];
        let bytes = crate::arch::cast::as_bytes(&storage);
        let mut out = [0.0f32; 32];
        assert!(dequantize_isa(Isa::Scalar, GgmlType::Q8_0, &bytes[1..35], &mut out).is_none());
        assert!(dequantize_isa(Isa::Scalar, GgmlType::Q8_0, &bytes[2..36], &mut out).is_some());
        assert!(dequantize_isa(Isa::Scalar, GgmlType::F32, &bytes[2..130], &mut out).is_none());
        assert!(!is_cache_type(GgmlType::Q4_K));
        assert!(
            dequantize_isa(Isa::Scalar, GgmlType::Q4_K, &bytes[..144], &mut [0.0; 256]).is_none()
        );
    }
}
