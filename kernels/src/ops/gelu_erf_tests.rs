//! Tests of the fast GELU with erf: every path gives the scalar twin's bits, the twin is
//! within its budget of an `f64` reference, and exact numerics is untouched.

use super::*;
use proptest::prelude::*;
use std::f64::consts::{FRAC_1_SQRT_2, PI};

/// The budget, in ulps of the true result (6.9 measured; see the module documentation).
const ULP_BUDGET: f64 = 8.0;

/// `Φ(-a)` for `a >= 0`, to about 1e-12 relative for `a <= 20` (0 beyond 30, where
/// `x·Φ(-a)` is far below `f32`'s range): below `a = 2.5·√2` the series
/// `erf(z) = 2/√π · e^(-z²) · Σ z (2z²)^n / (1·3·…·(2n+1))`, whose terms are all
/// positive, and `Φ(-a) = (1 - erf(a/√2)) / 2`; above it Laplace's continued fraction
/// `erfc(z) = e^(-z²)/√π / (z + (1/2)/(z + 1/(z + (3/2)/(z + …))))`.
fn upper_tail(a: f64) -> f64 {
    let z = a * FRAC_1_SQRT_2;
    if z > 21.0 {
        return 0.0;
    }
    if z < 2.5 {
        let (mut term, mut sum, mut n) = (z, z, 0.0);
        while term > 1e-17 * sum {
            n += 1.0;
            term *= 2.0 * z * z / (2.0 * n + 1.0);
            sum += term;
        }
        let erf = 2.0 / PI.sqrt() * (-z * z).exp() * sum;
        return 0.5 * (1.0 - erf);
    }
    let mut fraction = z;
    for k in (1..=80).rev() {
        fraction = z + f64::from(k) / 2.0 / fraction;
    }
    0.5 * (-z * z).exp() / PI.sqrt() / fraction
}

/// `x·Φ(x)` in `f64`.
fn gelu_reference(x: f32) -> f64 {
    let x = f64::from(x);
    if x < 0.0 {
        x * upper_tail(-x)
    } else {
        x * (1.0 - upper_tail(x))
    }
}

/// The spacing of `f32` values at `w` (the subnormal spacing below the normal range).
fn ulp_f32(w: f64) -> f64 {
    let w = w.abs();
    if w < f64::from(f32::MIN_POSITIVE) {
        2f64.powi(-149)
    } else {
        2f64.powi(w.log2().floor() as i32 - 23)
    }
}

/// How far `got` is from `x·Φ(x)`, in ulps of the latter, after the absolute allowance
/// for underflowing results (`f32::MIN_POSITIVE`).
fn ulps_off(x: f32, got: f32) -> f64 {
    let want = gelu_reference(x);
    let err = (f64::from(got) - want).abs() - f64::from(f32::MIN_POSITIVE);
    err.max(0.0) / ulp_f32(want)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|v| v.to_bits()).collect()
}

/// Values a hidden activation may take, and a few it should never.
const SPECIAL: [f32; 22] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    1e-20,
    -1e-20,
    f32::MIN_POSITIVE,
    -1e-40,
    5.0,
    -5.0,
    -9.5,
    -13.0,
    14.5,
    -14.5,
    15.0,
    -15.0,
    -16.0,
    1e6,
    -1e6,
    3e38,
    -3e38,
    f32::INFINITY,
];

#[test]
fn the_reference_tail_matches_known_values() {
    // Φ(-a) from mpmath at 30 digits, rounded to f64.
    for (a, want) in [
        (0.0, 0.5),
        (0.5, 0.308_537_538_725_986_9),
        (1.0, 0.158_655_253_931_457_05),
        (3.0, 0.001_349_898_031_630_094_6),
        (3.5, 0.000_232_629_079_035_525_04),
        (5.0, 2.866_515_718_791_939e-7),
        (10.0, 7.619_853_024_160_525e-24),
        (14.0, 7.793_536_819_192_8e-45),
    ] {
        let got = upper_tail(a);
        assert!(
            ((got - want) / want).abs() < 1e-12,
            "Φ(-{a}) = {got:e}, want {want:e}"
        );
    }
}

#[test]
fn a_sweep_of_f32_values_is_within_budget() {
    // Every 101st bit pattern of [0, 20] and of [-20, 0], which steps through every
    // binade from 1e-38 up, and every 2^-12 from -20 to 20.
    let top = 20.0f32.to_bits();
    let sweep = (0..top).step_by(101).map(f32::from_bits);
    let grid = (-20 * 4096..=20 * 4096).map(|i| i as f32 / 4096.0);
    let mut worst = (0.0, 0.0f32);
    for x in sweep.clone().chain(sweep.map(|x| -x)).chain(grid) {
        let off = ulps_off(x, gelu_erf_fast(x));
        if off > worst.0 {
            worst = (off, x);
        }
    }
    assert!(
        worst.0 <= ULP_BUDGET,
        "{} ulps at x = {:e}",
        worst.0,
        worst.1
    );
}

