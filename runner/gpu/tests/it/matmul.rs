//! Quantized matrix products and `get_rows` against the `kernels` dequantizers.
//!
//! Weights are random f32 rows quantized by `kernels`' own quantizers, so every scale and
//! minimum is one a real model file could hold. The reference dequantizes each row on
//! the CPU and takes an f64 dot; the GPU's f32 sum must be within 1e-4 of the sum of
//! |products| (it adds in another order and rounds each step to f32).

use gpu::testing::gpu_or_skip;
use gpu::{Gpu, GpuMatrix, WeightType};
use kernels::GgmlType;
use kernels::quant::{dequantize_row, quantize_row};
use rand::Rng;

use crate::support::{assert_close, rng, values};

pub(crate) const ROWS: [usize; 4] = [1, 7, 33, 100];
/// Token counts: fewer than, and more than, the 8 tokens one workgroup takes.
pub(crate) const TOKENS: [usize; 4] = [1, 3, 5, 9];

/// Row lengths for a type: awkward multiples of its block (one block, three, 576 or
/// nine super-blocks).
pub(crate) fn widths(ty: WeightType) -> [usize; 3] {
    if ty.row_multiple() == 256 {
        [256, 768, 2304]
    } else {
        [32, 96, 576]
    }
}

/// A random `rows × cols` matrix quantized to `ty`: its bytes and its dequantized values.
pub(crate) fn random_matrix(
    ty: GgmlType,
    rows: usize,
    cols: usize,
    seed: u64,
) -> (Vec<u8>, Vec<f32>) {
    let mut rng = rng(seed);
    let row_bytes = cols / ty.block_size() * ty.type_size();
    let mut bytes = vec![0u8; rows * row_bytes];
    let mut dequantized = vec![0f32; rows * cols];
    for (r, out) in bytes.chunks_exact_mut(row_bytes).enumerate() {
        // Rows of different magnitudes, some with an offset, so scales and minimums vary.
        let scale = rng.random_range(0.01..2.0f32);
        let offset = if r % 3 == 0 {
            rng.random_range(-0.5..0.5f32)
        } else {
            0.0
        };
        let row: Vec<f32> = values(&mut rng, cols, scale)
            .into_iter()
            .map(|v| v + offset)
            .collect();
        quantize_row(ty, &row, out).unwrap();
        dequantize_row(ty, out, &mut dequantized[r * cols..(r + 1) * cols]).unwrap();
    }
    (bytes, dequantized)
}

pub(crate) fn upload(
    gpu: &Gpu,
    ty: WeightType,
    rows: usize,
    cols: usize,
    seed: u64,
) -> (GpuMatrix, Vec<f32>) {
    let (bytes, dequantized) = random_matrix(ty.ggml(), rows, cols, seed);
    let w = gpu
        .upload_matrix("test weights", ty.ggml(), rows, cols, &bytes)
        .unwrap();
    (w, dequantized)
}

fn check_matmul(gpu: &Gpu, ty: WeightType) {
    for (seed, (&rows, cols)) in ROWS
        .iter()
        .flat_map(|r| widths(ty).map(move |c| (r, c)))
        .enumerate()
    {
        let (w, dequantized) = upload(gpu, ty, rows, cols, seed as u64);
        for n_tokens in TOKENS {
            let x = values(&mut rng(1000 + seed as u64), n_tokens * cols, 1.0);
            let x_gpu = gpu.upload_f32("x", &x).unwrap();
            let y_gpu = gpu.zeros_f32("y", n_tokens * rows).unwrap();
            gpu.matmul(&w, &x_gpu, n_tokens, &y_gpu).unwrap();
            let got = gpu.read_f32(&y_gpu).unwrap();
            let mut want = Vec::new();
            let mut magnitude = Vec::new();
            for t in 0..n_tokens {
                let xt = &x[t * cols..(t + 1) * cols];
                for r in 0..rows {
                    let wr = &dequantized[r * cols..(r + 1) * cols];
                    let products = wr
                        .iter()
                        .zip(xt)
                        .map(|(&a, &b)| f64::from(a) * f64::from(b));
                    want.push(products.clone().sum::<f64>() as f32);
                    magnitude.push(products.map(f64::abs).sum::<f64>());
                }
            }
            let what = format!("matmul {ty:?} rows {rows} cols {cols} tokens {n_tokens}");
            assert_close(&what, &got, &want, |i| 1e-4 * magnitude[i] + 1e-30);
        }
    }
}

