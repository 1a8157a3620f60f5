//! Every fast-numerics kernel against its scalar twin (the exact dot), on random data at
//! awkward lengths and on every available path: equal up to the order of the float
//! additions, so within a few ulps of the sum of the products' magnitudes.

use proptest::prelude::*;

use super::test_data::{AWKWARD_BLOCKS, dequantized, dot_and_bound};
use super::tests::Case;
use super::{FastDot, kind};
use crate::arch::cast::as_bytes;
use crate::cpu::Isa;

/// The error budget of a reordered dot, in units of the sum of the products' magnitudes:
/// a few ulps, times the 23 = 15 + 8 by which Q4_0's stored values and the offset taken
/// out after the sum can exceed the signed quants.
const REORDER_BUDGET: f64 = 64.0 * f32::EPSILON as f64;

fn fast_tile<K: FastDot, const N: usize>(isa: Isa, case: &Case<K>) -> Vec<f32> {
    let scales: Vec<(Vec<f32>, Vec<f32>)> = case
        .acts
        .iter()
        .map(|a| a.iter().map(K::act_scales).unzip())
        .collect();
    let pick = |i: usize| i % case.acts.len();
    K::dot_fast(
        isa,
        case.w(),
        std::array::from_fn::<_, N, _>(|i| &case.acts[pick(i)][..]),
        std::array::from_fn::<_, N, _>(|i| &scales[pick(i)].0[..]),
        std::array::from_fn::<_, N, _>(|i| &scales[pick(i)].1[..]),
    )
    .to_vec()
}

fn fast_matches_scalar<K: FastDot>(n_blocks: usize, seed: u64) -> Result<(), TestCaseError> {
    let case = Case::<K>::new(n_blocks, seed);
    let cols = n_blocks * K::TYPE.block_size();
    let wd = dequantized(K::TYPE, as_bytes(case.w()), cols);
    let expected: Vec<(f32, f64)> = case
        .acts
        .iter()
        .map(|a| {
            let ad = dequantized(K::ACT_TYPE, as_bytes(a), cols);
            (K::dot_scalar(case.w(), a), dot_and_bound(&wd, &ad).1)
        })
        .collect();
    for isa in Isa::available() {
        let tiles = [
            fast_tile::<K, 1>(isa, &case),
            fast_tile::<K, 2>(isa, &case),
            fast_tile::<K, 3>(isa, &case),
            fast_tile::<K, 4>(isa, &case),
        ];
        for got in tiles {
            for (t, &g) in got.iter().enumerate() {
                let (want, bound) = expected[t];
                prop_assert!(
                    (f64::from(g) - f64::from(want)).abs() <= REORDER_BUDGET * bound + 1e-6,
                    "{} fast on {isa}, {n_blocks} blocks, row {t}: got {g}, scalar {want}",
                    K::TYPE
                );
            }
        }
    }
    Ok(())
}

macro_rules! fast_tests {
    ($($kind:ident => $name:ident;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(24))]
            $(
                #[test]
                fn $name(i in 0..AWKWARD_BLOCKS.len(), seed in any::<u64>()) {
                    fast_matches_scalar::<kind::$kind>(AWKWARD_BLOCKS[i], seed)?;
                }
            )*
        }
    };
}

fast_tests! {
    Q4_0 => q4_0_fast_matches_scalar;
    Q4_1 => q4_1_fast_matches_scalar;
    Q5_0 => q5_0_fast_matches_scalar;
    Q5_1 => q5_1_fast_matches_scalar;
    Q8_0 => q8_0_fast_matches_scalar;
    IQ4_NL => iq4_nl_fast_matches_scalar;
}
