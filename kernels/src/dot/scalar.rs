//! Portable dot products of the 32-element block types and of float rows: the reference
//! every SIMD kernel is tested against, and the path for CPUs without one.
//!
//! The 32-element block types add in the order of llama.cpp's x86 kernels
//! (`ggml_vec_dot_q4_0_q8_0` and its siblings in `ggml-cpu/arch/x86/quants.c`, and
//! llamafile's `tinyBLAS_Q0_AVX`, which adds the same way), so the SIMD kernels and
//! llama.cpp give the same bits: each block's products are summed as integers in eight
//! lanes of four consecutive elements; lane `l` accumulates `d·d' × lane` with a fused
//! multiply-add, block after block; the eight lanes are added as `hsum_float_8` does; the
//! minimum terms of Q4_1/Q5_1 (`m·s`) accumulate in one more fused multiply-add chain
//! (GCC contracts `summs += m*s`) and are added last.

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

/// The eight lane sums of one block: lane `l` is `Σ w(j)·y[j]` over `j = 4l..4l+4`.
fn lanes(y: &[i8; 32], w: impl Fn(usize) -> i32) -> [i32; 8] {
    std::array::from_fn(|l| (4 * l..4 * l + 4).map(|j| w(j) * i32::from(y[j])).sum())
}

/// Eight f32 partial sums as ggml's x86 block kernels keep them.
#[derive(Default)]
struct Lanes8 {
    acc: [f32; 8],
    mins: f32,
}

impl Lanes8 {
    /// `acc[l] += d · lane[l]`, fused.
    fn add(&mut self, d: f32, lanes: [i32; 8]) {
        for (a, &s) in self.acc.iter_mut().zip(&lanes) {
            *a = d.mul_add(s as f32, *a);
        }
    }

    /// `summs += m · s`, fused.
    fn add_min(&mut self, m: f32, s: f32) {
        self.mins = m.mul_add(s, self.mins);
    }

    /// `hsum_float_8(acc) + summs`.
    fn finish(&self) -> f32 {
        let a = &self.acc;
        ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])) + self.mins
    }
}

/// Q4_0 weights times Q8_0 activations.
pub fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    check(x, y, "vec_dot_q4_0_q8_0");
    let mut sum = Lanes8::default();
    for (xb, yb) in x.iter().zip(y) {
        let d = xb.d.to_f32() * yb.d.to_f32();
        sum.add(d, lanes(&yb.qs, |j| nibble(&xb.qs, j) - 8));
    }
    sum.finish()
}

/// Q4_1 weights times Q8_1 activations.
pub fn vec_dot_q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    check(x, y, "vec_dot_q4_1_q8_1");
    let mut sum = Lanes8::default();
    for (xb, yb) in x.iter().zip(y) {
        sum.add_min(xb.m.to_f32(), yb.s.to_f32());
        let d = xb.d.to_f32() * yb.d.to_f32();
        sum.add(d, lanes(&yb.qs, |j| nibble(&xb.qs, j)));
    }
    sum.finish()
}

/// Q5_0 weights times Q8_0 activations.
pub fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    check(x, y, "vec_dot_q5_0_q8_0");
    let mut sum = Lanes8::default();
    for (xb, yb) in x.iter().zip(y) {
        let d = xb.d.to_f32() * yb.d.to_f32();
        sum.add(
            d,
            lanes(&yb.qs, |j| (nibble(&xb.qs, j) | fifth_bit(&xb.qh, j)) - 16),
        );
    }
    sum.finish()
}

/// Q5_1 weights times Q8_1 activations.
pub fn vec_dot_q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    check(x, y, "vec_dot_q5_1_q8_1");
    let mut sum = Lanes8::default();
    for (xb, yb) in x.iter().zip(y) {
        sum.add_min(xb.m.to_f32(), yb.s.to_f32());
        let d = xb.d.to_f32() * yb.d.to_f32();
        sum.add(
            d,
            lanes(&yb.qs, |j| nibble(&xb.qs, j) | fifth_bit(&xb.qh, j)),
        );
    }
    sum.finish()
}

/// Q8_0 weights times Q8_0 activations.
pub fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    check(x, y, "vec_dot_q8_0_q8_0");
    let mut sum = Lanes8::default();
    for (xb, yb) in x.iter().zip(y) {
        let d = xb.d.to_f32() * yb.d.to_f32();
        sum.add(d, lanes(&yb.qs, |j| i32::from(xb.qs[j])));
    }
    sum.finish()
}

/// IQ4_NL weights times Q8_0 activations.
pub fn vec_dot_iq4_nl_q8_0(x: &[BlockIQ4NL], y: &[BlockQ8_0]) -> f32 {
    check(x, y, "vec_dot_iq4_nl_q8_0");
    let mut sum = Lanes8::default();
    for (xb, yb) in x.iter().zip(y) {
        let d = xb.d.to_f32() * yb.d.to_f32();
        sum.add(
            d,
            lanes(&yb.qs, |j| {
                i32::from(KVALUES_IQ4NL[nibble(&xb.qs, j) as usize])
            }),
        );
    }
    sum.finish()
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