#[test]
fn matmul_q8_0() {
    let Some(gpu) = gpu_or_skip() else { return };
    check_matmul(gpu, WeightType::Q8_0);
}

#[test]
fn matmul_q4_0() {
    let Some(gpu) = gpu_or_skip() else { return };
    check_matmul(gpu, WeightType::Q4_0);
}

#[test]
fn matmul_q4_1() {
    let Some(gpu) = gpu_or_skip() else { return };
    check_matmul(gpu, WeightType::Q4_1);
}

#[test]
fn matmul_q5_0() {
    let Some(gpu) = gpu_or_skip() else { return };
    check_matmul(gpu, WeightType::Q5_0);
}

#[test]
fn matmul_q4_k() {
    let Some(gpu) = gpu_or_skip() else { return };
    check_matmul(gpu, WeightType::Q4K);
}

#[test]
fn matmul_q5_k() {
    let Some(gpu) = gpu_or_skip() else { return };
    check_matmul(gpu, WeightType::Q5K);
}

#[test]
fn matmul_q6_k() {
    let Some(gpu) = gpu_or_skip() else { return };
    check_matmul(gpu, WeightType::Q6K);
}

#[test]
fn matmul_f16() {
    let Some(gpu) = gpu_or_skip() else { return };
    check_matmul(gpu, WeightType::F16);
}

#[test]
fn matmul_f32() {
    let Some(gpu) = gpu_or_skip() else { return };
    check_matmul(gpu, WeightType::F32);
}

/// `get_rows` gives the CPU dequantizer's values exactly: both compute `d * q` (and
/// `- dmin * m`) in f32 from the same bytes.
fn check_get_rows(gpu: &Gpu, ty: WeightType) {
    let rows = 37;
    for (seed, cols) in widths(ty).into_iter().enumerate() {
        let (w, dequantized) = upload(gpu, ty, rows, cols, 77 + seed as u64);
        let ids = [0u32, 36, 5, 5, 17];
        let out = gpu.zeros_f32("rows", ids.len() * cols).unwrap();
        gpu.get_rows(&w, &ids, &out).unwrap();
        let got = gpu.read_f32(&out).unwrap();
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&id| dequantized[id as usize * cols..(id as usize + 1) * cols].to_vec())
            .collect();
        // Exact but for a fused multiply-add the device may use in `d*sc*q - dmin*m`.
        assert_close(&format!("get_rows {ty:?} cols {cols}"), &got, &want, |i| {
            1e-6 * f64::from(want[i].abs()).max(1e-3)
        });
    }
}

#[test]
fn get_rows_every_type() {
    let Some(gpu) = gpu_or_skip() else { return };
    for ty in WeightType::ALL {
        check_get_rows(gpu, ty);
    }
}

#[test]
fn get_rows_refuses_an_id_past_the_end() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (w, _) = upload(gpu, WeightType::Q8_0, 3, 32, 5);
    let out = gpu.zeros_f32("rows", 32).unwrap();
    let error = gpu.get_rows(&w, &[3], &out).unwrap_err();
    assert!(error.to_string().contains("token id 3"), "{error}");
}

#[test]
fn matmul_refuses_short_buffers() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (w, _) = upload(gpu, WeightType::Q4K, 2, 256, 6);
    let x = gpu.zeros_f32("x", 256).unwrap();
    let y = gpu.zeros_f32("y", 2).unwrap();
    assert!(gpu.matmul(&w, &x, 2, &y).is_err());
    assert!(
        gpu.upload_matrix("bad", GgmlType::Q4_K, 1, 96, &[0; 54])
            .is_err()
    );
}

/// More groups of 8 rows than one grid dimension holds (65535 workgroups): the rows
/// continue on the grid's second dimension.
#[test]
fn matmul_past_one_grid_dimension() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (rows, cols, n_tokens) = (530_000, 32, 2);
    let (w, dequantized) = upload(gpu, WeightType::Q8_0, rows, cols, 9);
    let x = values(&mut rng(10), n_tokens * cols, 1.0);
    let y = gpu.zeros_f32("y", n_tokens * rows).unwrap();
    gpu.matmul(&w, &gpu.upload_f32("x", &x).unwrap(), n_tokens, &y)
        .unwrap();
    let got = gpu.read_f32(&y).unwrap();
    for t in 0..n_tokens {
        for r in [0, 1, 524_279, 524_280, 524_288, rows - 1] {
            let products = dequantized[r * cols..(r + 1) * cols]
                .iter()
                .zip(&x[t * cols..(t + 1) * cols])
                .map(|(&a, &b)| f64::from(a) * f64::from(b));
            let want = products.clone().sum::<f64>();
            let tol = 1e-4 * products.map(f64::abs).sum::<f64>();
            let g = f64::from(got[t * rows + r]);
            assert!(
                (g - want).abs() <= tol,
                "token {t} row {r}: gpu {g} vs cpu {want}"
            );
        }
    }
}

