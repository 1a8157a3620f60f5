//! Weight matrices repacked once, at load, into the layout the fast decode kernels want:
//! eight rows interleaved block by block.
//!
//! A fast dot of one row ([`crate::dot::scalar_fast`]) needs each block's integer sum
//! alone, so a kernel that reads rows as the file stores them folds every block's 32
//! products across a register with horizontal additions. With eight rows side by side
//! (lane `j` of a register is row `j`), a broadcast activation word multiplies four
//! elements of eight rows at once and the block sums come out in the lanes: no horizontal
//! work, and the eight scales load as one vector. The per-step transposition the
//! eight-row kernel did before is done here, once per model.
//!
//! The layout is a permutation of each group of eight rows' bytes, so a matrix keeps its
//! size and can be repacked in place, and a product over it gives the bits of the one-row
//! kernels (the order of additions is the definition's, not the layout's).

use half::f16;
use thiserror::Error;

use crate::GgmlType;
use crate::arch::cast::{Pod, as_blocks, as_blocks_mut};
use crate::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ8_0};

/// Rows interleaved in one packed block.
pub const ROWS: usize = 8;

/// Block `b` of eight Q4_0 rows side by side.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Rows8Q4_0 {
    /// The eight rows' scales.
    pub d: [f16; ROWS],
    /// `qs[8 m + j]` is row `j`'s packed bytes `4 m..4 m + 4`: low nibbles are elements
    /// `4 m..`, high nibbles elements `16 + 4 m..`.
    pub qs: [[u8; 4]; 4 * ROWS],
}

/// Block `b` of eight Q4_1 rows side by side.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Rows8Q4_1 {
    /// The eight rows' scales.
    pub d: [f16; ROWS],
    /// The eight rows' minimums.
    pub m: [f16; ROWS],
    /// As in [`Rows8Q4_0::qs`].
    pub qs: [[u8; 4]; 4 * ROWS],
}

/// Block `b` of eight Q5_0 rows side by side.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Rows8Q5_0 {
    /// The eight rows' scales.
    pub d: [f16; ROWS],
    /// The fifth bits, one byte per row and element pair: bit `m` of `qh[j][i]` is the
    /// fifth bit of row `j`'s element `4 m + i`, bit `4 + m` that of element
    /// `16 + 4 m + i` (`m` in 0..4), so one shift and one mask put word `k`'s fifth bits
    /// in place.
    pub qh: [[u8; 4]; ROWS],
    /// As in [`Rows8Q4_0::qs`].
    pub qs: [[u8; 4]; 4 * ROWS],
}

/// Block `b` of eight Q8_0 rows side by side.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Rows8Q8_0 {
    /// The eight rows' scales.
    pub d: [f16; ROWS],
    /// `qs[8 k + j]` is row `j`'s quants `4 k..4 k + 4`.
    pub qs: [[i8; 4]; 8 * ROWS],
}

const _: () = assert!(size_of::<Rows8Q4_0>() == ROWS * size_of::<BlockQ4_0>());
const _: () = assert!(size_of::<Rows8Q4_1>() == ROWS * size_of::<BlockQ4_1>());
const _: () = assert!(size_of::<Rows8Q5_0>() == ROWS * size_of::<BlockQ5_0>());
const _: () = assert!(size_of::<Rows8Q8_0>() == ROWS * size_of::<BlockQ8_0>());

/// A packed block of eight rows of the weight block `Block`.
pub trait Packed8: Pod + Send + Sync {
    /// The weight block of one row.
    type Block: Pod;
    /// The weight type.
    const TYPE: GgmlType;
    /// Block `b` of the eight rows, from each row's block `b`.
    fn pack(rows: [&Self::Block; ROWS]) -> Self;
    /// Row `j`'s block.
    fn unpack(&self, j: usize) -> Self::Block;
}

/// `words[m * 8 + j]` = row `j`'s bytes `4 m..4 m + 4`, for the rows' byte arrays.
fn interleave<T: Copy + Default, const N: usize, const W: usize>(
    rows: [&[T; N]; ROWS],
) -> [[T; 4]; W] {
    std::array::from_fn(|i| {
        let (m, j) = (i / ROWS, i % ROWS);
        std::array::from_fn(|k| rows[j][4 * m + k])
    })
}

/// Row `j`'s bytes back out of [`interleave`]'s words.
fn deinterleave<T: Copy + Default, const N: usize, const W: usize>(
    words: &[[T; 4]; W],
    j: usize,
) -> [T; N] {
    std::array::from_fn(|e| words[(e / 4) * ROWS + j][e % 4])
}

