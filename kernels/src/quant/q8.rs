//! The 8-bit formats: Q8_0 (weights and K/V), Q8_1 and Q8_K (activations).
//!
//! Two roundings exist, as in llama.cpp, and both are needed:
//!
//! - the *reference* quantizers (`quantize_row_q8_0_ref`, `quantize_row_q8_1_ref`,
//!   `quantize_row_q8_K_ref` in `ggml-quants.c`) make the bytes of Q8_0 tensors in model
//!   files: Q8_0 and Q8_1 take `d = amax / 127`, multiply by `1 / d` and round half away
//!   from zero (C `roundf`); Q8_K scales by `-127 / max` (max being the signed value of
//!   largest magnitude) and rounds half to even (ggml's `nearest_int`);
//! - the *runtime* quantizers that llama.cpp's CPU backend runs on activations before
//!   every quantized matrix product (`quantize_row_q8_0` in `ggml-cpu/arch/x86/quants.c`)
//!   multiply Q8_0 and Q8_1 by `127 / amax` instead and round half to even. The two differ
//!   in the last bit of the multiplier and on halves, and one flipped quant moves a
//!   model's logits visibly, so matching llama.cpp's numbers needs the runtime rounding.
//!   Q8_K's runtime quantizer is its reference one.
//!
//! `quantize_row_q8_*` (the runtime quantizers) pick a path with [`Isa::detect`],
//! `quantize_row_q8_*_isa` take the choice from the caller; each has a scalar twin
//! (`*_scalar`, or the reference for Q8_K) and an AVX2 version in
//! [`crate::arch::x86_quant`] that writes the same bytes.

use half::f16;

use crate::blocks::{BlockQ8_0, BlockQ8_1, BlockQ8K, QK_K, QK8_0, QK8_1};
use crate::cpu::Isa;

/// The path for callers that do not pass one. Every path writes the same bytes, so a
/// malformed `OLLAMA_KERNELS` (which the runner reports at start-up) only costs speed here.
fn detected() -> Isa {
    Isa::detect().unwrap_or(Isa::Scalar)
}

macro_rules! dispatch {
    ($name:ident, $isa_name:ident, $reference:ident, $avx2:ident, $block:ty, $n:expr) => {
        #[doc = concat!("[`", stringify!($reference), "`] (the runtime rounding) on the detected instruction set.")]
        ///
        /// # Panics
        ///
        #[doc = concat!("When `x.len() != y.len() * ", stringify!($n), "`.")]
        pub fn $name(x: &[f32], y: &mut [$block]) {
            $isa_name(detected(), x, y)
        }

        #[doc = concat!("[`", stringify!($reference), "`] on the instruction set `isa`.")]
        ///
        /// # Panics
        ///
        #[doc = concat!("When `x.len() != y.len() * ", stringify!($n), "`.")]
        pub fn $isa_name(isa: Isa, x: &[f32], y: &mut [$block]) {
            match isa {
                Isa::Scalar => $reference(x, y),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2(token) => crate::arch::x86_quant::$avx2(token, x, y),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512(token) => crate::arch::x86_quant::$avx2(token.avx2(), x, y),
            }
        }
    };
}

dispatch!(
    quantize_row_q8_0,
    quantize_row_q8_0_isa,
    quantize_row_q8_0_scalar,
    quantize_row_q8_0_avx2,
    BlockQ8_0,
    32
);
dispatch!(
    quantize_row_q8_1,
    quantize_row_q8_1_isa,
    quantize_row_q8_1_scalar,
    quantize_row_q8_1_avx2,
    BlockQ8_1,
    32
);
dispatch!(
    quantize_row_q8_k,
    quantize_row_q8_k_isa,
    quantize_row_q8_k_ref,
    quantize_row_q8_k_avx2,
    BlockQ8K,
    256
);

