//! Quantization and dequantization of the GGML block types.
//!
//! Per-type functions take typed block slices (`quantize_row_q8_0(&[f32], &mut
//! [BlockQ8_0])`) and panic on a length mismatch, as internal kernels whose callers size
//! the buffers. [`dequantize_row`] and [`quantize_row`] take raw bytes and a [`GgmlType`],
//! check every length and return a [`QuantError`] instead: use them for data from a file.
//!
//! Every quantizer rounds as llama.cpp's reference (`*_ref`) quantizer does, so a row we
//! quantize is byte-identical to the one llama.cpp's reference code writes; dequantizers
//! perform the same f32 operations in the same order, so their output is bit-exact.

mod float;
mod iq4nl;
mod kquants;
mod kquants_fit;
mod kquants_quantize;
mod legacy;
mod q8;

use thiserror::Error;

use crate::arch::cast::{Pod, as_blocks, as_blocks_mut, as_bytes, read_unaligned};
use crate::blocks::{
    BlockIQ4NL, BlockQ2K, BlockQ3K, BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ5K,
    BlockQ6K, BlockQ8_0, BlockQ8_1, BlockQ8K,
};
use crate::ggml_type::GgmlType;

pub use float::{
    dequantize_row_bf16, dequantize_row_f16, f32_to_bf16, quantize_row_bf16, quantize_row_f16,
};
pub use iq4nl::{KVALUES_IQ4NL, dequantize_row_iq4_nl, quantize_iq4_nl, quantize_row_iq4_nl};
pub use kquants::{
    dequantize_row_q2_k, dequantize_row_q3_k, dequantize_row_q4_k, dequantize_row_q5_k,
    dequantize_row_q6_k, get_scale_min_k4, q3_k_scale,
};
pub use kquants_quantize::{
    quantize_row_q2_k, quantize_row_q3_k, quantize_row_q4_k, quantize_row_q5_k, quantize_row_q6_k,
};
pub use legacy::{
    dequantize_row_q4_0, dequantize_row_q4_1, dequantize_row_q5_0, dequantize_row_q5_1,
    quantize_row_q4_0, quantize_row_q4_1, quantize_row_q5_0, quantize_row_q5_1,
};
pub use q8::{
    dequantize_row_q8_0, dequantize_row_q8_1, dequantize_row_q8_k, quantize_row_q8_0,
    quantize_row_q8_0_isa, quantize_row_q8_0_ref, quantize_row_q8_0_scalar, quantize_row_q8_1,
    quantize_row_q8_1_isa, quantize_row_q8_1_ref, quantize_row_q8_1_scalar, quantize_row_q8_k,
    quantize_row_q8_k_isa, quantize_row_q8_k_ref,
};

/// Why a row could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantError {
    /// The type has no conversion in this direction.
    #[error("{direction} is not supported for tensor type {ty}")]
    Unsupported {
        /// The tensor type.
        ty: GgmlType,
        /// "quantization" or "dequantization".
        direction: &'static str,
    },
    /// The number of values is not a whole number of the type's blocks.
    #[error("{elements} values are not a whole number of {ty} blocks of {block_size}")]
    PartialBlock {
        /// The tensor type.
        ty: GgmlType,
        /// Number of f32 values given.
        elements: usize,
        /// Values per block of `ty`.
        block_size: usize,
    },
    /// The byte buffer does not hold exactly the blocks for the given number of values.
    #[error("{elements} values of {ty} take {expected} bytes, but the buffer has {actual}")]
    ByteLength {
        /// The tensor type.
        ty: GgmlType,
        /// Number of f32 values given.
        elements: usize,
        /// Bytes those values take in `ty`.
        expected: usize,
        /// Bytes in the buffer.
        actual: usize,
    },
}

/// True when [`dequantize_row`] supports `ty`.
pub fn can_dequantize(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16
            | BF16
            | Q4_0
            | Q4_1
            | Q5_0
            | Q5_1
            | Q8_0
            | Q8_1
            | Q2_K
            | Q3_K
            | Q4_K
            | Q5_K
            | Q6_K
            | Q8_K
            | IQ4_NL
    )
}

