//! Every dot kernel against its scalar twin, and every scalar twin against the f64 dot of
//! the dequantized rows, on random data at awkward lengths and on every available path.

use proptest::prelude::*;

use super::test_data::{
    AWKWARD_BLOCKS, Bytes, dequantized, dot_and_bound, random_activations, random_weights, zeroed,
};
use super::{VecDot, kind};
use crate::arch::cast::{as_blocks, as_bytes};
use crate::cpu::Isa;

/// Random weights of `n_blocks` and four quantized activation rows.
pub(super) struct Case<K: VecDot> {
    pub(super) weights: Bytes,
    pub(super) acts: Vec<Vec<K::Act>>,
}

impl<K: VecDot> Case<K> {
    pub(super) fn new(n_blocks: usize, seed: u64) -> Self {
        let weights = random_weights(K::TYPE, 1, n_blocks, seed);
        let cols = n_blocks * K::TYPE.block_size();
        let x: Vec<Vec<f32>> = (0..4)
            .map(|t| random_activations(cols, seed.wrapping_add(t)))
            .collect();
        let acts = x
            .iter()
            .map(|xt| {
                let mut a = zeroed::<K::Act>(cols / K::ACT_TYPE.block_size());
                K::quantize(Isa::Scalar, xt, &mut a);
                a
            })
            .collect();
        Self { weights, acts }
    }

    pub(super) fn w(&self) -> &[K::Weight] {
        as_blocks(self.weights.get()).expect("aligned test weights")
    }
}

/// [`VecDot::dot`] over a tile of `N` activation rows, cycling through `a`.
fn tile<K: VecDot, const N: usize>(isa: Isa, w: &[K::Weight], a: &[Vec<K::Act>]) -> Vec<f32> {
    K::dot(
        isa,
        w,
        std::array::from_fn::<_, N, _>(|i| &a[i % a.len()][..]),
    )
    .to_vec()
}

/// SIMD (every path, tiles of 1 to 8 rows) against the scalar twin.
fn simd_matches_scalar<K: VecDot>(n_blocks: usize, seed: u64) -> Result<(), TestCaseError> {
    let case = Case::<K>::new(n_blocks, seed);
    let w = case.w();
    let cols = n_blocks * K::TYPE.block_size();
    let expected: Vec<f32> = case.acts.iter().map(|a| K::dot_scalar(w, a)).collect();
    let bounds: Vec<f64> = case
        .acts
        .iter()
        .map(|a| {
            let wd = dequantized(K::TYPE, case.weights.get(), cols);
            let ad = dequantized(K::ACT_TYPE, as_bytes(a), cols);
            dot_and_bound(&wd, &ad).1
        })
        .collect();
    let a = &case.acts;
    for isa in Isa::available() {
        let got: Vec<Vec<f32>> = vec![
            tile::<K, 1>(isa, w, a),
            tile::<K, 2>(isa, w, a),
            tile::<K, 3>(isa, w, a),
            tile::<K, 4>(isa, w, a),
            tile::<K, 7>(isa, w, a),
            tile::<K, 8>(isa, w, a),
        ];
        for row in got {
            for (i, &g) in row.iter().enumerate() {
                let t = i % 4;
                use crate::GgmlType::{Q4_K, Q5_K, Q6_K};
                if K::TYPE.block_size() == 32 || matches!(K::TYPE, Q4_K | Q5_K | Q6_K) {
                    // These types add in ggml's order on every path.
                    prop_assert_eq!(
                        g.to_bits(),
                        expected[t].to_bits(),
                        "{} on {}, {} blocks, row {}: got {}, scalar {}",
                        K::TYPE,
                        isa,
                        n_blocks,
                        t,
                        g,
                        expected[t]
                    );
                    continue;
                }
                let tol = 1e-5 * bounds[t] + 1e-6;
                prop_assert!(
                    (f64::from(g) - f64::from(expected[t])).abs() <= tol,
                    "{} on {isa}, {n_blocks} blocks, row {t}: got {g}, scalar {}",
                    K::TYPE,
                    expected[t]
                );
            }
        }
    }
    Ok(())
}

