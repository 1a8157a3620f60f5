//! The orthonormal Walsh-Hadamard transform, which llama.cpp applies to queries, keys and
//! values before they meet a quantized K/V cache: rotating spreads a head's outlier
//! channels over all its values, so 4- and 8-bit blocks lose far less, and since the
//! transform is orthonormal and its own inverse, `q·k` is unchanged and the attention
//! output is rotated back by applying it once more.

/// Replaces `x` by `H x`, where `H` is the `n × n` Sylvester-Hadamard matrix scaled by
/// `1/sqrt(n)`, applied to each run of `n` values.
///
/// # Panics
///
/// When `n` is not a power of two or `x` is not a whole number of runs of `n`.
pub fn hadamard_in_place(x: &mut [f32], n: usize) {
    assert!(n.is_power_of_two(), "hadamard: {n} is not a power of two");
    assert!(
        x.len().is_multiple_of(n),
        "hadamard: {} values are not runs of {n}",
        x.len()
    );
    let scale = 1.0 / (n as f32).sqrt();
    for run in x.chunks_exact_mut(n) {
        let mut h = 1;
        while h < n {
            for block in run.chunks_exact_mut(2 * h) {
                let (lo, hi) = block.split_at_mut(h);
                for (a, b) in lo.iter_mut().zip(hi.iter_mut()) {
                    let (x, y) = (*a, *b);
                    *a = x + y;
                    *b = x - y;
                }
            }
            h *= 2;
        }
        for v in run.iter_mut() {
            *v *= scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Entry (i, j) of the unscaled Sylvester matrix: (-1)^popcount(i & j).
    fn entry(i: usize, j: usize) -> f64 {
        if (i & j).count_ones().is_multiple_of(2) {
            1.0
        } else {
            -1.0
        }
    }

    proptest! {
        #[test]
        fn equals_the_matrix_product_and_is_its_own_inverse(
            log_n in 0u32..9,
            runs in 1usize..4,
            seed in any::<u64>(),
        ) {
            let n = 1usize << log_n;
            let x: Vec<f32> = (0..n * runs)
                .map(|i| ((i as u64).wrapping_mul(seed | 1) % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            let mut y = x.clone();
            hadamard_in_place(&mut y, n);
            for r in 0..runs {
                for i in 0..n {
                    let want: f64 = (0..n)
                        .map(|j| entry(i, j) * f64::from(x[r * n + j]))
                        .sum::<f64>()
                        / (n as f64).sqrt();
                    prop_assert!((f64::from(y[r * n + i]) - want).abs() < 1e-5);
                }
            }
            let norm = |v: &[f32]| v.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>();
            prop_assert!((norm(&y) - norm(&x)).abs() <= 1e-4 * norm(&x).max(1.0));
            hadamard_in_place(&mut y, n);
            for (a, b) in y.iter().zip(&x) {
                prop_assert!((a - b).abs() < 1e-5);
            }
        }
    }
}
