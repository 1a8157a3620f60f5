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
#[path = "flash_attn_state.rs"]
mod state;
#[path = "flash_attn_values.rs"]
mod values;

use std::ops::Range;

use thiserror::Error;

use self::keys::{BlockKeys, F16Keys, F32Keys, KeyKind, score_block};
use self::values::{
    Values, Weights, add_weighted_f16_rows, add_weighted_rows, dequantize_isa, is_cache_type,
};
use crate::GgmlType;
use crate::arch::cast::{Pod, as_blocks};
use crate::cpu::Isa;
use crate::dot::kind;
use crate::ops::{exp_sum_isa, expf_ggml};
use crate::quant::QuantError;
use half::f16;

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
        &call,
        Span::Range(cells.start, cells.end),
        scratch,
        state,
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
    if let Some(&cell) = cells
        .iter()
        .find(|&&c| c != NO_CELL && c as usize >= keys.n_cells)
    {
        return Err(FlashAttnError::CellOutOfRange {
            cell: cell as usize,
            n_cells: keys.n_cells,
        });
    }
    dispatch(isa, &call, Span::List(cells), scratch, state)
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

/// Runs a checked call with the kernel for its key type.
fn dispatch(
    isa: Isa,
    call: &Call<'_>,
    span: Span<'_>,
    scratch: &mut FlashScratch,
    state: &mut FlashState,
) -> Result<(), FlashAttnError> {
    if !is_cache_type(call.values.ty) {
        return Err(FlashAttnError::Unsupported { ty: call.values.ty });
    }
    let run = match call.keys.ty {
        GgmlType::F32 => run::<F32Keys>,
        GgmlType::F16 => run::<F16Keys>,
        GgmlType::Q8_0 => run::<BlockKeys<kind::Q8_0>>,
        GgmlType::Q4_0 => run::<BlockKeys<kind::Q4_0>>,
        GgmlType::Q4_1 => run::<BlockKeys<kind::Q4_1>>,
        GgmlType::Q5_0 => run::<BlockKeys<kind::Q5_0>>,
        GgmlType::Q5_1 => run::<BlockKeys<kind::Q5_1>>,
        GgmlType::IQ4_NL => run::<BlockKeys<kind::IQ4_NL>>,
        ty => return Err(FlashAttnError::Unsupported { ty }),
    };
    run(isa, call, span, scratch, state)
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

/// [`flash_attn`] for keys of kind `K`, on checked arguments.
fn run<K: KeyKind>(
    isa: Isa,
    call: &Call<'_>,
    cells: Span<'_>,
    scratch: &mut FlashScratch,
    state: &mut FlashState,
) -> Result<(), FlashAttnError> {
    let (n, dk, dv) = (call.rows.pos.len(), call.keys.dim, call.values.dim);
    if n == 0 || cells.len() == 0 {
        return Ok(());
    }
    call.keys.check_alignment(align_of::<K::Weight>())?;
    // f32 values are read in place; f16 values and the blocks (f16 scales) need 2.
    let value_align = if call.values.ty == GgmlType::F32 {
        4
    } else {
        2
    };
    call.values.check_alignment(value_align)?;
    scratch.reserve(n, dk, dv);
    let FlashScratch {
        query,
        masks,
        scores,
        values: value_buf,
    } = scratch;
    let misaligned = |h: &HeadRows<'_>| FlashAttnError::Misaligned {
        ty: h.ty,
        offset: h.offset,
        stride: h.stride,
    };
    let query_len = query.len();
    let q = K::query(isa, call.rows.q, dk, query).ok_or(FlashAttnError::Shape {
        what: "query scratch",
        expected: n * K::query_len(dk),
        actual: query_len,
    })?;
    let (masks, scores) = (&mut masks[..n], &mut scores[..n * FLASH_BLOCK]);
    let mut ids = [usize::MAX; FLASH_BLOCK];
    for first in (0..cells.len()).step_by(FLASH_BLOCK) {
        let n_ids = cells.block(first, &mut ids);
        let union = row_masks(call, &ids[..n_ids], masks);
        if union == 0 {
            continue;
        }
        // The visible entries: their index in the block and their cell.
        let (mut at, mut list) = ([0usize; FLASH_BLOCK], [0usize; FLASH_BLOCK]);
        let mut n_vis = 0;
        let mut bits = union;
        while bits != 0 {
            let j = bits.trailing_zeros() as usize;
            at[n_vis] = j;
            list[n_vis] = ids[j];
            n_vis += 1;
            bits &= bits - 1;
        }
        let (at, list) = (&at[..n_vis], &list[..n_vis]);
        // The block's keys and values, all asked for at once: scattered cache rows the
        // hardware prefetchers do not follow.
        for &c in list {
            crate::arch::prefetch(call.keys.cell_bytes(c));
            crate::arch::prefetch(call.values.cell_bytes(c));
        }
        score_block::<K>(isa, call, q, masks, at, list, scores)
            .ok_or_else(|| misaligned(&call.keys))?;
        softmax_block(isa, masks, n_vis, scores, state);
        let weights = Weights {
            p: scores,
            stride: FLASH_BLOCK,
            n: n_vis,
        };
        if call.values.ty == GgmlType::F16 && isa != Isa::Scalar {
            // F16 rows widen as the sum loads them: no pass through a buffer.
            let mut rows: [&[f16]; FLASH_BLOCK] = [&[]; FLASH_BLOCK];
            for (row, &c) in rows.iter_mut().zip(list) {
                *row = call.values.row(c).ok_or_else(|| misaligned(&call.values))?;
            }
            add_weighted_f16_rows(isa, weights, &rows[..n_vis], &mut state.acc, dv);
        } else {
            let values = value_rows(isa, &call.values, list, value_buf)
                .ok_or_else(|| misaligned(&call.values))?;
            add_weighted_rows(isa, weights, values, &mut state.acc, dv);
        }
    }
    Ok(())
}

