//! The GGML block layouts, byte for byte as `ggml-common.h` defines them.
//!
//! Each block is `#[repr(C)]` with a compile-time size check, so a slice of blocks can be
//! viewed directly over the bytes of a memory-mapped GGUF tensor with
//! [`crate::arch::cast::as_blocks`].
//! Names follow ggml (`BlockQ4K` is `block_q4_K`) so the code reads side by side with
//! llama.cpp.

use half::f16;

pub use crate::ggml_type::QK_K;

/// Elements in one Q4_0 block.
pub const QK4_0: usize = 32;
/// Elements in one Q4_1 block.
pub const QK4_1: usize = 32;
/// Elements in one Q5_0 block.
pub const QK5_0: usize = 32;
/// Elements in one Q5_1 block.
pub const QK5_1: usize = 32;
/// Elements in one Q8_0 block.
pub const QK8_0: usize = 32;
/// Elements in one Q8_1 block.
pub const QK8_1: usize = 32;
/// Elements in one IQ4_NL block.
pub const QK4_NL: usize = 32;
/// Bytes of packed 6-bit scales and minimums in Q4_K and Q5_K.
pub const K_SCALE_SIZE: usize = 12;

/// `block_q4_0`: x = d * (q - 8), q in 0..16, low nibbles hold elements 0..16.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// 32 nibbles.
    pub qs: [u8; QK4_0 / 2],
}

/// `block_q4_1`: x = d * q + m, q in 0..16.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum.
    pub m: f16,
    /// 32 nibbles.
    pub qs: [u8; QK4_1 / 2],
}

/// `block_q5_0`: x = d * (q - 16), the fifth bits in `qh`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: f16,
    /// The fifth bit of each of the 32 quants.
    pub qh: [u8; 4],
    /// Low four bits, as nibbles.
    pub qs: [u8; QK5_0 / 2],
}

/// `block_q5_1`: x = d * q + m, the fifth bits in `qh`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: f16,
    /// Minimum.
    pub m: f16,
    /// The fifth bit of each of the 32 quants.
    pub qh: [u8; 4],
    /// Low four bits, as nibbles.
    pub qs: [u8; QK5_1 / 2],
}

/// `block_q8_0`: x = d * q.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quants.
    pub qs: [i8; QK8_0],
}

/// `block_q8_1`: x = d * q, with `s = d * sum(q)` for the minimum term of Q4_1/Q5_1 dots.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct BlockQ8_1 {
    /// Scale.
    pub d: f16,
    /// d * sum(qs).
    pub s: f16,
    /// Quants.
    pub qs: [i8; QK8_1],
}

/// `block_q2_K`: 16 sub-blocks of 16, 4-bit scales and minimums.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct BlockQ2K {
    /// Scales (low nibble) and minimums (high nibble) of the sub-blocks.
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale for the scales.
    pub d: f16,
    /// Super-block scale for the minimums.
    pub dmin: f16,
}

/// `block_q3_K`: 16 sub-blocks of 16, 6-bit scales.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct BlockQ3K {
    /// High bit of each quant.
    pub hmask: [u8; QK_K / 8],
    /// Low two bits of each quant.
    pub qs: [u8; QK_K / 4],
    /// Packed 6-bit scales.
    pub scales: [u8; 12],
    /// Super-block scale.
    pub d: f16,
}

/// `block_q4_K`: 8 sub-blocks of 32, 6-bit scales and minimums.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct BlockQ4K {
    /// Super-block scale for the scales.
    pub d: f16,
    /// Super-block scale for the minimums.
    pub dmin: f16,
    /// Packed 6-bit scales and minimums.
    pub scales: [u8; K_SCALE_SIZE],
    /// 4-bit quants.
    pub qs: [u8; QK_K / 2],
}

/// `block_q5_K`: 8 sub-blocks of 32, 6-bit scales and minimums, fifth bits in `qh`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct BlockQ5K {
    /// Super-block scale for the scales.
    pub d: f16,
    /// Super-block scale for the minimums.
    pub dmin: f16,
    /// Packed 6-bit scales and minimums.
    pub scales: [u8; K_SCALE_SIZE],
    /// High bits.
    pub qh: [u8; QK_K / 8],
    /// Low four bits.
    pub qs: [u8; QK_K / 2],
}

/// `block_q6_K`: 16 sub-blocks of 16, 8-bit scales.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct BlockQ6K {
    /// Low four bits.
    pub ql: [u8; QK_K / 2],
    /// High two bits.
    pub qh: [u8; QK_K / 4],
    /// Scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}

