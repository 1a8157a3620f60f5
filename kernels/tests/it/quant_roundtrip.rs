//! Quantize then dequantize: the error stays within per-type budgets.
//!
//! Two kinds of budget: llama.cpp's `test-quantize-fns` total error on its own synthetic
//! data (`0.1 + 2 cos(i)`, 4096 values, `sqrt(Σ err²) / n < 0.002`), and per-element bounds
//! that follow from each format's definition, checked by proptest on random rows of
//! awkward lengths. The latter are also the only check of the quantizers gguf-py lacks
//! (Q8_1, Q8_K, IQ4_NL; the k-quants are checked against llama.cpp in `kquant_refs`), together with the structural facts of their blocks (Q8_1's `s`,
//! Q8_K's `bsums`).

use half::f16;
use kernels::GgmlType;
use kernels::blocks::{BlockQ8_1, BlockQ8K, QK_K};
use kernels::quant::{
    dequantize_row, dequantize_row_iq4_nl, quantize_iq4_nl, quantize_row, quantize_row_q8_1,
    quantize_row_q8_k,
};
use proptest::prelude::*;

/// The types [`quantize_row`] supports, with `test-quantize-fns`'s total error budget.
const QUANTIZED: [(GgmlType, f32); 16] = [
    (GgmlType::F32, 0.002),
    (GgmlType::F16, 0.002),
    (GgmlType::BF16, 0.002),
    (GgmlType::Q4_0, 0.002),
    (GgmlType::Q4_1, 0.002),
    (GgmlType::Q5_0, 0.002),
    (GgmlType::Q5_1, 0.002),
    (GgmlType::Q8_0, 0.002),
    (GgmlType::Q8_1, 0.002),
    (GgmlType::Q8_K, 0.002),
    (GgmlType::IQ4_NL, 0.002),
    (GgmlType::Q2_K, 0.0075),
    (GgmlType::Q3_K, 0.004),
    (GgmlType::Q4_K, 0.002),
    (GgmlType::Q5_K, 0.002),
    (GgmlType::Q6_K, 0.002),
];

/// Block counts that do not divide nicely into SIMD widths or threads.
const AWKWARD_BLOCKS: [usize; 9] = [1, 2, 3, 5, 7, 15, 17, 31, 33];

fn round_trip(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    let mut bytes = vec![0u8; ty.row_bytes(x.len() as u64).unwrap() as usize];
    quantize_row(ty, x, &mut bytes).unwrap();
    let mut back = vec![0.0f32; x.len()];
    dequantize_row(ty, &bytes, &mut back).unwrap();
    back
}

/// llama.cpp's `array_rmse`: `sqrt(Σ (a - b)²) / n`.
fn total_error(a: &[f32], b: &[f32]) -> f32 {
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x - y).powi(2))
        .sum();
    sum.sqrt() as f32 / a.len() as f32
}

#[test]
fn total_error_on_llama_cpp_test_data_is_within_budget() {
    let x: Vec<f32> = (0..32 * 128)
        .map(|i| 0.1 + 2.0 * (i as f32).cos())
        .collect();
    for (ty, budget) in QUANTIZED {
        let err = total_error(&x, &round_trip(ty, &x));
        assert!(err < budget, "{ty}: total error {err} over {budget}");
    }
    // The searched IQ4_NL quantizer (what llama-quantize writes) fits at least as well.
    let mut blocks = vec![kernels::blocks::BlockIQ4NL::ZERO; x.len() / 32];
    quantize_iq4_nl(&x, &mut blocks);
    let mut back = vec![0.0; x.len()];
    dequantize_row_iq4_nl(&blocks, &mut back);
    let searched = total_error(&x, &back);
    assert!(searched < 0.002, "iq4_nl (searched): {searched}");
    assert!(searched <= total_error(&x, &round_trip(GgmlType::IQ4_NL, &x)));
}