/// Fills each row's visibility of the block's cells `ids` into `masks` and returns their
/// union. Rows of the same token (the query heads of a group) share one computation.
fn row_masks(call: &Call<'_>, ids: &[usize], masks: &mut [u64]) -> u64 {
    let QueryRows { pos, seq, .. } = call.rows;
    let mut union = 0;
    for r in 0..masks.len() {
        masks[r] = if r > 0 && pos[r - 1] == pos[r] && seq[r - 1] == seq[r] {
            masks[r - 1]
        } else {
            call.mask.visible(ids, pos[r], seq[r])
        };
        union |= masks[r];
    }
    union
}

/// The online-softmax step of a block of `n_vis` scores per row: raises each row's
/// running maximum (rescaling its sum and output when it grows), turns its scores into
/// `exp(score - max)` in place and adds them to its sum. A row that sees no cell of the
/// block gets weights of 0 and keeps its state.
fn softmax_block(
    isa: Isa,
    masks: &[u64],
    n_vis: usize,
    scores: &mut [f32],
    state: &mut FlashState,
) {
    let dv = state.dv;
    for (r, &mask) in masks.iter().enumerate() {
        let s = &mut scores[r * FLASH_BLOCK..r * FLASH_BLOCK + n_vis];
        let old = state.max[r];
        let new = s.iter().fold(old, |m, &x| m.max(x));
        if mask == 0 || new == f32::NEG_INFINITY {
            s.fill(0.0);
            continue;
        }
        let block_sum = exp_sum_isa(isa, s, new) as f32;
        if new > old && old != f32::NEG_INFINITY {
            let shrink = expf_ggml(old - new);
            state.sum[r] *= shrink;
            for a in &mut state.acc[r * dv..(r + 1) * dv] {
                *a *= shrink;
            }
        }
        state.max[r] = new;
        state.sum[r] += block_sum;
    }
}

/// The f32 value rows of the cells `list`: read in place for f32 values of consecutive
/// cells, otherwise widened into `buf`. `None` when a row is not aligned for its blocks.
fn value_rows<'b>(
    isa: Isa,
    values: &HeadRows<'b>,
    list: &[usize],
    buf: &'b mut [f32],
) -> Option<Values<'b>> {
    let dv = values.dim;
    let (&lo, &hi) = (list.first()?, list.last()?);
    if dv == 0 {
        return Some(Values { v: &[], stride: 0 });
    }
    let consecutive = list.windows(2).all(|w| w[1] == w[0] + 1);
    if values.ty == GgmlType::F32 && consecutive {
        let start = lo * values.stride + values.offset;
        let end = hi * values.stride + values.offset + dv * size_of::<f32>();
        return Some(Values {
            v: as_blocks::<f32>(&values.bytes[start..end])?,
            stride: values.stride / size_of::<f32>(),
        });
    }
    for (&c, out) in list.iter().zip(buf.chunks_exact_mut(dv)) {
        dequantize_isa(isa, values.ty, values.cell_bytes(c), out)?;
    }
    Some(Values {
        v: &buf[..list.len() * dv],
        stride: dv,
    })
}

#[cfg(test)]
#[path = "flash_attn_tests.rs"]
mod tests;
