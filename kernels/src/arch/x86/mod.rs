//! x86-64 kernels: capability tokens and the AVX2 / AVX-512 implementations.

mod attn_sums;
pub(crate) mod block32;
mod block32_fast;
mod block32_lanes;
mod block32_rows;
mod block32_rows16;
mod expf;
pub(crate) mod flash_attn;
mod float;
mod float_tile;
mod gelu_erf;
mod kquants;
mod kquants_fast;

use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};

use half::f16;

use self::block32::{Act32, Block32};
pub(crate) use self::block32_rows::{Packed, PackedWords, Rows8Source, Transposed};
use crate::blocks::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};

/// Proof that the CPU has AVX2, FMA and F16C. Only [`Avx2Token::new`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Avx2Token(());

impl Avx2Token {
    /// A token when this CPU has AVX2, FMA and F16C.
    pub fn new() -> Option<Self> {
        let ok = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        ok.then_some(Self(()))
    }
}

/// Proof that the CPU has AVX-512 F/BW/VL/VNNI as well as AVX2, FMA and F16C. Only
/// [`Avx512Token::new`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Avx512Token(());

impl Avx512Token {
    /// A token when this CPU has AVX-512 F, BW, VL and VNNI, plus AVX2, FMA and F16C.
    pub fn new() -> Option<Self> {
        let ok = Avx2Token::new().is_some()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni");
        ok.then_some(Self(()))
    }

    /// The AVX2 token this CPU also has, for kernels without an AVX-512 version.
    pub fn avx2(self) -> Avx2Token {
        Avx2Token(())
    }
}

/// How far ahead of the weights being multiplied a matrix–vector kernel prefetches.
///
/// A decode step multiplies small matrices (a few hundred KiB), each split over the
/// threads in runs of rows: the hardware prefetchers barely ramp up within one run, so
/// the kernels ask for the next KiB themselves (SmolLM2's decode went from 102 to 127
/// tokens/s on a 2-core AMD EPYC; see `docs/PERFORMANCE.md`). Past the end of a row the
/// prefetch reaches the next row of the run, which is what comes next.
const PREFETCH_BYTES: usize = 1024;

/// Prefetches into L1 the cache lines of the `bytes` (at most 512) that start
/// `PREFETCH_BYTES` past `at`. A prefetch of an address past the data, even past the
/// mapping, is dropped, never a fault, so `at` needs no bounds.
#[inline(always)]
pub(crate) fn prefetch_ahead<T>(at: *const T, bytes: usize) {
    let ahead = at.cast::<i8>().wrapping_add(PREFETCH_BYTES);
    for line in 0..bytes.div_ceil(64).min(8) {
        // SAFETY: `prefetcht0` reads nothing architecturally and cannot fault; SSE is
        // part of x86-64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line)) };
    }
}

/// The 32-element block dot of one weight row with `N` activation rows, AVX2.
pub(crate) fn block32_avx2<W: Block32, A: Act32, const N: usize>(
    _: Avx2Token,
    x: &[W],
    ys: [&[A]; N],
) -> [f32; N] {
    // SAFETY: the token proves the CPU has the AVX2, FMA and F16C the kernel enables.
    unsafe { block32::dot_avx2(x, ys) }
}

/// The 32-element block dot of one weight row with `N` activation rows, AVX-512 VNNI.
pub(crate) fn block32_vnni<W: Block32, A: Act32, const N: usize>(
    _: Avx512Token,
    x: &[W],
    ys: [&[A]; N],
) -> [f32; N] {
    // SAFETY: the token proves the CPU has every feature the kernel enables.
    unsafe { block32::dot_vnni_pairs(x, ys) }
}

/// The fast-numerics 32-element block dot of one weight row with `N` activation rows,
/// AVX2 (see [`block32_fast`]).
pub(crate) fn block32_fast_avx2<W: Block32, A: Act32, const N: usize>(
    _: Avx2Token,
    x: &[W],
    ys: [&[A]; N],
    da: [&[f32]; N],
    sa: [&[f32]; N],
) -> [f32; N] {
    // SAFETY: the token proves the CPU has the AVX2, FMA and F16C the kernel enables.
    unsafe { block32_fast::dot_fast_avx2(x, ys, da, sa) }
}

