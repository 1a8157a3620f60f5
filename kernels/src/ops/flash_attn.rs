//! Flash attention for one query head: stream over the cached keys and values in blocks,
//! keep a running maximum and sum (online softmax), accumulate the values, and never hold
//! the whole row of scores.
//!
//! Keys and values may be stored in any type [`crate::quant::dequantize_row`] reads (f32,
//! f16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, ...); each block of rows is dequantized into
//! scratch before use, so a quantized cache costs a dequantization per visited cell and no
//! more memory. Which cells a query sees (its sequence, causality, a sliding window) is
//! the caller's predicate; grouped-query attention is the caller choosing the key/value
//! head ([`HeadRows`]) of each query head. This is the portable version; the straight
//! attention in `runner::model::layers` is the reference it is tested against.

use thiserror::Error;

use crate::GgmlType;
use crate::quant::{QuantError, dequantize_row};

/// Cells visited per block: the scores of one block are the only ones held at a time.
pub const FLASH_BLOCK: usize = 64;

/// Why a head's rows cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlashAttnError {
    /// The head's values do not fill whole blocks of the storage type.
    #[error("a head of {dim} values is not a whole number of {ty} blocks")]
    PartialBlock {
        /// Storage type.
        ty: GgmlType,
        /// Values per head.
        dim: usize,
    },
    /// The bytes end before the last cell's row.
    #[error("{n_cells} cells of {stride} bytes from offset {offset} need more than {len} bytes")]
    TooShort {
        /// Cells.
        n_cells: usize,
        /// Bytes from one cell's row to the next.
        stride: usize,
        /// Byte offset of the head in a row.
        offset: usize,
        /// Bytes given.
        len: usize,
    },
    /// Dequantizing a row failed (an unsupported type).
    #[error(transparent)]
    Quant(#[from] QuantError),
}

/// One key/value head at every cell of a cache: cell `c`'s values are the `dim` values of
/// type `ty` starting at byte `c * stride + offset`.
#[derive(Debug, Clone, Copy)]
pub struct HeadRows<'a> {
    ty: GgmlType,
    bytes: &'a [u8],
    stride: usize,
    offset: usize,
    dim: usize,
    n_cells: usize,
}

impl<'a> HeadRows<'a> {
    /// Checks that `n_cells` rows fit in `bytes` and that a head fills whole blocks.
    pub fn new(
        ty: GgmlType,
        bytes: &'a [u8],
        stride: usize,
        offset: usize,
        dim: usize,
        n_cells: usize,
    ) -> Result<Self, FlashAttnError> {
        if !dim.is_multiple_of(ty.block_size()) {
            return Err(FlashAttnError::PartialBlock { ty, dim });
        }
        let head_bytes = dim / ty.block_size() * ty.type_size();
        let needed = n_cells.checked_sub(1).map_or(Some(0), |last| {
            last.checked_mul(stride)?
                .checked_add(offset)?
                .checked_add(head_bytes)
        });
        if needed.is_none_or(|n| n > bytes.len()) {
            return Err(FlashAttnError::TooShort {
                n_cells,
                stride,
                offset,
                len: bytes.len(),
            });
        }
        Ok(Self {
            ty,
            bytes,
            stride,
            offset,
            dim,
            n_cells,
        })
    }

    /// Number of cells.
    pub fn n_cells(&self) -> usize {
        self.n_cells
    }

    /// Values per cell.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Cell `c`'s values as f32 into `out` (`dim` long).
    fn read(&self, c: usize, out: &mut [f32]) -> Result<(), QuantError> {
        let start = c * self.stride + self.offset;
        let len = self.dim / self.ty.block_size() * self.ty.type_size();
        dequantize_row(self.ty, &self.bytes[start..start + len], out)
    }
}

/// Scratch of [`flash_attn_head`]: one block of dequantized keys and values, its scores
/// and the running output. Grows on first use, then allocates nothing.
#[derive(Debug, Default)]
pub struct FlashScratch {
    keys: Vec<f32>,
    values: Vec<f32>,
    cells: Vec<usize>,
    scores: Vec<f32>,
    acc: Vec<f32>,
}

impl FlashScratch {
    /// An empty scratch.
    pub fn new() -> Self {
        Self::default()
    }
}

/// `out = Σ_c softmax_c(scale · q·k_c) · v_c` over the cells `c` with `visible(c)`, in
/// blocks of [`FLASH_BLOCK`] cells with an online softmax. A query that sees no cell gets
/// zeros.
///
/// # Panics
///
/// When `q.len() != keys.dim()`, `out.len() != values.dim()`, or the two heads have
/// different cell counts.
pub fn flash_attn_head(
    q: &[f32],
    keys: &HeadRows<'_>,
    values: &HeadRows<'_>,
    scale: f32,
    visible: impl Fn(usize) -> bool,
    scratch: &mut FlashScratch,
    out: &mut [f32],
) -> Result<(), FlashAttnError> {
    assert_eq!(q.len(), keys.dim, "flash_attn: query and key sizes differ");
    assert_eq!(
        out.len(),
        values.dim,
        "flash_attn: output and value sizes differ"
    );
    assert_eq!(
        keys.n_cells, values.n_cells,
        "flash_attn: key and value cells differ"
    );
    let (dk, dv) = (keys.dim, values.dim);
    let s = scratch;
    s.keys.resize(FLASH_BLOCK * dk, 0.0);
    s.values.resize(FLASH_BLOCK * dv, 0.0);
    s.acc.clear();
    s.acc.resize(dv, 0.0);
    let (mut max, mut sum) = (f32::NEG_INFINITY, 0.0f32);
    for first in (0..keys.n_cells).step_by(FLASH_BLOCK) {
        s.cells.clear();
        s.cells
            .extend((first..(first + FLASH_BLOCK).min(keys.n_cells)).filter(|&c| visible(c)));
        if s.cells.is_empty() {
            continue;
        }
        s.scores.clear();
        for (i, &c) in s.cells.iter().enumerate() {
            let k = &mut s.keys[i * dk..(i + 1) * dk];
            keys.read(c, k)?;
            s.scores.push(scale * dot(q, k));
        }
        let block_max = s.scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let new_max = max.max(block_max);
        if new_max > max && sum > 0.0 {
            let shrink = (max - new_max).exp();
            sum *= shrink;
            for a in s.acc.iter_mut() {
                *a *= shrink;
            }
        }
        max = new_max;
        for (i, &c) in s.cells.iter().enumerate() {
            let p = (s.scores[i] - max).exp();
            sum += p;
            let v = &mut s.values[i * dv..(i + 1) * dv];
            values.read(c, v)?;
            for (a, &x) in s.acc.iter_mut().zip(v.iter()) {
                *a += p * x;
            }
        }
    }
    if sum > 0.0 {
        for (o, &a) in out.iter_mut().zip(&s.acc) {
            *o = a / sum;
        }
    } else {
        out.fill(0.0);
    }
    Ok(())
}

/// `Σ a[i]·b[i]` with eight partial sums.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
#[path = "flash_attn_tests.rs"]
mod tests;
