//! RMSNorm and LayerNorm over one row, as ggml's `rms_norm` and `norm` followed by the
//! graph's `mul` (weight) and `add` (bias).

use super::sum_f64_lanes;

/// RMSNorm of one row: `out[i] = (x[i] * scale) * weight[i]` with
/// `scale = 1 / sqrt(mean(x²) + eps)`.
///
/// As ggml's `rms_norm` (plus the `mul` by the norm weight that llama.cpp's graph
/// applies, or its fused form, which rounds the same way): each square is an `f32`
/// product, the squares are summed in `f64`, the mean is rounded to `f32`, and
/// `scale = 1.0f32 / (mean + eps).sqrt()` is computed in `f32`. Without a weight the
/// output is `x[i] * scale`.
///
/// Gemma's RMSNorm multiplies by `1 + w` rather than `w`. llama.cpp's converter
/// (`conversion/gemma.py`: `GemmaModel`, `Gemma2Model`, `Gemma3Model.norm_shift`) adds the
/// 1 to every tensor named `*norm.weight` before writing the GGUF, and the gemma3 graph
/// then calls the plain `build_norm(.., LLM_NORM_RMS)`. So for Gemma 1/2/3 GGUF files the
/// stored weight already is `1 + w`: pass it here unchanged and do not add 1 again.
/// (Gemma 3n is the exception in the converter; it is not folded.)
///
/// An empty row leaves `out` empty; a row of zeros with `eps == 0` gives NaN, as in ggml.
///
/// # Panics
/// If `out` or `weight` does not have the length of `x`.
pub fn rms_norm(x: &[f32], weight: Option<&[f32]>, eps: f32, out: &mut [f32]) {
    assert_eq!(
        out.len(),
        x.len(),
        "rms_norm: output length differs from input"
    );
    out.copy_from_slice(x);
    rms_norm_in_place(out, weight, eps);
}

/// [`rms_norm`] writing over its input.
///
/// # Panics
/// If `weight` does not have the length of `x`.
pub fn rms_norm_in_place(x: &mut [f32], weight: Option<&[f32]>, eps: f32) {
    if let Some(w) = weight {
        assert_eq!(
            w.len(),
            x.len(),
            "rms_norm: weight length differs from input"
        );
    }
    if x.is_empty() {
        return;
    }
    let sum = sum_f64_lanes(x, |v| v * v);
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0f32 / (mean + eps).sqrt();
    match weight {
        Some(w) => {
            for (v, &w) in x.iter_mut().zip(w) {
                *v = (*v * scale) * w;
            }
        }
        None => {
            for v in x.iter_mut() {
                *v *= scale;
            }
        }
    }
}

/// LayerNorm of one row: `out[i] = ((x[i] - mean) * scale) * weight[i] + bias[i]` with
/// `scale = 1 / sqrt(var(x) + eps)`.
///
/// As ggml's `norm` followed by the graph's `mul` and `add`: the sum of `x` is taken in
/// `f64` and rounded to `f32`, `mean = sum / n` in `f32`; the centred values `x - mean`
/// are `f32`, their squares are summed in `f64`, and `variance = sum / n` is divided in
/// `f64` and rounded to `f32`; `scale = 1.0f32 / (variance + eps).sqrt()`. A missing
/// weight or bias is skipped (not replaced by 1 or 0, which would round the same anyway).
///
/// # Panics
/// If `out`, `weight` or `bias` does not have the length of `x`.
pub fn layer_norm(
    x: &[f32],
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
    eps: f32,
    out: &mut [f32],
) {
    assert_eq!(
        out.len(),
        x.len(),
        "layer_norm: output length differs from input"
    );
    out.copy_from_slice(x);
    layer_norm_in_place(out, weight, bias, eps);
}

