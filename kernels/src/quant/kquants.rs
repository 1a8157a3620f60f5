//! Dequantization of the k-quant weight formats: Q2_K, Q3_K, Q4_K, Q5_K and Q6_K.
//!
//! Each super-block holds 256 values in sub-blocks of 16 or 32 with their own small
//! scales (and minimums), themselves scaled by one or two f16 super-block scales. The
//! arithmetic is the one of llama.cpp's `dequantize_row_q*_K` (`ggml-quants.c`): the
//! sub-block scale `d * sc` is formed first, then multiplied by the quant, then the
//! minimum `dmin * m` is subtracted, each step rounded to f32, so results are bit-exact.
//!
//! The layout within a super-block works on chunks of 128 (Q2_K, Q3_K, Q6_K) or 64 (Q4_K,
//! Q5_K) outputs that share a run of 32 packed bytes, each successive output group reading
//! the next bit-field of those bytes.

use crate::blocks::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, K_SCALE_SIZE, QK_K};

/// Scale and minimum of sub-block `j` (0..8) from the 12 packed bytes of Q4_K and Q5_K:
/// six bits each, the low sub-blocks in bytes 0..8, the high ones split across bytes 8..12
/// and the top bits of bytes 0..8 (`get_scale_min_k4`).
pub fn get_scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        let sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        let m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        (sc, m)
    }
}

/// Scale of sub-block `j` (0..16) of Q3_K: six bits stored as a low nibble in bytes 0..8
/// and two high bits in bytes 8..12, with an offset of 32.
pub fn q3_k_scale(j: usize, scales: &[u8; 12]) -> i32 {
    let low = if j < 8 {
        scales[j] & 0x0F
    } else {
        scales[j - 8] >> 4
    };
    let high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    i32::from(low | (high << 4)) - 32
}

/// Dequantizes Q2_K super-blocks into `y`.
///
/// # Panics
///
/// When `y.len() != x.len() * 256`.
pub fn dequantize_row_q2_k(x: &[BlockQ2K], y: &mut [f32]) {
    assert_eq!(
        y.len(),
        x.len() * QK_K,
        "dequantize_row_q2_k: length mismatch"
    );
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = xb.d.to_f32();
        let dmin = xb.dmin.to_f32();
        // 16 groups of 16 outputs; group g reads bytes 32*(g/8) + 16*(g%2) .. +16 at
        // bit shift 2*((g/2)%4).
        for (g, out) in yb.chunks_exact_mut(16).enumerate() {
            let sc = xb.scales[g];
            let dl = d * f32::from(sc & 0x0F);
            let ml = dmin * f32::from(sc >> 4);
            let start = 32 * (g / 8) + 16 * (g % 2);
            let shift = 2 * ((g / 2) % 4);
            for (o, &q) in out.iter_mut().zip(&xb.qs[start..start + 16]) {
                *o = dl * f32::from((q >> shift) & 3) - ml;
            }
        }
    }
}

/// Dequantizes Q3_K super-blocks into `y`.
///
/// # Panics
///
/// When `y.len() != x.len() * 256`.
pub fn dequantize_row_q3_k(x: &[BlockQ3K], y: &mut [f32]) {
    assert_eq!(
        y.len(),
        x.len() * QK_K,
        "dequantize_row_q3_k: length mismatch"
    );
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d_all = xb.d.to_f32();
        // Same walk as Q2_K; the high bit of output (g, l) is bit (g/2) of hmask[16*(g%2)+l],
        // and a clear bit subtracts 4.
        for (g, out) in yb.chunks_exact_mut(16).enumerate() {
            let dl = d_all * q3_k_scale(g, &xb.scales) as f32;
            let start = 32 * (g / 8) + 16 * (g % 2);
            let shift = 2 * ((g / 2) % 4);
            let hbit = 1u8 << (g / 2);
            let hstart = 16 * (g % 2);
            for (l, o) in out.iter_mut().enumerate() {
                let low = i32::from((xb.qs[start + l] >> shift) & 3);
                let minus = if xb.hmask[hstart + l] & hbit != 0 {
                    0
                } else {
                    4
                };
                *o = dl * (low - minus) as f32;
            }
        }
    }
}

/// Dequantizes Q4_K super-blocks into `y`.
///
/// # Panics
///
/// When `y.len() != x.len() * 256`.
pub fn dequantize_row_q4_k(x: &[BlockQ4K], y: &mut [f32]) {
    assert_eq!(
        y.len(),
        x.len() * QK_K,
        "dequantize_row_q4_k: length mismatch"
    );
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        dequantize_k45(xb.d, xb.dmin, &xb.scales, &xb.qs, yb, |_, _| 0);
    }
}

