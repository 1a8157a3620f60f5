//! Dot products between quantized weight rows and quantized activations.
//!
//! Each weight type multiplies with the activation type llama.cpp pairs it with: Q4_0,
//! Q5_0, Q8_0 and IQ4_NL with Q8_0; Q4_1 and Q5_1 with Q8_1; the k-quants with Q8_K; F32
//! and F16 with f32. [`VecDot`] ties a weight type to its partner, the quantizer for the
//! partner, the scalar twin ([`scalar`], [`scalar_k`]) and the SIMD kernels, picked by the
//! [`Isa`] passed in. The functions named as in ggml (`vec_dot_q4_k_q8_k`) are the
//! one-row entry points; [`crate::matmul`] uses [`VecDot::dot`] directly, which takes up to
//! four activation rows so a weight block is decoded once per tile.
//!
//! Rows must hold the same number of blocks; a mismatch is a caller bug and panics.

#[cfg(test)]
mod fast_tests;
pub mod float_tile;
pub mod kfast;
#[cfg(test)]
mod kfast_tests;
pub mod lanes;
pub mod scalar;
pub mod scalar_fast;
pub mod scalar_k;
#[cfg(test)]
pub(crate) mod test_data;
#[cfg(test)]
mod tests;

use half::f16;

use crate::GgmlType;
use crate::arch::cast::Pod;
#[cfg(target_arch = "x86_64")]
use crate::arch::x86;
use crate::blocks::{
    BlockIQ4NL, BlockQ2K, BlockQ3K, BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ5K,
    BlockQ6K, BlockQ8_0, BlockQ8_1, BlockQ8K,
};
use crate::cpu::Isa;
use crate::repack::{Packed8, Rows8Q4_0, Rows8Q4_1, Rows8Q5_0, Rows8Q8_0};

/// Weight rows [`FastDot::dot_rows8`] multiplies together, one per register lane.
pub const ROWS8: usize = 8;
use crate::quant::{quantize_row_q8_0_isa, quantize_row_q8_1_isa, quantize_row_q8_k_isa};

/// A weight type, its activation partner, and their dot product.
pub trait VecDot: 'static {
    /// The weight block (`f32`/`f16` for float weights).
    type Weight: Pod + Sync;
    /// The activation block the weights multiply with (`f32` for float weights).
    type Act: Pod + Send + Sync;
    /// The weight type.
    const TYPE: GgmlType;
    /// The activation type.
    const ACT_TYPE: GgmlType;
    /// Quantizes an f32 activation row (`y.len() * ACT_TYPE.block_size()` values) on `isa`.
    fn quantize(isa: Isa, x: &[f32], y: &mut [Self::Act]);
    /// The scalar twin of [`VecDot::dot`], for one activation row.
    fn dot_scalar(x: &[Self::Weight], y: &[Self::Act]) -> f32;
    /// The dots of one weight row with `N` activation rows (N = 1..=8 is the useful range).
    fn dot<const N: usize>(isa: Isa, x: &[Self::Weight], ys: [&[Self::Act]; N]) -> [f32; N];
}

/// Marker types, one per weight type, implementing [`VecDot`].
#[allow(non_camel_case_types)]
pub mod kind {
    /// Q4_0 weights.
    pub struct Q4_0;
    /// Q4_1 weights.
    pub struct Q4_1;
    /// Q5_0 weights.
    pub struct Q5_0;
    /// Q5_1 weights.
    pub struct Q5_1;
    /// Q8_0 weights.
    pub struct Q8_0;
    /// IQ4_NL weights.
    pub struct IQ4_NL;
    /// Q2_K weights.
    pub struct Q2_K;
    /// Q3_K weights.
    pub struct Q3_K;
    /// Q4_K weights.
    pub struct Q4_K;
    /// Q5_K weights.
    pub struct Q5_K;
    /// Q6_K weights.
    pub struct Q6_K;
    /// F32 weights.
    pub struct F32;
    /// F32 weights, multiplied in llamafile `tinyBLAS`'s order (a batch of tokens).
    pub struct F32Tiled;
    /// F16 weights.
    pub struct F16;
}