/// A matrix in parts (as one larger than a binding is held): every part's rows land in
/// their place, for matmul and get_rows.
#[test]
fn a_matrix_in_parts_multiplies_and_looks_up_as_one() {
    let Some(gpu) = gpu_or_skip() else { return };
    for ty in [WeightType::Q8_0, WeightType::Q6K] {
        let (rows, cols) = (33, widths(ty)[1]);
        let (bytes, dequantized) = random_matrix(ty.ggml(), rows, cols, 21);
        let row_bytes = (bytes.len() / rows) as u64;
        let w = gpu
            .upload_matrix_in_parts("parts", (ty.ggml(), rows, cols), &bytes, 5 * row_bytes + 7)
            .unwrap();
        assert_eq!(w.parts(), 7);
        let n_tokens = 3;
        let x = values(&mut rng(22), n_tokens * cols, 1.0);
        let y = gpu.zeros_f32("y", n_tokens * rows).unwrap();
        gpu.matmul(&w, &gpu.upload_f32("x", &x).unwrap(), n_tokens, &y)
            .unwrap();
        let got = gpu.read_f32(&y).unwrap();
        for t in 0..n_tokens {
            for r in 0..rows {
                let products = dequantized[r * cols..(r + 1) * cols]
                    .iter()
                    .zip(&x[t * cols..(t + 1) * cols])
                    .map(|(&a, &b)| f64::from(a) * f64::from(b));
                let want = products.clone().sum::<f64>();
                let tol = 1e-4 * products.map(f64::abs).sum::<f64>();
                let g = f64::from(got[t * rows + r]);
                assert!(
                    (g - want).abs() <= tol,
                    "{ty:?} token {t} row {r}: gpu {g} vs cpu {want}"
                );
            }
        }
        let ids = [32u32, 0, 4, 5, 31];
        let out = gpu.zeros_f32("rows", ids.len() * cols).unwrap();
        gpu.get_rows(&w, &ids, &out).unwrap();
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&id| dequantized[id as usize * cols..(id as usize + 1) * cols].to_vec())
            .collect();
        assert_close(
            &format!("get_rows in parts {ty:?}"),
            &gpu.read_f32(&out).unwrap(),
            &want,
            |i| 1e-6 * f64::from(want[i].abs()).max(1e-3),
        );
    }
    let error = gpu
        .upload_matrix_in_parts("tiny", (GgmlType::Q8_0, 2, 32), &[0; 68], 33)
        .unwrap_err();
    assert!(matches!(error, gpu::GpuError::TooLarge { .. }), "{error}");
}

/// Throughput on this device, for planning (a model's forward pass on lavapipe): run with
/// `cargo test -p gpu --release -- --ignored --nocapture throughput`.
#[test]
#[ignore = "a measurement, not a check"]
fn throughput() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (rows, cols) = (2048, 2048);
    for ty in [WeightType::Q8_0, WeightType::Q4K] {
        let (w, _) = upload(gpu, ty, rows, cols, 30);
        for n_tokens in [1, 64] {
            let x = gpu
                .upload_f32("x", &values(&mut rng(31), n_tokens * cols, 1.0))
                .unwrap();
            let y = gpu.zeros_f32("y", n_tokens * rows).unwrap();
            gpu.matmul(&w, &x, n_tokens, &y).unwrap();
            gpu.read_f32(&y).unwrap();
            let runs = 5;
            let start = std::time::Instant::now();
            for _ in 0..runs {
                gpu.matmul(&w, &x, n_tokens, &y).unwrap();
            }
            gpu.read_f32(&y).unwrap();
            let seconds = start.elapsed().as_secs_f64() / f64::from(runs);
            let gflops = 2.0 * (rows * cols * n_tokens) as f64 / seconds / 1e9;
            eprintln!(
                "{ty:?} {rows}x{cols} x {n_tokens} tokens: {:.2} ms, {gflops:.2} GFLOP/s",
                seconds * 1e3
            );
        }
    }
}