/// The 4-bit part Q4_K and Q5_K share: 8 sub-blocks of 32, where sub-block s reads bytes
/// 32*(s/2).. in its low (even s) or high (odd s) nibbles, plus `high(s, l)` (0 or 16).
fn dequantize_k45(
    d: half::f16,
    dmin: half::f16,
    scales: &[u8; 12],
    qs: &[u8; QK_K / 2],
    y: &mut [f32],
    high: impl Fn(usize, usize) -> u8,
) {
    let (d, dmin) = (d.to_f32(), dmin.to_f32());
    for (s, out) in y.chunks_exact_mut(32).enumerate() {
        let (sc, m) = get_scale_min_k4(s, scales);
        let d1 = d * f32::from(sc);
        let m1 = dmin * f32::from(m);
        let shift = 4 * (s % 2);
        let bytes = &qs[32 * (s / 2)..32 * (s / 2) + 32];
        for (l, (o, &q)) in out.iter_mut().zip(bytes).enumerate() {
            *o = d1 * f32::from(((q >> shift) & 0x0F) + high(s, l)) - m1;
        }
    }
}

/// Dequantizes Q5_K super-blocks into `y`.
///
/// # Panics
///
/// When `y.len() != x.len() * 256`.
pub fn dequantize_row_q5_k(x: &[BlockQ5K], y: &mut [f32]) {
    assert_eq!(
        y.len(),
        x.len() * QK_K,
        "dequantize_row_q5_k: length mismatch"
    );
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        // the fifth bit of output (s, l) is bit s of qh[l]
        let high = |s: usize, l: usize| if xb.qh[l] & (1 << s) != 0 { 16 } else { 0 };
        dequantize_k45(xb.d, xb.dmin, &xb.scales, &xb.qs, yb, high);
    }
}

/// Dequantizes Q6_K super-blocks into `y`.
///
/// # Panics
///
/// When `y.len() != x.len() * 256`.
pub fn dequantize_row_q6_k(x: &[BlockQ6K], y: &mut [f32]) {
    assert_eq!(
        y.len(),
        x.len() * QK_K,
        "dequantize_row_q6_k: length mismatch"
    );
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = xb.d.to_f32();
        // Two halves of 128; in each, output l of group k (0..4, 32 outputs each) takes a
        // nibble of ql[64h + 32(k%2) + l] (the low one for k < 2), bits 2k..2k+2 of
        // qh[32h + l], and scale 8h + 2k + l/16.
        for (h, half) in yb.chunks_exact_mut(128).enumerate() {
            let ql = &xb.ql[64 * h..64 * h + 64];
            let qh = &xb.qh[32 * h..32 * h + 32];
            let sc = &xb.scales[8 * h..8 * h + 8];
            for (k, out) in half.chunks_exact_mut(32).enumerate() {
                let low_shift = 4 * (k / 2);
                let low_start = 32 * (k % 2);
                for (l, o) in out.iter_mut().enumerate() {
                    let low = (ql[low_start + l] >> low_shift) & 0x0F;
                    let high = (qh[l] >> (2 * k)) & 3;
                    let q = i32::from(low | (high << 4)) - 32;
                    *o = d * f32::from(sc[2 * k + l / 16]) * q as f32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k4_scales_unpack_six_bits() {
        // sub-block 5: scale low nibble in byte 9, top bits from byte 1; min high nibble
        // of byte 9, top bits from byte 5.
        let mut q = [0u8; 12];
        q[9] = 0xA7;
        q[1] = 0b10_000000;
        q[5] = 0b01_000000;
        assert_eq!(get_scale_min_k4(5, &q), (0x27, 0x1A));
        q[2] = 0x3F | 0xC0;
        q[6] = 0x15;
        assert_eq!(get_scale_min_k4(2, &q), (0x3F, 0x15));
    }

    #[test]
    fn q3_k_scales_unpack_with_offset() {
        let mut s = [0u8; 12];
        s[1] = 0x5C; // scale 1 low nibble 0xC, scale 9 low nibble 0x5
        s[9] = 0b00_10_00_11; // scale 1 high bits = 3 (shift 0), scale 9 high = 2 (shift 4)
        assert_eq!(q3_k_scale(1, &s), 0x3C - 32);
        assert_eq!(q3_k_scale(9, &s), 0x25 - 32);
        assert_eq!(q3_k_scale(0, &s), -32);
    }
}
