//! A mixture of experts on the device: one expert's product out of a stack (in parts
//! that hold whole experts), its outputs scattered back to the router's order, and the
//! weighted sum of a token's chosen outputs, each against a plain loop.

use gpu::testing::gpu_or_skip;
use gpu::{GpuError, WeightType};

use crate::matmul::{random_matrix, widths};
use crate::support::{assert_close, rng, values};

/// Each expert of a stack of 5 experts of 33 rows, held in parts of 2 experts and a bit,
/// times 3 tokens, against the dequantized rows of that expert alone.
#[test]
fn matmul_expert_multiplies_by_one_expert_of_the_stack() {
    let Some(gpu) = gpu_or_skip() else { return };
    for ty in [
        WeightType::F32,
        WeightType::Q8_0,
        WeightType::Q4_1,
        WeightType::Q4K,
    ] {
        let (n_expert, rows, cols) = (5, 33, widths(ty)[1]);
        let (bytes, dequantized) = random_matrix(ty.ggml(), n_expert * rows, cols, 31);
        let expert_bytes = (bytes.len() / n_expert) as u64;
        let w = gpu
            .upload_experts_in_parts(
                "experts",
                ty.ggml(),
                (n_expert, rows, cols),
                &bytes,
                2 * expert_bytes + 5,
            )
            .unwrap();
        assert_eq!((w.experts(), w.parts(), w.rows()), (5, 3, 5 * 33));
        let n_tokens = 3;
        let x = values(&mut rng(32), n_tokens * cols, 1.0);
        let x_gpu = gpu.upload_f32("x", &x).unwrap();
        for e in [4, 0, 2, 3, 1] {
            let y = gpu.zeros_f32("y", n_tokens * rows).unwrap();
            gpu.matmul_expert(&w, e, &x_gpu, n_tokens, &y).unwrap();
            let got = gpu.read_f32(&y).unwrap();
            for t in 0..n_tokens {
                for r in 0..rows {
                    let row = &dequantized[(e * rows + r) * cols..(e * rows + r + 1) * cols];
                    let products = row
                        .iter()
                        .zip(&x[t * cols..(t + 1) * cols])
                        .map(|(&a, &b)| f64::from(a) * f64::from(b));
                    let want = products.clone().sum::<f64>();
                    let tol = 1e-4 * products.map(f64::abs).sum::<f64>();
                    let g = f64::from(got[t * rows + r]);
                    assert!(
                        (g - want).abs() <= tol,
                        "{ty:?} expert {e} token {t} row {r}: gpu {g} vs cpu {want}"
                    );
                }
            }
        }
        let y = gpu.zeros_f32("y", n_tokens * rows).unwrap();
        let error = gpu.matmul_expert(&w, 5, &x_gpu, n_tokens, &y).unwrap_err();
        assert!(error.to_string().contains("expert 5"), "{error}");
    }
    // A part smaller than one expert cannot hold it.
    let (bytes, _) = random_matrix(WeightType::Q8_0.ggml(), 4 * 3, 32, 33);
    let error = gpu
        .upload_experts_in_parts("small", WeightType::Q8_0.ggml(), (4, 3, 32), &bytes, 34 * 2)
        .unwrap_err();
    assert!(matches!(error, GpuError::TooLarge { .. }), "{error}");
}

#[test]
fn scatter_rows_puts_each_row_in_its_place() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = rng(34);
    for (width, rows) in [
        (1, vec![0u32]),
        (37, vec![5, 0, 3]),
        (300, vec![6, 2, 9, 1, 4]),
    ] {
        let dst_rows = 10;
        let src = values(&mut rng, rows.len() * width, 1.0);
        let before = values(&mut rng, dst_rows * width, 1.0);
        let dst = gpu.upload_f32("dst", &before).unwrap();
        gpu.scatter_rows(&gpu.upload_f32("src", &src).unwrap(), &rows, width, &dst)
            .unwrap();
        let mut want = before.clone();
        for (k, &r) in rows.iter().enumerate() {
            let r = r as usize;
            want[r * width..(r + 1) * width].copy_from_slice(&src[k * width..(k + 1) * width]);
        }
        assert_close(
            &format!("scatter width {width}"),
            &gpu.read_f32(&dst).unwrap(),
            &want,
            |_| 0.0,
        );
    }
    let (src, dst) = (
        gpu.zeros_f32("src", 8).unwrap(),
        gpu.zeros_f32("dst", 8).unwrap(),
    );
    let twice = gpu.scatter_rows(&src, &[1, 1], 4, &dst).unwrap_err();
    assert!(twice.to_string().contains("twice"), "{twice}");
    let past = gpu.scatter_rows(&src, &[2], 4, &dst).unwrap_err();
    assert!(past.to_string().contains("past"), "{past}");
}

#[test]
fn combine_experts_mixes_each_tokens_slots_by_their_weights() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = rng(35);
    for (tokens, k, width) in [(1, 1, 1), (1, 8, 64), (5, 3, 37), (13, 4, 129)] {
        let outputs = values(&mut rng, tokens * k * width, 2.0);
        let weights = values(&mut rng, tokens * k, 1.0);
        let dst = gpu.zeros_f32("dst", tokens * width).unwrap();
        let outputs_gpu = gpu.upload_f32("outputs", &outputs).unwrap();
        gpu.combine_experts(&outputs_gpu, &weights, k, width, &dst)
            .unwrap();
        let mut want = vec![0f32; tokens * width];
        for t in 0..tokens {
            for j in 0..width {
                let term = |s: usize| weights[t * k + s] * outputs[(t * k + s) * width + j];
                want[t * width + j] = (1..k).fold(term(0), |sum, s| sum + term(s));
            }
        }
        let bound = |i: usize| {
            let (t, j) = (i / width, i % width);
            let mass: f32 = (0..k)
                .map(|s| (weights[t * k + s] * outputs[(t * k + s) * width + j]).abs())
                .sum();
            1e-6 * f64::from(mass)
        };
        assert_close(
            &format!("combine {tokens}x{k}x{width}"),
            &gpu.read_f32(&dst).unwrap(),
            &want,
            bound,
        );
    }
    let (outputs, dst) = (
        gpu.zeros_f32("outputs", 8).unwrap(),
        gpu.zeros_f32("dst", 8).unwrap(),
    );
    let ragged = gpu
        .combine_experts(&outputs, &[1.0; 3], 2, 4, &dst)
        .unwrap_err();
    assert!(ragged.to_string().contains("whole tokens"), "{ragged}");
}
