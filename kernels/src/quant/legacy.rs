//! The original 4- and 5-bit formats of 32 elements: Q4_0, Q4_1, Q5_0, Q5_1.
//!
//! Quantization matches llama.cpp's reference quantizers (`quantize_row_q4_0_ref` and
//! siblings in `ggml-quants.c`) byte for byte:
//! - the symmetric types take the value of largest magnitude *with its sign* (the first
//!   one on ties) and divide it by -8 (-16 for Q5_0), so that value maps to quant 0;
//! - the asymmetric types take `d = (max - min) / 15` (31 for Q5_1) and store `min`;
//! - `id = d ? 1/d : 0`, and a quant is `x * id + offset` truncated toward zero and capped.
//!
//! Element `j` of the first half of a block lives in the low nibble of byte `j`, element
//! `j + 16` in its high nibble; the fifth bit of element `j` is bit `j` of `qh`.

use half::f16;

use crate::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, QK4_0, QK4_1, QK5_0, QK5_1};

use super::q8::inverse_or_zero;

const HALF: usize = 16;

/// The signed value of largest magnitude (the first one when several tie).
fn signed_abs_max(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// Minimum and maximum, starting from `f32::MAX` and `-f32::MAX` as llama.cpp does.
fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter().fold((f32::MAX, -f32::MAX), |(lo, hi), &v| {
        (if v < lo { v } else { lo }, if v > hi { v } else { hi })
    })
}

/// `(int8_t)(v)` in C for the values these quantizers produce: truncation toward zero.
fn trunc_i8(v: f32) -> i32 {
    v as i32 as i8 as i32
}

/// Quantizes `x` to Q4_0 blocks.
///
/// # Panics
///
/// When `x.len() != y.len() * 32`.
pub fn quantize_row_q4_0(x: &[f32], y: &mut [BlockQ4_0]) {
    assert_eq!(
        x.len(),
        y.len() * QK4_0,
        "quantize_row_q4_0: length mismatch"
    );
    for (xb, yb) in x.chunks_exact(QK4_0).zip(y.iter_mut()) {
        let d = signed_abs_max(xb) / -8.0;
        let id = inverse_or_zero(d);
        yb.d = f16::from_f32(d);
        for j in 0..HALF {
            let q0 = trunc_i8(xb[j] * id + 8.5).min(15) as u8;
            let q1 = trunc_i8(xb[j + HALF] * id + 8.5).min(15) as u8;
            yb.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Dequantizes Q4_0 blocks into `y`.
///
/// # Panics
///
/// When `y.len() != x.len() * 32`.
pub fn dequantize_row_q4_0(x: &[BlockQ4_0], y: &mut [f32]) {
    assert_eq!(
        y.len(),
        x.len() * QK4_0,
        "dequantize_row_q4_0: length mismatch"
    );
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK4_0)) {
        let d = xb.d.to_f32();
        for (j, &q) in xb.qs.iter().enumerate() {
            yb[j] = (i32::from(q & 0x0F) - 8) as f32 * d;
            yb[j + HALF] = (i32::from(q >> 4) - 8) as f32 * d;
        }
    }
}

/// Quantizes `x` to Q4_1 blocks.
///
/// # Panics
///
/// When `x.len() != y.len() * 32`.
pub fn quantize_row_q4_1(x: &[f32], y: &mut [BlockQ4_1]) {
    assert_eq!(
        x.len(),
        y.len() * QK4_1,
        "quantize_row_q4_1: length mismatch"
    );
    for (xb, yb) in x.chunks_exact(QK4_1).zip(y.iter_mut()) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 15.0;
        let id = inverse_or_zero(d);
        yb.d = f16::from_f32(d);
        yb.m = f16::from_f32(min);
        for j in 0..HALF {
            let q0 = trunc_i8((xb[j] - min) * id + 0.5).min(15) as u8;
            let q1 = trunc_i8((xb[j + HALF] - min) * id + 0.5).min(15) as u8;
            yb.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Dequantizes Q4_1 blocks into `y`.
///
/// # Panics
///
/// When `y.len() != x.len() * 32`.
pub fn dequantize_row_q4_1(x: &[BlockQ4_1], y: &mut [f32]) {
    assert_eq!(
        y.len(),
        x.len() * QK4_1,
        "dequantize_row_q4_1: length mismatch"
    );
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK4_1)) {
        let d = xb.d.to_f32();
        let m = xb.m.to_f32();
        for (j, &q) in xb.qs.iter().enumerate() {
            yb[j] = f32::from(q & 0x0F) * d + m;
            yb[j + HALF] = f32::from(q >> 4) * d + m;
        }
    }
}

/// Packs 32 five-bit quants: low nibbles into `qs`, fifth bits into the returned `qh`.
fn pack5(q: impl Fn(usize) -> u8, qs: &mut [u8; 16]) -> [u8; 4] {
    let mut qh = 0u32;
    for (j, byte) in qs.iter_mut().enumerate() {
        let (q0, q1) = (q(j), q(j + HALF));
        *byte = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
        qh |= u32::from(q0 >> 4 & 1) << j;
        qh |= u32::from(q1 >> 4 & 1) << (j + HALF);
    }
    qh.to_le_bytes()
}

/// The 5-bit quant of element `j` (0..32) from its nibble and its bit in `qh`.
fn unpack5(qs: &[u8; 16], qh: [u8; 4], j: usize) -> u8 {
    let high = ((u32::from_le_bytes(qh) >> j) & 1) as u8;
    let nibble = if j < HALF {
        qs[j] & 0x0F
    } else {
        qs[j - HALF] >> 4
    };
    nibble | (high << 4)
}

/// Quantizes `x` to Q5_0 blocks.
///
/// # Panics
///
/// When `x.len() != y.len() * 32`.
pub fn quantize_row_q5_0(x: &[f32], y: &mut [BlockQ5_0]) {
    assert_eq!(
        x.len(),
        y.len() * QK5_0,
        "quantize_row_q5_0: length mismatch"
    );
    for (xb, yb) in x.chunks_exact(QK5_0).zip(y.iter_mut()) {
        let d = signed_abs_max(xb) / -16.0;
        let id = inverse_or_zero(d);
        yb.d = f16::from_f32(d);
        yb.qh = pack5(|j| trunc_i8(xb[j] * id + 16.5).min(31) as u8, &mut yb.qs);
    }
}

/// Dequantizes Q5_0 blocks into `y`.
///
/// # Panics
///
/// When `y.len() != x.len() * 32`.
pub fn dequantize_row_q5_0(x: &[BlockQ5_0], y: &mut [f32]) {
    assert_eq!(
        y.len(),
        x.len() * QK5_0,
        "dequantize_row_q5_0: length mismatch"
    );
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK5_0)) {
        let d = xb.d.to_f32();
        for (j, out) in yb.iter_mut().enumerate() {
            *out = (i32::from(unpack5(&xb.qs, xb.qh, j)) - 16) as f32 * d;
        }
    }
}

