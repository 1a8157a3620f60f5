//! The fast-numerics dot of the 32-element block types, written out one block at a time:
//! the order every fast SIMD kernel adds in, and their scalar twin.
//!
//! For weight row `x` and activation row `y`, block `b` contributes its integer sum
//! `s_b = Σ q·a` (the signed quants of both; for Q4_1/Q5_1 the stored unsigned values),
//! exact as an f32 since it stays far below 2^24, times `c_b = d_b·d'_b`, rounded once.
//! The contributions go to eight partial sums by `b mod 8`, each a chain of fused
//! multiply-adds in block order: `P[b mod 8] = fma(s_b, c_b, P[b mod 8])`. The types with a
//! minimum add `m_b·s'_b` (the activation block's `d·Σa`) to eight more partial sums the
//! same way. The result is `H(P)`, or `H(P) + H(M)`, where
//! `H(v) = ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7))`.
//!
//! The definition fixes every rounding, so a kernel may compute the integer sums in any
//! order and the partial sums in any layout: one weight row against eight blocks in a
//! register (decode), or eight tokens side by side in a register (prompts), and a token
//! gets the same bits in both. Only the order of the float additions differs from ggml's
//! (see [`super::scalar`]), which is what fast numerics allows.

use crate::blocks::{BlockIQ4NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};
use crate::quant::KVALUES_IQ4NL;
use crate::repack::Packed8;

/// A weight block of 32 elements as the fast dot reads it.
pub trait FastBlock {
    /// Element `j` (0..32): the signed quant, or the unsigned value for the types with a
    /// minimum.
    fn quant(&self, j: usize) -> i32;
    /// The scale.
    fn scale(&self) -> f32;
    /// The minimum, for the types that have one.
    fn min(&self) -> Option<f32>;
    /// What the SIMD kernels' unsigned operand holds above [`FastBlock::quant`]: Q4_0
    /// stores `q + 8` and Q5_0 `q + 16`; they take `OFFSET·Σa` back out of each block's
    /// integer sum, exactly, as an f32 integer.
    const OFFSET: i32 = 0;
    /// Whether the type has a minimum ([`FastBlock::min`] is `Some`).
    const HAS_MIN: bool = false;
    /// What the VNNI kernels add to signed 8-bit quants without an offset (Q8_0: 128,
    /// stored as `q ^ 0x80`) to multiply them as unsigned bytes, with no sign trick per
    /// activation row. They take `VNNI_BIAS·Σa` back out of each block's integer sum,
    /// exactly, as [`FastBlock::OFFSET`] is: `vpdpbusd`'s i32 sums of up to 255·128 per
    /// product cannot overflow, where AVX2's i16 `maddubs` sums would saturate.
    const VNNI_BIAS: i32 = 0;
}

/// An activation block of 32 elements as the fast dot reads it.
pub trait FastAct {
    /// The 32 quants.
    fn qs(&self) -> &[i8; 32];
    /// The scale.
    fn scale(&self) -> f32;
    /// `d·Σa` as stored (Q8_1), the term a weight minimum multiplies; 0 for Q8_0.
    fn sum(&self) -> f32;
}

fn nibble(qs: &[u8; 16], j: usize) -> i32 {
    i32::from(if j < 16 {
        qs[j] & 0x0f
    } else {
        qs[j - 16] >> 4
    })
}

fn fifth_bit(qh: &[u8; 4], j: usize) -> i32 {
    (((u32::from_le_bytes(*qh) >> j) & 1) << 4) as i32
}

