//! Activations and gated feed-forward products: SiLU, GELU (tanh form), SwiGLU, GeGLU.

use std::sync::LazyLock;

use half::f16;

use super::expf::silu_mul_isa;
use crate::cpu::Isa;

/// The instruction set for callers that do not pass one (every path gives the same bits).
fn detected() -> Isa {
    Isa::detect().unwrap_or(Isa::Scalar)
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_COEF_A: f32 = 0.044_715;

/// GELU, tanh approximation, of one value in `f32` without rounding through `f16`:
/// `0.5 * x * (1 + tanh(sqrt(2/π) * x * (1 + 0.044715 * x²)))`, ggml's `ggml_gelu_f32`
/// as GCC compiles it in llama.cpp's native build: `1 + 0.044715·x·x` is one fused
/// multiply-add (that decides a few entries of the `f16` table, e.g. at `x = -1.999`).
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    let inner = (GELU_COEF_A * x).mul_add(x, 1.0);
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * inner).tanh())
}

/// `f32(f16(gelu_tanh(f32(h))))` for every `f16` bit pattern `h`: ggml's
/// `ggml_table_gelu_f16`, kept widened to `f32` (256 KiB, built on first use).
static GELU_F16_TABLE: LazyLock<Box<[f32]>> = LazyLock::new(|| {
    (0..=u16::MAX)
        .map(|bits| f16::from_f32(gelu_tanh(f16::from_bits(bits).to_f32())).to_f32())
        .collect()
});

/// GELU of one value as llama.cpp's CPU backend computes it on `f32` tensors; see [`gelu`].
#[inline]
fn gelu_ggml(table: &[f32], x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        table[usize::from(f16::from_f32(x).to_bits())]
    }
}

/// `out[i] = silu(x[i]) = x[i] / (1 + exp(-x[i]))`, to the bit as llama.cpp's CPU backend
/// computes it on one row (see [`silu_mul_isa`]).
///
/// # Panics
/// If `out.len() != x.len()`.
pub fn silu(x: &[f32], out: &mut [f32]) {
    silu_mul_isa(detected(), x, None, out);
}

/// `out[i] = gelu(x[i])`, GELU with the tanh approximation exactly as llama.cpp's CPU
/// backend computes it, `f16` rounding included.
///
/// ggml's `vec.h` defines `GGML_GELU_FP16` unconditionally, so every CPU build evaluates
/// `ggml_vec_gelu_f32` through a 65,536-entry `f16` table: inputs `<= -10` give 0, inputs
/// `>= 10` give `x`, and any other input is rounded to `f16` (to nearest even) and looked
/// up, the entry being `f16(gelu_tanh(f32(f16(x))))` widened back to `f32`. Outputs in
/// (-10, 10) therefore carry only `f16` precision (about 3 significant digits). We keep
/// the same table, so the numbers are identical. For the unrounded value of one input use
/// [`gelu_tanh`].
///
/// # Panics
/// If `out.len() != x.len()`.
pub fn gelu(x: &[f32], out: &mut [f32]) {
    assert_eq!(out.len(), x.len(), "gelu: output length differs from input");
    let table = &**GELU_F16_TABLE;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = gelu_ggml(table, v);
    }
}

/// The error function, to within 1.5e-7 absolute (Abramowitz and Stegun 7.1.26, in
/// `f64`): the Rust standard library's `erf` is not stable yet, and GELU needs nothing
/// finer than `f32`'s precision.
pub fn erf(x: f64) -> f64 {
    const P: f64 = 0.327_591_1;
    const A: [f64; 5] = [
        0.254_829_592,
        -0.284_496_736,
        1.421_413_741,
        -1.453_152_027,
        1.061_405_429,
    ];
    let t = 1.0 / (1.0 + P * x.abs());
    let poly = A.iter().rev().fold(0.0, |acc, &a| acc * t + a) * t;
    let y = 1.0 - poly * (-x * x).exp();
    if x < 0.0 { -y } else { y }
}

