//! Flash attention over a K/V cache: stream over the cached keys and values in blocks of
//! [`FLASH_BLOCK`] cells, keep per query row a running maximum and sum (online softmax),
//! accumulate the values, and never hold more than one block of scores per row.
//!
//! One call serves the query rows of every query head that shares one K/V head
//! (grouped-query attention), for one or several tokens: [`QueryRows`] holds them with
//! each row's position and sequence bit, [`CellMask`] says which cells a row may see
//! (its sequences, causality, a sliding window). Per block the call:
//!
//! 1. works out which rows see which cells, and skips the block when no row sees any;
//! 2. scores the visible (row, cell) pairs, `scale · q·k` ([`Scores`]): f32 keys with
//!    [`crate::ops::dot_f32_ggml_isa`], f16 keys with [`crate::dot::vec_dot_f16_f32`],
//!    quantized keys with the SIMD dots of [`crate::dot`] against the query rows quantized
//!    once per call to the key type's activation type (Q8_0 or Q8_1), as llama.cpp does;
//! 3. raises each row's running maximum, rescaling its sum and output when it grows, and
//!    turns the scores into `exp(score - max)` ([`crate::ops::exp_sum_isa`]);
//! 4. widens the block's value rows to f32 once (f32 values are read in place) and adds
//!    them, weighted, into every row's output at once.
//!
//! A caller may split the cells into ranges (one per thread), each with its own
//! [`FlashState`], and [`FlashState::merge`] the results. Storage types: f32, f16, q8_0,
//! q4_0, q4_1, q5_0, q5_1 and iq4_nl, for keys and values independently.
//! `flash_attn(Isa::Scalar, ...)` is the portable twin of the SIMD paths; they agree to
//! the bit except for f16 keys, whose dot adds in a different order per instruction set.

#[path = "flash_attn_keys.rs"]
mod keys;
#[path = "flash_attn_run.rs"]
mod run;
#[path = "flash_attn_state.rs"]
mod state;
#[path = "flash_attn_values.rs"]
mod values;

use std::ops::Range;

use thiserror::Error;

use self::keys::{BlockKeys, F16Keys, F32Keys};
use self::values::is_cache_type;
use crate::GgmlType;
use crate::arch::cast::{Pod, as_blocks};
use crate::cpu::Isa;
use crate::dot::kind;
use crate::quant::QuantError;

pub use self::state::{FlashScratch, FlashState};

/// Cells visited per block: the scores of one block are the only ones held at a time
/// (defined with the other scratch sizes in [`ggml_type::scratch`]).
pub use ggml_type::scratch::FLASH_BLOCK;

/// A hole in a list of cells for [`flash_attn_list`]: a position the sequence lacks.
pub const NO_CELL: u32 = u32::MAX;

/// The cells one call visits, in blocks of [`FLASH_BLOCK`] entries.
#[derive(Debug, Clone, Copy)]
enum Span<'a> {
    /// Consecutive cells, as they lie in the cache.
    Range(usize, usize),
    /// Cells in the caller's order; [`NO_CELL`] entries are skipped.
    List(&'a [u32]),
}

impl Span<'_> {
    fn len(&self) -> usize {
        match *self {
            Self::Range(start, end) => end - start,
            Self::List(list) => list.len(),
        }
    }

    /// The cells of the block of entries from `first` into `ids` (`usize::MAX` for a
    /// hole); returns how many entries the block has.
    fn block(&self, first: usize, ids: &mut [usize; FLASH_BLOCK]) -> usize {
        let n = (self.len() - first).min(FLASH_BLOCK);
        match *self {
            Self::Range(start, _) => {
                for (j, id) in ids[..n].iter_mut().enumerate() {
                    *id = start + first + j;
                }
            }
            Self::List(list) => {
                for (id, &c) in ids[..n].iter_mut().zip(&list[first..first + n]) {
                    *id = if c == NO_CELL { usize::MAX } else { c as usize };
                }
            }
        }
        n
    }
}

