//! Residual and bias adds, scaling and row gathers against plain loops.

use gpu::GpuError;
use gpu::testing::gpu_or_skip;

use crate::support::{assert_close, rng, values};

#[test]
fn add_assign_adds_a_residual_and_broadcasts_a_bias() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = rng(21);
    // (n, period): whole-buffer residuals, then a bias row over 3, 5 and 7 tokens.
    for (n, period) in [
        (1, 1),
        (7, 7),
        (100, 100),
        (70_001, 70_001),
        (99, 33),
        (5 * 65, 65),
        (7 * 576, 576),
    ] {
        let dst = values(&mut rng, n, 2.0);
        let src = values(&mut rng, period, 2.0);
        let dst_gpu = gpu.upload_f32("dst", &dst).unwrap();
        let src_gpu = gpu.upload_f32("src", &src).unwrap();
        gpu.add_assign(&dst_gpu, &src_gpu, n, period).unwrap();
        let want: Vec<f32> = dst
            .iter()
            .enumerate()
            .map(|(i, d)| d + src[i % period])
            .collect();
        assert_close(
            &format!("add n {n} period {period}"),
            &gpu.read_f32(&dst_gpu).unwrap(),
            &want,
            |_| 0.0,
        );
    }
}

#[test]
fn add_assign_touches_only_the_first_n_values() {
    let Some(gpu) = gpu_or_skip() else { return };
    let dst = gpu.upload_f32("dst", &[1.0; 10]).unwrap();
    let src = gpu.upload_f32("src", &[1.0, 2.0, 3.0]).unwrap();
    gpu.add_assign(&dst, &src, 7, 3).unwrap();
    let got = gpu.read_f32(&dst).unwrap();
    assert_eq!(got, [2.0, 3.0, 4.0, 2.0, 3.0, 4.0, 2.0, 1.0, 1.0, 1.0]);
}

#[test]
fn scale_assign_scales_the_first_n_values() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = rng(22);
    for n in [1, 3, 64, 65, 1000, 70_001] {
        let x = values(&mut rng, n + 2, 4.0);
        let x_gpu = gpu.upload_f32("x", &x).unwrap();
        gpu.scale_assign(&x_gpu, n, -0.37).unwrap();
        let want: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| if i < n { v * -0.37 } else { v })
            .collect();
        assert_close(
            &format!("scale n {n}"),
            &gpu.read_f32(&x_gpu).unwrap(),
            &want,
            |_| 0.0,
        );
    }
}

#[test]
fn copy_rows_gathers_rows_in_any_order() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = rng(23);
    for (width, n_rows, rows) in [
        (1, 3, vec![2u32]),
        (33, 5, vec![4, 0, 4, 2]),
        (576, 7, vec![6, 5, 4, 3, 2, 1, 0]),
        (100, 2, vec![1, 1, 1]),
    ] {
        let src = values(&mut rng, n_rows * width, 1.0);
        let src_gpu = gpu.upload_f32("src", &src).unwrap();
        let dst = gpu.zeros_f32("dst", rows.len() * width).unwrap();
        gpu.copy_rows(&src_gpu, &rows, width, &dst).unwrap();
        let want: Vec<f32> = rows
            .iter()
            .flat_map(|&r| src[r as usize * width..(r as usize + 1) * width].to_vec())
            .collect();
        assert_eq!(
            gpu.read_f32(&dst).unwrap(),
            want,
            "width {width} rows {rows:?}"
        );
    }
}

#[test]
fn bad_sizes_are_shape_errors() {
    let Some(gpu) = gpu_or_skip() else { return };
    let a = gpu.zeros_f32("a", 10).unwrap();
    let b = gpu.zeros_f32("b", 4).unwrap();
    let shape = |r: gpu::Result<()>| assert!(matches!(r, Err(GpuError::Shape { .. })), "{r:?}");
    shape(gpu.add_assign(&a, &b, 10, 0));
    shape(gpu.add_assign(&a, &b, 10, 5));
    shape(gpu.add_assign(&a, &b, 11, 2));
    shape(gpu.add_assign(&a, &a, 10, 10));
    shape(gpu.scale_assign(&b, 5, 2.0));
    shape(gpu.copy_rows(&a, &[5], 2, &b));
    shape(gpu.copy_rows(&a, &[0, 1, 2], 2, &b));
    shape(gpu.copy_rows(&a, &[0], 2, &a));
    // Nothing to do is not an error.
    gpu.add_assign(&a, &b, 0, 0).unwrap();
    gpu.copy_rows(&a, &[], 2, &b).unwrap();
}
