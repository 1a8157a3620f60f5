//! RMSNorm, softmax, SwiGLU/GeGLU and RoPE against `kernels::ops`.

use gpu::ops::{RopeConfig, RopeLayout};
use gpu::testing::gpu_or_skip;
use kernels::ops::{
    Rope, RopeParams, layer_norm, rms_norm, rope_yarn_corr_dims, softmax_scaled_masked,
};

use crate::support::{assert_close, rng, values};

const WIDTHS: [usize; 7] = [1, 7, 32, 33, 100, 576, 2048];

#[test]
fn rms_norm_matches_the_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = rng(11);
    for n in WIDTHS {
        for rows in [1, 3, 7] {
            let x = values(&mut rng, rows * n, 3.0);
            let weight = values(&mut rng, n, 2.0);
            let out = gpu.zeros_f32("out", rows * n).unwrap();
            let (x_gpu, w_gpu) = (
                gpu.upload_f32("x", &x).unwrap(),
                gpu.upload_f32("w", &weight).unwrap(),
            );
            gpu.rms_norm(&x_gpu, &w_gpu, &out, rows, n, 1e-6).unwrap();
            let got = gpu.read_f32(&out).unwrap();
            let mut want = vec![0.0; rows * n];
            for (xr, wr) in x.chunks_exact(n).zip(want.chunks_exact_mut(n)) {
                rms_norm(xr, Some(&weight), 1e-6, wr);
            }
            assert_close(&format!("rms_norm rows {rows} n {n}"), &got, &want, |i| {
                1e-5 * f64::from(want[i].abs()) + 1e-6
            });
        }
    }
}

#[test]
fn layer_norm_matches_the_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = rng(15);
    for n in WIDTHS {
        for rows in [1, 3, 7] {
            // An offset, so the centring matters.
            let x: Vec<f32> = values(&mut rng, rows * n, 3.0)
                .iter()
                .map(|v| v + 5.0)
                .collect();
            let weight = values(&mut rng, n, 2.0);
            let bias = values(&mut rng, n, 1.0);
            let out = gpu.zeros_f32("out", rows * n).unwrap();
            let upload = |name, v: &[f32]| gpu.upload_f32(name, v).unwrap();
            let (x_gpu, w_gpu, b_gpu) = (upload("x", &x), upload("w", &weight), upload("b", &bias));
            gpu.layer_norm(&x_gpu, &w_gpu, &b_gpu, &out, rows, n, 1e-12)
                .unwrap();
            let got = gpu.read_f32(&out).unwrap();
            let mut want = vec![0.0; rows * n];
            for (xr, wr) in x.chunks_exact(n).zip(want.chunks_exact_mut(n)) {
                layer_norm(xr, Some(&weight), Some(&bias), 1e-12, wr);
            }
            // A row of one value is 0 / sqrt(0 + eps) on both sides: only the bias is left.
            assert_close(&format!("layer_norm rows {rows} n {n}"), &got, &want, |i| {
                1e-5 * (f64::from(want[i].abs()) + f64::from(weight[i % n].abs())) + 1e-6
            });
        }
    }
}

#[test]
fn softmax_matches_the_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = rng(12);
    for n in WIDTHS {
        for (rows, scale) in [(1, 1.0), (3, 0.125), (5, 1.0)] {
            let mut x = values(&mut rng, rows * n, 8.0);
            // Masked entries: the last row all -inf, and every 7th entry elsewhere.
            if rows == 5 {
                x[4 * n..].fill(f32::NEG_INFINITY);
                x.iter_mut().step_by(7).for_each(|v| *v = f32::NEG_INFINITY);
            }
            let out = gpu.zeros_f32("out", rows * n).unwrap();
            gpu.softmax(&gpu.upload_f32("x", &x).unwrap(), &out, rows, n, scale)
                .unwrap();
            let got = gpu.read_f32(&out).unwrap();
            let mut want = x.clone();
            want.chunks_exact_mut(n)
                .for_each(|row| softmax_scaled_masked(row, scale, None));
            assert_close(
                &format!("softmax rows {rows} n {n} scale {scale}"),
                &got,
                &want,
                |i| 1e-5 * f64::from(want[i].abs()) + 1e-7,
            );
        }
    }
}