#[test]
fn special_values_keep_their_meaning() {
    assert_eq!(gelu_erf_fast(0.0).to_bits(), 0.0f32.to_bits());
    assert_eq!(gelu_erf_fast(-0.0).to_bits(), (-0.0f32).to_bits());
    for x in [14.5, 15.0, 100.0, 1e6, 3e38] {
        assert_eq!(gelu_erf_fast(x), x);
        assert_eq!(gelu_erf_fast(-x).to_bits(), (-0.0f32).to_bits());
    }
    assert_eq!(gelu_erf_fast(f32::INFINITY), f32::INFINITY);
    assert!(gelu_erf_fast(f32::NAN).is_nan());
    assert!(gelu_erf_fast(f32::NEG_INFINITY).is_nan());
}

#[test]
fn every_path_gives_the_twins_bits_at_every_tail_length() {
    let mut values: Vec<f32> = SPECIAL.to_vec();
    values.extend([f32::NAN, f32::NEG_INFINITY]);
    values.extend((0..23).map(|i| (i as f32 - 11.0) * 0.77));
    for len in 0..=values.len() {
        let x = &values[values.len() - len..];
        let want: Vec<f32> = x.iter().map(|&v| gelu_erf_fast(v)).collect();
        for isa in Isa::available() {
            let mut got = vec![f32::NAN; len];
            gelu_erf_isa(isa, Numerics::Fast, x, &mut got);
            assert_eq!(bits(&got), bits(&want), "{isa}, length {len}");
        }
    }
}

#[test]
fn exact_numerics_is_the_f64_path_on_every_isa() {
    let x: Vec<f32> = (0..203).map(|i| (i as f32 - 101.0) / 9.0).collect();
    let mut want = vec![0.0; x.len()];
    gelu_erf(&x, &mut want);
    for isa in Isa::available() {
        let mut got = vec![f32::NAN; x.len()];
        gelu_erf_isa(isa, Numerics::Exact, &x, &mut got);
        assert_eq!(bits(&got), bits(&want), "{isa}");
    }
}

#[test]
#[should_panic(expected = "output length differs")]
fn lengths_must_agree() {
    gelu_erf_isa(Isa::best(), Numerics::Fast, &[1.0; 9], &mut [0.0; 8]);
}

/// A hidden activation: mostly the usual range, some far out, some special.
fn activation() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => -6.0f32..6.0,
        2 => -40.0f32..40.0,
        1 => -1e-3f32..1e-3,
        1 => prop::sample::select(&SPECIAL[..]),
    ]
}

proptest! {
    #[test]
    fn simd_equals_the_twin_and_both_are_within_budget(
        x in prop::collection::vec(activation(), 0..100),
        offset in 0usize..8,
    ) {
        // A start `offset` into the slice, so the groups of 8 fall unaligned.
        let x = &x[offset.min(x.len())..];
        let twin: Vec<f32> = x.iter().map(|&v| gelu_erf_fast(v)).collect();
        for isa in Isa::available() {
            let mut got = vec![f32::NAN; x.len()];
            gelu_erf_isa(isa, Numerics::Fast, x, &mut got);
            prop_assert_eq!(bits(&got), bits(&twin), "{}", isa);
        }
        let mut exact = vec![0.0; x.len()];
        gelu_erf(x, &mut exact);
        for ((&v, &fast), &exact) in x.iter().zip(&twin).zip(&exact) {
            if !v.is_finite() {
                continue;
            }
            let off = ulps_off(v, fast);
            prop_assert!(off <= ULP_BUDGET, "x = {:e}: {:e} is {} ulps off", v, fast, off);
            // Exact numerics' erf is within 1.5e-7 (Abramowitz and Stegun 7.1.26), so
            // the two numerics differ by at most 0.75e-7·|x| plus their roundings.
            let want = gelu_reference(v);
            let apart = f64::from(fast - exact).abs();
            let allowed = 0.75e-7 * f64::from(v.abs()) + (ULP_BUDGET + 1.0) * ulp_f32(want);
            prop_assert!(apart <= allowed, "x = {:e}: fast {:e}, exact {:e}", v, fast, exact);
        }
    }
}