/// [`layer_norm`] writing over its input.
///
/// # Panics
/// If `weight` or `bias` does not have the length of `x`.
pub fn layer_norm_in_place(x: &mut [f32], weight: Option<&[f32]>, bias: Option<&[f32]>, eps: f32) {
    if let Some(w) = weight {
        assert_eq!(
            w.len(),
            x.len(),
            "layer_norm: weight length differs from input"
        );
    }
    if let Some(b) = bias {
        assert_eq!(
            b.len(),
            x.len(),
            "layer_norm: bias length differs from input"
        );
    }
    if x.is_empty() {
        return;
    }
    let n = x.len();
    let sum = sum_f64_lanes(x, |v| v) as f32;
    let mean = sum / n as f32;
    for v in x.iter_mut() {
        *v -= mean;
    }
    let variance = (sum_f64_lanes(x, |v| v * v) / n as f64) as f32;
    let scale = 1.0f32 / (variance + eps).sqrt();
    for v in x.iter_mut() {
        *v *= scale;
    }
    if let Some(w) = weight {
        for (v, &w) in x.iter_mut().zip(w) {
            *v *= w;
        }
    }
    if let Some(b) = bias {
        for (v, &b) in x.iter_mut().zip(b) {
            *v += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference_rms(x: &[f32], w: Option<&[f32]>, eps: f32) -> Vec<f64> {
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / n;
        let scale = 1.0 / (mean + f64::from(eps)).sqrt();
        x.iter()
            .enumerate()
            .map(|(i, &v)| f64::from(v) * scale * w.map_or(1.0, |w| f64::from(w[i])))
            .collect()
    }

    fn reference_layer(x: &[f32], w: Option<&[f32]>, b: Option<&[f32]>, eps: f32) -> Vec<f64> {
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = x
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let scale = 1.0 / (var + f64::from(eps)).sqrt();
        x.iter()
            .enumerate()
            .map(|(i, &v)| {
                (f64::from(v) - mean) * scale * w.map_or(1.0, |w| f64::from(w[i]))
                    + b.map_or(0.0, |b| f64::from(b[i]))
            })
            .collect()
    }

    fn assert_close(got: &[f32], want: &[f64], rel: f64, abs: f64) {
        assert_eq!(got.len(), want.len());
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let err = (f64::from(g) - w).abs();
            assert!(
                err <= abs + rel * w.abs(),
                "index {i}: got {g}, want {w}, error {err}"
            );
        }
    }

    #[test]
    fn rms_norm_of_a_constant_row_is_one_times_the_weight() {
        // mean(x²) = 9, scale = 1/sqrt(9 + 0) = 1/3, so every output is 3 * 1/3 * w.
        let x = [3.0f32; 7];
        let w = [1.0, 2.0, -0.5, 0.0, 4.0, 1.5, 1.0];
        let mut out = [0.0; 7];
        rms_norm(&x, Some(&w), 0.0, &mut out);
        for (o, w) in out.iter().zip(w) {
            assert!((o - w).abs() <= 1e-6 * w.abs(), "{o} vs {w}");
        }
        rms_norm(&x, None, 0.0, &mut out);
        assert!(out.iter().all(|&o| (o - 1.0).abs() < 1e-6));
    }

    #[test]
    fn rms_norm_eps_matters_for_small_rows() {
        // mean(x²) = 1e-6; with eps = 1e-6 the scale is 1/sqrt(2e-6), not 1/sqrt(1e-6).
        let x = [1e-3f32, -1e-3, 1e-3, -1e-3];
        let mut out = [0.0; 4];
        rms_norm(&x, None, 1e-6, &mut out);
        let want = 1e-3 / (2e-6f64).sqrt();
        assert!(
            (f64::from(out[0]) - want).abs() < 1e-5,
            "{} vs {want}",
            out[0]
        );
        assert!((f64::from(out[1]) + want).abs() < 1e-5);
    }

    #[test]
    fn rms_norm_in_place_equals_out_of_place() {
        let x: Vec<f32> = (0..33).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
        let w: Vec<f32> = (0..33).map(|i| 1.0 + i as f32 * 0.01).collect();
        let mut out = vec![0.0; 33];
        rms_norm(&x, Some(&w), 1e-5, &mut out);
        let mut y = x.clone();
        rms_norm_in_place(&mut y, Some(&w), 1e-5);
        assert_eq!(out, y);
    }

    #[test]
    fn layer_norm_centres_and_scales() {
        // x = [1, 2, 3, 4]: mean 2.5, variance 1.25.
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let mut out = [0.0; 4];
        layer_norm(&x, None, None, 0.0, &mut out);
        let s = 1.0 / 1.25f64.sqrt();
        assert_close(&out, &[-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s], 1e-6, 1e-7);
        let w = [2.0f32; 4];
        let b = [10.0f32, 0.0, 0.0, -10.0];
        layer_norm(&x, Some(&w), Some(&b), 0.0, &mut out);
        assert_close(&out, &[10.0 - 3.0 * s, -s, s, 3.0 * s - 10.0], 1e-6, 1e-6);
    }

    #[test]
    fn empty_rows_are_left_alone() {
        let mut out: [f32; 0] = [];
        rms_norm(&[], None, 1e-6, &mut out);
        layer_norm(&[], None, None, 1e-6, &mut out);
    }

    #[test]
    #[should_panic(expected = "weight length")]
    fn a_short_weight_panics() {
        let mut x = [1.0f32; 4];
        rms_norm_in_place(&mut x, Some(&[1.0; 3]), 1e-6);
    }

    #[test]
    fn match_llama_cpp_bit_for_bit() {
        use crate::ops::test_support::{from_bits, input};
        use crate::ops::testdata::{native, plain};
        let w: Vec<f32> = (0..37)
            .map(|i| 1.0 + (((i * 13) % 17) as f32 - 8.0) / 32.0)
            .collect();
        let x: Vec<f32> = (0..37).map(|i| input(i, 1)).collect();
        let mut out = vec![0.0; 37];
        rms_norm(&x, Some(&w), 1e-6, &mut out);
        assert_eq!(out, from_bits(&native::RMS_NORM));
        assert_eq!(out, from_bits(&plain::RMS_NORM));
        let x: Vec<f32> = (0..37).map(|i| input(i, 2) + 100.0).collect();
        let b: Vec<f32> = (0..37)
            .map(|i| (((i * 7) % 11) as f32 - 5.0) / 8.0)
            .collect();
        layer_norm(&x, Some(&w), Some(&b), 1e-5, &mut out);
        assert_eq!(out, from_bits(&native::LAYER_NORM));
        assert_eq!(out, from_bits(&plain::LAYER_NORM));
    }

    fn row(max_len: usize) -> impl Strategy<Value = Vec<f32>> {
        prop::collection::vec(-100.0f32..100.0, 1..max_len)
    }

    proptest! {
        #[test]
        fn rms_norm_matches_f64_reference(
            x in row(300),
            seed in any::<u64>(),
            eps in prop::sample::select(vec![0.0f32, 1e-6, 1e-5]),
        ) {
            let w: Vec<f32> = (0..x.len())
                .map(|i| ((i as u64 ^ seed) % 1000) as f32 / 250.0 - 2.0)
                .collect();
            let mut out = vec![0.0; x.len()];
            rms_norm(&x, Some(&w), eps, &mut out);
            // A mean computed in f64 and scale in f32 leave a few f32 ulps.
            assert_close(&out, &reference_rms(&x, Some(&w), eps), 4e-7 * 4.0, 1e-30);
        }

        #[test]
        fn layer_norm_matches_f64_reference(x in row(300), shift in -1000.0f32..1000.0) {
            // A shared offset makes the centring visible; it costs f32 precision in the
            // mean, so the error budget grows with |shift| / spread.
            let x: Vec<f32> = x.iter().map(|v| v + shift).collect();
            let w: Vec<f32> = (0..x.len()).map(|i| 0.5 + (i % 7) as f32 * 0.25).collect();
            let b: Vec<f32> = (0..x.len()).map(|i| (i % 5) as f32 - 2.0).collect();
            let mut out = vec![0.0; x.len()];
            layer_norm(&x, Some(&w), Some(&b), 1e-5, &mut out);
            let want = reference_layer(&x, Some(&w), Some(&b), 1e-5);
            // The f32 mean is off by a few ulps of max|x|; the scale magnifies that.
            let n = x.len() as f64;
            let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = x.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
            let max_abs = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let abs = 4.0 * f64::from(f32::EPSILON) * f64::from(max_abs) / (var + 1e-5).sqrt()
                * 2.0
                + 1e-5;
            assert_close(&out, &want, 1e-5, abs);
        }
    }
}
