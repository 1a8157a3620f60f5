//! IQ4_NL: 4-bit indices into a fixed non-linear table of 16 values, one f16 scale per 32.
//!
//! llama.cpp has two quantizers for it, both built on `quantize_row_iq4_nl_impl`:
//! - `quantize_row_iq4_nl_ref` (what ggml's CPU backend uses to quantize activations and
//!   K/V cache rows): no search (`ntry = -1`); the scale maps the signed value of largest
//!   magnitude onto the table's first entry, the indices are the nearest table values, and
//!   the stored scale is the weighted least-squares fit (weights `x²`) for those indices.
//! - `quantize_iq4_nl` (what `llama-quantize` writes, with no importance matrix):
//!   `ntry = 7`, so 15 more scales around the first guess are tried and the best fit wins;
//!   the indices are then recomputed from the chosen scale.
//!
//! [`quantize_row_iq4_nl`] is the first and [`quantize_iq4_nl`] the second.

use half::f16;

use crate::blocks::{BlockIQ4NL, QK4_NL};

/// The IQ4_NL table (`kvalues_iq4nl`).
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Blocks whose largest magnitude is below this are stored as zero (`GROUP_MAX_EPS`).
const GROUP_MAX_EPS: f32 = 1e-15;

/// Index of the table value nearest `x`, the upper one on a tie (`best_index_int8`).
///
/// `x` picks entry `j` once it reaches the midpoint of entries `j - 1` and `j`; doubling
/// `x` keeps that comparison exact. NaN picks entry 0.
fn best_index(values: &[i8; 16], x: f32) -> usize {
    let x2 = x + x;
    let mut idx = 0;
    let mut step = values.len() / 2;
    while step > 0 {
        let j = idx + step;
        if x2 >= f32::from(i16::from(values[j - 1]) + i16::from(values[j])) {
            idx = j;
        }
        step /= 2;
    }
    idx
}

/// Indices of `xb` scaled by `id`, with the weighted sums `Σ w·q·x` and `Σ w·q²`.
fn fit(xb: &[f32], weight: &[f32], id: f32, indices: &mut [u8; QK4_NL]) -> (f32, f32) {
    let mut sumqx = 0.0f32;
    let mut sumq2 = 0.0f32;
    for ((&v, &w), l) in xb.iter().zip(weight).zip(indices.iter_mut()) {
        *l = best_index(&KVALUES_IQ4NL, id * v) as u8;
        let q = f32::from(KVALUES_IQ4NL[usize::from(*l)]);
        sumqx += w * q * v;
        sumq2 += w * q * q;
    }
    (sumqx, sumq2)
}

/// `quantize_row_iq4_nl_impl` for one block of 32 with no importance weights: returns the
/// scale and fills the indices.
fn quantize_block(xb: &[f32], ntry: i32, indices: &mut [u8; QK4_NL]) -> f32 {
    let d = fit_scale(xb, ntry, indices);
    if ntry > 0 {
        // The indices come from the f32 scale, not its f16 rounding.
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (l, &v) in indices.iter_mut().zip(xb) {
            *l = best_index(&KVALUES_IQ4NL, id * v) as u8;
        }
    }
    d
}

