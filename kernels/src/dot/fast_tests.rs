//! Every fast-numerics kernel against its scalar twin ([`super::scalar_fast`]), bit for
//! bit, and the twin against the exact dot: equal up to the order of the float additions,
//! so within a few ulps of the sum of the products' magnitudes. Random data at awkward
//! lengths, on every available path, in the one-row kernels and the token-lane ones.

use proptest::prelude::*;

use super::lanes::{DecodedRows, LANES, LaneTile, TILE_BLOCK_BYTES, interleave};
use super::scalar_fast;
use super::test_data::{AWKWARD_BLOCKS, dequantized, dot_and_bound};
use super::tests::Case;
use super::{FastDot, PackedDot, ROWS8, kind};
use crate::arch::cast::as_bytes;
use crate::cpu::Isa;
use crate::repack::Packed8;

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
    let twin = fast_tile::<K, 4>(Isa::Scalar, &case);
    for (t, (&g, &(want, bound))) in twin.iter().zip(&expected).enumerate() {
        prop_assert!(
            (f64::from(g) - f64::from(want)).abs() <= REORDER_BUDGET * bound + 1e-6,
            "{} fast twin, {n_blocks} blocks, row {t}: got {g}, exact {want}",
            K::TYPE
        );
    }
    for isa in Isa::available() {
        let tiles = [
            fast_tile::<K, 1>(isa, &case),
            fast_tile::<K, 2>(isa, &case),
            fast_tile::<K, 3>(isa, &case),
            fast_tile::<K, 4>(isa, &case),
        ];
        for got in tiles {
            for (t, &g) in got.iter().enumerate() {
                prop_assert_eq!(
                    g.to_bits(),
                    twin[t].to_bits(),
                    "{} fast on {}, {} blocks, row {}: got {}, twin {}",
                    K::TYPE,
                    isa,
                    n_blocks,
                    t,
                    g,
                    twin[t]
                );
            }
        }
    }
    Ok(())
}

/// The token-lane kernels against the twin, bit for bit: one weight row decoded, `n` of
/// the case's activation rows (repeated) in a tile, the rest of the tile empty.
fn lanes_match_twin<K: FastDot>(n_blocks: usize, seed: u64, n: usize) -> Result<(), TestCaseError> {
    let case = Case::<K>::new(n_blocks, seed);
    let acts: Vec<K::Act> = (0..n)
        .flat_map(|t| case.acts[t % case.acts.len()].clone())
        .collect();
    let (da, aux): (Vec<f32>, Vec<f32>) = acts.iter().map(K::act_scales).unzip();
    let mut q = vec![0u8; n_blocks * TILE_BLOCK_BYTES];
    let (mut d, mut tile_aux) = (vec![0.0; n_blocks * LANES], vec![0.0; n_blocks * LANES]);
    interleave(&acts, &da, &aux, n_blocks, &mut q, &mut d, &mut tile_aux);
    let tile = LaneTile {
        q: &q,
        d: &d,
        aux: &tile_aux,
    };
    // A second weight row for the two-row kernels.
    let other = Case::<K>::new(n_blocks, seed ^ 0x5eed);
    let weights: Vec<K::Weight> = case.w().iter().chain(other.w()).copied().collect();
    for isa in Isa::available() {
        let mut rows = DecodedRows::default();
        // Three rows' room, the case's rows decoded from the second: offsets inside the
        // buffer count.
        rows.reserve(3, n_blocks);
        K::decode_rows(isa, &weights, 1, &mut rows);
        let [two_a, two_b] = K::dot_lanes::<2>(isa, &rows, 1, &tile);
        let runs = [
            (
                K::dot_lanes::<1>(isa, &rows, 1, &tile)[0],
                case.w(),
                "one-row",
            ),
            (two_a, case.w(), "two-row, first"),
            (two_b, other.w(), "two-row, second"),
        ];
        for (got, w, kernel) in runs {
            for (t, g) in got[..n].iter().enumerate() {
                let want = scalar_fast::dot_fast(w, &case.acts[t % case.acts.len()]);
                prop_assert_eq!(
                    g.to_bits(),
                    want.to_bits(),
                    "{} {} lanes on {}, {} blocks, token {}: got {}, twin {}",
                    K::TYPE,
                    kernel,
                    isa,
                    n_blocks,
                    t,
                    g,
                    want
                );
            }
        }
    }
    Ok(())
}