/// `block_q8_K`: the activation partner of the k-quants, with sums of each 16 quants.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct BlockQ8K {
    /// Scale (f32, unlike the other blocks).
    pub d: f32,
    /// Quants.
    pub qs: [i8; QK_K],
    /// Sum of each group of 16 quants.
    pub bsums: [i16; QK_K / 16],
}

/// `block_iq4_nl`: 4-bit indices into a fixed non-linear table, one f16 scale.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct BlockIQ4NL {
    /// Scale.
    pub d: f16,
    /// 32 nibble indices into `KVALUES_IQ4NL`.
    pub qs: [u8; QK4_NL / 2],
}

impl BlockQ4_0 {
    /// The all-zero block (scale 0).
    pub const ZERO: Self = Self {
        d: f16::ZERO,
        qs: [0; QK4_0 / 2],
    };
}

impl BlockQ4_1 {
    /// The all-zero block (scale and minimum 0).
    pub const ZERO: Self = Self {
        d: f16::ZERO,
        m: f16::ZERO,
        qs: [0; QK4_1 / 2],
    };
}

impl BlockQ5_0 {
    /// The all-zero block (scale 0).
    pub const ZERO: Self = Self {
        d: f16::ZERO,
        qh: [0; 4],
        qs: [0; QK5_0 / 2],
    };
}

impl BlockQ5_1 {
    /// The all-zero block (scale and minimum 0).
    pub const ZERO: Self = Self {
        d: f16::ZERO,
        m: f16::ZERO,
        qh: [0; 4],
        qs: [0; QK5_1 / 2],
    };
}

impl BlockQ8_0 {
    /// The all-zero block (scale 0).
    pub const ZERO: Self = Self {
        d: f16::ZERO,
        qs: [0; QK8_0],
    };
}

impl BlockQ8_1 {
    /// The all-zero block (scale and sum 0).
    pub const ZERO: Self = Self {
        d: f16::ZERO,
        s: f16::ZERO,
        qs: [0; QK8_1],
    };
}

impl BlockQ2K {
    /// The all-zero super-block.
    pub const ZERO: Self = Self {
        scales: [0; QK_K / 16],
        qs: [0; QK_K / 4],
        d: f16::ZERO,
        dmin: f16::ZERO,
    };
}

impl BlockQ3K {
    /// The all-zero super-block.
    pub const ZERO: Self = Self {
        hmask: [0; QK_K / 8],
        qs: [0; QK_K / 4],
        scales: [0; 12],
        d: f16::ZERO,
    };
}

impl BlockQ4K {
    /// The all-zero super-block.
    pub const ZERO: Self = Self {
        d: f16::ZERO,
        dmin: f16::ZERO,
        scales: [0; K_SCALE_SIZE],
        qs: [0; QK_K / 2],
    };
}

impl BlockQ5K {
    /// The all-zero super-block.
    pub const ZERO: Self = Self {
        d: f16::ZERO,
        dmin: f16::ZERO,
        scales: [0; K_SCALE_SIZE],
        qh: [0; QK_K / 8],
        qs: [0; QK_K / 2],
    };
}

impl BlockQ6K {
    /// The all-zero super-block.
    pub const ZERO: Self = Self {
        ql: [0; QK_K / 2],
        qh: [0; QK_K / 4],
        scales: [0; QK_K / 16],
        d: f16::ZERO,
    };
}

impl BlockQ8K {
    /// The all-zero super-block.
    pub const ZERO: Self = Self {
        d: 0.0,
        qs: [0; QK_K],
        bsums: [0; QK_K / 16],
    };
}

impl BlockIQ4NL {
    /// The all-zero block (scale 0).
    pub const ZERO: Self = Self {
        d: f16::ZERO,
        qs: [0; QK4_NL / 2],
    };
}

const _: () = assert!(size_of::<BlockQ4_0>() == 18);
const _: () = assert!(size_of::<BlockQ4_1>() == 20);
const _: () = assert!(size_of::<BlockQ5_0>() == 22);
const _: () = assert!(size_of::<BlockQ5_1>() == 24);
const _: () = assert!(size_of::<BlockQ8_0>() == 34);
const _: () = assert!(size_of::<BlockQ8_1>() == 36);
const _: () = assert!(size_of::<BlockQ2K>() == 84);
const _: () = assert!(size_of::<BlockQ3K>() == 110);
const _: () = assert!(size_of::<BlockQ4K>() == 144);
const _: () = assert!(size_of::<BlockQ5K>() == 176);
const _: () = assert!(size_of::<BlockQ6K>() == 210);
const _: () = assert!(size_of::<BlockQ8K>() == 292);
const _: () = assert!(size_of::<BlockIQ4NL>() == 18);
