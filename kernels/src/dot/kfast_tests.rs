//! The fast k-quant kernels against their scalar twin ([`super::kfast::dot_fast_k`]),
//! bit for bit, in the one-row and the token-lane layouts; and the twin against the exact
//! dot, within a few ulps of the sum of the products' magnitudes.

use proptest::prelude::*;

use super::kfast::{K_TILE_BLOCK_BYTES, KTile, decode_k, dot_fast_k, interleave_k};
use super::lanes::{DecodedRows, LANES};
use super::test_data::{AWKWARD_BLOCKS, dequantized, dot_and_bound};
use super::tests::Case;
use super::{FastKDot, kind};
use crate::arch::cast::as_bytes;
use crate::blocks::BlockQ8K;
use crate::cpu::Isa;

/// As for the 32-element types: a reordered sum, with S1 rounded to f32 once.
const REORDER_BUDGET: f64 = 64.0 * f32::EPSILON as f64;

fn fast_k_matches_twin<K: FastKDot>(
    n_blocks: usize,
    seed: u64,
    n: usize,
) -> Result<(), TestCaseError> {
    let case = Case::<K>::new(n_blocks, seed);
    let cols = n_blocks * K::TYPE.block_size();
    let wd = dequantized(K::TYPE, as_bytes(case.w()), cols);
    let act = |t: usize| &case.acts[t % case.acts.len()];
    let twin: Vec<f32> = (0..n).map(|t| dot_fast_k(case.w(), act(t))).collect();
    for (t, &g) in twin.iter().enumerate() {
        let ad = dequantized(K::ACT_TYPE, as_bytes(act(t)), cols);
        let bound = dot_and_bound(&wd, &ad).1;
        let want = K::dot_scalar(case.w(), act(t));
        prop_assert!(
            (f64::from(g) - f64::from(want)).abs() <= REORDER_BUDGET * bound + 1e-6,
            "{} twin, {n_blocks} blocks, token {t}: got {g}, exact {want}",
            K::TYPE
        );
    }
    let acts: Vec<BlockQ8K> = (0..n).flat_map(|t| act(t).clone()).collect();
    let mut bytes = vec![0u8; n_blocks * K_TILE_BLOCK_BYTES];
    interleave_k(&acts, n_blocks, &mut bytes);
    let tile = KTile { bytes: &bytes };
    // A second weight row for the two-row kernel.
    let other = Case::<K>::new(n_blocks, seed ^ 0x5eed);
    let weights: Vec<K::Weight> = case.w().iter().chain(other.w()).copied().collect();
    for isa in Isa::available() {
        let mut rows = DecodedRows::default();
        // Three rows' room, the case's rows decoded from the second: offsets inside the
        // buffer count.
        rows.reserve_k(3, n_blocks);
        decode_k(&weights, 1, &mut rows);
        let [lanes] = K::dot_lanes_k::<1>(isa, &rows, 1, &tile);
        assert_eq!(lanes.len(), LANES);
        let [two_a, two_b] = K::dot_lanes_k::<2>(isa, &rows, 1, &tile);
        for t in 0..n {
            let other_twin = dot_fast_k(other.w(), act(t));
            prop_assert_eq!(
                two_a[t].to_bits(),
                twin[t].to_bits(),
                "{} two-row lanes on {}, first row",
                K::TYPE,
                isa
            );
            prop_assert_eq!(
                two_b[t].to_bits(),
                other_twin.to_bits(),
                "{} two-row lanes on {}, second row",
                K::TYPE,
                isa
            );
            let row = K::dot_fast_k(isa, case.w(), act(t));
            prop_assert_eq!(
                row.to_bits(),
                twin[t].to_bits(),
                "{} row on {}, token {}",
                K::TYPE,
                isa,
                t
            );
            prop_assert_eq!(
                lanes[t].to_bits(),
                twin[t].to_bits(),
                "{} lanes on {}, {} blocks, token {}: {} vs twin {}",
                K::TYPE,
                isa,
                n_blocks,
                t,
                lanes[t],
                twin[t]
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn q4_k_fast_matches_twin(i in 0..AWKWARD_BLOCKS.len(), seed in any::<u64>(), n in 1..=LANES) {
        fast_k_matches_twin::<kind::Q4_K>(AWKWARD_BLOCKS[i], seed, n)?;
    }

    #[test]
    fn q5_k_fast_matches_twin(i in 0..AWKWARD_BLOCKS.len(), seed in any::<u64>(), n in 1..=LANES) {
        fast_k_matches_twin::<kind::Q5_K>(AWKWARD_BLOCKS[i], seed, n)?;
    }

    #[test]
    fn q6_k_fast_matches_twin(i in 0..AWKWARD_BLOCKS.len(), seed in any::<u64>(), n in 1..=LANES) {
        fast_k_matches_twin::<kind::Q6_K>(AWKWARD_BLOCKS[i], seed, n)?;
    }
}
