//! The packed AVX-512 kernels of Q4_0, Q4_1 and Q5_0 (used by [`crate::matmul`]) against
//! the scalar twins, on random data at awkward lengths and tiles of 1 to 4 rows.

use proptest::prelude::*;

use super::test_data::{AWKWARD_BLOCKS, dequantized, dot_and_bound};
use super::tests::Case;
use super::{VecDot, kind};
use crate::arch::cast::as_bytes;
use crate::arch::x86::packed::{self, ActGroup, ActParts, Packed};
use crate::arch::x86::{Avx512Token, packed_vnni};

fn packed_matches_scalar<K: VecDot>(n_blocks: usize, seed: u64) -> Result<(), TestCaseError>
where
    K::Weight: Packed,
    K::Act: ActParts,
{
    let Some(token) = Avx512Token::new() else {
        return Ok(());
    };
    let case = Case::<K>::new(n_blocks, seed);
    let w = case.w();
    let cols = n_blocks * K::TYPE.block_size();
    let wd = dequantized(K::TYPE, as_bytes(w), cols);
    let groups: Vec<Vec<ActGroup>> = case
        .acts
        .iter()
        .map(|a| {
            let mut g = vec![ActGroup::default(); packed::groups::<K::Weight>(a.len())];
            packed::pack::<K::Weight, K::Act>(a, &mut g);
            g
        })
        .collect();
    let g = &groups;
    let got: Vec<Vec<f32>> = vec![
        packed_vnni(token, w, [&g[0][..]]).to_vec(),
        packed_vnni(token, w, [&g[0][..], &g[1][..]]).to_vec(),
        packed_vnni(token, w, [&g[0][..], &g[1][..], &g[2][..]]).to_vec(),
        packed_vnni(token, w, [&g[0][..], &g[1][..], &g[2][..], &g[3][..]]).to_vec(),
    ];
    for row in got {
        for (t, &got) in row.iter().enumerate() {
            let a = &case.acts[t];
            let expected = K::dot_scalar(w, a);
            let ad = dequantized(K::ACT_TYPE, as_bytes(a), cols);
            let tol = 1e-5 * dot_and_bound(&wd, &ad).1 + 1e-6;
            prop_assert!(
                (f64::from(got) - f64::from(expected)).abs() <= tol,
                "packed {}, {n_blocks} blocks, row {t}: got {got}, scalar {expected}",
                K::TYPE
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn packed_q4_0_matches_scalar(i in 0..AWKWARD_BLOCKS.len(), seed in any::<u64>()) {
        packed_matches_scalar::<kind::Q4_0>(AWKWARD_BLOCKS[i], seed)?;
    }

    #[test]
    fn packed_q4_1_matches_scalar(i in 0..AWKWARD_BLOCKS.len(), seed in any::<u64>()) {
        packed_matches_scalar::<kind::Q4_1>(AWKWARD_BLOCKS[i], seed)?;
    }

    #[test]
    fn packed_q5_0_matches_scalar(i in 0..AWKWARD_BLOCKS.len(), seed in any::<u64>()) {
        packed_matches_scalar::<kind::Q5_0>(AWKWARD_BLOCKS[i], seed)?;
    }
}

#[test]
fn packed_rows_of_one_to_forty_blocks_match_scalar() {
    // Every group count and tail length, including rows that end inside a 64-byte load.
    for n_blocks in 1..=40 {
        for seed in 0..3 {
            packed_matches_scalar::<kind::Q4_0>(n_blocks, seed).unwrap();
            packed_matches_scalar::<kind::Q4_1>(n_blocks, seed).unwrap();
            packed_matches_scalar::<kind::Q5_0>(n_blocks, seed).unwrap();
        }
    }
}
