//! The SIMD versions of ggml's `exp` loops (SiLU, SwiGLU, softmax exponentials) give the
//! bits of their scalar twin on every instruction set, on rows of awkward lengths with
//! values across exp's whole range, its saturation points included.

use kernels::cpu::Isa;
use kernels::ops::{exp_sum_isa, silu_mul_isa};
use proptest::prelude::*;

const AWKWARD: [usize; 12] = [1, 2, 3, 5, 7, 15, 16, 17, 31, 33, 64, 257];

fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -12.0f32..12.0,
        2 => -150.0f32..150.0,
        1 => prop_oneof![
            Just(0.0f32),
            Just(-0.0f32),
            Just(88.5f32),
            Just(-87.5f32),
            Just(-104.0f32),
            Just(f32::NEG_INFINITY),
        ],
    ]
}

fn row() -> impl Strategy<Value = Vec<f32>> {
    prop::sample::select(&AWKWARD[..]).prop_flat_map(|n| prop::collection::vec(value(), n))
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn silu_and_swiglu_match_the_scalar_twin(x in row(), seed in 0u32..1000) {
        let up: Vec<f32> = (0..x.len()).map(|i| ((i as u32 * 7 + seed) % 13) as f32 - 6.5).collect();
        let mut want = vec![0.0; x.len()];
        let mut want_up = vec![0.0; x.len()];
        silu_mul_isa(Isa::Scalar, &x, None, &mut want);
        silu_mul_isa(Isa::Scalar, &x, Some(&up), &mut want_up);
        for isa in Isa::available() {
            let mut got = vec![0.0; x.len()];
            silu_mul_isa(isa, &x, None, &mut got);
            prop_assert_eq!(bits(&got), bits(&want), "silu on {}", isa);
            silu_mul_isa(isa, &x, Some(&up), &mut got);
            prop_assert_eq!(bits(&got), bits(&want_up), "swiglu on {}", isa);
        }
    }

    #[test]
    fn softmax_exponentials_match_the_scalar_twin(x in row()) {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let max = if max.is_finite() { max } else { 0.0 };
        let mut want = x.clone();
        let want_sum = exp_sum_isa(Isa::Scalar, &mut want, max);
        for isa in Isa::available() {
            let mut got = x.clone();
            let sum = exp_sum_isa(isa, &mut got, max);
            prop_assert_eq!(bits(&got), bits(&want), "{}", isa);
            prop_assert_eq!(sum.to_bits(), want_sum.to_bits(), "{}", isa);
        }
    }
}

#[test]
fn exponent_extremes_match_on_every_isa() {
    // Every whole exponent from -200 to 200 and the halves between: the AVX2 version
    // splits the power of two in two steps, AVX-512 scales in one.
    let x: Vec<f32> = (-400..400)
        .map(|i| i as f32 * 0.5 * std::f32::consts::LN_2)
        .collect();
    let mut want = x.clone();
    exp_sum_isa(Isa::Scalar, &mut want, 0.0);
    for isa in Isa::available() {
        let mut got = x.clone();
        exp_sum_isa(isa, &mut got, 0.0);
        assert_eq!(bits(&got), bits(&want), "{isa}");
    }
}