/// The fast-numerics 32-element block dot of one weight row with `N` activation rows,
/// AVX-512 VNNI.
pub(crate) fn block32_fast_vnni<W: Block32, A: Act32, const N: usize>(
    _: Avx512Token,
    x: &[W],
    ys: [&[A]; N],
    da: [&[f32]; N],
    sa: [&[f32]; N],
) -> [f32; N] {
    // SAFETY: the token proves the CPU has every feature the kernel enables.
    unsafe { block32_fast::dot_fast_vnni(x, ys, da, sa) }
}

/// Decodes whole weight rows for the token-lane kernels, AVX2 (see [`block32_lanes`]).
pub(crate) fn decode_lanes_avx2<W: Block32>(
    _: Avx2Token,
    x: &[W],
    at: usize,
    rows: &mut crate::dot::lanes::DecodedRows,
) {
    // SAFETY: the token proves the CPU has the AVX2, FMA and F16C the kernel enables.
    unsafe { block32_lanes::decode_avx2(x, at, rows) }
}

/// The token-lane fast dots of `R` decoded rows from `r` with a tile of eight tokens,
/// AVX2.
pub(crate) fn dot_lanes_avx2<W: Block32, const R: usize>(
    _: Avx2Token,
    rows: &crate::dot::lanes::DecodedRows,
    r: usize,
    tile: &crate::dot::lanes::LaneTile<'_>,
) -> [[f32; crate::dot::lanes::LANES]; R] {
    // SAFETY: the token proves the CPU has the AVX2, FMA and F16C the kernel enables.
    unsafe { block32_lanes::dot_lanes_avx2::<W, R>(rows, r, tile) }
}

/// The token-lane fast dots of `R` decoded rows from `r` with a tile of eight tokens,
/// AVX-512 VNNI.
pub(crate) fn dot_lanes_vnni<W: Block32, const R: usize>(
    _: Avx512Token,
    rows: &crate::dot::lanes::DecodedRows,
    r: usize,
    tile: &crate::dot::lanes::LaneTile<'_>,
) -> [[f32; crate::dot::lanes::LANES]; R] {
    // SAFETY: the token proves the CPU has every feature the kernel enables.
    unsafe { block32_lanes::dot_lanes_vnni::<W, R>(rows, r, tile) }
}

/// The fast-numerics dot of one k-quant row with one activation row, AVX2 (see
/// [`kquants_fast`]).
pub(crate) fn dot_fast_k_avx2<W: KFastRow>(_: Avx2Token, x: &[W], y: &[BlockQ8K]) -> f32 {
    // SAFETY: the token proves the CPU has the AVX2, FMA and F16C the kernels enable.
    unsafe { W::dot_fast_row(x, y) }
}

/// The token-lane fast dots of `R` decoded k-quant rows from `r` with a tile of eight
/// tokens, AVX2.
pub(crate) fn dot_lanes_k_avx2<W: crate::dot::kfast::FastK, const R: usize>(
    _: Avx2Token,
    rows: &crate::dot::lanes::DecodedRows,
    r: usize,
    tile: &crate::dot::kfast::KTile<'_>,
) -> [[f32; crate::dot::lanes::LANES]; R] {
    // SAFETY: the token proves the CPU has the AVX2, FMA and F16C the kernel enables.
    unsafe { kquants_fast::dot_lanes_k_avx2::<W, R>(rows, r, tile) }
}

/// The k-quant blocks with a fast one-row kernel.
pub(crate) trait KFastRow: Sized {
    /// The kernel.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    unsafe fn dot_fast_row(x: &[Self], y: &[BlockQ8K]) -> f32;
}

impl KFastRow for BlockQ4K {
    unsafe fn dot_fast_row(x: &[Self], y: &[BlockQ8K]) -> f32 {
        // SAFETY: the caller's contract.
        unsafe { kquants_fast::dot_fast_q4_k(x, y) }
    }
}

impl KFastRow for BlockQ5K {
    unsafe fn dot_fast_row(x: &[Self], y: &[BlockQ8K]) -> f32 {
        // SAFETY: the caller's contract.
        unsafe { kquants_fast::dot_fast_q5_k(x, y) }
    }
}

impl KFastRow for BlockQ6K {
    unsafe fn dot_fast_row(x: &[Self], y: &[BlockQ8K]) -> f32 {
        // SAFETY: the caller's contract.
        unsafe { kquants_fast::dot_fast_q6_k(x, y) }
    }
}

