//! Softmax over one row, optionally scaled and masked, as ggml's `soft_max_ext`.

use super::expf::exp_sum_isa;
use crate::cpu::Isa;

/// Softmax of one row in place: `x[i] = exp(x[i] - max) / Σ exp(x[j] - max)`.
///
/// Same as [`softmax_scaled_masked`] with scale 1 and no mask.
pub fn softmax(x: &mut [f32]) {
    softmax_scaled_masked(x, 1.0, None);
}

/// Softmax of `x * scale + mask` in place, as ggml's `soft_max_ext` without ALiBi or
/// sinks.
///
/// The steps round as ggml's do: `x[i] * scale` then `+ mask[i]` in `f32`; the row
/// maximum is subtracted before `exp`; the exponentials are summed in `f64` by groups; the
/// reciprocal of the sum is taken in `f64`, rounded to `f32`, and every exponential is
/// multiplied by it. A mask entry of `-inf` gives that entry exactly 0.
///
/// A row whose every entry is `-inf` after masking (nothing to attend to) becomes all
/// zeros; ggml would produce NaN there. An empty row is left alone.
///
/// The exponentials are ggml's (`ggml_v_expf`) and are summed as ggml sums a row padded
/// with masked entries to a multiple of 16 ([`exp_sum_isa`]), which llama.cpp's
/// attention rows are: the result is llama.cpp's to the bit for such rows. (On a row
/// whose length is not a multiple of 16 ggml takes the C library's `exp` for the tail.)
///
/// # Panics
/// If `mask` does not have the length of `x`.
pub fn softmax_scaled_masked(x: &mut [f32], scale: f32, mask: Option<&[f32]>) {
    if let Some(m) = mask {
        assert_eq!(m.len(), x.len(), "softmax: mask length differs from input");
    }
    if x.is_empty() {
        return;
    }
    if scale != 1.0 {
        for v in x.iter_mut() {
            *v *= scale;
        }
    }
    if let Some(m) = mask {
        for (v, &m) in x.iter_mut().zip(m) {
            *v += m;
        }
    }
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let isa = Isa::detect().unwrap_or(Isa::Scalar);
    let inv_sum = (1.0 / exp_sum_isa(isa, x, max)) as f32;
    for v in x.iter_mut() {
        *v *= inv_sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_support::{assert_ulps, from_bits, input};
    use crate::ops::testdata;
    use proptest::prelude::*;

    /// The exact softmax of ggml's `f32` logits: `x * scale + mask` and the subtraction
    /// of the maximum round in `f32` (those roundings define the result), the rest is `f64`.
    fn reference(x: &[f32], scale: f32, mask: &[f32]) -> Vec<f64> {
        let z: Vec<f32> = x.iter().zip(mask).map(|(&v, &m)| v * scale + m).collect();
        let max = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f64> = z.iter().map(|&v| f64::from(v - max).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    #[test]
    fn matches_llama_cpp_to_a_few_ulps() {
        let rows: Vec<f32> = (0..4 * 37).map(|i| input(i, 4) * 4.0).collect();
        let mut plain = rows.clone();
        for row in plain.chunks_exact_mut(37) {
            softmax(row);
        }
        // Rows of 37: ggml takes the C library's `exp` for the last 5, we pad (see above).
        assert_ulps(&plain, &from_bits(&testdata::native::SOFTMAX), 4);
        assert_ulps(&plain, &from_bits(&testdata::plain::SOFTMAX), 4);

        let mut masked = rows.clone();
        for (r, row) in masked.chunks_exact_mut(37).enumerate() {
            let mask: Vec<f32> = (0..37)
                .map(|j| match j {
                    j if j > 5 + 12 * r => f32::NEG_INFINITY,
                    j if j.is_multiple_of(2) => -1.5,
                    _ => 0.0,
                })
                .collect();
            softmax_scaled_masked(row, 0.125, Some(&mask));
            assert!(
                row[(6 + 12 * r).min(37)..].iter().all(|&p| p == 0.0),
                "masked entries are 0"
            );
        }
        assert_ulps(&masked, &from_bits(&testdata::native::SOFTMAX_MASKED), 4);
        assert_ulps(&masked, &from_bits(&testdata::plain::SOFTMAX_MASKED), 4);
    }

    #[test]
    fn sums_to_one_and_keeps_order() {
        let mut x = [1.0f32, 2.0, 3.0, 0.5, -7.0];
        softmax(&mut x);
        let sum: f32 = x.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
        assert!(x[2] > x[1] && x[1] > x[0] && x[0] > x[3] && x[3] > x[4]);
        // e^1 / (e^1 + e^2 + e^3 + e^0.5 + e^-7) = 0.0853664...
        assert!((x[0] - 0.085_366_4).abs() < 1e-7, "{}", x[0]);
    }

    #[test]
    fn large_logits_do_not_overflow() {
        let mut x = [1000.0f32, 1000.0, 999.0];
        softmax(&mut x);
        assert!(x.iter().all(|v| v.is_finite()));
        assert!((x[0] - x[1]).abs() == 0.0 && (x[0] + x[1] + x[2] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn fully_masked_row_is_zero_and_empty_row_is_fine() {
        let mut x = [1.0f32, 2.0];
        softmax_scaled_masked(&mut x, 1.0, Some(&[f32::NEG_INFINITY; 2]));
        assert_eq!(x, [0.0, 0.0]);
        softmax(&mut []);
    }

    proptest! {
        #[test]
        fn matches_f64_reference(
            x in prop::collection::vec(-50.0f32..50.0, 1..200),
            scale in 0.01f32..2.0,
            mask_seed in any::<u64>(),
        ) {
            let mask: Vec<f32> = (0..x.len() as u64)
                .map(|i| match (i.wrapping_mul(0x9E37_79B9) ^ mask_seed) % 5 {
                    0 => f32::NEG_INFINITY,
                    1 => -2.5,
                    _ => 0.0,
                })
                .collect();
            let mut got = x.clone();
            softmax_scaled_masked(&mut got, scale, Some(&mask));
            let all_masked = mask.iter().all(|m| *m == f32::NEG_INFINITY);
            let want = reference(&x, scale, &mask);
            for (g, w) in got.iter().zip(&want) {
                let w = if all_masked { 0.0 } else { *w };
                prop_assert!((f64::from(*g) - w).abs() <= 1e-6 * w + 1e-12, "got {g} want {w}");
            }
            if !all_masked {
                let sum: f64 = got.iter().map(|&v| f64::from(v)).sum();
                prop_assert!((sum - 1.0).abs() < 1e-5);
            }
        }
    }
}
