//! The key side of flash attention: the query rows converted once per call into the
//! operand a key type's dot product takes, and the dots of one cached key with up to four
//! query rows.
//!
//! As llama.cpp's CPU flash attention does, a quantized key multiplies with the query
//! quantized to the key type's activation partner (Q8_0 for Q8_0, Q4_0, Q5_0 and IQ4_NL;
//! Q8_1 for Q4_1 and Q5_1), with the SIMD dots of [`crate::dot`]. F32 keys take the f32
//! query through [`crate::ops::dot_f32_ggml_isa`] (ggml's summation order, the one the
//! straight attention uses), F16 keys through [`crate::dot::vec_dot_f16_f32`].

use std::marker::PhantomData;

use half::f16;

use crate::arch::cast::{Pod, as_blocks_mut, as_bytes_mut};
use crate::cpu::Isa;
use crate::dot::{VecDot, vec_dot_f16_f32};
use crate::ops::dot_f32_ggml_isa;

/// A key storage type, its query operand and their dot product.
pub(super) trait KeyKind {
    /// The stored element or block of a key row.
    type Weight: Pod;
    /// The element or block of a converted query row.
    type Act: Pod;
    /// The length of `buf` (in f32) a converted query row of `dk` values takes.
    fn query_len(dk: usize) -> usize;
    /// The query rows `q` (each `dk` values) in this type's operand: `q` itself, or
    /// quantized into `buf`. `None` when `buf` is too short.
    fn query<'a>(isa: Isa, q: &'a [f32], dk: usize, buf: &'a mut [f32]) -> Option<&'a [Self::Act]>;
    /// `k · q_t` for each of the `N` query rows.
    fn dots<const N: usize>(isa: Isa, k: &[Self::Weight], qs: [&[Self::Act]; N]) -> [f32; N];
}

/// F32 keys.
pub(super) struct F32Keys;

impl KeyKind for F32Keys {
    type Weight = f32;
    type Act = f32;
    fn query_len(_: usize) -> usize {
        0
    }
    fn query<'a>(_: Isa, q: &'a [f32], _: usize, _: &'a mut [f32]) -> Option<&'a [f32]> {
        Some(q)
    }
    fn dots<const N: usize>(isa: Isa, k: &[f32], qs: [&[f32]; N]) -> [f32; N] {
        std::array::from_fn(|t| dot_f32_ggml_isa(isa, qs[t], k))
    }
}

/// F16 keys.
pub(super) struct F16Keys;

impl KeyKind for F16Keys {
    type Weight = f16;
    type Act = f32;
    fn query_len(_: usize) -> usize {
        0
    }
    fn query<'a>(_: Isa, q: &'a [f32], _: usize, _: &'a mut [f32]) -> Option<&'a [f32]> {
        Some(q)
    }
    fn dots<const N: usize>(isa: Isa, k: &[f16], qs: [&[f32]; N]) -> [f32; N] {
        std::array::from_fn(|t| vec_dot_f16_f32(isa, k, qs[t]))
    }
}

/// Keys of a 32-element block type `K` (Q8_0, Q4_0, ...), dotted with quantized queries.
pub(super) struct BlockKeys<K>(PhantomData<K>);

impl<K: VecDot> KeyKind for BlockKeys<K> {
    type Weight = K::Weight;
    type Act = K::Act;
    fn query_len(dk: usize) -> usize {
        (dk / K::ACT_TYPE.block_size() * size_of::<K::Act>()).div_ceil(size_of::<f32>())
    }
    fn query<'a>(isa: Isa, q: &'a [f32], dk: usize, buf: &'a mut [f32]) -> Option<&'a [K::Act]> {
        let per_row = dk / K::ACT_TYPE.block_size();
        let n_rows = q.len() / dk;
        let bytes = as_bytes_mut(buf).get_mut(..n_rows * per_row * size_of::<K::Act>())?;
        let act = as_blocks_mut::<K::Act>(bytes)?;
        for (row, out) in q.chunks_exact(dk).zip(act.chunks_exact_mut(per_row)) {
            K::quantize(isa, row, out);
        }
        Some(act)
    }
    fn dots<const N: usize>(isa: Isa, k: &[K::Weight], qs: [&[K::Act]; N]) -> [f32; N] {
        K::dot(isa, k, qs)
    }
}