/// The fast-numerics dots of eight weight rows, one per lane, with `N` activation rows
/// (see [`block32_rows`]), AVX2.
pub(crate) fn block32_rows8_avx2<W: Block32, A: Act32, S: Rows8Source<W>, const N: usize>(
    _: Avx2Token,
    rows: &S,
    ys: [&[A]; N],
    da: [&[f32]; N],
    sa: [&[f32]; N],
) -> [[f32; block32_rows::ROWS]; N] {
    // SAFETY: the token proves the CPU has the AVX2, FMA and F16C the kernel enables.
    unsafe { block32_rows::dot_rows8_avx2(rows, ys, da, sa) }
}

/// [`block32_rows8_avx2`] with AVX-512 VNNI's `vpdpbusd`.
pub(crate) fn block32_rows8_vnni<W: Block32, A: Act32, S: Rows8Source<W>, const N: usize>(
    _: Avx512Token,
    rows: &S,
    ys: [&[A]; N],
    da: [&[f32]; N],
    sa: [&[f32]; N],
) -> [[f32; block32_rows::ROWS]; N] {
    // SAFETY: the token proves the CPU has every feature the kernel enables.
    unsafe { block32_rows::dot_rows8_vnni(rows, ys, da, sa) }
}

/// The fast-numerics dots of the sixteen rows of two repacked groups with `N` activation
/// rows (see [`block32_rows16`]), AVX-512 VNNI on 512-bit vectors.
pub(crate) fn block32_rows16_vnni<P: PackedWords, A: Act32, const N: usize>(
    _: Avx512Token,
    groups: [&[P]; 2],
    ys: [&[A]; N],
    da: [&[f32]; N],
    sa: [&[f32]; N],
    next: [&[u8]; 2],
) -> [[f32; block32_rows16::ROWS]; N] {
    // SAFETY: the token proves the CPU has every feature the kernel enables.
    unsafe { block32_rows16::dot_rows16_vnni(groups, ys, da, sa, next) }
}

/// The fast-numerics dots of consecutive weight rows with one activation row, AVX2.
pub(crate) fn block32_fast_rows_avx2<W: Block32, A: Act32>(
    _: Avx2Token,
    x: &[W],
    y: &[A],
    da: &[f32],
    sa: &[f32],
    out: &mut [f32],
) {
    // SAFETY: the token proves the CPU has the AVX2, FMA and F16C the kernel enables.
    unsafe { block32_fast::dot_fast_rows_avx2(x, y, da, sa, out) }
}

/// The fast-numerics dots of consecutive weight rows with one activation row, AVX-512
/// VNNI.
pub(crate) fn block32_fast_rows_vnni<W: Block32, A: Act32>(
    _: Avx512Token,
    x: &[W],
    y: &[A],
    da: &[f32],
    sa: &[f32],
    out: &mut [f32],
) {
    // SAFETY: the token proves the CPU has every feature the kernel enables.
    unsafe { block32_fast::dot_fast_rows_vnni(x, y, da, sa, out) }
}

/// SiLU (times `up`) over whole groups of 16, AVX2; see [`crate::ops::silu_mul_isa`].
pub(crate) fn silu_avx2(_: Avx2Token, x: &[f32], up: Option<&[f32]>, out: &mut [f32]) {
    check_groups(x.len(), up.map(<[f32]>::len), out.len());
    // SAFETY: the token proves AVX2 and FMA; the lengths are equal multiples of 16.
    unsafe { expf::silu_avx2(x, up, out) }
}

/// SiLU (times `up`) over whole groups of 16, AVX-512.
pub(crate) fn silu_avx512(_: Avx512Token, x: &[f32], up: Option<&[f32]>, out: &mut [f32]) {
    check_groups(x.len(), up.map(<[f32]>::len), out.len());
    // SAFETY: the token proves AVX-512 F; the lengths are equal multiples of 16.
    unsafe { expf::silu_avx512(x, up, out) }
}

/// The fast-numerics GELU with erf over whole groups of 8, AVX2; see
/// [`crate::ops::gelu_erf_isa`].
pub(crate) fn gelu_erf_avx2(_: Avx2Token, x: &[f32], out: &mut [f32]) {
    assert!(
        x.len() == out.len() && x.len().is_multiple_of(8),
        "gelu_erf kernels take equal lengths in whole groups of 8"
    );
    // SAFETY: the token proves AVX2 and FMA.
    unsafe { gelu_erf::gelu_erf_avx2(x, out) }
}

