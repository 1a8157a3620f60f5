//! The product on 8-bit activations against a CPU twin: the activations quantized in runs
//! of 32 (scale max|x| / 127 kept in half precision, bytes rounded half away from zero),
//! then the f64 dot of
//! the dequantized weights with the dequantized activations. The GPU's sum is exact in
//! integers within a run and f32 across runs, so it must be within 1e-4 of the sum of
//! |products|.

use gpu::testing::gpu_or_skip;
use gpu::{Gpu, GpuError, WeightType};

use crate::matmul::{ROWS, TOKENS, upload, widths};
use crate::support::{rng, values};

/// The twin of `quantize_q8.wgsl` (ggml's q8_0 quantizer): each run's bytes, rounded
/// half away from zero, and its scale in half precision.
fn quantize(x: &[f32]) -> (Vec<i8>, Vec<f32>) {
    let (mut q, mut d) = (Vec::new(), Vec::new());
    for run in x.chunks_exact(32) {
        let amax = run.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        q.extend(run.iter().map(|v| (v * inv).round() as i8));
        d.push(half::f16::from_f32(scale).to_f32());
    }
    (q, d)
}

fn check(gpu: &Gpu, ty: WeightType) {
    for (seed, (&rows, cols)) in ROWS
        .iter()
        .flat_map(|r| widths(ty).map(move |c| (r, c)))
        .enumerate()
    {
        let (w, dequantized) = upload(gpu, ty, rows, cols, 500 + seed as u64);
        for n_tokens in TOKENS {
            let x = values(&mut rng(2000 + seed as u64), n_tokens * cols, 1.0);
            let activations = gpu.q8_activations("x", n_tokens * cols).unwrap();
            gpu.quantize_q8(&gpu.upload_f32("x", &x).unwrap(), x.len(), &activations)
                .unwrap();
            let y = gpu.zeros_f32("y", n_tokens * rows).unwrap();
            gpu.matmul_q8(&w, &activations, n_tokens, &y).unwrap();
            let got = gpu.read_f32(&y).unwrap();
            let (q, d) = quantize(&x);
            for t in 0..n_tokens {
                for r in 0..rows {
                    let products = (0..cols).map(|i| {
                        let at = t * cols + i;
                        let xq = f64::from(d[at / 32]) * f64::from(q[at]);
                        f64::from(dequantized[r * cols + i]) * xq
                    });
                    let want = products.clone().sum::<f64>();
                    let tol = 1e-4 * products.map(f64::abs).sum::<f64>() + 1e-30;
                    let g = f64::from(got[t * rows + r]);
                    assert!(
                        (g - want).abs() <= tol,
                        "{ty:?} rows {rows} cols {cols} tokens {n_tokens}: token {t} row {r}: \
                         gpu {g} vs cpu {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn matmul_q8_every_int_dot_type() {
    let Some(gpu) = gpu_or_skip() else { return };
    let types: Vec<WeightType> = WeightType::ALL
        .into_iter()
        .filter(|t| t.int_dot())
        .collect();
    assert_eq!(types.len(), 5);
    for ty in types {
        check(gpu, ty);
    }
}

/// The activations' bytes themselves, read back: a run of zeros has scale 0 and bytes 0;
/// the largest magnitude of a run becomes ±127.
#[test]
fn quantize_q8_matches_its_twin() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut x = values(&mut rng(7), 5 * 32, 3.0);
    x[32..64].fill(0.0);
    let activations = gpu.q8_activations("x", x.len()).unwrap();
    gpu.quantize_q8(&gpu.upload_f32("x", &x).unwrap(), x.len(), &activations)
        .unwrap();
    // A product by an identity-like Q8_0 matrix would hide the bytes; the buffers say
    // them directly.
    let (q, d) = quantize(&x);
    let (bytes, scales) = gpu::testing::read_q8(gpu, &activations);
    assert_eq!(bytes, q);
    for (run, (&got, &want)) in scales.iter().zip(&d).enumerate() {
        assert_eq!(got[0], want, "run {run} scale");
        let sum: i32 = q[run * 32..(run + 1) * 32]
            .iter()
            .map(|&v| i32::from(v))
            .sum();
        assert_eq!(got[1], want * sum as f32, "run {run} scale times sum");
    }
    assert_eq!(scales[1], [0.0, 0.0]);
    assert!(q.iter().any(|&v| v == 127 || v == -127));
}

#[test]
fn matmul_q8_refuses_what_it_cannot_multiply() {
    let Some(gpu) = gpu_or_skip() else { return };
    let activations = gpu.q8_activations("x", 64).unwrap();
    let x = gpu.zeros_f32("x", 64).unwrap();
    let odd = gpu.quantize_q8(&x, 40, &activations).unwrap_err();
    assert!(matches!(odd, GpuError::Shape { .. }), "{odd}");
    let (w, _) = upload(gpu, WeightType::Q8_0, 3, 64, 1);
    let y = gpu.zeros_f32("y", 6).unwrap();
    // Nothing quantized yet for two tokens of 64.
    gpu.quantize_q8(&x, 64, &activations).unwrap();
    let short = gpu.matmul_q8(&w, &activations, 2, &y).unwrap_err();
    assert!(short.to_string().contains("quantized"), "{short}");
    let (f16, _) = upload(gpu, WeightType::F16, 3, 64, 2);
    let refused = gpu.matmul_q8(&f16, &activations, 1, &y).unwrap_err();
    assert!(refused.to_string().contains("integer-dot"), "{refused}");
}