/// A weight type with a fast-numerics kernel: the 32-element block types, whose dots are
/// cheap enough that ggml's one-block-at-a-time float additions, not memory, bound them.
///
/// [`FastDot::dot_fast`] gives the same value as [`VecDot::dot`] up to the order of its
/// float additions, which [`scalar_fast`] defines: every fast kernel, whatever its layout,
/// gives its bits. [`crate::matmul::matmul_fast`] uses it for a few activation rows.
pub trait FastDot: VecDot<Act: scalar_fast::FastAct, Weight: scalar_fast::FastBlock> {
    /// The f32 scale of an activation block and its second term
    /// ([`scalar_fast::act_terms`]).
    fn act_scales(y: &Self::Act) -> (f32, f32);
    /// The dots of one weight row with `N` activation rows (N = 1..=4), whose blocks'
    /// two terms ([`FastDot::act_scales`]) are in `da` and `sa`.
    fn dot_fast<const N: usize>(
        isa: Isa,
        x: &[Self::Weight],
        ys: [&[Self::Act]; N],
        da: [&[f32]; N],
        sa: [&[f32]; N],
    ) -> [f32; N];
    /// The dots of consecutive weight rows (`out.len()` rows of `y.len()` blocks in `x`)
    /// with one activation row, each the bits of [`FastDot::dot_fast`] of its row.
    fn dot_fast_rows(
        isa: Isa,
        x: &[Self::Weight],
        y: &[Self::Act],
        da: &[f32],
        sa: &[f32],
        out: &mut [f32],
    );
    /// The dots of eight weight rows with `N` activation rows (N = 1..=4): element `t`
    /// holds each row's dot with `ys[t]`, the bits of [`FastDot::dot_fast`]. The eight
    /// rows share one transposition, so several streams' decode steps pay it once.
    fn dot_rows8<const N: usize>(
        isa: Isa,
        rows: [&[Self::Weight]; ROWS8],
        ys: [&[Self::Act]; N],
        da: [&[f32]; N],
        sa: [&[f32]; N],
    ) -> [[f32; ROWS8]; N];
    /// Decodes whole weight rows (`x`) into `rows` from row `at`, for
    /// [`FastDot::dot_lanes`] (see [`lanes`]).
    fn decode_rows(isa: Isa, x: &[Self::Weight], at: usize, rows: &mut lanes::DecodedRows);
    /// The fast dots of decoded rows with the eight tokens of `tile`, each the bits of
    /// [`FastDot::dot_fast`] of its row and token.
    ///
    /// Rows `r..r + R` in one pass (`R` of 1 or 2): the SIMD kernels load each tile
    /// register once for all of them, and each row's sums are the bits of its one-row
    /// call.
    fn dot_lanes<const R: usize>(
        isa: Isa,
        rows: &lanes::DecodedRows,
        r: usize,
        tile: &lanes::LaneTile<'_>,
    ) -> [[f32; lanes::LANES]; R];
}

/// A fast weight type with an eight-row layout repacked at load ([`crate::repack`]).
pub trait PackedDot: FastDot {
    /// Block `b` of eight rows.
    type Packed: Packed8<Block = Self::Weight>;
    /// The dots of the eight rows of a repacked group (`group[b]` is their block `b`) with
    /// `N` activation rows (N = 1..=4): element `t` lane `j` is row `j`'s dot with
    /// `ys[t]`, the bits of [`FastDot::dot_fast`] of that row.
    fn dot_packed8<const N: usize>(
        isa: Isa,
        group: &[Self::Packed],
        ys: [&[Self::Act]; N],
        da: [&[f32]; N],
        sa: [&[f32]; N],
    ) -> [[f32; ROWS8]; N];
    /// [`PackedDot::dot_packed8`] of two groups at once: lanes `0..8` are `groups[0]`'s
    /// rows, `8..16` `groups[1]`'s, with the same bits. AVX-512 multiplies the two in one
    /// pass of 512-bit registers; the other paths take one group after the other.
    /// `next` is the memory of the caller's next call, which the AVX-512 kernel fetches
    /// while this one computes (empty slices when there is none; the other paths ignore
    /// it); it does not change the result.
    fn dot_packed16<const N: usize>(
        isa: Isa,
        groups: [&[Self::Packed]; 2],
        ys: [&[Self::Act]; N],
        da: [&[f32]; N],
        sa: [&[f32]; N],
        next: [&[u8]; 2],
    ) -> [[f32; 2 * ROWS8]; N];
}