/// Softmax exponentials and their sum over whole groups of 16, AVX2; see
/// [`crate::ops::exp_sum_isa`].
pub(crate) fn exp_sum_avx2(_: Avx2Token, x: &mut [f32], max: f32) -> f64 {
    check_groups(x.len(), None, x.len());
    // SAFETY: the token proves AVX2 and FMA; the length is a multiple of 16.
    unsafe { expf::exp_sum_avx2(x, max) }
}

/// Softmax exponentials and their sum over whole groups of 16, AVX-512.
pub(crate) fn exp_sum_avx512(_: Avx512Token, x: &mut [f32], max: f32) -> f64 {
    check_groups(x.len(), None, x.len());
    // SAFETY: the token proves AVX-512 F; the length is a multiple of 16.
    unsafe { expf::exp_sum_avx512(x, max) }
}

/// `ggml_vec_dot_f32`'s order over whole steps of 64, AVX2.
pub(crate) fn dot_ggml_avx2(_: Avx2Token, a: &[f32], b: &[f32]) -> f32 {
    assert!(a.len() == b.len() && a.len().is_multiple_of(64));
    // SAFETY: the token proves AVX2 and FMA; equal lengths, a multiple of 64.
    unsafe { attn_sums::dot_ggml_avx2(a, b) }
}

/// `ggml_vec_dot_f32`'s order over whole steps of 64, AVX-512.
pub(crate) fn dot_ggml_avx512(_: Avx512Token, a: &[f32], b: &[f32]) -> f32 {
    assert!(a.len() == b.len() && a.len().is_multiple_of(64));
    // SAFETY: the token proves AVX-512 F; equal lengths, a multiple of 64.
    unsafe { attn_sums::dot_ggml_avx512(a, b) }
}

/// llamafile `tinyBLAS`'s dot over whole steps of 16, AVX2.
pub(crate) fn dot_tiled_avx2(_: Avx2Token, a: &[f32], b: &[f32]) -> f32 {
    assert!(a.len() == b.len() && a.len().is_multiple_of(16));
    // SAFETY: the token proves AVX2 and FMA; equal lengths, a multiple of 16.
    unsafe { attn_sums::dot_tiled_avx2(a, b) }
}

/// llamafile `tinyBLAS`'s dot over whole steps of 16, AVX-512.
pub(crate) fn dot_tiled_avx512(_: Avx512Token, a: &[f32], b: &[f32]) -> f32 {
    assert!(a.len() == b.len() && a.len().is_multiple_of(16));
    // SAFETY: the token proves AVX-512 F; equal lengths, a multiple of 16.
    unsafe { attn_sums::dot_tiled_avx512(a, b) }
}

/// Checks that `w.len()` rows of `stride` (the last one `out` long) fit in `rows`.
fn check_rows(w: &[f32], rows: &[f32], stride: usize, out: &[f32]) {
    let need = w.len().checked_sub(1).map_or(0, |l| l * stride + out.len());
    assert!(
        out.len() <= stride && rows.len() >= need,
        "weighted_sum: rows too short"
    );
}