/// Largest error allowed for each value of one block, from the format's definition: half
/// a quantization step (a whole step where the top quant is capped), plus what rounding
/// the scale (and minimum) to f16 can add.
fn element_budget(ty: GgmlType, block: &[f32]) -> Box<dyn Fn(f32) -> f32> {
    let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let min = block.iter().copied().fold(f32::MAX, f32::min);
    let max = block.iter().copied().fold(-f32::MAX, f32::max);
    let range = max - min;
    // Rounding a scale `d` to f16 moves a value with quant `q` by at most |q| * d * 2^-11,
    // and below 2^-14 by |q| * 2^-25 (f16 subnormals are absolute); `slack` covers f32.
    let half_ulp = 1.0 / 2048.0;
    let f16_abs = 2f32.powi(-18);
    let slack = 1.0 + 1e-5;
    let flat = move |b: f32| -> Box<dyn Fn(f32) -> f32> { Box::new(move |_| b * slack) };
    let linear = |step: f32, largest_q: f32| step * (0.5 + largest_q * half_ulp) + f16_abs;
    match ty {
        GgmlType::F32 => flat(0.0),
        GgmlType::F16 => Box::new(move |x: f32| x.abs() * half_ulp + 2f32.powi(-25)),
        GgmlType::BF16 => Box::new(|x: f32| x.abs() / 256.0),
        GgmlType::Q8_0 | GgmlType::Q8_1 => flat(linear(amax / 127.0, 127.0)),
        // Half a step, plus the f32 rounding of `1 / iscale` and of `x * iscale` (a value at
        // a half-step boundary can land on either side), up to 127 steps out.
        GgmlType::Q8_K => flat(amax / 127.0 * (0.5 + 127.0 * f32::EPSILON)),
        // The extreme of the opposite sign to the largest magnitude is capped one step short.
        GgmlType::Q4_0 => flat(linear(amax / 8.0, 8.0) + amax / 16.0),
        GgmlType::Q5_0 => flat(linear(amax / 16.0, 16.0) + amax / 32.0),
        GgmlType::Q4_1 => flat(linear(range / 15.0, 15.0) + min.abs() * half_ulp),
        GgmlType::Q5_1 => flat(linear(range / 31.0, 31.0) + min.abs() * half_ulp),
        // Non-linear: the widest gap of the table (89..113) is 24/127 of the scaled range,
        // and the least-squares scale may shrink below the extreme; measured worst case on
        // uniform data is 0.136.
        GgmlType::IQ4_NL => flat(amax * 0.16 + f16_abs),
        // The k-quants fit each sub-block's scale (and minimum) to a weighted error, not the
        // largest one, and store it in 4 to 8 bits relative to the super-block's, so an
        // extreme value can be clipped by about a step of the super-block's range (measured
        // worst: 0.63, 1.05, 0.85, 0.95 and 0.72 steps); we allow a step and a half. Below
        // f16's normal range the super-block scales are off by up to 2^-25 absolute, times
        // the largest sub-block scale and quant.
        GgmlType::Q2_K => flat(1.5 * range / 3.0 + 2f32.powi(-25) * 60.0),
        GgmlType::Q3_K => flat(1.5 * amax / 4.0 + 2f32.powi(-25) * 128.0),
        GgmlType::Q4_K => flat(1.5 * range / 15.0 + 2f32.powi(-25) * 1008.0),
        GgmlType::Q5_K => flat(1.5 * range / 31.0 + 2f32.powi(-25) * 2016.0),
        GgmlType::Q6_K => flat(1.5 * amax / 32.0 + 2f32.powi(-25) * 4096.0),
        other => panic!("no budget for {other}"),
    }
}

/// Rows of whole blocks with one magnitude per row between 1e-3 and 1e3, of a type.
fn rows() -> impl Strategy<Value = (usize, Vec<f32>)> {
    (
        0..QUANTIZED.len(),
        prop::sample::select(&AWKWARD_BLOCKS[..]),
        -3.0f32..3.0,
    )
        .prop_flat_map(|(t, blocks, exp)| {
            let n = blocks * QUANTIZED[t].0.block_size();
            let scale = 10f32.powf(exp);
            (
                Just(t),
                prop::collection::vec((-1.0f32..1.0).prop_map(move |v| v * scale), n),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_value_is_within_its_block_budget((t, x) in rows()) {
        let ty = QUANTIZED[t].0;
        let back = round_trip(ty, &x);
        let bs = ty.block_size().max(32);
        for (b, (xb, yb)) in x.chunks(bs).zip(back.chunks(bs)).enumerate() {
            let budget = element_budget(ty, xb);
            for (j, (&v, &w)) in xb.iter().zip(yb).enumerate() {
                prop_assert!((v - w).abs() <= budget(v),
                    "{ty} block {b} value {j}: {v} came back as {w} (budget {})", budget(v));
            }
        }
    }

    #[test]
    fn q8_1_sum_field_is_the_scaled_sum_of_its_quants(
        x in prop::sample::select(&AWKWARD_BLOCKS[..])
            .prop_flat_map(|b| prop::collection::vec(-50.0f32..50.0, b * 32))
    ) {
        let mut y = vec![BlockQ8_1::ZERO; x.len() / 32];
        quantize_row_q8_1(&x, &mut y);
        for (xb, yb) in x.chunks(32).zip(&y) {
            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let sum: i32 = yb.qs.iter().map(|&q| i32::from(q)).sum();
            prop_assert_eq!(yb.d, f16::from_f32(d));
            prop_assert_eq!(yb.s, f16::from_f32(sum as f32 * d));
            prop_assert!(yb.qs.iter().any(|&q| q.abs() == 127) || amax == 0.0);
        }
    }

    #[test]
    fn q8_k_block_sums_and_scale_follow_the_spec(
        x in prop::sample::select(&[1usize, 2, 3, 5][..])
            .prop_flat_map(|b| prop::collection::vec(-8.0f32..8.0, b * QK_K))
    ) {
        let mut y = vec![BlockQ8K::ZERO; x.len() / QK_K];
        quantize_row_q8_k(&x, &mut y);
        for (xb, yb) in x.chunks(QK_K).zip(&y) {
            for (g, &sum) in yb.bsums.iter().enumerate() {
                let want: i32 = yb.qs[16 * g..16 * g + 16].iter().map(|&q| i32::from(q)).sum();
                prop_assert_eq!(i32::from(sum), want);
            }
            // The value of largest magnitude maps to -127 exactly, whatever its sign.
            let (imax, _) = xb.iter().enumerate().fold((0, 0.0f32), |(bi, bm), (i, v)| {
                if v.abs() > bm { (i, v.abs()) } else { (bi, bm) }
            });
            prop_assert_eq!(yb.qs[imax], -127);
            let d = -xb[imax] / 127.0;
            prop_assert!((yb.d - d).abs() <= d.abs() * 1e-6, "d {} vs {}", yb.d, d);
        }
    }
}