/// [`Packed8`] for a packed type whose fields are its rows' scale fields side by side
/// (`$scale`, eight each) and their interleaved `qs`.
macro_rules! packed8 {
    ($packed:ident, $block:ident, $ty:ident, $($scale:ident),+) => {
        impl Packed8 for $packed {
            type Block = $block;
            const TYPE: GgmlType = GgmlType::$ty;
            fn pack(rows: [&$block; ROWS]) -> Self {
                Self {
                    $($scale: rows.map(|b| b.$scale),)+
                    qs: interleave(rows.map(|b| &b.qs)),
                }
            }
            fn unpack(&self, j: usize) -> $block {
                $block {
                    $($scale: self.$scale[j],)+
                    qs: deinterleave(&self.qs, j),
                }
            }
        }
    };
}

packed8!(Rows8Q4_0, BlockQ4_0, Q4_0, d);
packed8!(Rows8Q4_1, BlockQ4_1, Q4_1, d, m);
packed8!(Rows8Q8_0, BlockQ8_0, Q8_0, d);

impl Packed8 for Rows8Q5_0 {
    type Block = BlockQ5_0;
    const TYPE: GgmlType = GgmlType::Q5_0;
    fn pack(rows: [&BlockQ5_0; ROWS]) -> Self {
        let spread = |qh: [u8; 4]| -> [u8; 4] {
            let bits = u32::from_le_bytes(qh);
            let bit = |e: usize| ((bits >> e) & 1) as u8;
            std::array::from_fn(|i| {
                (0..4).fold(0, |byte, m| {
                    byte | (bit(4 * m + i) << m) | (bit(16 + 4 * m + i) << (4 + m))
                })
            })
        };
        Self {
            d: rows.map(|b| b.d),
            qh: rows.map(|b| spread(b.qh)),
            qs: interleave(rows.map(|b| &b.qs)),
        }
    }
    fn unpack(&self, j: usize) -> BlockQ5_0 {
        let mut bits = 0u32;
        for (i, &byte) in self.qh[j].iter().enumerate() {
            for m in 0..4 {
                bits |= u32::from((byte >> m) & 1) << (4 * m + i);
                bits |= u32::from((byte >> (4 + m)) & 1) << (16 + 4 * m + i);
            }
        }
        BlockQ5_0 {
            d: self.d[j],
            qh: bits.to_le_bytes(),
            qs: deinterleave(&self.qs, j),
        }
    }
}

/// Why a matrix cannot be repacked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RepackError {
    /// No packed layout exists for this type ([`packable`]).
    #[error("{0} weights have no eight-row layout")]
    UnsupportedType(GgmlType),
    /// The rows do not fall into whole groups of eight.
    #[error("{rows} rows are not a whole number of groups of {ROWS}")]
    Rows {
        /// Rows of the matrix.
        rows: usize,
    },
    /// The bytes do not hold the shape, or are not aligned for the blocks.
    #[error("{len} bytes at this address do not hold {rows} aligned rows of {cols} {ty} values")]
    Bytes {
        /// The weight type.
        ty: GgmlType,
        /// Rows.
        rows: usize,
        /// Values per row.
        cols: usize,
        /// Bytes given.
        len: usize,
    },
}

/// True for the weight types with an eight-row layout.
pub fn packable(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q8_0
    )
}

/// Repacks `rows` rows of `cols` values of type `ty`, stored row after row in `bytes`,
/// into groups of eight rows interleaved block by block ([`Rows8Q4_0`] and its kin), in
/// place. `rows` must be a multiple of eight.
pub fn repack_rows8(
    ty: GgmlType,
    rows: usize,
    cols: usize,
    bytes: &mut [u8],
) -> Result<(), RepackError> {
    match ty {
        GgmlType::Q4_0 => repack::<Rows8Q4_0>(rows, cols, bytes),
        GgmlType::Q4_1 => repack::<Rows8Q4_1>(rows, cols, bytes),
        GgmlType::Q5_0 => repack::<Rows8Q5_0>(rows, cols, bytes),
        GgmlType::Q8_0 => repack::<Rows8Q8_0>(rows, cols, bytes),
        other => Err(RepackError::UnsupportedType(other)),
    }
}