/// Why flash attention cannot run on the given rows.
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
    /// Converting a row failed.
    #[error(transparent)]
    Quant(#[from] QuantError),
    /// Flash attention does not read this storage type.
    #[error("flash attention does not support a K/V cache of type {ty}")]
    Unsupported {
        /// The storage type.
        ty: GgmlType,
    },
    /// The rows are not aligned for the storage type's blocks.
    #[error("{ty} rows at offset {offset} every {stride} bytes are not aligned for their blocks")]
    Misaligned {
        /// The storage type.
        ty: GgmlType,
        /// Byte offset of the head in a row.
        offset: usize,
        /// Bytes from one cell's row to the next.
        stride: usize,
    },
    /// A head of no values.
    #[error("a key head of 0 values")]
    EmptyHead,
    /// Heads of one call stored in different types.
    #[error("heads of one call must share storage types: {first} and {other}")]
    MixedTypes {
        /// The first head's type.
        first: GgmlType,
        /// Another head's type.
        other: GgmlType,
    },
    /// Two sizes that must agree do not.
    #[error("{what}: expected {expected}, got {actual}")]
    Shape {
        /// What was measured.
        what: &'static str,
        /// The size the other arguments imply.
        expected: usize,
        /// The size given.
        actual: usize,
    },
    /// A listed cell is not within the cache.
    #[error("cell {cell} is not within the {n_cells} cells of the cache")]
    CellOutOfRange {
        /// The cell.
        cell: usize,
        /// Cells in the cache.
        n_cells: usize,
    },
    /// The range of cells is not within the cache.
    #[error("cells {start}..{end} are not within the {n_cells} cells of the cache")]
    CellRange {
        /// First cell asked for.
        start: usize,
        /// One past the last cell asked for.
        end: usize,
        /// Cells in the cache.
        n_cells: usize,
    },
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
    /// Bytes of one cell's head.
    head_bytes: usize,
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
            head_bytes,
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

    /// Storage type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Cell `c`'s bytes (`c < n_cells`, which `new` checked fits).
    #[inline]
    fn cell_bytes(&self, c: usize) -> &'a [u8] {
        let start = c * self.stride + self.offset;
        &self.bytes[start..start + self.head_bytes]
    }

    /// Asks for the lines of cell `c`'s row (nothing for a hole, `usize::MAX`). An address
    /// past the rows is never read: a prefetch cannot fault.
    fn prefetch_cell(&self, c: usize) {
        if c == usize::MAX {
            return;
        }
        let at = c.wrapping_mul(self.stride).wrapping_add(self.offset);
        crate::arch::prefetch_from(
            self.bytes.as_ptr().wrapping_add(at),
            self.head_bytes.div_ceil(64),
        );
    }

    /// Cell `c`'s blocks, or `None` when they are not aligned for `T`.
    fn row<T: Pod>(&self, c: usize) -> Option<&'a [T]> {
        as_blocks(self.cell_bytes(c))
    }

    /// The error unless every row starts at a multiple of `align` bytes.
    fn check_alignment(&self, align: usize) -> Result<(), FlashAttnError> {
        let start = self.bytes.as_ptr() as usize + self.offset;
        if self.n_cells == 0 || (start.is_multiple_of(align) && self.stride.is_multiple_of(align)) {
            return Ok(());
        }
        Err(FlashAttnError::Misaligned {
            ty: self.ty,
            offset: self.offset,
            stride: self.stride,
        })
    }
}

/// Which cells a query row may see: cell `c` is visible to a row at position `row_pos` of
/// the sequences `row_seq` when `seqs[c] & row_seq != 0`, `pos[c] <= row_pos` and, with a
/// sliding window `w`, `row_pos - pos[c] < w`. Empty cells have `seqs[c] == 0`; `pos` and
/// `seqs` have one entry per cell.
#[derive(Debug, Clone, Copy)]
pub struct CellMask<'a> {
    /// Position of each cell's token.
    pub pos: &'a [i32],
    /// Sequences each cell belongs to, one bit per sequence.
    pub seqs: &'a [u64],
    /// Sliding-window size, if the layer has one.
    pub window: Option<usize>,
}

impl CellMask<'_> {
    /// Bit `j` set when a row at `row_pos` of `row_seq` sees cell `ids[j]` (never a hole,
    /// `usize::MAX`).
    fn visible(&self, ids: &[usize], row_pos: i32, row_seq: u64) -> u64 {
        let mut bits = 0u64;
        for (j, &c) in ids.iter().enumerate() {
            let (Some(&p), Some(&s)) = (self.pos.get(c), self.seqs.get(c)) else {
                continue;
            };
            let near = self
                .window
                .is_none_or(|w| ((i64::from(row_pos) - i64::from(p)) as u64) < w as u64);
            bits |= u64::from(s & row_seq != 0 && p <= row_pos && near) << j;
        }
        bits
    }
}

/// The query rows of one call: `q` holds n rows of `dim` values, row after row, and row
/// `r` belongs to the token at `pos[r]` of the sequences `seq[r]` (one bit each).
#[derive(Debug, Clone, Copy)]
pub struct QueryRows<'a> {
    /// The rows' values.
    pub q: &'a [f32],
    /// Values per row (the key head size).
    pub dim: usize,
    /// Position of each row's token.
    pub pos: &'a [i32],
    /// Sequence bit of each row's token.
    pub seq: &'a [u64],
}