macro_rules! packed_dot {
    ($kind:ident, $packed:ty) => {
        impl PackedDot for kind::$kind {
            type Packed = $packed;
            fn dot_packed8<const N: usize>(
                isa: Isa,
                group: &[$packed],
                ys: [&[Self::Act]; N],
                da: [&[f32]; N],
                sa: [&[f32]; N],
            ) -> [[f32; ROWS8]; N] {
                match isa {
                    Isa::Scalar => std::array::from_fn(|t| {
                        std::array::from_fn(|j| scalar_fast::dot_fast_packed(group, j, ys[t]))
                    }),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2(token) => {
                        x86::block32_rows8_avx2(token, &x86::Packed(group), ys, da, sa)
                    }
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512(token) => {
                        x86::block32_rows8_vnni(token, &x86::Packed(group), ys, da, sa)
                    }
                }
            }
            fn dot_packed16<const N: usize>(
                isa: Isa,
                groups: [&[$packed]; 2],
                ys: [&[Self::Act]; N],
                da: [&[f32]; N],
                sa: [&[f32]; N],
                next: [&[u8]; 2],
            ) -> [[f32; 2 * ROWS8]; N] {
                #[cfg(target_arch = "x86_64")]
                if let Isa::Avx512(token) = isa {
                    return x86::block32_rows16_vnni(token, groups, ys, da, sa, next);
                }
                let _ = next;
                let halves = groups.map(|g| Self::dot_packed8(isa, g, ys, da, sa));
                std::array::from_fn(|t| std::array::from_fn(|r| halves[r / ROWS8][t][r % ROWS8]))
            }
        }
    };
}

packed_dot!(Q4_0, Rows8Q4_0);
packed_dot!(Q4_1, Rows8Q4_1);
packed_dot!(Q5_0, Rows8Q5_0);
packed_dot!(Q8_0, Rows8Q8_0);

macro_rules! block32 {
    ($kind:ident, $w:ty, $a:ty, $act:ident, $quantize:path, $scalar:ident, $name:ident) => {
        impl VecDot for kind::$kind {
            type Weight = $w;
            type Act = $a;
            const TYPE: GgmlType = GgmlType::$kind;
            const ACT_TYPE: GgmlType = GgmlType::$act;
            fn quantize(isa: Isa, x: &[f32], y: &mut [$a]) {
                $quantize(isa, x, y)
            }
            fn dot_scalar(x: &[$w], y: &[$a]) -> f32 {
                scalar::$scalar(x, y)
            }
            fn dot<const N: usize>(isa: Isa, x: &[$w], ys: [&[$a]; N]) -> [f32; N] {
                match isa {
                    Isa::Scalar => std::array::from_fn(|t| scalar::$scalar(x, ys[t])),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2(token) => x86::block32_avx2(token, x, ys),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512(token) => x86::block32_vnni(token, x, ys),
                }
            }
        }

        impl FastDot for kind::$kind {
            fn act_scales(y: &$a) -> (f32, f32) {
                scalar_fast::act_terms::<$w, $a>(y)
            }
            fn dot_fast<const N: usize>(
                isa: Isa,
                x: &[$w],
                ys: [&[$a]; N],
                da: [&[f32]; N],
                sa: [&[f32]; N],
            ) -> [f32; N] {
                match isa {
                    Isa::Scalar => std::array::from_fn(|t| scalar_fast::dot_fast(x, ys[t])),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2(token) => x86::block32_fast_avx2(token, x, ys, da, sa),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512(token) => x86::block32_fast_vnni(token, x, ys, da, sa),
                }
            }
            fn dot_fast_rows(
                isa: Isa,
                x: &[$w],
                y: &[$a],
                da: &[f32],
                sa: &[f32],
                out: &mut [f32],
            ) {
                match isa {
                    Isa::Scalar => {
                        for (row, o) in x.chunks_exact(y.len().max(1)).zip(out.iter_mut()) {
                            *o = scalar_fast::dot_fast(row, y);
                        }
                    }
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2(token) => x86::block32_fast_rows_avx2(token, x, y, da, sa, out),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512(token) => x86::block32_fast_rows_vnni(token, x, y, da, sa, out),
                }
            }
            fn dot_rows8<const N: usize>(
                isa: Isa,
                rows: [&[$w]; ROWS8],
                ys: [&[$a]; N],
                da: [&[f32]; N],
                sa: [&[f32]; N],
            ) -> [[f32; ROWS8]; N] {
                match isa {
                    Isa::Scalar => std::array::from_fn(|t| {
                        rows.map(|row| scalar_fast::dot_fast(row, ys[t]))
                    }),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2(token) => {
                        x86::block32_rows8_avx2(token, &x86::Transposed(rows), ys, da, sa)
                    }
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512(token) => {
                        x86::block32_rows8_vnni(token, &x86::Transposed(rows), ys, da, sa)
                    }
                }
            }
            fn decode_rows(isa: Isa, x: &[$w], at: usize, rows: &mut lanes::DecodedRows) {
                match isa {
                    Isa::Scalar => lanes::decode_portable(x, at, rows),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2(token) => x86::decode_lanes_avx2(token, x, at, rows),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512(token) => x86::decode_lanes_avx2(token.avx2(), x, at, rows),
                }
            }
            fn dot_lanes<const R: usize>(
                isa: Isa,
                rows: &lanes::DecodedRows,
                r: usize,
                tile: &lanes::LaneTile<'_>,
            ) -> [[f32; lanes::LANES]; R] {
                match isa {
                    Isa::Scalar => std::array::from_fn(|i| {
                        lanes::dot_lanes_portable::<$w>(rows, r + i, tile)
                    }),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2(token) => x86::dot_lanes_avx2::<$w, R>(token, rows, r, tile),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512(token) => x86::dot_lanes_vnni::<$w, R>(token, rows, r, tile),
                }
            }

        }

        #[doc = concat!("`", stringify!($name), "`: the dot of one weight row with one activation row.")]
        pub fn $name(isa: Isa, x: &[$w], y: &[$a]) -> f32 {
            kind::$kind::dot(isa, x, [y])[0]
        }
    };
}

