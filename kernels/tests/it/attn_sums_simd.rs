//! The SIMD versions of attention's sums in llama.cpp's orders give the bits of their
//! scalar twins on every instruction set, for lengths around the 16- and 64-wide steps.

use kernels::cpu::Isa;
use kernels::ops::{
    dot_f32_ggml_isa, dot_f32_tiled_isa, weighted_sum_ggml_isa, weighted_sum_tiled_isa,
};
use proptest::prelude::*;

const LENGTHS: [usize; 14] = [1, 3, 15, 16, 17, 31, 48, 63, 64, 65, 128, 200, 256, 333];

fn vectors() -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
    prop::sample::select(&LENGTHS[..]).prop_flat_map(|n| {
        (
            prop::collection::vec(-8.0f32..8.0, n),
            prop::collection::vec(-8.0f32..8.0, n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn dots_match_the_scalar_twin((a, b) in vectors()) {
        let ggml = dot_f32_ggml_isa(Isa::Scalar, &a, &b);
        let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
        let scale: f64 = a.iter().zip(&b).map(|(&x, &y)| f64::from((x * y).abs())).sum();
        prop_assert!((f64::from(ggml) - exact).abs() <= 1e-5 * scale.max(1.0));
        for isa in Isa::available() {
            prop_assert_eq!(dot_f32_ggml_isa(isa, &a, &b).to_bits(), ggml.to_bits(), "{}", isa);
        }
    }

    #[test]
    fn tiled_dots_match_the_scalar_twin(blocks in 0usize..40, seed in 0u32..1000) {
        let n = blocks * 16;
        let value = |i: usize, k: u32| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed * k) >> 8) as f32 / 8e6 - 1.0
        };
        let a: Vec<f32> = (0..n).map(|i| value(i, 3)).collect();
        let b: Vec<f32> = (0..n).map(|i| value(i + 7, 5)).collect();
        let tiled = dot_f32_tiled_isa(Isa::Scalar, &a, &b);
        let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
        prop_assert!((f64::from(tiled) - exact).abs() <= 1e-4 * (n as f64).max(1.0));
        for isa in Isa::available() {
            prop_assert_eq!(dot_f32_tiled_isa(isa, &a, &b).to_bits(), tiled.to_bits(), "{}", isa);
        }
    }

    #[test]
    fn weighted_sums_match_the_scalar_twin(
        n_rows in prop::sample::select(&LENGTHS[..]),
        width in prop::sample::select(&[1usize, 7, 8, 16, 24, 64, 100][..]),
        extra in 0usize..9,
        seed in 0u32..1000,
    ) {
        let stride = width + extra;
        let rows: Vec<f32> = (0..(n_rows - 1) * stride + width)
            .map(|i| ((i as u32 * 2_654_435_761u32).wrapping_add(seed) >> 8) as f32 / 8e6 - 1.0)
            .collect();
        let w: Vec<f32> = (0..n_rows).map(|j| ((j as u32 * 40_503 + seed) % 997) as f32 / 997.0).collect();
        for (name, sum) in [
            ("tiled", weighted_sum_tiled_isa as fn(Isa, &[f32], &[f32], usize, &mut [f32])),
            ("ggml", weighted_sum_ggml_isa),
        ] {
            let mut want = vec![0.0; width];
            sum(Isa::Scalar, &w, &rows, stride, &mut want);
            for (k, &o) in want.iter().enumerate() {
                let exact: f64 = w
                    .iter()
                    .enumerate()
                    .map(|(j, &p)| f64::from(p) * f64::from(rows[j * stride + k]))
                    .sum();
                prop_assert!((f64::from(o) - exact).abs() < 1e-3, "{}", name);
            }
            for isa in Isa::available() {
                let mut got = vec![0.0; width];
                sum(isa, &w, &rows, stride, &mut got);
                let g: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                let e: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
                prop_assert_eq!(g, e, "{} on {}", name, isa);
            }
        }
    }
}