/// The inverse of [`repack_rows8`]: the rows as the file stores them.
pub fn unpack_rows8(
    ty: GgmlType,
    rows: usize,
    cols: usize,
    bytes: &mut [u8],
) -> Result<(), RepackError> {
    match ty {
        GgmlType::Q4_0 => unpack::<Rows8Q4_0>(rows, cols, bytes),
        GgmlType::Q4_1 => unpack::<Rows8Q4_1>(rows, cols, bytes),
        GgmlType::Q5_0 => unpack::<Rows8Q5_0>(rows, cols, bytes),
        GgmlType::Q8_0 => unpack::<Rows8Q8_0>(rows, cols, bytes),
        other => Err(RepackError::UnsupportedType(other)),
    }
}

/// Dequantizes row `j` (0..[`ROWS`]) of one group of eight packed rows of `cols` values
/// of type `ty` (`group`: the group's bytes, as [`repack_rows8`] left them) into `out`
/// (`cols` values): a token's embedding read from a table that is also the output head,
/// repacked for the head's product, without unpacking the table.
pub fn dequantize_packed_row(
    ty: GgmlType,
    cols: usize,
    group: &[u8],
    j: usize,
    out: &mut [f32],
) -> Result<(), RepackError> {
    match ty {
        GgmlType::Q4_0 => packed_row::<Rows8Q4_0>(cols, group, j, out),
        GgmlType::Q4_1 => packed_row::<Rows8Q4_1>(cols, group, j, out),
        GgmlType::Q5_0 => packed_row::<Rows8Q5_0>(cols, group, j, out),
        GgmlType::Q8_0 => packed_row::<Rows8Q8_0>(cols, group, j, out),
        other => Err(RepackError::UnsupportedType(other)),
    }
}

fn packed_row<P: Packed8>(
    cols: usize,
    group: &[u8],
    j: usize,
    out: &mut [f32],
) -> Result<(), RepackError> {
    let block = P::TYPE.block_size();
    let bad = RepackError::Bytes {
        ty: P::TYPE,
        rows: ROWS,
        cols,
        len: group.len(),
    };
    let nb = cols / block;
    let packed = as_blocks::<P>(group).ok_or(bad.clone())?;
    if j >= ROWS || !cols.is_multiple_of(block) || packed.len() != nb || out.len() != cols {
        return Err(bad);
    }
    for (p, dst) in packed.iter().zip(out.chunks_exact_mut(block)) {
        let row_block = [p.unpack(j)];
        crate::quant::dequantize_row(P::TYPE, crate::arch::cast::as_bytes(&row_block), dst)
            .map_err(|_| bad.clone())?;
    }
    Ok(())
}

/// The groups of `bytes` as blocks of `T`, `per_group` blocks each, after the checks.
fn groups<T: Pod>(
    ty: GgmlType,
    rows: usize,
    cols: usize,
    bytes: &mut [u8],
) -> Result<(&mut [T], usize), RepackError> {
    if !rows.is_multiple_of(ROWS) {
        return Err(RepackError::Rows { rows });
    }
    let bad = RepackError::Bytes {
        ty,
        rows,
        cols,
        len: bytes.len(),
    };
    let block = ty.block_size();
    let nb = cols / block;
    if !cols.is_multiple_of(block) || rows.checked_mul(nb * ty.type_size()) != Some(bytes.len()) {
        return Err(bad);
    }
    let blocks = as_blocks_mut::<T>(bytes).ok_or(bad)?;
    Ok((blocks, nb))
}

fn repack<P: Packed8>(rows: usize, cols: usize, bytes: &mut [u8]) -> Result<(), RepackError> {
    let (blocks, nb) = groups::<P::Block>(P::TYPE, rows, cols, bytes)?;
    let mut packed: Vec<P> = Vec::with_capacity(nb);
    for group in blocks.chunks_exact_mut(ROWS * nb) {
        packed.clear();
        packed.extend((0..nb).map(|b| P::pack(std::array::from_fn(|j| &group[j * nb + b]))));
        // The packed blocks are the group's bytes in another order, of the same length.
        let out = as_blocks_mut::<P::Block>(crate::arch::cast::as_bytes_mut(&mut packed))
            .expect("packed blocks are whole blocks of their rows' type");
        group.copy_from_slice(out);
    }
    Ok(())
}