/// How a call turns `q·k` into a score: `scale · q·k`, soft-capped to
/// `(-softcap, softcap)` when set (Gemma 2's attention logit soft-capping), as
/// llama.cpp's flash attention does: `softcap · tanh(q·k · scale / softcap)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// The factor on `q·k`.
    pub scale: f32,
    /// The soft cap, when the model has one.
    pub softcap: Option<f32>,
}

impl From<f32> for Scores {
    fn from(scale: f32) -> Self {
        Self {
            scale,
            softcap: None,
        }
    }
}

impl Scores {
    /// The score of a dot product `d`.
    #[inline]
    fn of(self, d: f32) -> f32 {
        match self.softcap {
            None => self.scale * d,
            Some(cap) => cap * (d * (self.scale / cap)).tanh(),
        }
    }
}

/// The inputs of one call, checked.
struct Call<'a> {
    rows: QueryRows<'a>,
    keys: HeadRows<'a>,
    values: HeadRows<'a>,
    mask: CellMask<'a>,
    scores: Scores,
}

/// Accumulates into `state` the attention of every query row over the cells of `cells`
/// it may see, with scores `scale · q·k`: the caller resets `state` for
/// `rows.pos.len()` rows of `values.dim()` values, may call this for several ranges into
/// the same state or into separate states it then merges, and reads the outputs with
/// [`FlashState::write`].
///
/// `cells` should start at a multiple of [`FLASH_BLOCK`] (or be the whole cache), so that
/// split ranges cut the cells into the same blocks as one call does. The call allocates
/// nothing when `scratch` was reserved for these sizes.
// The runner's contract: each argument is a separate, independently chosen piece.
#[allow(clippy::too_many_arguments)]
pub fn flash_attn(
    isa: Isa,
    rows: &QueryRows<'_>,
    keys: &HeadRows<'_>,
    values: &HeadRows<'_>,
    mask: &CellMask<'_>,
    scale: impl Into<Scores>,
    cells: Range<usize>,
    scratch: &mut FlashScratch,
    state: &mut FlashState,
) -> Result<(), FlashAttnError> {
    let call = checked(rows, keys, values, mask, scale.into(), state)?;
    if cells.start > cells.end || cells.end > keys.n_cells {
        return Err(FlashAttnError::CellRange {
            start: cells.start,
            end: cells.end,
            n_cells: keys.n_cells,
        });
    }
    dispatch(
        isa,
        &[call],
        Span::Range(cells.start, cells.end),
        scratch,
        &mut [state],
    )
}

/// [`flash_attn`] over the cells of `cells` in that order, [`NO_CELL`] entries skipped:
/// block `b` is entries `64b..64b + 64` of the list. A sequence's cells listed by
/// position (a hole where it holds none) make blocks, and so sums, that do not depend on
/// where the cells lie in the cache or which other sequences share it.
#[allow(clippy::too_many_arguments)]
pub fn flash_attn_list(
    isa: Isa,
    rows: &QueryRows<'_>,
    keys: &HeadRows<'_>,
    values: &HeadRows<'_>,
    mask: &CellMask<'_>,
    scale: impl Into<Scores>,
    cells: &[u32],
    scratch: &mut FlashScratch,
    state: &mut FlashState,
) -> Result<(), FlashAttnError> {
    let call = checked(rows, keys, values, mask, scale.into(), state)?;
    check_list(cells, keys.n_cells)?;
    dispatch(isa, &[call], Span::List(cells), scratch, &mut [state])
}

/// One K/V head of [`flash_attn_list_heads`]: its query rows, keys and values.
#[derive(Debug, Clone, Copy)]
pub struct HeadCall<'a> {
    /// The query rows of the query heads that share this K/V head.
    pub rows: QueryRows<'a>,
    /// This head's keys.
    pub keys: HeadRows<'a>,
    /// This head's values.
    pub values: HeadRows<'a>,
}