/// The two terms ([`FastDot::act_scales`]) of each block of the activation rows
/// `pick(0..n)`.
fn scales_of<'a, K: FastDot>(
    n: usize,
    pick: impl Fn(usize) -> &'a [K::Act],
) -> Vec<(Vec<f32>, Vec<f32>)> {
    (0..n)
        .map(|t| pick(t).iter().map(K::act_scales).unzip())
        .collect()
}

/// Each lane of the eight-row sums `got` (token `t`, row `r`) against the twin's dot of
/// `rows[r]` with `pick(t)`, bit for bit.
fn eight_rows_match_twin<'a, K: FastDot>(
    got: &[[f32; ROWS8]],
    rows: [&[K::Weight]; ROWS8],
    pick: impl Fn(usize) -> &'a [K::Act],
    kernel: &str,
) -> Result<(), TestCaseError> {
    for (t, lanes) in got.iter().enumerate() {
        for (r, g) in lanes.iter().enumerate() {
            let want = scalar_fast::dot_fast(rows[r], pick(t));
            prop_assert_eq!(
                g.to_bits(),
                want.to_bits(),
                "{} {}, {} blocks, token {} row {}: got {}, twin {}",
                K::TYPE,
                kernel,
                rows[r].len(),
                t,
                r,
                g,
                want
            );
        }
    }
    Ok(())
}

/// The eight-row kernels against the twin, bit for bit: eight random weight rows with
/// `N` of the first case's activation rows.
fn rows8_tile<K: FastDot, const N: usize>(n_blocks: usize, seed: u64) -> Result<(), TestCaseError> {
    let cases: Vec<Case<K>> = (0..ROWS8 as u64)
        .map(|r| Case::<K>::new(n_blocks, seed.wrapping_add(r)))
        .collect();
    let acts = &cases[0].acts;
    let pick = |i: usize| &acts[i % acts.len()][..];
    let scales = scales_of::<K>(N, pick);
    let rows: [&[K::Weight]; ROWS8] = std::array::from_fn(|r| cases[r].w());
    for isa in Isa::available() {
        let got = K::dot_rows8::<N>(
            isa,
            rows,
            std::array::from_fn(pick),
            std::array::from_fn(|t| &scales[t].0[..]),
            std::array::from_fn(|t| &scales[t].1[..]),
        );
        eight_rows_match_twin::<K>(&got, rows, pick, &format!("rows8 on {isa}"))?;
    }
    Ok(())
}

fn rows8_match_twin<K: FastDot>(n_blocks: usize, seed: u64, n: usize) -> Result<(), TestCaseError> {
    match n % 4 {
        0 => rows8_tile::<K, 4>(n_blocks, seed),
        1 => rows8_tile::<K, 1>(n_blocks, seed),
        2 => rows8_tile::<K, 2>(n_blocks, seed),
        _ => rows8_tile::<K, 3>(n_blocks, seed),
    }
}

/// The kernels over repacked weights ([`crate::repack`]) against the twin on the rows as
/// the file stores them, bit for bit, on every path (the scalar one unpacks each block).
fn packed8_tile<K: PackedDot, const N: usize>(
    n_blocks: usize,
    seed: u64,
) -> Result<(), TestCaseError> {
    let cases: Vec<Case<K>> = (0..ROWS8 as u64)
        .map(|r| Case::<K>::new(n_blocks, seed.wrapping_add(r)))
        .collect();
    let rows: [&[K::Weight]; ROWS8] = std::array::from_fn(|r| cases[r].w());
    let group: Vec<K::Packed> = (0..n_blocks)
        .map(|b| K::Packed::pack(rows.map(|r| &r[b])))
        .collect();
    let acts = &cases[0].acts;
    let pick = |i: usize| &acts[i % acts.len()][..];
    let scales = scales_of::<K>(N, pick);
    for isa in Isa::available() {
        let got = K::dot_packed8::<N>(
            isa,
            &group,
            std::array::from_fn(pick),
            std::array::from_fn(|t| &scales[t].0[..]),
            std::array::from_fn(|t| &scales[t].1[..]),
        );
        eight_rows_match_twin::<K>(&got, rows, pick, &format!("packed8 on {isa}"))?;
    }
    Ok(())
}