/// The scalar twin against the f64 dot of the dequantized weights and activations.
fn scalar_matches_dequantized<K: VecDot>(n_blocks: usize, seed: u64) -> Result<(), TestCaseError> {
    let case = Case::<K>::new(n_blocks, seed);
    let cols = n_blocks * K::TYPE.block_size();
    let wd = dequantized(K::TYPE, case.weights.get(), cols);
    // Q8_1 carries d * sum(q) rounded to f16, so its minimum term is off by up to 2^-11.
    let rel = if K::ACT_TYPE == crate::GgmlType::Q8_1 {
        2e-3
    } else {
        1e-5
    };
    for a in &case.acts {
        let ad = dequantized(K::ACT_TYPE, as_bytes(a), cols);
        let (exact, bound) = dot_and_bound(&wd, &ad);
        // The minimum times the rounded sum need not be small against the products: rows
        // whose values sit near zero with a large minimum cancel it out.
        let min_term = if K::ACT_TYPE == crate::GgmlType::Q8_1 {
            let largest = wd.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            f64::from(largest) * ad.iter().map(|v| f64::from(v.abs())).sum::<f64>()
        } else {
            0.0
        };
        let got = f64::from(K::dot_scalar(case.w(), a));
        prop_assert!(
            (got - exact).abs() <= rel * (bound + min_term) + 1e-6,
            "{} scalar, {n_blocks} blocks: got {got}, dequantized {exact}",
            K::TYPE
        );
    }
    Ok(())
}

macro_rules! dot_tests {
    ($($kind:ident => $simd:ident, $scalar:ident;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(24))]
            $(
                #[test]
                fn $simd(i in 0..AWKWARD_BLOCKS.len(), seed in any::<u64>()) {
                    simd_matches_scalar::<kind::$kind>(AWKWARD_BLOCKS[i], seed)?;
                }

                #[test]
                fn $scalar(i in 0..AWKWARD_BLOCKS.len(), seed in any::<u64>()) {
                    scalar_matches_dequantized::<kind::$kind>(AWKWARD_BLOCKS[i], seed)?;
                }
            )*
        }
    };
}

dot_tests! {
    Q4_0 => q4_0_simd_matches_scalar, q4_0_scalar_matches_dequantized;
    Q4_1 => q4_1_simd_matches_scalar, q4_1_scalar_matches_dequantized;
    Q5_0 => q5_0_simd_matches_scalar, q5_0_scalar_matches_dequantized;
    Q5_1 => q5_1_simd_matches_scalar, q5_1_scalar_matches_dequantized;
    Q8_0 => q8_0_simd_matches_scalar, q8_0_scalar_matches_dequantized;
    IQ4_NL => iq4_nl_simd_matches_scalar, iq4_nl_scalar_matches_dequantized;
    Q2_K => q2_k_simd_matches_scalar, q2_k_scalar_matches_dequantized;
    Q3_K => q3_k_simd_matches_scalar, q3_k_scalar_matches_dequantized;
    Q4_K => q4_k_simd_matches_scalar, q4_k_scalar_matches_dequantized;
    Q5_K => q5_k_simd_matches_scalar, q5_k_scalar_matches_dequantized;
    Q6_K => q6_k_simd_matches_scalar, q6_k_scalar_matches_dequantized;
    F32 => f32_simd_matches_scalar, f32_scalar_matches_dequantized;
    F16 => f16_simd_matches_scalar, f16_scalar_matches_dequantized;
}

