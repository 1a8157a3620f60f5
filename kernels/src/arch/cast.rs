//! Views of raw bytes as slices of GGML blocks, checked for length and alignment.
//!
//! A memory-mapped tensor is a `&[u8]`; the kernels want `&[BlockQ4K]`. The blocks are
//! `#[repr(C)]` plain-old-data (integers, byte arrays and `f16`/`f32` fields with no
//! padding), so every bit pattern is a valid block and the only things to check are that
//! the byte count is a whole number of blocks and that the pointer is aligned.

use crate::blocks::{
    BlockIQ4NL, BlockQ2K, BlockQ3K, BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ5K,
    BlockQ6K, BlockQ8_0, BlockQ8_1, BlockQ8K,
};
use crate::repack::{Rows8Q4_0, Rows8Q4_1, Rows8Q5_0, Rows8Q8_0};
use half::{bf16, f16};

mod sealed {
    pub trait Sealed {}
}

/// A type that may be viewed over arbitrary bytes: `#[repr(C)]` or primitive, no padding,
/// no pointers, and valid for every bit pattern.
///
/// Sealed: only the types listed in this module implement it, each checked by hand.
///
/// # Safety
///
/// An implementor must have no padding bytes and no invalid bit patterns.
pub unsafe trait Pod: sealed::Sealed + Copy + 'static {}

macro_rules! pod {
    ($($t:ty),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        // SAFETY: integer, float and byte-array fields only, laid out by `#[repr(C)]` with
        // the sizes asserted in `blocks.rs` and `repack.rs` (so no padding); every bit pattern is a value.
        unsafe impl Pod for $t {}
    )*};
}

pod!(
    u8, i8, u16, i16, u32, i32, u64, i64, f32, f64, f16, bf16, BlockQ4_0, BlockQ4_1, BlockQ5_0,
    BlockQ5_1, BlockQ8_0, BlockQ8_1, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K,
    BlockIQ4NL, Rows8Q4_0, Rows8Q4_1, Rows8Q5_0, Rows8Q8_0,
);

/// True when `bytes` can be viewed as a slice of `T`: aligned and a whole number of `T`s.
fn fits<T: Pod>(bytes: &[u8]) -> bool {
    let size = size_of::<T>();
    bytes.len().is_multiple_of(size) && (bytes.as_ptr() as usize).is_multiple_of(align_of::<T>())
}

/// Views `bytes` as blocks, or `None` when the length is not a multiple of the block size
/// or the bytes are not aligned for `T` (an empty slice is always viewable).
pub fn as_blocks<T: Pod>(bytes: &[u8]) -> Option<&[T]> {
    if bytes.is_empty() {
        return Some(&[]);
    }
    if !fits::<T>(bytes) {
        return None;
    }
    let n = bytes.len() / size_of::<T>();
    // SAFETY: the pointer is aligned for `T` and covers exactly `n` values of `T` within
    // one allocation (checked above); `T: Pod` makes every bit pattern valid; the result
    // borrows `bytes`, so the memory outlives it and is not mutated meanwhile.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), n) })
}

/// Views `bytes` as mutable blocks, or `None` when the length is not a multiple of the
/// block size or the bytes are not aligned for `T`.
pub fn as_blocks_mut<T: Pod>(bytes: &mut [u8]) -> Option<&mut [T]> {
    if bytes.is_empty() {
        return Some(&mut []);
    }
    if !fits::<T>(bytes) {
        return None;
    }
    let n = bytes.len() / size_of::<T>();
    // SAFETY: as in `as_blocks`; the exclusive borrow of `bytes` moves to the result, and
    // any value written through it is some bit pattern, which `u8` accepts.
    Some(unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<T>(), n) })
}

/// Views a slice of blocks as its bytes.
pub fn as_bytes<T: Pod>(blocks: &[T]) -> &[u8] {
    // SAFETY: `T: Pod` has no padding, so all `size_of_val(blocks)` bytes are initialised;
    // `u8` has alignment 1; the result borrows `blocks`.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), size_of_val(blocks)) }
}

/// Views a mutable slice of blocks as its bytes.
pub fn as_bytes_mut<T: Pod>(blocks: &mut [T]) -> &mut [u8] {
    let len = size_of_val(blocks);
    // SAFETY: as in `as_bytes`; any byte written leaves a valid `T` because `T: Pod`.
    unsafe { std::slice::from_raw_parts_mut(blocks.as_mut_ptr().cast::<u8>(), len) }
}

/// Reads one `T` from the start of `bytes` whatever their alignment, or `None` when
/// `bytes` is shorter than `T`.
pub fn read_unaligned<T: Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: at least `size_of::<T>()` readable bytes (checked above); `read_unaligned`
    // needs no alignment; `T: Pod` accepts any bit pattern.
    Some(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_check_length_and_alignment() {
        let storage = vec![0u32; 128];
        let bytes = as_bytes(&storage);
        assert_eq!(
            as_blocks::<BlockQ8K>(&bytes[..292]).map(<[_]>::len),
            Some(1)
        );
        assert!(as_blocks::<BlockQ8K>(&bytes[..291]).is_none());
        assert!(
            as_blocks::<BlockQ8K>(&bytes[2..294]).is_none(),
            "misaligned for f32"
        );
        assert_eq!(
            as_blocks::<BlockQ4_0>(&bytes[2..38]).map(<[_]>::len),
            Some(2)
        );
        assert!(as_blocks::<BlockQ4_0>(&bytes[1..37]).is_none());
        assert_eq!(as_blocks::<u8>(&bytes[1..4]).map(<[_]>::len), Some(3));
        assert_eq!(as_blocks::<BlockQ8_0>(&[]).map(<[_]>::len), Some(0));
    }

    #[test]
    fn views_see_the_bytes_in_place() {
        let mut storage = vec![0u16; 17];
        let bytes: &mut [u8] = as_blocks_mut(as_bytes_mut(&mut storage)).unwrap();
        bytes[0] = 0x00;
        bytes[1] = 0x3c; // f16 1.0, little-endian
        bytes[2] = 0xff;
        let block = &as_blocks::<BlockQ4_0>(&bytes[..18]).unwrap()[0];
        assert_eq!(block.d, f16::ONE);
        assert_eq!(block.qs[0], 0xff);
        let unaligned = read_unaligned::<BlockQ4_0>(&bytes[..18]).unwrap();
        assert_eq!(&unaligned, block);
        assert!(read_unaligned::<BlockQ4_0>(&bytes[..17]).is_none());
    }
}