/// Largest magnitude in `x` (0 for an empty slice).
fn abs_max(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// Reciprocal of a scale, 0 for a zero scale (`id = d ? 1.0f/d : 0.0f`).
pub(crate) fn inverse_or_zero(d: f32) -> f32 {
    if d != 0.0 { 1.0 / d } else { 0.0 }
}

/// The runtime multiplier `127 / amax` (0 for an all-zero block).
fn runtime_multiplier(amax: f32) -> f32 {
    if amax != 0.0 { 127.0 / amax } else { 0.0 }
}

/// Quantizes `x` to Q8_0 blocks with the runtime rounding (`id = 127 / amax`, halves to
/// even), in portable Rust: the scalar twin of the SIMD activation quantizers.
///
/// # Panics
///
/// When `x.len() != y.len() * 32`.
pub fn quantize_row_q8_0_scalar(x: &[f32], y: &mut [BlockQ8_0]) {
    assert_eq!(
        x.len(),
        y.len() * QK8_0,
        "quantize_row_q8_0: length mismatch"
    );
    for (xb, yb) in x.chunks_exact(QK8_0).zip(y.iter_mut()) {
        let amax = abs_max(xb);
        let id = runtime_multiplier(amax);
        yb.d = f16::from_f32(amax / 127.0);
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = nearest_int(v * id) as i8;
        }
    }
}

/// Quantizes `x` to Q8_1 blocks with the runtime rounding, `s = d * sum(qs)`, in portable
/// Rust: the scalar twin of the SIMD activation quantizers.
///
/// # Panics
///
/// When `x.len() != y.len() * 32`.
pub fn quantize_row_q8_1_scalar(x: &[f32], y: &mut [BlockQ8_1]) {
    assert_eq!(
        x.len(),
        y.len() * QK8_1,
        "quantize_row_q8_1: length mismatch"
    );
    for (xb, yb) in x.chunks_exact(QK8_1).zip(y.iter_mut()) {
        let amax = abs_max(xb);
        let id = runtime_multiplier(amax);
        let d = amax / 127.0;
        yb.d = f16::from_f32(d);
        let mut sum = 0i32;
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = nearest_int(v * id) as i8;
            sum += i32::from(*q);
        }
        yb.s = f16::from_f32(d * sum as f32);
    }
}

/// Quantizes `x` to Q8_0 blocks (`quantize_row_q8_0_ref`), in portable Rust.
///
/// # Panics
///
/// When `x.len() != y.len() * 32`; callers size the buffers (use
/// [`quantize_row`](super::quantize_row) for lengths that come from a file).
pub fn quantize_row_q8_0_ref(x: &[f32], y: &mut [BlockQ8_0]) {
    assert_eq!(
        x.len(),
        y.len() * QK8_0,
        "quantize_row_q8_0: length mismatch"
    );
    for (xb, yb) in x.chunks_exact(QK8_0).zip(y.iter_mut()) {
        let d = abs_max(xb) / 127.0;
        let id = inverse_or_zero(d);
        yb.d = f16::from_f32(d);
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
        }
    }
}

/// Dequantizes Q8_0 blocks into `y`.
///
/// # Panics
///
/// When `y.len() != x.len() * 32`.
pub fn dequantize_row_q8_0(x: &[BlockQ8_0], y: &mut [f32]) {
    assert_eq!(
        y.len(),
        x.len() * QK8_0,
        "dequantize_row_q8_0: length mismatch"
    );
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK8_0)) {
        let d = xb.d.to_f32();
        for (out, &q) in yb.iter_mut().zip(&xb.qs) {
            *out = f32::from(q) * d;
        }
    }
}

/// Quantizes `x` to Q8_1 blocks, with `s = d * sum(qs)` (`quantize_row_q8_1_ref`), in
/// portable Rust.
///
/// # Panics
///
/// When `x.len() != y.len() * 32`.
pub fn quantize_row_q8_1_ref(x: &[f32], y: &mut [BlockQ8_1]) {
    assert_eq!(
        x.len(),
        y.len() * QK8_1,
        "quantize_row_q8_1: length mismatch"
    );
    for (xb, yb) in x.chunks_exact(QK8_1).zip(y.iter_mut()) {
        let d = abs_max(xb) / 127.0;
        let id = inverse_or_zero(d);
        yb.d = f16::from_f32(d);
        let mut sum = 0i32;
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
            sum += i32::from(*q);
        }
        yb.s = f16::from_f32(sum as f32 * d);
    }
}

/// Dequantizes Q8_1 blocks into `y` (the `s` field is not needed for values).
///
/// # Panics
///
/// When `y.len() != x.len() * 32`.
pub fn dequantize_row_q8_1(x: &[BlockQ8_1], y: &mut [f32]) {
    assert_eq!(
        y.len(),
        x.len() * QK8_1,
        "dequantize_row_q8_1: length mismatch"
    );
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK8_1)) {
        let d = xb.d.to_f32();
        for (out, &q) in yb.iter_mut().zip(&xb.qs) {
            *out = f32::from(q) * d;
        }
    }
}