block32!(
    Q4_0,
    BlockQ4_0,
    BlockQ8_0,
    Q8_0,
    quantize_row_q8_0_isa,
    vec_dot_q4_0_q8_0,
    vec_dot_q4_0_q8_0
);
block32!(
    Q4_1,
    BlockQ4_1,
    BlockQ8_1,
    Q8_1,
    quantize_row_q8_1_isa,
    vec_dot_q4_1_q8_1,
    vec_dot_q4_1_q8_1
);
block32!(
    Q5_0,
    BlockQ5_0,
    BlockQ8_0,
    Q8_0,
    quantize_row_q8_0_isa,
    vec_dot_q5_0_q8_0,
    vec_dot_q5_0_q8_0
);
block32!(
    Q5_1,
    BlockQ5_1,
    BlockQ8_1,
    Q8_1,
    quantize_row_q8_1_isa,
    vec_dot_q5_1_q8_1,
    vec_dot_q5_1_q8_1
);
block32!(
    Q8_0,
    BlockQ8_0,
    BlockQ8_0,
    Q8_0,
    quantize_row_q8_0_isa,
    vec_dot_q8_0_q8_0,
    vec_dot_q8_0_q8_0
);
block32!(
    IQ4_NL,
    BlockIQ4NL,
    BlockQ8_0,
    Q8_0,
    quantize_row_q8_0_isa,
    vec_dot_iq4_nl_q8_0,
    vec_dot_iq4_nl_q8_0
);

/// One activation row at a time: the kernels below have no multi-row form.
macro_rules! row_kind {
    ($kind:ident, $w:ty, $a:ty, $act:ident, $quantize:expr, $scalar:path, $avx2:ident, $avx512:ident, $name:ident) => {
        impl VecDot for kind::$kind {
            type Weight = $w;
            type Act = $a;
            const TYPE: GgmlType = GgmlType::$kind;
            const ACT_TYPE: GgmlType = GgmlType::$act;
            fn quantize(isa: Isa, x: &[f32], y: &mut [$a]) {
                $quantize(isa, x, y)
            }
            fn dot_scalar(x: &[$w], y: &[$a]) -> f32 {
                $scalar(x, y)
            }
            fn dot<const N: usize>(isa: Isa, x: &[$w], ys: [&[$a]; N]) -> [f32; N] {
                std::array::from_fn(|t| $name(isa, x, ys[t]))
            }
        }

        #[doc = concat!("`", stringify!($name), "`: the dot of one weight row with one activation row.")]
        pub fn $name(isa: Isa, x: &[$w], y: &[$a]) -> f32 {
            match isa {
                Isa::Scalar => $scalar(x, y),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2(token) => x86::$avx2(token, x, y),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512(token) => x86::$avx512(token, x, y),
            }
        }
    };
}