/// [`flash_attn_list`] for several K/V heads of the same tokens at once, head `h` into
/// `states[h]`: each head's sums are those of its own call, but the heads go through the
/// cells together, block by block, so that each block's rows (side by side in the
/// cache for every head) are read while they are in cache. The heads' rows must have
/// the same positions and sequences, and their keys and values one storage type each.
#[allow(clippy::too_many_arguments)]
pub fn flash_attn_list_heads(
    isa: Isa,
    heads: &[HeadCall<'_>],
    mask: &CellMask<'_>,
    scale: impl Into<Scores>,
    cells: &[u32],
    scratch: &mut FlashScratch,
    states: &mut [&mut FlashState],
) -> Result<(), FlashAttnError> {
    same("states (one per head)", heads.len(), states.len())?;
    let Some(first) = heads.first() else {
        return Ok(());
    };
    let scores = scale.into();
    let mut calls = Vec::with_capacity(heads.len());
    for (h, state) in heads.iter().zip(states.iter()) {
        let same_tokens = h.rows.pos == first.rows.pos && h.rows.seq == first.rows.seq;
        if !same_tokens {
            return Err(FlashAttnError::Shape {
                what: "heads' query positions and sequences (the first head's)",
                expected: first.rows.pos.len(),
                actual: h.rows.pos.len(),
            });
        }
        for (ty, want) in [(h.keys.ty, first.keys.ty), (h.values.ty, first.values.ty)] {
            if ty != want {
                return Err(FlashAttnError::MixedTypes {
                    first: want,
                    other: ty,
                });
            }
        }
        calls.push(checked(&h.rows, &h.keys, &h.values, mask, scores, state)?);
    }
    check_list(cells, first.keys.n_cells)?;
    dispatch(isa, &calls, Span::List(cells), scratch, states)
}

/// The error when a listed cell lies outside the cache.
fn check_list(cells: &[u32], n_cells: usize) -> Result<(), FlashAttnError> {
    match cells
        .iter()
        .find(|&&c| c != NO_CELL && c as usize >= n_cells)
    {
        Some(&cell) => Err(FlashAttnError::CellOutOfRange {
            cell: cell as usize,
            n_cells,
        }),
        None => Ok(()),
    }
}

/// The arguments as one call, once [`check_shapes`] agrees with them.
fn checked<'a>(
    rows: &QueryRows<'a>,
    keys: &HeadRows<'a>,
    values: &HeadRows<'a>,
    mask: &CellMask<'a>,
    scores: Scores,
    state: &FlashState,
) -> Result<Call<'a>, FlashAttnError> {
    check_shapes(rows, keys, values, mask, state)?;
    Ok(Call {
        rows: *rows,
        keys: *keys,
        values: *values,
        mask: *mask,
        scores,
    })
}

/// Runs checked calls (heads of one storage type) with the kernel for their key type.
fn dispatch(
    isa: Isa,
    calls: &[Call<'_>],
    span: Span<'_>,
    scratch: &mut FlashScratch,
    states: &mut [&mut FlashState],
) -> Result<(), FlashAttnError> {
    let Some(call) = calls.first() else {
        return Ok(());
    };
    if !is_cache_type(call.values.ty) {
        return Err(FlashAttnError::Unsupported { ty: call.values.ty });
    }
    let run = match call.keys.ty {
        GgmlType::F32 => run::run::<F32Keys>,
        GgmlType::F16 => run::run::<F16Keys>,
        GgmlType::Q8_0 => run::run::<BlockKeys<kind::Q8_0>>,
        GgmlType::Q4_0 => run::run::<BlockKeys<kind::Q4_0>>,
        GgmlType::Q4_1 => run::run::<BlockKeys<kind::Q4_1>>,
        GgmlType::Q5_0 => run::run::<BlockKeys<kind::Q5_0>>,
        GgmlType::Q5_1 => run::run::<BlockKeys<kind::Q5_1>>,
        GgmlType::IQ4_NL => run::run::<BlockKeys<kind::IQ4_NL>>,
        ty => return Err(FlashAttnError::Unsupported { ty }),
    };
    run(isa, calls, span, scratch, states)
}

/// The error when two sizes differ.
fn same(what: &'static str, expected: usize, actual: usize) -> Result<(), FlashAttnError> {
    if expected == actual {
        return Ok(());
    }
    Err(FlashAttnError::Shape {
        what,
        expected,
        actual,
    })
}

/// Checks that the arguments of [`flash_attn`] agree with each other.
fn check_shapes(
    rows: &QueryRows<'_>,
    keys: &HeadRows<'_>,
    values: &HeadRows<'_>,
    mask: &CellMask<'_>,
    state: &FlashState,
) -> Result<(), FlashAttnError> {
    let n = rows.pos.len();
    if keys.dim == 0 {
        return Err(FlashAttnError::EmptyHead);
    }
    same("query row size (the key head size)", keys.dim, rows.dim)?;
    same("query sequence bits (one per row)", n, rows.seq.len())?;
    same(
        "query values (rows times row size)",
        n * rows.dim,
        rows.q.len(),
    )?;
    same("value cells (the key cells)", keys.n_cells, values.n_cells)?;
    same(
        "cell positions (one per cell)",
        keys.n_cells,
        mask.pos.len(),
    )?;
    same(
        "cell sequences (one per cell)",
        keys.n_cells,
        mask.seqs.len(),
    )?;
    same("state rows (the query rows)", n, state.n_rows)?;
    same(
        "state values per row (the value head size)",
        values.dim,
        state.dv,
    )?;
    Ok(())
}

#[cfg(test)]
#[path = "flash_attn_tests.rs"]
mod tests;
