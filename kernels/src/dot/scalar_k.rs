//! Portable dot products of the k-quants (super-blocks of 256) with Q8_K activations.
//!
//! As in llama.cpp's `ggml_vec_dot_q*_K_q8_K_generic`: per super-block, the quants of each
//! sub-block are multiplied and summed as integers, weighted by the sub-block's integer
//! scale, and the minimum terms use the activation block's `bsums`; only the super-block
//! totals are scaled by the float `d`/`dmin`.

use crate::blocks::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};
use crate::quant::{get_scale_min_k4, q3_k_scale};

fn check<X>(x: &[X], y: &[BlockQ8K], name: &str) {
    assert_eq!(
        x.len(),
        y.len(),
        "{name}: weight and activation rows differ in blocks"
    );
}

/// Sum over sub-blocks of 16 of `scale(sub) * sum(q[i] * y[i])`.
fn scaled_sum16(q: &[i8; QK_K], y: &[i8; QK_K], scale: impl Fn(usize) -> i32) -> i32 {
    q.chunks_exact(16)
        .zip(y.chunks_exact(16))
        .enumerate()
        .map(|(sub, (qc, yc))| {
            let s: i32 = qc
                .iter()
                .zip(yc)
                .map(|(&a, &b)| i32::from(a) * i32::from(b))
                .sum();
            scale(sub) * s
        })
        .sum()
}

/// Q2_K weights times Q8_K activations.
pub fn vec_dot_q2_k_q8_k(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    check(x, y, "vec_dot_q2_k_q8_k");
    let mut sumf = 0.0;
    for (xb, yb) in x.iter().zip(y) {
        let mut q = [0i8; QK_K];
        for (i, v) in q.iter_mut().enumerate() {
            let (chunk, shift, l) = (i / 128, (i % 128) / 32 * 2, i % 32);
            *v = ((xb.qs[32 * chunk + l] >> shift) & 3) as i8;
        }
        let isum = scaled_sum16(&q, &yb.qs, |s| i32::from(xb.scales[s] & 0x0f));
        let summs: i32 = (0..16)
            .map(|s| i32::from(xb.scales[s] >> 4) * i32::from(yb.bsums[s]))
            .sum();
        sumf += yb.d * xb.d.to_f32() * isum as f32 - yb.d * xb.dmin.to_f32() * summs as f32;
    }
    sumf
}

/// Q3_K weights times Q8_K activations.
pub fn vec_dot_q3_k_q8_k(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    check(x, y, "vec_dot_q3_k_q8_k");
    let mut sumf = 0.0;
    for (xb, yb) in x.iter().zip(y) {
        let mut q = [0i8; QK_K];
        for (i, v) in q.iter_mut().enumerate() {
            let (chunk, j, l) = (i / 128, (i % 128) / 32, i % 32);
            let low = (xb.qs[32 * chunk + l] >> (2 * j)) & 3;
            let high = (xb.hmask[l] >> (4 * chunk + j)) & 1;
            *v = low as i8 - if high == 0 { 4 } else { 0 };
        }
        let isum = scaled_sum16(&q, &yb.qs, |s| q3_k_scale(s, &xb.scales));
        sumf += xb.d.to_f32() * yb.d * isum as f32;
    }
    sumf
}

/// Shared by Q4_K and Q5_K: `q` holds the unsigned quants of the super-block.
fn q45_k_block(q: &[i8; QK_K], scales: &[u8; 12], d: f32, dmin: f32, yb: &BlockQ8K) -> f32 {
    let (mut isum, mut summs) = (0i32, 0i32);
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, scales);
        let s: i32 = q[32 * j..32 * j + 32]
            .iter()
            .zip(&yb.qs[32 * j..32 * j + 32])
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum();
        isum += i32::from(sc) * s;
        summs += i32::from(m) * (i32::from(yb.bsums[2 * j]) + i32::from(yb.bsums[2 * j + 1]));
    }
    yb.d * d * isum as f32 - yb.d * dmin * summs as f32
}

/// Q4_K weights times Q8_K activations.
pub fn vec_dot_q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    check(x, y, "vec_dot_q4_k_q8_k");
    let mut sumf = 0.0;
    for (xb, yb) in x.iter().zip(y) {
        let mut q = [0i8; QK_K];
        for (i, v) in q.iter_mut().enumerate() {
            let (chunk, high, l) = (i / 64, (i % 64) / 32, i % 32);
            let byte = xb.qs[32 * chunk + l];
            *v = (if high == 0 { byte & 0x0f } else { byte >> 4 }) as i8;
        }
        sumf += q45_k_block(&q, &xb.scales, xb.d.to_f32(), xb.dmin.to_f32(), yb);
    }
    sumf
}

/// Q5_K weights times Q8_K activations.
pub fn vec_dot_q5_k_q8_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    check(x, y, "vec_dot_q5_k_q8_k");
    let mut sumf = 0.0;
    for (xb, yb) in x.iter().zip(y) {
        let mut q = [0i8; QK_K];
        for (i, v) in q.iter_mut().enumerate() {
            let (chunk, high, l) = (i / 64, (i % 64) / 32, i % 32);
            let byte = xb.qs[32 * chunk + l];
            let low4 = if high == 0 { byte & 0x0f } else { byte >> 4 };
            let bit5 = (xb.qh[l] >> (2 * chunk + high)) & 1;
            *v = (low4 | (bit5 << 4)) as i8;
        }
        sumf += q45_k_block(&q, &xb.scales, xb.d.to_f32(), xb.dmin.to_f32(), yb);
    }
    sumf
}

/// Q6_K weights times Q8_K activations.
pub fn vec_dot_q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    check(x, y, "vec_dot_q6_k_q8_k");
    let mut sumf = 0.0;
    for (xb, yb) in x.iter().zip(y) {
        let mut q = [0i8; QK_K];
        for (i, v) in q.iter_mut().enumerate() {
            // Within each half of 128: four runs of 32 taking ql low, ql[+32] low, ql high,
            // ql[+32] high nibbles, and bits 0-1, 2-3, 4-5, 6-7 of qh.
            let (half, run, l) = (i / 128, (i % 128) / 32, i % 32);
            let ql = xb.ql[64 * half + l + 32 * (run % 2)];
            let low4 = if run < 2 { ql & 0x0f } else { ql >> 4 };
            let high2 = (xb.qh[32 * half + l] >> (2 * run)) & 3;
            *v = (low4 | (high2 << 4)) as i8 - 32;
        }
        let isum = scaled_sum16(&q, &yb.qs, |s| i32::from(xb.scales[s]));
        sumf += xb.d.to_f32() * yb.d * isum as f32;
    }
    sumf
}