/// True when [`quantize_row`] supports `ty`: every type [`dequantize_row`] reads, since
/// the K-quants have quantizers too.
pub fn can_quantize(ty: GgmlType) -> bool {
    can_dequantize(ty)
}

/// Checks that `bytes` holds exactly the blocks of `elements` values of `ty`.
fn check_lengths(ty: GgmlType, elements: usize, bytes: usize) -> Result<(), QuantError> {
    let block_size = ty.block_size();
    if !elements.is_multiple_of(block_size) {
        return Err(QuantError::PartialBlock {
            ty,
            elements,
            block_size,
        });
    }
    let expected = elements / block_size * ty.type_size();
    if bytes != expected {
        return Err(QuantError::ByteLength {
            ty,
            elements,
            expected,
            actual: bytes,
        });
    }
    Ok(())
}

/// Runs a typed dequantizer over bytes, viewing them in place when aligned and copying
/// block by block when not. Lengths are already checked.
fn dequantize_bytes<T: Pod>(src: &[u8], dst: &mut [f32], f: fn(&[T], &mut [f32])) {
    if let Some(blocks) = as_blocks::<T>(src) {
        return f(blocks, dst);
    }
    let per_block = dst.len() / (src.len() / size_of::<T>());
    for (bytes, out) in src
        .chunks_exact(size_of::<T>())
        .zip(dst.chunks_exact_mut(per_block))
    {
        if let Some(block) = read_unaligned::<T>(bytes) {
            f(std::slice::from_ref(&block), out);
        }
    }
}

/// Runs a typed quantizer into bytes, in place when aligned and through a copy of each
/// block when not. Lengths are already checked.
fn quantize_bytes<T: Pod>(src: &[f32], dst: &mut [u8], f: fn(&[f32], &mut [T])) {
    let blocks = dst.len() / size_of::<T>();
    if let Some(out) = as_blocks_mut::<T>(dst) {
        return f(src, out);
    }
    let per_block = src.len() / blocks;
    for (values, bytes) in src
        .chunks_exact(per_block)
        .zip(dst.chunks_exact_mut(size_of::<T>()))
    {
        if let Some(mut block) = read_unaligned::<T>(bytes) {
            f(values, std::slice::from_mut(&mut block));
            bytes.copy_from_slice(as_bytes(std::slice::from_ref(&block)));
        }
    }
}

fn copy_f32(x: &[f32], y: &mut [f32]) {
    y.copy_from_slice(x);
}

/// Dequantizes `src`, the bytes of `dst.len()` values of type `ty`, into `dst`.
///
/// Fails, without touching `dst`, when `ty` has no dequantizer, `dst.len()` is not a
/// whole number of blocks or `src` is not exactly the bytes of those blocks.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    if !can_dequantize(ty) {
        return Err(QuantError::Unsupported {
            ty,
            direction: "dequantization",
        });
    }
    check_lengths(ty, dst.len(), src.len())?;
    if dst.is_empty() {
        return Ok(());
    }
    match ty {
        GgmlType::F32 => dequantize_bytes::<f32>(src, dst, copy_f32),
        GgmlType::F16 => dequantize_bytes(src, dst, dequantize_row_f16),
        GgmlType::BF16 => dequantize_bytes(src, dst, dequantize_row_bf16),
        GgmlType::Q4_0 => dequantize_bytes::<BlockQ4_0>(src, dst, dequantize_row_q4_0),
        GgmlType::Q4_1 => dequantize_bytes::<BlockQ4_1>(src, dst, dequantize_row_q4_1),
        GgmlType::Q5_0 => dequantize_bytes::<BlockQ5_0>(src, dst, dequantize_row_q5_0),
        GgmlType::Q5_1 => dequantize_bytes::<BlockQ5_1>(src, dst, dequantize_row_q5_1),
        GgmlType::Q8_0 => dequantize_bytes::<BlockQ8_0>(src, dst, dequantize_row_q8_0),
        GgmlType::Q8_1 => dequantize_bytes::<BlockQ8_1>(src, dst, dequantize_row_q8_1),
        GgmlType::Q2_K => dequantize_bytes::<BlockQ2K>(src, dst, dequantize_row_q2_k),
        GgmlType::Q3_K => dequantize_bytes::<BlockQ3K>(src, dst, dequantize_row_q3_k),
        GgmlType::Q4_K => dequantize_bytes::<BlockQ4K>(src, dst, dequantize_row_q4_k),
        GgmlType::Q5_K => dequantize_bytes::<BlockQ5K>(src, dst, dequantize_row_q5_k),
        GgmlType::Q6_K => dequantize_bytes::<BlockQ6K>(src, dst, dequantize_row_q6_k),
        GgmlType::Q8_K => dequantize_bytes::<BlockQ8K>(src, dst, dequantize_row_q8_k),
        GgmlType::IQ4_NL => dequantize_bytes::<BlockIQ4NL>(src, dst, dequantize_row_iq4_nl),
        _ => {
            return Err(QuantError::Unsupported {
                ty,
                direction: "dequantization",
            });
        }
    }
    Ok(())
}