fn check_glu(geglu: bool) {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = rng(13);
    for n in [1, 7, 33, 100, 1000, 70_000] {
        let mut gate = values(&mut rng, n, 6.0);
        // The tails: saturation on both sides.
        gate[0] = -30.0;
        if n > 1 {
            gate[1] = 30.0;
        }
        let up = values(&mut rng, n, 2.0);
        let out = gpu.zeros_f32("out", n).unwrap();
        let (g, u) = (
            gpu.upload_f32("gate", &gate).unwrap(),
            gpu.upload_f32("up", &up).unwrap(),
        );
        let want: Vec<f32> = if geglu {
            gpu.geglu(&g, &u, &out, n).unwrap();
            // The formula itself; `kernels::ops::geglu` rounds through an f16 table.
            gate.iter()
                .zip(&up)
                .map(|(&g, &u)| kernels::ops::gelu_tanh(g) * u)
                .collect()
        } else {
            gpu.swiglu(&g, &u, &out, n).unwrap();
            let mut want = vec![0.0; n];
            kernels::ops::swiglu(&gate, &up, &mut want);
            want
        };
        let got = gpu.read_f32(&out).unwrap();
        let name = if geglu { "geglu" } else { "swiglu" };
        assert_close(&format!("{name} n {n}"), &got, &want, |i| {
            1e-5 * (f64::from(gate[i].abs()) + 1.0) * f64::from(up[i].abs()) + 1e-7
        });
    }
}

#[test]
fn swiglu_matches_the_cpu() {
    check_glu(false);
}

#[test]
fn geglu_matches_the_cpu() {
    check_glu(true);
}

/// One rotary case: `n_dims` of `head_dim` rotated, both layouts, with optional factors
/// and YaRN, at positions from 0 to 4095 (where the angle's f32 rounding shows).
fn check_rope(config: RopeConfig, freq_factors: Option<&[f32]>) {
    let Some(gpu) = gpu_or_skip() else { return };
    let positions = [0, 1, 17, 511, 4095];
    let n_heads = 3;
    let head_dim = config.head_dim;
    let x = values(&mut rng(14), positions.len() * n_heads * head_dim, 2.0);
    let x_gpu = gpu.upload_f32("x", &x).unwrap();
    gpu.rope(&x_gpu, n_heads, &positions, &config, freq_factors)
        .unwrap();
    let got = gpu.read_f32(&x_gpu).unwrap();

    let layout = match config.layout {
        RopeLayout::Normal => kernels::ops::RopeLayout::Normal,
        RopeLayout::NeoX => kernels::ops::RopeLayout::NeoX,
    };
    let params = RopeParams {
        freq_base: config.freq_base,
        freq_scale: config.freq_scale,
        ext_factor: config.ext_factor,
        attn_factor: config.attn_factor,
        corr_dims: config.corr_dims,
    };
    let rope = Rope::new(config.n_dims, head_dim, layout, params, freq_factors).unwrap();
    let mut want = x.clone();
    let mut table = vec![0.0; config.n_dims];
    for (&pos, token) in positions
        .iter()
        .zip(want.chunks_exact_mut(n_heads * head_dim))
    {
        rope.cos_sin(pos, &mut table);
        rope.rotate_heads(token, &table);
    }
    // The angle is the same f32 on both sides; cos and sin differ by a few ulps.
    assert_close(
        &format!("rope {config:?} factors {}", freq_factors.is_some()),
        &got,
        &want,
        |_| 2e-5,
    );
}

#[test]
fn rope_normal_and_neox_full_and_partial() {
    for layout in [RopeLayout::Normal, RopeLayout::NeoX] {
        for (n_dims, head_dim, base) in [
            (64, 64, 10_000.0),
            (32, 64, 10_000.0),
            (256, 256, 1_000_000.0),
            (96, 96, 500_000.0),
        ] {
            check_rope(RopeConfig::new(n_dims, head_dim, layout, base), None);
        }
    }
}

#[test]
fn rope_with_factors_and_yarn() {
    let pairs = 32;
    let factors: Vec<f32> = (0..pairs).map(|i| 1.0 + i as f32 * 0.25).collect();
    check_rope(
        RopeConfig::new(64, 64, RopeLayout::Normal, 500_000.0),
        Some(&factors),
    );
    let mut yarn = RopeConfig::new(64, 80, RopeLayout::NeoX, 10_000.0);
    yarn.freq_scale = 0.25;
    yarn.ext_factor = 1.0;
    yarn.corr_dims = rope_yarn_corr_dims(64, 4096, 10_000.0, 32.0, 1.0);
    check_rope(yarn, None);
}