macro_rules! weighted_sum {
    ($(#[$doc:meta])* $name:ident, $token:ty, $kernel:ident, $partials:literal) => {
        $(#[$doc])*
        pub(crate) fn $name(
            _: $token,
            w: &[f32],
            rows: &[f32],
            stride: usize,
            out: &mut [f32],
        ) -> usize {
            check_rows(w, rows, stride, out);
            // SAFETY: the token proves the features the kernel enables; the rows fit
            // (checked above).
            unsafe { attn_sums::$kernel::<$partials>(w, rows, stride, out) }
        }
    };
}

weighted_sum!(
    /// `tinyBLAS`'s weighted sum of rows, AVX2; returns the outputs written.
    weighted_sum_avx2, Avx2Token, weighted_sum_avx2, 16
);
weighted_sum!(
    /// `tinyBLAS`'s weighted sum of rows, AVX-512; returns the outputs written.
    weighted_sum_avx512, Avx512Token, weighted_sum_avx512, 16
);
weighted_sum!(
    /// `ggml_vec_dot_f32`'s weighted sum of rows, AVX2; returns the outputs written.
    weighted_sum_ggml_avx2, Avx2Token, weighted_sum_avx2, 64
);
weighted_sum!(
    /// `ggml_vec_dot_f32`'s weighted sum of rows, AVX-512; returns the outputs written.
    weighted_sum_ggml_avx512, Avx512Token, weighted_sum_avx512, 64
);

/// The slice contract of the `expf` kernels, checked before any `unsafe` call.
fn check_groups(x: usize, up: Option<usize>, out: usize) {
    assert!(
        x.is_multiple_of(16) && out == x && up.is_none_or(|u| u == x),
        "expf kernels take equal lengths in whole groups of 16"
    );
}

macro_rules! entry {
    ($(#[$doc:meta])* $name:ident, $token:ty, $kernel:path, $x:ty, $y:ty) => {
        $(#[$doc])*
        pub(crate) fn $name(_: $token, x: &[$x], y: &[$y]) -> f32 {
            // SAFETY: the token proves the CPU has every feature the kernel enables.
            unsafe { $kernel(x, y) }
        }
    };
}

entry!(
    /// Q2_K x Q8_K, AVX2.
    q2_k_avx2, Avx2Token, kquants::dot_q2_k, BlockQ2K, BlockQ8K
);
entry!(
    /// Q3_K x Q8_K, AVX2.
    q3_k_avx2, Avx2Token, kquants::dot_q3_k, BlockQ3K, BlockQ8K
);
entry!(
    /// Q4_K x Q8_K, AVX2.
    q4_k_avx2, Avx2Token, kquants::dot_q4_k, BlockQ4K, BlockQ8K
);
entry!(
    /// Q5_K x Q8_K, AVX2.
    q5_k_avx2, Avx2Token, kquants::dot_q5_k, BlockQ5K, BlockQ8K
);
entry!(
    /// Q6_K x Q8_K, AVX2.
    q6_k_avx2, Avx2Token, kquants::dot_q6_k, BlockQ6K, BlockQ8K
);
entry!(
    /// F16 x f32, AVX2.
    f16_avx2, Avx2Token, float::dot_f16_avx2, f16, f32
);
entry!(
    /// F16 x f32, AVX-512.
    f16_avx512, Avx512Token, float::dot_f16_avx512, f16, f32
);

/// Up to sixteen F16 rows times one f32 row, AVX-512, each with [`f16_avx512`]'s bits.
pub(crate) fn f16_keys_avx512(_: Avx512Token, xs: &[&[f16]], y: &[f32], out: &mut [f32]) {
    // SAFETY: the token proves the CPU has every feature the kernel enables.
    unsafe { float::dot_f16_keys_avx512(xs, y, out) }
}

/// Up to sixteen F16 rows times `R` f32 rows, AVX-512, each with [`f16_avx512`]'s bits
/// (rows a multiple of 16 long).
pub(crate) fn f16_keys_rows_avx512<const R: usize>(
    _: Avx512Token,
    xs: &[&[f16]],
    ys: [&[f32]; R],
    out: [&mut [f32]; R],
) {
    // SAFETY: the token proves the CPU has every feature the kernel enables.
    unsafe { float::dot_f16_keys_rows_avx512(xs, ys, out) }
}

/// A tile of F32 weight rows by f32 activation rows, AVX2 (see
/// [`crate::dot::float_tile`]).
pub(crate) fn tile_f32_avx2<const R: usize, const N: usize>(
    _: Avx2Token,
    w: [&[f32]; R],
    x: [&[f32]; N],
) -> [[f32; N]; R] {
    // SAFETY: the token proves the CPU has the AVX2, FMA and F16C the kernel enables.
    unsafe { float_tile::tile_f32_avx2(w, x) }
}

/// A tile of F16 weight rows by f32 activation rows, AVX2 (see
/// [`crate::dot::float_tile`]).
pub(crate) fn tile_f16_avx2<const R: usize, const N: usize>(
    _: Avx2Token,
    w: [&[f16]; R],
    x: [&[f32]; N],
) -> [[f32; N]; R] {
    // SAFETY: the token proves the CPU has the AVX2, FMA and F16C the kernel enables.
    unsafe { float_tile::tile_f16_avx2(w, x) }
}

macro_rules! via_avx2 {
    ($($name:ident => $avx2:ident, $x:ty;)*) => {$(
        /// The AVX2 kernel, run on an AVX-512 CPU.
        pub(crate) fn $name(token: Avx512Token, x: &[$x], y: &[BlockQ8K]) -> f32 {
            $avx2(token.avx2(), x, y)
        }
    )*};
}

via_avx2! {
    q2_k_avx512 => q2_k_avx2, BlockQ2K;
    q3_k_avx512 => q3_k_avx2, BlockQ3K;
    q4_k_avx512 => q4_k_avx2, BlockQ4K;
    q5_k_avx512 => q5_k_avx2, BlockQ5K;
    q6_k_avx512 => q6_k_avx2, BlockQ6K;
}