/// Quantizes `src` into `dst`, the bytes of `src.len()` values of type `ty`, with
/// llama.cpp's reference rounding (the bytes `llama-quantize` writes into model files).
///
/// Fails, without touching `dst`, when `ty` has no quantizer, `src.len()` is not a whole
/// number of blocks or `dst` is not exactly the bytes of those blocks.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    if !can_quantize(ty) {
        return Err(QuantError::Unsupported {
            ty,
            direction: "quantization",
        });
    }
    check_lengths(ty, src.len(), dst.len())?;
    if src.is_empty() {
        return Ok(());
    }
    match ty {
        GgmlType::F32 => quantize_bytes::<f32>(src, dst, copy_f32),
        GgmlType::F16 => quantize_bytes(src, dst, quantize_row_f16),
        GgmlType::BF16 => quantize_bytes(src, dst, quantize_row_bf16),
        GgmlType::Q4_0 => quantize_bytes::<BlockQ4_0>(src, dst, quantize_row_q4_0),
        GgmlType::Q4_1 => quantize_bytes::<BlockQ4_1>(src, dst, quantize_row_q4_1),
        GgmlType::Q5_0 => quantize_bytes::<BlockQ5_0>(src, dst, quantize_row_q5_0),
        GgmlType::Q5_1 => quantize_bytes::<BlockQ5_1>(src, dst, quantize_row_q5_1),
        GgmlType::Q8_0 => quantize_bytes::<BlockQ8_0>(src, dst, quantize_row_q8_0_ref),
        GgmlType::Q8_1 => quantize_bytes::<BlockQ8_1>(src, dst, quantize_row_q8_1_ref),
        GgmlType::Q2_K => quantize_bytes::<BlockQ2K>(src, dst, quantize_row_q2_k),
        GgmlType::Q3_K => quantize_bytes::<BlockQ3K>(src, dst, quantize_row_q3_k),
        GgmlType::Q4_K => quantize_bytes::<BlockQ4K>(src, dst, quantize_row_q4_k),
        GgmlType::Q5_K => quantize_bytes::<BlockQ5K>(src, dst, quantize_row_q5_k),
        GgmlType::Q6_K => quantize_bytes::<BlockQ6K>(src, dst, quantize_row_q6_k),
        GgmlType::Q8_K => quantize_bytes::<BlockQ8K>(src, dst, quantize_row_q8_k),
        GgmlType::IQ4_NL => quantize_bytes::<BlockIQ4NL>(src, dst, quantize_row_iq4_nl),
        _ => {
            return Err(QuantError::Unsupported {
                ty,
                direction: "quantization",
            });
        }
    }
    Ok(())
}