fn unpack<P: Packed8>(rows: usize, cols: usize, bytes: &mut [u8]) -> Result<(), RepackError> {
    let (groups, nb) = groups::<P>(P::TYPE, rows, cols, bytes)?;
    let mut plain: Vec<P::Block> = Vec::with_capacity(ROWS * nb);
    for group in groups.chunks_exact_mut(nb) {
        plain.clear();
        plain.extend((0..ROWS * nb).map(|i| group[i % nb].unpack(i / nb)));
        let out = as_blocks_mut::<P>(crate::arch::cast::as_bytes_mut(&mut plain))
            .expect("row blocks are whole packed blocks");
        group.copy_from_slice(out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dot::test_data::{Bytes, random_weights};

    /// Random rows, and an aligned copy of them to repack.
    fn rows_and_copy(ty: GgmlType, rows: usize, cols: usize) -> (Bytes, Bytes) {
        let original = random_weights(ty, rows, cols / ty.block_size(), 7);
        let mut copy = Bytes::zeroed(original.get().len());
        copy.get_mut().copy_from_slice(original.get());
        (original, copy)
    }

    fn roundtrip(ty: GgmlType, rows: usize, cols: usize) {
        let (original, mut bytes) = rows_and_copy(ty, rows, cols);
        repack_rows8(ty, rows, cols, bytes.get_mut()).unwrap();
        assert_ne!(
            bytes.get(),
            original.get(),
            "{ty}: repacking changed nothing"
        );
        unpack_rows8(ty, rows, cols, bytes.get_mut()).unwrap();
        assert_eq!(bytes.get(), original.get(), "{ty}: unpack(repack(x)) != x");
    }

    #[test]
    fn repack_then_unpack_gives_the_rows_back() {
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
        ] {
            roundtrip(ty, 8, 32);
            roundtrip(ty, 24, 576);
        }
    }

    #[test]
    fn a_packed_block_holds_each_rows_block() {
        let (rows, cols) = (16, 96);
        let (original, mut bytes) = rows_and_copy(GgmlType::Q4_1, rows, cols);
        repack_rows8(GgmlType::Q4_1, rows, cols, bytes.get_mut()).unwrap();
        let plain: &[BlockQ4_1] = as_blocks(original.get()).unwrap();
        let packed: &[Rows8Q4_1] = as_blocks(bytes.get()).unwrap();
        let nb = cols / 32;
        for (g, group) in packed.chunks_exact(nb).enumerate() {
            for (b, block) in group.iter().enumerate() {
                for j in 0..ROWS {
                    assert_eq!(block.unpack(j), plain[(g * ROWS + j) * nb + b]);
                }
            }
        }
    }

    #[test]
    fn a_packed_row_dequantizes_as_the_plain_row() {
        let (rows, cols) = (16, 96);
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
        ] {
            let (original, mut bytes) = rows_and_copy(ty, rows, cols);
            repack_rows8(ty, rows, cols, bytes.get_mut()).unwrap();
            let row_bytes = cols / ty.block_size() * ty.type_size();
            for r in 0..rows {
                let mut want = vec![0.0; cols];
                let plain = &original.get()[r * row_bytes..(r + 1) * row_bytes];
                crate::quant::dequantize_row(ty, plain, &mut want).unwrap();
                let group = &bytes.get()[(r / ROWS) * ROWS * row_bytes..][..ROWS * row_bytes];
                let mut got = vec![f32::NAN; cols];
                dequantize_packed_row(ty, cols, group, r % ROWS, &mut got).unwrap();
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{ty} row {r}"
                );
            }
            let group = &bytes.get()[..ROWS * row_bytes];
            let mut out = vec![0.0; cols];
            assert!(dequantize_packed_row(ty, cols, group, ROWS, &mut out).is_err());
            assert!(dequantize_packed_row(ty, cols, &group[1..], 0, &mut out).is_err());
            assert!(dequantize_packed_row(ty, cols, group, 0, &mut out[1..]).is_err());
        }
        let mut out = vec![0.0; 32];
        assert_eq!(
            dequantize_packed_row(GgmlType::Q4_K, 32, &[0; 64], 0, &mut out),
            Err(RepackError::UnsupportedType(GgmlType::Q4_K))
        );
    }

    #[test]
    fn shapes_that_do_not_fit_are_refused() {
        let mut bytes = random_weights(GgmlType::Q8_0, 12, 2, 1);
        let bytes = bytes.get_mut();
        assert_eq!(
            repack_rows8(GgmlType::Q8_0, 12, 64, bytes),
            Err(RepackError::Rows { rows: 12 })
        );
        assert!(matches!(
            repack_rows8(GgmlType::Q8_0, 8, 128, bytes),
            Err(RepackError::Bytes { .. })
        ));
        assert_eq!(
            repack_rows8(GgmlType::Q5_1, 8, 64, bytes),
            Err(RepackError::UnsupportedType(GgmlType::Q5_1))
        );
    }
}