/// Quantizes `x` to Q5_1 blocks.
///
/// # Panics
///
/// When `x.len() != y.len() * 32`.
pub fn quantize_row_q5_1(x: &[f32], y: &mut [BlockQ5_1]) {
    assert_eq!(
        x.len(),
        y.len() * QK5_1,
        "quantize_row_q5_1: length mismatch"
    );
    for (xb, yb) in x.chunks_exact(QK5_1).zip(y.iter_mut()) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 31.0;
        let id = inverse_or_zero(d);
        yb.d = f16::from_f32(d);
        yb.m = f16::from_f32(min);
        // llama.cpp casts to uint8_t here without a cap; (max - min) * id cannot pass 31.5.
        yb.qh = pack5(|j| ((xb[j] - min) * id + 0.5) as u8, &mut yb.qs);
    }
}

/// Dequantizes Q5_1 blocks into `y`.
///
/// # Panics
///
/// When `y.len() != x.len() * 32`.
pub fn dequantize_row_q5_1(x: &[BlockQ5_1], y: &mut [f32]) {
    assert_eq!(
        y.len(),
        x.len() * QK5_1,
        "dequantize_row_q5_1: length mismatch"
    );
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK5_1)) {
        let d = xb.d.to_f32();
        let m = xb.m.to_f32();
        for (j, out) in yb.iter_mut().enumerate() {
            *out = f32::from(unpack5(&xb.qs, xb.qh, j)) * d + m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_maps_the_signed_extreme_to_quant_zero() {
        let mut x = [1.0f32; 32];
        x[3] = -4.0;
        x[20] = 4.0; // same magnitude, later: the first one wins
        let mut y = [BlockQ4_0 {
            d: f16::ZERO,
            qs: [0; 16],
        }];
        quantize_row_q4_0(&x, &mut y);
        assert_eq!(y[0].d, f16::from_f32(0.5));
        assert_eq!(y[0].qs[3] & 0x0F, 0);
        assert_eq!(y[0].qs[4] >> 4, 15, "+4 is +8 steps, capped at 15");
        let mut back = [0.0f32; 32];
        dequantize_row_q4_0(&y, &mut back);
        assert_eq!(back[3], -4.0);
        assert_eq!(back[20], 3.5);
        assert_eq!(back[0], 1.0);
    }

    #[test]
    fn q5_bits_round_trip_through_packing() {
        let mut qs = [0u8; 16];
        let qh = pack5(|j| (j as u8 * 7) % 32, &mut qs);
        for j in 0..32 {
            assert_eq!(unpack5(&qs, qh, j), (j as u8 * 7) % 32);
        }
    }

    #[test]
    fn constant_blocks_quantize_exactly() {
        let x = [-3.0f32; 32];
        let mut y = [BlockQ5_1 {
            d: f16::ONE,
            m: f16::ZERO,
            qh: [9; 4],
            qs: [9; 16],
        }];
        quantize_row_q5_1(&x, &mut y);
        assert_eq!(y[0].d, f16::ZERO);
        let mut back = [0.0f32; 32];
        dequantize_row_q5_1(&y, &mut back);
        assert_eq!(back, x);
    }
}