/// The scale of one block, with the indices of the first guess (all 0 for a block of
/// near-zeros, whose scale is 0).
fn fit_scale(xb: &[f32], ntry: i32, indices: &mut [u8; QK4_NL]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in xb {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        *indices = [0; QK4_NL];
        return 0.0;
    }
    let mut weight = [0.0f32; QK4_NL];
    for (w, &v) in weight.iter_mut().zip(xb) {
        *w = v * v;
    }
    let values0 = f32::from(KVALUES_IQ4NL[0]);
    let first = if ntry > 0 {
        -max / values0
    } else {
        max / values0
    };
    let (sumqx, sumq2) = fit(xb, &weight, 1.0 / first, indices);
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    let mut scratch = [0u8; QK4_NL];
    for itry in -ntry..=ntry {
        let id = (itry + i32::from(KVALUES_IQ4NL[0])) as f32 / max;
        let (sumqx, sumq2) = fit(xb, &weight, id, &mut scratch);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

fn quantize_with(x: &[f32], y: &mut [BlockIQ4NL], ntry: i32) {
    let mut indices = [0u8; QK4_NL];
    for (xb, yb) in x.chunks_exact(QK4_NL).zip(y.iter_mut()) {
        yb.d = f16::from_f32(quantize_block(xb, ntry, &mut indices));
        for j in 0..QK4_NL / 2 {
            yb.qs[j] = indices[j] | (indices[j + QK4_NL / 2] << 4);
        }
    }
}

/// Quantizes `x` to IQ4_NL blocks as `quantize_row_iq4_nl_ref` does (no scale search):
/// the quantizer ggml's CPU backend applies to activations and K/V cache rows.
///
/// # Panics
///
/// When `x.len() != y.len() * 32`.
pub fn quantize_row_iq4_nl(x: &[f32], y: &mut [BlockIQ4NL]) {
    assert_eq!(
        x.len(),
        y.len() * QK4_NL,
        "quantize_row_iq4_nl: length mismatch"
    );
    quantize_with(x, y, -1);
}

/// Quantizes `x` to IQ4_NL blocks as `quantize_iq4_nl` does without an importance matrix
/// (searching 15 scales per block): what `llama-quantize` writes into model files.
///
/// # Panics
///
/// When `x.len() != y.len() * 32`.
pub fn quantize_iq4_nl(x: &[f32], y: &mut [BlockIQ4NL]) {
    assert_eq!(
        x.len(),
        y.len() * QK4_NL,
        "quantize_iq4_nl: length mismatch"
    );
    quantize_with(x, y, 7);
}

/// Dequantizes IQ4_NL blocks into `y`.
///
/// # Panics
///
/// When `y.len() != x.len() * 32`.
pub fn dequantize_row_iq4_nl(x: &[BlockIQ4NL], y: &mut [f32]) {
    assert_eq!(
        y.len(),
        x.len() * QK4_NL,
        "dequantize_row_iq4_nl: length mismatch"
    );
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK4_NL)) {
        let d = xb.d.to_f32();
        for (j, &q) in xb.qs.iter().enumerate() {
            yb[j] = d * f32::from(KVALUES_IQ4NL[usize::from(q & 0x0F)]);
            yb[j + QK4_NL / 2] = d * f32::from(KVALUES_IQ4NL[usize::from(q >> 4)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_index_picks_the_nearest_value_and_the_upper_on_ties() {
        assert_eq!(best_index(&KVALUES_IQ4NL, -500.0), 0);
        assert_eq!(best_index(&KVALUES_IQ4NL, 500.0), 15);
        assert_eq!(best_index(&KVALUES_IQ4NL, 0.0), 8);
        assert_eq!(
            best_index(&KVALUES_IQ4NL, -4.5),
            8,
            "tie between -10 and 1 goes up"
        );
        assert_eq!(best_index(&KVALUES_IQ4NL, -4.5 - 1e-6), 7);
        assert_eq!(best_index(&KVALUES_IQ4NL, 100.0), 14);
        assert_eq!(best_index(&KVALUES_IQ4NL, f32::NAN), 0);
        for (i, &v) in KVALUES_IQ4NL.iter().enumerate() {
            assert_eq!(best_index(&KVALUES_IQ4NL, f32::from(v)), i);
        }
    }

    #[test]
    fn table_values_scaled_are_reproduced_exactly_by_the_search() {
        // A block made of the table itself, scaled by a power of two, is a perfect fit.
        let x: Vec<f32> = (0..32)
            .map(|i| f32::from(KVALUES_IQ4NL[i % 16]) * 0.125)
            .collect();
        let mut y = [BlockIQ4NL {
            d: f16::ZERO,
            qs: [0; 16],
        }];
        quantize_iq4_nl(&x, &mut y);
        let mut back = [0.0f32; 32];
        dequantize_row_iq4_nl(&y, &mut back);
        assert_eq!(back.as_slice(), x.as_slice());
    }

    #[test]
    fn reference_quantizer_maps_the_extreme_to_the_first_entry() {
        // Without a search the largest magnitude (here positive) takes index 0 (-127) under
        // a negative scale.
        let mut x = [0.5f32; 32];
        x[5] = 2.0;
        let mut y = [BlockIQ4NL {
            d: f16::ZERO,
            qs: [0; 16],
        }];
        quantize_row_iq4_nl(&x, &mut y);
        assert_eq!(y[0].qs[5] & 0x0F, 0);
        assert!(y[0].d.to_f32() < 0.0);
        let mut back = [0.0f32; 32];
        dequantize_row_iq4_nl(&y, &mut back);
        assert!((back[5] - 2.0).abs() < 0.05, "{}", back[5]);
    }

    #[test]
    fn zero_block_has_zero_scale() {
        let mut y = [BlockIQ4NL {
            d: f16::ONE,
            qs: [1; 16],
        }];
        quantize_iq4_nl(&[0.0; 32], &mut y);
        assert_eq!(
            (y[0].d, y[0].qs),
            (f16::ZERO, [0x88; 16]),
            "indices of 0 * 0: value 1"
        );
        quantize_row_iq4_nl(&[0.0; 32], &mut y);
        assert_eq!((y[0].d, y[0].qs), (f16::ZERO, [0; 16]));
    }
}
