//! Every instruction-set version of the activation quantizers writes the bytes of its
//! scalar twin (`*_scalar`, `quantize_row_q8_k_ref`), on random rows of awkward lengths with ties, zeros and equal
//! magnitudes of both signs mixed in.

use kernels::arch::cast::as_bytes;
use kernels::blocks::{BlockQ8_0, BlockQ8_1, BlockQ8K, QK_K};
use kernels::cpu::Isa;
use kernels::quant::{
    quantize_row_q8_0_isa, quantize_row_q8_0_scalar, quantize_row_q8_1_isa,
    quantize_row_q8_1_scalar, quantize_row_q8_k_isa, quantize_row_q8_k_ref,
};
use proptest::prelude::*;

const AWKWARD_BLOCKS: [usize; 9] = [1, 2, 3, 5, 7, 15, 17, 31, 33];

/// A value: mostly random at the row's magnitude, sometimes an exact tie, zero or a
/// copy of the extreme with either sign.
fn value(scale: f32) -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => (-1.0f32..1.0).prop_map(move |v| v * scale),
        1 => (-127i32..127).prop_map(|k| k as f32 + 0.5),
        1 => Just(0.0f32),
        1 => prop_oneof![Just(127.0f32), Just(-127.0f32)],
    ]
}

fn row(block: usize, counts: &'static [usize]) -> impl Strategy<Value = Vec<f32>> {
    (prop::sample::select(counts), -4.0f32..4.0).prop_flat_map(move |(blocks, exp)| {
        prop::collection::vec(value(10f32.powf(exp)), blocks * block)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn q8_0_matches_the_scalar_twin_on_every_isa(x in row(32, &AWKWARD_BLOCKS)) {
        let mut want = vec![BlockQ8_0::ZERO; x.len() / 32];
        quantize_row_q8_0_scalar(&x, &mut want);
        for isa in Isa::available() {
            let mut got = vec![BlockQ8_0::ZERO; x.len() / 32];
            quantize_row_q8_0_isa(isa, &x, &mut got);
            prop_assert_eq!(as_bytes(&got), as_bytes(&want), "{}", isa);
        }
    }

    #[test]
    fn q8_1_matches_the_scalar_twin_on_every_isa(x in row(32, &AWKWARD_BLOCKS)) {
        let mut want = vec![BlockQ8_1::ZERO; x.len() / 32];
        quantize_row_q8_1_scalar(&x, &mut want);
        for isa in Isa::available() {
            let mut got = vec![BlockQ8_1::ZERO; x.len() / 32];
            quantize_row_q8_1_isa(isa, &x, &mut got);
            prop_assert_eq!(as_bytes(&got), as_bytes(&want), "{}", isa);
        }
    }

    #[test]
    fn q8_k_matches_the_scalar_twin_on_every_isa(x in row(QK_K, &[1, 2, 3, 5, 7])) {
        let mut want = vec![BlockQ8K::ZERO; x.len() / QK_K];
        quantize_row_q8_k_ref(&x, &mut want);
        for isa in Isa::available() {
            let mut got = vec![BlockQ8K::ZERO; x.len() / QK_K];
            quantize_row_q8_k_isa(isa, &x, &mut got);
            prop_assert_eq!(as_bytes(&got), as_bytes(&want), "{}", isa);
        }
    }
}

#[test]
fn all_zero_and_tied_blocks_match_on_every_isa() {
    let mut x = vec![0.0f32; 2 * QK_K];
    for (i, v) in x[QK_K..].iter_mut().enumerate() {
        *v = if i % 2 == 0 { 4.0 } else { -4.0 };
    }
    let mut want = vec![BlockQ8K::ZERO; 2];
    quantize_row_q8_k_ref(&x, &mut want);
    assert_eq!(
        want[1].qs[0], -127,
        "the first of equal magnitudes sets the sign"
    );
    for isa in Isa::available() {
        let mut got = vec![
            BlockQ8K {
                d: 1.0,
                qs: [1; QK_K],
                bsums: [1; 16]
            };
            2
        ];
        quantize_row_q8_k_isa(isa, &x, &mut got);
        assert_eq!(as_bytes(&got), as_bytes(&want), "{isa}");
        let mut got = vec![
            BlockQ8_0 {
                d: half::f16::ONE,
                qs: [1; 32]
            };
            x.len() / 32
        ];
        quantize_row_q8_0_isa(isa, &x, &mut got);
        let mut want = vec![BlockQ8_0::ZERO; x.len() / 32];
        quantize_row_q8_0_scalar(&x, &mut want);
        assert_eq!(as_bytes(&got), as_bytes(&want), "{isa}");
    }
}