/// Rounds half to even, as ggml's `nearest_int` does for the magnitudes it is given.
pub(crate) fn nearest_int(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// Quantizes `x` to Q8_K super-blocks, with the sum of each 16 quants in `bsums`
/// (`quantize_row_q8_K_ref`), in portable Rust.
///
/// An all-zero super-block gets `d = 0` and zero quants and sums (llama.cpp leaves the
/// sums of such a block as they were; zero is what they mean).
///
/// # Panics
///
/// When `x.len() != y.len() * 256`.
pub fn quantize_row_q8_k_ref(x: &[f32], y: &mut [BlockQ8K]) {
    assert_eq!(
        x.len(),
        y.len() * QK_K,
        "quantize_row_q8_k: length mismatch"
    );
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            yb.d = 0.0;
            yb.qs = [0; QK_K];
            yb.bsums = [0; QK_K / 16];
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (sum, group) in yb.bsums.iter_mut().zip(yb.qs.chunks_exact(16)) {
            *sum = group.iter().map(|&q| i16::from(q)).sum();
        }
        yb.d = 1.0 / iscale;
    }
}

/// Dequantizes Q8_K super-blocks into `y`.
///
/// # Panics
///
/// When `y.len() != x.len() * 256`.
pub fn dequantize_row_q8_k(x: &[BlockQ8K], y: &mut [f32]) {
    assert_eq!(
        y.len(),
        x.len() * QK_K,
        "dequantize_row_q8_k: length mismatch"
    );
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        for (out, &q) in yb.iter_mut().zip(&xb.qs) {
            *out = xb.d * f32::from(q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_rounds_half_away_from_zero() {
        // amax 127 gives d = 1, so the quants are the inputs rounded as C's roundf does.
        let mut x = [0.0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        x[3] = 0.5;
        x[4] = -0.49;
        let mut y = [BlockQ8_0::ZERO];
        quantize_row_q8_0_ref(&x, &mut y);
        assert_eq!(y[0].d, f16::ONE);
        assert_eq!(&y[0].qs[..5], &[127, 3, -3, 1, 0]);
    }

    #[test]
    fn runtime_q8_0_rounds_half_to_even() {
        let mut x = [0.0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        x[3] = 0.5;
        x[4] = 3.5;
        let mut y = [BlockQ8_0::ZERO];
        quantize_row_q8_0(&x, &mut y);
        assert_eq!(y[0].d, f16::ONE);
        assert_eq!(&y[0].qs[..5], &[127, 2, -2, 0, 4]);
    }

    #[test]
    fn q8_1_sum_is_scaled_sum_of_quants() {
        let x: Vec<f32> = (0..32).map(|i| i as f32 - 10.0).collect();
        let mut y = [BlockQ8_1 {
            d: f16::ZERO,
            s: f16::ZERO,
            qs: [0; 32],
        }];
        quantize_row_q8_1(&x, &mut y);
        let sum: i32 = y[0].qs.iter().map(|&q| i32::from(q)).sum();
        let d = 21.0f32 / 127.0;
        assert_eq!(y[0].s, f16::from_f32(sum as f32 * d));
        assert_eq!(y[0].d, f16::from_f32(d));
    }

    #[test]
    fn q8_k_keeps_the_sign_of_the_largest_value_and_sums_groups() {
        let mut x = [0.25f32; QK_K];
        x[7] = -2.0;
        let mut y = [BlockQ8K {
            d: 1.0,
            qs: [1; QK_K],
            bsums: [1; 16],
        }];
        quantize_row_q8_k(&x, &mut y);
        // iscale = -127 / -2 = 63.5; 0.25 * 63.5 = 15.875 -> 16
        assert_eq!(y[0].qs[7], -127);
        assert_eq!(y[0].qs[0], 16);
        assert_eq!(y[0].d, 1.0 / 63.5);
        assert_eq!(y[0].bsums[0], 15 * 16 - 127);
        assert_eq!(y[0].bsums[1], 16 * 16);

        quantize_row_q8_k(&[0.0; QK_K], &mut y);
        assert_eq!(y[0].d, 0.0);
        assert!(y[0].qs.iter().all(|&q| q == 0) && y[0].bsums.iter().all(|&s| s == 0));
    }

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        assert_eq!(
            [0.5, 1.5, 2.5, -0.5, -1.5].map(nearest_int),
            [0, 2, 2, 0, -2]
        );
    }
}
