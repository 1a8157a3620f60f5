//! Portable dot products of the 32-element block types and of float rows: the reference
//! every SIMD kernel is tested against, and the path for CPUs without one.
//!
//! As in llama.cpp's `ggml_vec_dot_*_generic`, each block's quants are multiplied and
//! summed as integers, and only that integer sum is scaled: the SIMD kernels do the same,
//! so the two agree up to the order of the float additions.

use half::f16;

use crate::blocks::{BlockIQ4NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};
use crate::quant::KVALUES_IQ4NL;

fn check<X, Y>(x: &[X], y: &[Y], name: &str) {
    assert_eq!(
        x.len(),
        y.len(),
        "{name}: weight and activation rows differ in blocks"
    );
}

/// Element `j` (0..32) of a 32-element block whose low four bits are nibbles of `qs`.
#[inline(always)]
fn nibble(qs: &[u8; 16], j: usize) -> i32 {
    i32::from(if j < 16 {
        qs[j] & 0x0f
    } else {
        qs[j - 16] >> 4
    })
}

/// The fifth bit of element `j`, as 0 or 16.
#[inline(always)]
fn fifth_bit(qh: &[u8; 4], j: usize) -> i32 {
    (((u32::from_le_bytes(*qh) >> j) & 1) << 4) as i32
}

fn sum_i8(y: &[i8; 32], w: impl Fn(usize) -> i32) -> i32 {
    (0..32).map(|j| w(j) * i32::from(y[j])).sum()
}

/// Q4_0 weights times Q8_0 activations.
pub fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    check(x, y, "vec_dot_q4_0_q8_0");
    x.iter().zip(y).fold(0.0, |acc, (xb, yb)| {
        let sumi = sum_i8(&yb.qs, |j| nibble(&xb.qs, j) - 8);
        acc + sumi as f32 * (xb.d.to_f32() * yb.d.to_f32())
    })
}

/// Q4_1 weights times Q8_1 activations.
pub fn vec_dot_q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    check(x, y, "vec_dot_q4_1_q8_1");
    x.iter().zip(y).fold(0.0, |acc, (xb, yb)| {
        let sumi = sum_i8(&yb.qs, |j| nibble(&xb.qs, j));
        acc + sumi as f32 * (xb.d.to_f32() * yb.d.to_f32()) + xb.m.to_f32() * yb.s.to_f32()
    })
}

/// Q5_0 weights times Q8_0 activations.
pub fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    check(x, y, "vec_dot_q5_0_q8_0");
    x.iter().zip(y).fold(0.0, |acc, (xb, yb)| {
        let sumi = sum_i8(&yb.qs, |j| (nibble(&xb.qs, j) | fifth_bit(&xb.qh, j)) - 16);
        acc + sumi as f32 * (xb.d.to_f32() * yb.d.to_f32())
    })
}

/// Q5_1 weights times Q8_1 activations.
pub fn vec_dot_q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    check(x, y, "vec_dot_q5_1_q8_1");
    x.iter().zip(y).fold(0.0, |acc, (xb, yb)| {
        let sumi = sum_i8(&yb.qs, |j| nibble(&xb.qs, j) | fifth_bit(&xb.qh, j));
        acc + sumi as f32 * (xb.d.to_f32() * yb.d.to_f32()) + xb.m.to_f32() * yb.s.to_f32()
    })
}

/// Q8_0 weights times Q8_0 activations.
pub fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    check(x, y, "vec_dot_q8_0_q8_0");
    x.iter().zip(y).fold(0.0, |acc, (xb, yb)| {
        let sumi = sum_i8(&yb.qs, |j| i32::from(xb.qs[j]));
        acc + sumi as f32 * (xb.d.to_f32() * yb.d.to_f32())
    })
}

/// IQ4_NL weights times Q8_0 activations.
pub fn vec_dot_iq4_nl_q8_0(x: &[BlockIQ4NL], y: &[BlockQ8_0]) -> f32 {
    check(x, y, "vec_dot_iq4_nl_q8_0");
    x.iter().zip(y).fold(0.0, |acc, (xb, yb)| {
        let sumi = sum_i8(&yb.qs, |j| {
            i32::from(KVALUES_IQ4NL[nibble(&xb.qs, j) as usize])
        });
        acc + sumi as f32 * (xb.d.to_f32() * yb.d.to_f32())
    })
}

/// F32 weights times f32 activations.
pub fn vec_dot_f32(x: &[f32], y: &[f32]) -> f32 {
    check(x, y, "vec_dot_f32");
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// F16 weights times f32 activations.
pub fn vec_dot_f16_f32(x: &[f16], y: &[f32]) -> f32 {
    check(x, y, "vec_dot_f16_f32");
    x.iter().zip(y).map(|(a, b)| a.to_f32() * b).sum()
}
