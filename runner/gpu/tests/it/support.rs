//! Random data and the comparison every kernel test uses.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A deterministic generator per test, so a failure reproduces.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `n` values uniform in `[-scale, scale)`.
pub fn values(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

/// Asserts `|got - want| <= tol` elementwise, naming the first index that is not.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: impl Fn(usize) -> f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - f64::from(w)).abs();
        assert!(
            err <= tol(i),
            "{what}: index {i}: gpu {g} vs cpu {w} (error {err:e} > tolerance {:e})",
            tol(i)
        );
    }
}