row_kind!(
    Q2_K,
    BlockQ2K,
    BlockQ8K,
    Q8_K,
    quantize_row_q8_k_isa,
    scalar_k::vec_dot_q2_k_q8_k,
    q2_k_avx2,
    q2_k_avx512,
    vec_dot_q2_k_q8_k
);
row_kind!(
    Q3_K,
    BlockQ3K,
    BlockQ8K,
    Q8_K,
    quantize_row_q8_k_isa,
    scalar_k::vec_dot_q3_k_q8_k,
    q3_k_avx2,
    q3_k_avx512,
    vec_dot_q3_k_q8_k
);
row_kind!(
    Q4_K,
    BlockQ4K,
    BlockQ8K,
    Q8_K,
    quantize_row_q8_k_isa,
    scalar_k::vec_dot_q4_k_q8_k,
    q4_k_avx2,
    q4_k_avx512,
    vec_dot_q4_k_q8_k
);
row_kind!(
    Q5_K,
    BlockQ5K,
    BlockQ8K,
    Q8_K,
    quantize_row_q8_k_isa,
    scalar_k::vec_dot_q5_k_q8_k,
    q5_k_avx2,
    q5_k_avx512,
    vec_dot_q5_k_q8_k
);
row_kind!(
    Q6_K,
    BlockQ6K,
    BlockQ8K,
    Q8_K,
    quantize_row_q8_k_isa,
    scalar_k::vec_dot_q6_k_q8_k,
    q6_k_avx2,
    q6_k_avx512,
    vec_dot_q6_k_q8_k
);
/// F32 weights: each dot in `ggml_vec_dot_f32`'s order (AVX-512 build), which llama.cpp
/// uses for a single token, for every row length ([`crate::ops::dot_f32_ggml_isa`]).
impl VecDot for kind::F32 {
    type Weight = f32;
    type Act = f32;
    const TYPE: GgmlType = GgmlType::F32;
    const ACT_TYPE: GgmlType = GgmlType::F32;
    fn quantize(isa: Isa, x: &[f32], y: &mut [f32]) {
        copy_row(isa, x, y)
    }
    fn dot_scalar(x: &[f32], y: &[f32]) -> f32 {
        crate::ops::dot_f32_ggml_isa(Isa::Scalar, x, y)
    }
    fn dot<const N: usize>(isa: Isa, x: &[f32], ys: [&[f32]; N]) -> [f32; N] {
        std::array::from_fn(|t| crate::ops::dot_f32_ggml_isa(isa, x, ys[t]))
    }
}

/// `vec_dot_f32`: the dot of one F32 weight row with one activation row, in
/// `ggml_vec_dot_f32`'s order.
pub fn vec_dot_f32(isa: Isa, x: &[f32], y: &[f32]) -> f32 {
    kind::F32::dot(isa, x, [y])[0]
}

/// F32 weights in llamafile `tinyBLAS`'s order (AVX-512 build), which llama.cpp uses for
/// a batch of two tokens or more when the rows are a multiple of 16 long and their count
/// a multiple of 4 ([`crate::ops::dot_f32_tiled_isa`]); [`crate::matmul`] picks it then.
impl VecDot for kind::F32Tiled {
    type Weight = f32;
    type Act = f32;
    const TYPE: GgmlType = GgmlType::F32;
    const ACT_TYPE: GgmlType = GgmlType::F32;
    fn quantize(isa: Isa, x: &[f32], y: &mut [f32]) {
        copy_row(isa, x, y)
    }
    fn dot_scalar(x: &[f32], y: &[f32]) -> f32 {
        crate::ops::dot_f32_tiled_isa(Isa::Scalar, x, y)
    }
    fn dot<const N: usize>(isa: Isa, x: &[f32], ys: [&[f32]; N]) -> [f32; N] {
        std::array::from_fn(|t| crate::ops::dot_f32_tiled_isa(isa, x, ys[t]))
    }
}
row_kind!(
    F16,
    f16,
    f32,
    F32,
    copy_row,
    scalar::vec_dot_f16_f32,
    f16_avx2,
    f16_avx512,
    vec_dot_f16_f32
);