#[test]
fn many_f16_rows_against_one_activation_row_have_each_rows_bits() {
    // Lengths cross the kernel's 64- and 16-value steps and its scalar tail; row counts
    // cross its groups of sixteen.
    for n in [0, 1, 15, 16, 17, 63, 64, 65, 100, 128, 200, 256, 257] {
        let y = random_activations(n, 9000 + n as u64);
        let rows: Vec<Vec<half::f16>> = (0..37)
            .map(|r| {
                let x = random_activations(n, 100 * n as u64 + r);
                x.iter().map(|&v| half::f16::from_f32(v)).collect()
            })
            .collect();
        for count in [0, 1, 5, 16, 17, 37] {
            let xs: Vec<&[half::f16]> = rows[..count].iter().map(Vec::as_slice).collect();
            for isa in Isa::available() {
                let mut got = vec![f32::NAN; count];
                super::vec_dot_f16_f32_many(isa, &xs, &y, &mut got);
                for (r, x) in xs.iter().enumerate() {
                    let one = super::vec_dot_f16_f32(isa, x, &y);
                    assert_eq!(
                        got[r].to_bits(),
                        one.to_bits(),
                        "{isa} n={n} row {r} of {count}"
                    );
                }
            }
        }
    }
}

#[test]
fn float_rows_of_every_length_match_scalar() {
    // Float rows have no blocks: every length from 0 to 130 exercises the SIMD tails.
    for n in 0..130 {
        let x = random_activations(n, n as u64);
        let y = random_activations(n, 1000 + n as u64);
        let h: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
        let expected = super::scalar::vec_dot_f32(&x, &y);
        let expected_h = super::scalar::vec_dot_f16_f32(&h, &y);
        let bound: f32 = x.iter().zip(&y).map(|(a, b)| (a * b).abs()).sum();
        for isa in Isa::available() {
            let got = super::vec_dot_f32(isa, &x, &y);
            let got_h = super::vec_dot_f16_f32(isa, &h, &y);
            assert!(
                (got - expected).abs() <= 1e-5 * bound + 1e-6,
                "f32 {isa} n={n}"
            );
            assert!(
                (got_h - expected_h).abs() <= 1e-5 * bound + 1e-6,
                "f16 {isa} n={n}"
            );
        }
    }
}

#[test]
fn many_f16_rows_against_several_activation_rows_have_each_rows_bits() {
    // As above, with one to four activation rows at once; zero rows of keys give zero
    // dots, whose sign the one-row kernel's empty tail makes positive.
    fn check<const R: usize>(n: usize, rows: &[Vec<half::f16>], count: usize) {
        let ys: Vec<Vec<f32>> = (0..R)
            .map(|r| random_activations(n, 7000 + 31 * n as u64 + r as u64))
            .collect();
        let yr: [&[f32]; R] = std::array::from_fn(|r| ys[r].as_slice());
        let xs: Vec<&[half::f16]> = rows[..count].iter().map(Vec::as_slice).collect();
        for isa in Isa::available() {
            let mut got = vec![vec![f32::NAN; count]; R];
            let outs: [&mut [f32]; R] = {
                let mut it = got.iter_mut();
                std::array::from_fn(|_| it.next().map(Vec::as_mut_slice).unwrap_or_default())
            };
            super::vec_dot_f16_f32_many_rows(isa, &xs, yr, outs);
            for (r, y) in ys.iter().enumerate() {
                for (i, x) in xs.iter().enumerate() {
                    let one = super::vec_dot_f16_f32(isa, x, y);
                    assert_eq!(
                        got[r][i].to_bits(),
                        one.to_bits(),
                        "{isa} n={n} activation row {r} of {R}, key {i} of {count}"
                    );
                }
            }
        }
    }
    for n in [0, 1, 15, 16, 17, 48, 63, 64, 65, 80, 128, 200, 256, 257] {
        let mut rows: Vec<Vec<half::f16>> = (0..37)
            .map(|r| {
                let x = random_activations(n, 300 * n as u64 + r);
                x.iter().map(|&v| half::f16::from_f32(v)).collect()
            })
            .collect();
        if n > 0 {
            rows[3].fill(half::f16::NEG_ZERO);
        }
        for count in [0, 1, 5, 16, 17, 37] {
            check::<1>(n, &rows, count);
            check::<2>(n, &rows, count);
            check::<3>(n, &rows, count);
            check::<4>(n, &rows, count);
        }
    }
}