impl FastBlock for BlockQ4_0 {
    const OFFSET: i32 = 8;
    fn quant(&self, j: usize) -> i32 {
        nibble(&self.qs, j) - 8
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn min(&self) -> Option<f32> {
        None
    }
}

impl FastBlock for BlockQ4_1 {
    const HAS_MIN: bool = true;
    fn quant(&self, j: usize) -> i32 {
        nibble(&self.qs, j)
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn min(&self) -> Option<f32> {
        Some(self.m.to_f32())
    }
}

impl FastBlock for BlockQ5_0 {
    const OFFSET: i32 = 16;
    fn quant(&self, j: usize) -> i32 {
        (nibble(&self.qs, j) | fifth_bit(&self.qh, j)) - 16
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn min(&self) -> Option<f32> {
        None
    }
}

impl FastBlock for BlockQ5_1 {
    const HAS_MIN: bool = true;
    fn quant(&self, j: usize) -> i32 {
        nibble(&self.qs, j) | fifth_bit(&self.qh, j)
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn min(&self) -> Option<f32> {
        Some(self.m.to_f32())
    }
}

impl FastBlock for BlockQ8_0 {
    const VNNI_BIAS: i32 = 128;
    fn quant(&self, j: usize) -> i32 {
        i32::from(self.qs[j])
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn min(&self) -> Option<f32> {
        None
    }
}

impl FastBlock for BlockIQ4NL {
    fn quant(&self, j: usize) -> i32 {
        i32::from(KVALUES_IQ4NL[nibble(&self.qs, j) as usize])
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn min(&self) -> Option<f32> {
        None
    }
}

impl FastAct for BlockQ8_0 {
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn sum(&self) -> f32 {
        0.0
    }
}

impl FastAct for BlockQ8_1 {
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn sum(&self) -> f32 {
        self.s.to_f32()
    }
}

/// The two f32 terms of an activation block the SIMD kernels read beside its quants: its
/// scale, and what enters with the weight block's minimum or offset (`d·Σa` as stored for
/// Q8_1, `OFFSET·Σa` for Q4_0 and Q5_0, `VNNI_BIAS·Σa` for Q8_0, unused otherwise).
pub fn act_terms<W: FastBlock, A: FastAct>(y: &A) -> (f32, f32) {
    let offset = W::OFFSET + W::VNNI_BIAS;
    if offset != 0 {
        let sum: i32 = y.qs().iter().map(|&q| i32::from(q)).sum();
        (y.scale(), (offset * sum) as f32)
    } else {
        (y.scale(), y.sum())
    }
}

/// `H(v)`: the eight partial sums added in the fixed tree every fast kernel uses.
pub fn tree8(v: &[f32; 8]) -> f32 {
    ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]))
}

/// The fast dot of one weight row with one activation row, block by block (see the
/// module's documentation).
pub fn dot_fast<W: FastBlock, A: FastAct>(x: &[W], y: &[A]) -> f32 {
    assert_eq!(
        x.len(),
        y.len(),
        "weight and activation rows differ in blocks"
    );
    dot_blocks(x.iter(), y)
}

/// [`dot_fast`] of row `j` (0..8) of a group of eight rows repacked together
/// ([`crate::repack`]): the scalar twin of the kernels over repacked weights.
pub fn dot_fast_packed<P, A>(group: &[P], j: usize, y: &[A]) -> f32
where
    P: Packed8<Block: FastBlock>,
    A: FastAct,
{
    assert_eq!(
        group.len(),
        y.len(),
        "weight and activation rows differ in blocks"
    );
    let blocks: Vec<P::Block> = group.iter().map(|g| g.unpack(j)).collect();
    dot_blocks(blocks.iter(), y)
}

fn dot_blocks<'w, W: FastBlock + 'w, A: FastAct>(x: impl Iterator<Item = &'w W>, y: &[A]) -> f32 {
    let mut p = [0.0f32; 8];
    let mut m = [0.0f32; 8];
    for (b, (xb, yb)) in x.zip(y).enumerate() {
        let qs = yb.qs();
        let s: i32 = (0..32).map(|j| xb.quant(j) * i32::from(qs[j])).sum();
        let c = xb.scale() * yb.scale();
        p[b % 8] = (s as f32).mul_add(c, p[b % 8]);
        if let Some(min) = xb.min() {
            m[b % 8] = min.mul_add(yb.sum(), m[b % 8]);
        }
    }
    if W::HAS_MIN {
        tree8(&p) + tree8(&m)
    } else {
        tree8(&p)
    }
}
