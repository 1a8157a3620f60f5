//! Portable dot products of the k-quants (super-blocks of 256) with Q8_K activations.
//!
//! As in llama.cpp: per super-block, the quants of each sub-block are multiplied and
//! summed as integers, weighted by the sub-block's integer scale, and the minimum terms
//! use the activation block's `bsums`; only the super-block totals are scaled by the
//! float `d`/`dmin`. Q4_K, Q5_K and Q6_K follow llama.cpp's x86 kernels
//! (`ggml-cpu/arch/x86/quants.c`) to the bit: the integer sums sit in eight lanes (lane
//! `l` holds elements `4l..4l+4` of every run of 32), each lane accumulates `d · lane`
//! with a fused multiply-add, super-block after super-block, and the lanes are added as
//! `hsum_float_8` does; the minimum terms take the routes described at each function.
//! Q2_K and Q3_K add in another order and agree with llama.cpp to rounding.

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
/// The eight integer lanes of a super-block: lane `l` is the sum over runs `r` of 32 of
/// `scale(r, l) · Σ_{k<4} q[32r + 4l + k] · y[32r + 4l + k]`.
fn lanes8(q: &[i8; QK_K], y: &[i8; QK_K], scale: impl Fn(usize, usize) -> i32) -> [i32; 8] {
    std::array::from_fn(|l| {
        (0..8)
            .map(|r| {
                let at = 32 * r + 4 * l;
                let s: i32 = (at..at + 4)
                    .map(|i| i32::from(q[i]) * i32::from(y[i]))
                    .sum();
                scale(r, l) * s
            })
            .sum()
    })
}

/// `acc[l] = fma(d, lane[l], acc[l])`.
fn add_lanes(acc: &mut [f32; 8], d: f32, lanes: [i32; 8]) {
    for (a, &s) in acc.iter_mut().zip(&lanes) {
        *a = d.mul_add(s as f32, *a);
    }
}

/// ggml's `hsum_float_8`.
fn hsum8(a: &[f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// The 4-bit (Q4_K) or 5-bit (Q5_K) values of a super-block, unsigned.
fn q45_values(qs: &[u8; 128], qh: Option<&[u8; 32]>) -> [i8; QK_K] {
    std::array::from_fn(|i| {
        let (chunk, high, l) = (i / 64, (i % 64) / 32, i % 32);
        let byte = qs[32 * chunk + l];
        let low4 = if high == 0 { byte & 0x0f } else { byte >> 4 };
        let bit5 = qh.map_or(0, |h| (h[l] >> (2 * chunk + high)) & 1);
        (low4 | (bit5 << 4)) as i8
    })
}

/// The four minimum products of a Q4_K/Q5_K super-block, as ggml's `_mm_madd_epi16` of
/// the mins with the group sums of `bsums`: `m[2k]·g[2k] + m[2k+1]·g[2k+1]`.
fn min_products(scales: &[u8; 12], yb: &BlockQ8K) -> [i32; 4] {
    let group = |g: usize| i32::from(yb.bsums[2 * g]) + i32::from(yb.bsums[2 * g + 1]);
    let min = |g: usize| i32::from(get_scale_min_k4(g, scales).1);
    std::array::from_fn(|k| min(2 * k) * group(2 * k) + min(2 * k + 1) * group(2 * k + 1))
}

/// Q4_K weights times Q8_K activations. The minimum terms accumulate in four lanes,
/// `acc_m[k] = fma(-d' · dmin, product[k], acc_m[k])`, added last as `(0 + 2) + (1 + 3)`.
pub fn vec_dot_q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    check(x, y, "vec_dot_q4_k_q8_k");
    let (mut acc, mut acc_m) = ([0.0f32; 8], [0.0f32; 4]);
    for (xb, yb) in x.iter().zip(y) {
        let d = yb.d * xb.d.to_f32();
        let dmin = -yb.d * xb.dmin.to_f32();
        for (a, &p) in acc_m.iter_mut().zip(&min_products(&xb.scales, yb)) {
            *a = dmin.mul_add(p as f32, *a);
        }
        let q = q45_values(&xb.qs, None);
        let scale = |r: usize, _| i32::from(get_scale_min_k4(r, &xb.scales).0);
        add_lanes(&mut acc, d, lanes8(&q, &yb.qs, scale));
    }
    hsum8(&acc) + ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]))
}

/// Q5_K weights times Q8_K activations. The minimum terms are summed as one integer per
/// super-block and accumulate in one chain, `summs = fma(-d' · dmin, total, summs)`.
pub fn vec_dot_q5_k_q8_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    check(x, y, "vec_dot_q5_k_q8_k");
    let (mut acc, mut summs) = ([0.0f32; 8], 0.0f32);
    for (xb, yb) in x.iter().zip(y) {
        let d = yb.d * xb.d.to_f32();
        let dmin = -yb.d * xb.dmin.to_f32();
        let total: i32 = min_products(&xb.scales, yb).iter().sum();
        summs = dmin.mul_add(total as f32, summs);
        let q = q45_values(&xb.qs, Some(&xb.qh));
        let scale = |r: usize, _| i32::from(get_scale_min_k4(r, &xb.scales).0);
        add_lanes(&mut acc, d, lanes8(&q, &yb.qs, scale));
    }
    hsum8(&acc) + summs
}

/// Q6_K weights times Q8_K activations. The values are stored plus 32; the offset leaves
/// through `bsums`, lane `l` losing `32 · (bsums[2l]·sc[2l] + bsums[2l+1]·sc[2l+1])`.
pub fn vec_dot_q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    check(x, y, "vec_dot_q6_k_q8_k");
    let mut acc = [0.0f32; 8];
    for (xb, yb) in x.iter().zip(y) {
        let q: [i8; QK_K] = std::array::from_fn(|i| {
            // Within each half of 128: four runs of 32 taking ql low, ql[+32] low, ql high,
            // ql[+32] high nibbles, and bits 0-1, 2-3, 4-5, 6-7 of qh.
            let (half, run, l) = (i / 128, (i % 128) / 32, i % 32);
            let ql = xb.ql[64 * half + l + 32 * (run % 2)];
            let low4 = if run < 2 { ql & 0x0f } else { ql >> 4 };
            let high2 = (xb.qh[32 * half + l] >> (2 * run)) & 3;
            (low4 | (high2 << 4)) as i8
        });
        let sc = |s: usize| i32::from(xb.scales[s]);
        let mut lanes = lanes8(&q, &yb.qs, |r, l| sc(2 * r + l / 4));
        for (l, lane) in lanes.iter_mut().enumerate() {
            let b = |s: usize| i32::from(yb.bsums[s]);
            *lane -= 32 * (b(2 * l) * sc(2 * l) + b(2 * l + 1) * sc(2 * l + 1));
        }
        add_lanes(&mut acc, yb.d * xb.d.to_f32(), lanes);
    }
    hsum8(&acc)
}