/// `out[i] = x[i] * Φ(x[i]) = 0.5 * x[i] * (1 + erf(x[i] / sqrt(2)))`: the exact GELU that
/// BERT and PyTorch's `gelu` compute (not the tanh approximation of [`gelu`]), in `f64`
/// and rounded once to `f32`.
///
/// # Panics
/// If `out.len() != x.len()`.
pub fn gelu_erf(x: &[f32], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        x.len(),
        "gelu_erf: output length differs from input"
    );
    for (o, &v) in out.iter_mut().zip(x) {
        let v = f64::from(v);
        *o = (0.5 * v * (1.0 + erf(v * std::f64::consts::FRAC_1_SQRT_2))) as f32;
    }
}

/// SwiGLU: `out[i] = silu(gate[i]) * up[i]` (ggml's `swiglu`, llama's feed-forward), to
/// the bit as llama.cpp computes one row (see [`silu_mul_isa`]).
///
/// # Panics
/// If the three slices differ in length.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    silu_mul_isa(detected(), gate, Some(up), out);
}

/// GeGLU: `out[i] = gelu(gate[i]) * up[i]` (ggml's `geglu`, Gemma's feed-forward), with
/// GELU rounded through `f16` as in [`gelu`]; a gate `>= 10` gives `gate * up`.
///
/// # Panics
/// If the three slices differ in length.
pub fn geglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    assert_eq!(gate.len(), up.len(), "geglu: gate and up lengths differ");
    assert_eq!(
        out.len(),
        gate.len(),
        "geglu: output length differs from input"
    );
    let table = &**GELU_F16_TABLE;
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = gelu_ggml(table, g) * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_support::{assert_ulps, from_bits, input};
    use crate::ops::testdata;
    use proptest::prelude::*;

    #[test]
    fn erf_matches_known_values() {
        // erf at a few points, from tables to 10 digits.
        for (x, want) in [
            (0.0, 0.0),
            (0.1, 0.112_462_916_0),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (2.0, 0.995_322_265_0),
            (-1.5, -0.966_105_146_5),
            (4.0, 0.999_999_984_6),
        ] {
            assert!((erf(x) - want).abs() < 1.5e-7, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn gelu_erf_is_x_phi_x() {
        let x = [-3.0f32, -1.0, -0.25, 0.0, 0.5, 1.0, 2.5, 8.0];
        let mut out = [0.0; 8];
        gelu_erf(&x, &mut out);
        // x·Φ(x), from Python's math.erf.
        let want = [
            -0.004_049_69,
            -0.158_655_25,
            -0.100_323_42,
            0.0,
            0.345_731_23,
            0.841_344_7,
            2.484_475_8,
            8.0,
        ];
        for ((o, w), v) in out.iter().zip(want).zip(x) {
            assert!((o - w).abs() < 2e-6, "gelu_erf({v}) = {o}, want {w}");
        }
    }

    fn activation_inputs() -> Vec<f32> {
        (0..97)
            .map(|i| (i - 48) as f32 / 4.0 + 1.0 / 3000.0)
            .collect()
    }

    fn gelu_f64(x: f64) -> f64 {
        0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
    }

    #[test]
    fn gelu_matches_llama_cpp_bit_for_bit() {
        let x = activation_inputs();
        let mut out = vec![0.0; x.len()];
        gelu(&x, &mut out);
        assert_eq!(out, from_bits(&testdata::native::GELU));
        assert_eq!(out, from_bits(&testdata::plain::GELU));
    }

    #[test]
    fn geglu_matches_llama_cpp_bit_for_bit() {
        let x = activation_inputs();
        let up: Vec<f32> = (0..97).map(|i| input(i, 5)).collect();
        let mut out = vec![0.0; x.len()];
        geglu(&x, &up, &mut out);
        assert_eq!(out, from_bits(&testdata::native::GEGLU));
        assert_eq!(out, from_bits(&testdata::plain::GEGLU));
    }

    #[test]
    fn silu_and_swiglu_match_llama_cpp_bit_for_bit() {
        // The native build is an AVX-512 one; the plain build takes the C library's exp.
        let x = activation_inputs();
        let up: Vec<f32> = (0..97).map(|i| input(i, 5)).collect();
        let mut out = vec![0.0; x.len()];
        silu(&x, &mut out);
        assert_eq!(out, from_bits(&testdata::native::SILU));
        assert_ulps(&out, &from_bits(&testdata::plain::SILU), 4);
        swiglu(&x, &up, &mut out);
        assert_eq!(out, from_bits(&testdata::native::SWIGLU));
        assert_ulps(&out, &from_bits(&testdata::plain::SWIGLU), 4);
    }

    #[test]
    fn the_f16_table_fuses_as_llama_cpp_does() {
        // At x = -1.9990234 (f16 0xbfff) the fused and unfused inner sums round the table
        // entry to neighbouring f16 values; llama.cpp's table holds 0xa9d3 (read from its
        // GeGLU output on Gemma 3).
        let x = half::f16::from_bits(0xbfff).to_f32();
        let mut out = [0.0];
        gelu(&[x], &mut out);
        assert_eq!(half::f16::from_f32(out[0]).to_bits(), 0xa9d3);
    }

    #[test]
    fn gelu_known_points() {
        // gelu(0) = 0; gelu(1) = 0.841192; gelu(-1) = -0.158808 (tanh form).
        assert_eq!(gelu_tanh(0.0), 0.0);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-6);
        assert!((gelu_tanh(-1.0) + 0.158_808).abs() < 1e-6);
        let mut out = [0.0; 5];
        gelu(&[-10.0, -20.0, 10.0, 25.5, 1.0], &mut out);
        assert_eq!(out[..4], [0.0, 0.0, 10.0, 25.5]);
        // Through f16: 0.841192 rounds to 0.84130859375 (ulp 2^-11 near 0.84).
        assert_eq!(out[4], 0.841_308_6);
    }

    #[test]
    fn silu_known_points() {
        let mut out = [0.0; 4];
        silu(&[0.0, 1.0, -1.0, -100.0], &mut out);
        assert_eq!(out[0], 0.0);
        assert!((out[1] - 0.731_058_6).abs() < 1e-7);
        assert!((out[2] + 0.268_941_4).abs() < 1e-7);
        assert!(out[3].abs() < 1e-40);
    }

    proptest! {
        #[test]
        fn silu_and_swiglu_match_f64(
            pairs in prop::collection::vec((-30.0f32..30.0, -4.0f32..4.0), 1..100)
        ) {
            let (x, up): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
            let mut out = vec![0.0; x.len()];
            swiglu(&x, &up, &mut out);
            for i in 0..x.len() {
                let xv = f64::from(x[i]);
                let want = xv / (1.0 + (-xv).exp()) * f64::from(up[i]);
                let err = (f64::from(out[i]) - want).abs();
                prop_assert!(err <= 4e-7 * want.abs() + 1e-30, "x={} got {} want {}", x[i], out[i], want);
            }
        }

        #[test]
        fn gelu_is_f16_accurate_and_geglu_multiplies(
            pairs in prop::collection::vec((-12.0f32..12.0, -4.0f32..4.0), 1..100)
        ) {
            let (x, up): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
            let mut g = vec![0.0; x.len()];
            let mut gg = vec![0.0; x.len()];
            gelu(&x, &mut g);
            geglu(&x, &up, &mut gg);
            for i in 0..x.len() {
                let want = gelu_f64(f64::from(x[i]));
                // Rounding the input and the output through f16: about 2^-10 relative,
                // plus the slope (at most 1.13) times the input rounding.
                let tol = 2f64.powi(-10) * (want.abs() + 1.2 * f64::from(x[i].abs())) + 1e-7;
                prop_assert!((f64::from(g[i]) - want).abs() <= tol, "x={} got {} want {}", x[i], g[i], want);
                prop_assert_eq!(gg[i], g[i] * up[i]);
            }
        }
    }
}