/// The two-group kernels against the twin, bit for bit: lanes `0..8` are the first
/// group's rows, `8..16` the second's, on every path.
fn packed16_tile<K: PackedDot, const N: usize>(
    n_blocks: usize,
    seed: u64,
) -> Result<(), TestCaseError> {
    let cases: Vec<Case<K>> = (0..2 * ROWS8 as u64)
        .map(|r| Case::<K>::new(n_blocks, seed.wrapping_add(r)))
        .collect();
    let rows: [[&[K::Weight]; ROWS8]; 2] =
        std::array::from_fn(|g| std::array::from_fn(|r| cases[ROWS8 * g + r].w()));
    let groups: [Vec<K::Packed>; 2] = rows.map(|rows| {
        (0..n_blocks)
            .map(|b| K::Packed::pack(rows.map(|r| &r[b])))
            .collect()
    });
    let acts = &cases[0].acts;
    let pick = |i: usize| &acts[i % acts.len()][..];
    let scales = scales_of::<K>(N, pick);
    for isa in Isa::available() {
        let got = K::dot_packed16::<N>(
            isa,
            [&groups[0], &groups[1]],
            std::array::from_fn(pick),
            std::array::from_fn(|t| &scales[t].0[..]),
            std::array::from_fn(|t| &scales[t].1[..]),
            [
                crate::arch::cast::as_bytes(&groups[1][..]),
                crate::arch::cast::as_bytes(&groups[0][..]),
            ],
        );
        for (g, rows) in rows.iter().enumerate() {
            let half: Vec<[f32; ROWS8]> = got
                .iter()
                .map(|lanes| std::array::from_fn(|r| lanes[ROWS8 * g + r]))
                .collect();
            let kernel = format!("packed16 on {isa}, group {g}");
            eight_rows_match_twin::<K>(&half, *rows, pick, &kernel)?;
        }
    }
    Ok(())
}

macro_rules! packed_tests {
    ($($kind:ident => $name:ident;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(24))]
            $(
                #[test]
                fn $name(i in 0..AWKWARD_BLOCKS.len(), seed in any::<u64>(), n in 1..=4usize) {
                    let blocks = AWKWARD_BLOCKS[i];
                    match n {
                        1 => packed8_tile::<kind::$kind, 1>(blocks, seed)?,
                        2 => packed8_tile::<kind::$kind, 2>(blocks, seed)?,
                        3 => packed8_tile::<kind::$kind, 3>(blocks, seed)?,
                        _ => packed8_tile::<kind::$kind, 4>(blocks, seed)?,
                    }
                    match n {
                        1 => packed16_tile::<kind::$kind, 1>(blocks, seed)?,
                        2 => packed16_tile::<kind::$kind, 2>(blocks, seed)?,
                        3 => packed16_tile::<kind::$kind, 3>(blocks, seed)?,
                        _ => packed16_tile::<kind::$kind, 4>(blocks, seed)?,
                    }
                }
            )*
        }
    };
}

packed_tests! {
    Q4_0 => q4_0_packed_matches_twin;
    Q4_1 => q4_1_packed_matches_twin;
    Q5_0 => q5_0_packed_matches_twin;
    Q8_0 => q8_0_packed_matches_twin;
}

macro_rules! fast_tests {
    ($($kind:ident => $name:ident;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(24))]
            $(
                #[test]
                fn $name(i in 0..AWKWARD_BLOCKS.len(), seed in any::<u64>(), n in 1..=LANES) {
                    fast_matches_scalar::<kind::$kind>(AWKWARD_BLOCKS[i], seed)?;
                    lanes_match_twin::<kind::$kind>(AWKWARD_BLOCKS[i], seed, n)?;
                    rows8_match_twin::<kind::$kind>(AWKWARD_BLOCKS[i], seed, n)?;
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