/// The dots of several F16 rows `xs` with one f32 row `y`, into `out` (one per row), each
/// with [`vec_dot_f16_f32`]'s bits on `isa`: on AVX-512 sixteen rows' horizontal sums are
/// done together (flash attention's F16 keys against one query row).
///
/// # Panics
///
/// When `out` and `xs` differ in length, or a row and `y` do.
pub fn vec_dot_f16_f32_many(isa: Isa, xs: &[&[f16]], y: &[f32], out: &mut [f32]) {
    assert_eq!(
        xs.len(),
        out.len(),
        "vec_dot_f16_f32_many: rows and outputs"
    );
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(token) => {
            for (xs, out) in xs.chunks(16).zip(out.chunks_mut(16)) {
                x86::f16_keys_avx512(token, xs, y, out);
            }
        }
        _ => {
            for (x, o) in xs.iter().zip(out.iter_mut()) {
                *o = vec_dot_f16_f32(isa, x, y);
            }
        }
    }
}

/// [`vec_dot_f16_f32_many`] for `R` rows `ys` at once: `outs[r][i] = xs[i] · ys[r]`, each
/// with [`vec_dot_f16_f32`]'s bits on `isa`. On AVX-512, with rows a multiple of 16 long,
/// each F16 row is widened once for all `R`.
///
/// # Panics
///
/// When an output and `xs` differ in length, or a row and `ys[0]` do.
pub fn vec_dot_f16_f32_many_rows<const R: usize>(
    isa: Isa,
    xs: &[&[f16]],
    ys: [&[f32]; R],
    outs: [&mut [f32]; R],
) {
    assert!(
        outs.iter().all(|o| o.len() == xs.len()),
        "vec_dot_f16_f32_many_rows: rows and outputs"
    );
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(token) if R > 0 && ys[0].len().is_multiple_of(16) => {
            let mut outs = outs;
            for (c, xs) in xs.chunks(16).enumerate() {
                let part = outs.each_mut().map(|o| &mut o[16 * c..16 * c + xs.len()]);
                x86::f16_keys_rows_avx512(token, xs, ys, part);
            }
        }
        _ => {
            for (y, out) in ys.into_iter().zip(outs) {
                vec_dot_f16_f32_many(isa, xs, y, out);
            }
        }
    }
}

/// The "quantizer" of f32 activations: a copy.
fn copy_row(_: Isa, x: &[f32], y: &mut [f32]) {
    y.copy_from_slice(x);
}

/// A k-quant weight type with fast-numerics kernels ([`kfast`]): a one-row kernel for
/// decode and a token-lane kernel for prompts, both in [`kfast::dot_fast_k`]'s order.
pub trait FastKDot: VecDot<Act = BlockQ8K, Weight: kfast::FastK> {
    /// The fast dot of one weight row with one activation row.
    fn dot_fast_k(isa: Isa, x: &[Self::Weight], y: &[BlockQ8K]) -> f32;
    /// The fast dots of decoded rows `r..r + R` (`R` of 1 or 2) with the eight tokens of
    /// `tile`: the SIMD kernel loads each tile register once for all of them, and each
    /// row's sums are the bits of its one-row call.
    fn dot_lanes_k<const R: usize>(
        isa: Isa,
        rows: &lanes::DecodedRows,
        r: usize,
        tile: &kfast::KTile<'_>,
    ) -> [[f32; lanes::LANES]; R];
}

macro_rules! fast_k {
    ($kind:ident) => {
        impl FastKDot for kind::$kind {
            fn dot_fast_k(isa: Isa, x: &[Self::Weight], y: &[BlockQ8K]) -> f32 {
                match isa {
                    Isa::Scalar => kfast::dot_fast_k(x, y),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2(token) => x86::dot_fast_k_avx2(token, x, y),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512(token) => x86::dot_fast_k_avx2(token.avx2(), x, y),
                }
            }
            fn dot_lanes_k<const R: usize>(
                isa: Isa,
                rows: &lanes::DecodedRows,
                r: usize,
                tile: &kfast::KTile<'_>,
            ) -> [[f32; lanes::LANES]; R] {
                match isa {
                    Isa::Scalar => std::array::from_fn(|i| {
                        kfast::dot_lanes_k_portable::<Self::Weight>(rows, r + i, tile)
                    }),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2(token) => {
                        x86::dot_lanes_k_avx2::<Self::Weight, R>(token, rows, r, tile)
                    }
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512(token) => {
                        x86::dot_lanes_k_avx2::<Self::Weight, R>(token.avx2(), rows, r, tile)
                    }
                }
            }
        }
    };
}

fast_k!(Q4_K);
fast_k!(Q5_K);
fast_k!(Q6_K);
