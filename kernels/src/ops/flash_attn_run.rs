//! The block loop of flash attention: for each block of cells, which rows see which
//! cells, then each K/V head's scores, online-softmax step and weighted values.
//!
//! Several K/V heads of one tile (the same query positions and sequences) go through
//! the cells together, block by block: a cell's keys and values of every head lie side
//! by side in the cache, so the heads read each block's rows while they are in cache
//! instead of each pass over the cells fetching them anew, and the block's visibility
//! is worked out once for all of them. Each head's sums are those of a call for that
//! head alone.

use half::f16;

use super::keys::{KeyKind, score_block};
use super::values::{Values, Weights, add_weighted_f16_rows, add_weighted_rows, dequantize_isa};
use super::{
    Call, FLASH_BLOCK, FlashAttnError, FlashScratch, FlashState, HeadRows, QueryRows, Span,
};
use crate::GgmlType;
use crate::arch::cast::as_blocks;
use crate::cpu::Isa;
use crate::ops::{exp_sum_isa, expf_ggml};

/// Flash attention of every head of `calls` (one state each, in order) over `cells`, for
/// keys of kind `K`, on checked arguments whose rows share positions and sequences.
pub(super) fn run<K: KeyKind>(
    isa: Isa,
    calls: &[Call<'_>],
    cells: Span<'_>,
    scratch: &mut FlashScratch,
    states: &mut [&mut FlashState],
) -> Result<(), FlashAttnError> {
    let Some(first_call) = calls.first() else {
        return Ok(());
    };
    let (n, dk, dv) = (
        first_call.rows.pos.len(),
        first_call.keys.dim,
        first_call.values.dim,
    );
    if n == 0 || cells.len() == 0 {
        return Ok(());
    }
    for call in calls {
        call.keys.check_alignment(align_of::<K::Weight>())?;
        // f32 values are read in place; f16 values and the blocks (f16 scales) need 2.
        let value_align = if call.values.ty == GgmlType::F32 {
            4
        } else {
            2
        };
        call.values.check_alignment(value_align)?;
    }
    scratch.reserve(n, dk, dv);
    let FlashScratch {
        query,
        masks,
        scores,
        values: value_buf,
    } = scratch;
    let (masks, scores) = (&mut masks[..n], &mut scores[..n * FLASH_BLOCK]);
    let mut block = BlockCells::new();
    let query_error = |actual: usize| FlashAttnError::Shape {
        what: "query scratch",
        expected: n * K::query_len(dk),
        actual,
    };
    // Each block's rows are asked for a block ahead; the first block's before the loop.
    let mut next = BlockCells::new();
    next.prefetch(calls, cells, 0);
    if let ([call], [state]) = (calls, &mut *states) {
        // One head: its query converted once for every block.
        let query_len = query.len();
        let q = K::query(isa, call.rows.q, dk, query).ok_or(query_error(query_len))?;
        for first in (0..cells.len()).step_by(FLASH_BLOCK) {
            next.prefetch(calls, cells, first + FLASH_BLOCK);
            let Some((at, list)) = block.visible(first_call, cells, first, masks) else {
                continue;
            };
            let head = Head { call, q, state };
            head.block::<K>(isa, (masks, at, list), scores, value_buf)?;
        }
        return Ok(());
    }
    for first in (0..cells.len()).step_by(FLASH_BLOCK) {
        next.prefetch(calls, cells, first + FLASH_BLOCK);
        let Some((at, list)) = block.visible(first_call, cells, first, masks) else {
            continue;
        };
        for (call, state) in calls.iter().zip(states.iter_mut()) {
            // The converted query is one head's at a time: converted again per block
            // (a few rows for the decode steps that take this path).
            let query_len = query.len();
            let q = K::query(isa, call.rows.q, dk, query).ok_or(query_error(query_len))?;
            let head = Head { call, q, state };
            head.block::<K>(isa, (masks, at, list), scores, value_buf)?;
        }
    }
    Ok(())
}

/// One block's cells and which of them the rows see, kept between blocks.
struct BlockCells {
    ids: [usize; FLASH_BLOCK],
    at: [usize; FLASH_BLOCK],
    list: [usize; FLASH_BLOCK],
}

impl BlockCells {
    fn new() -> Self {
        Self {
            ids: [usize::MAX; FLASH_BLOCK],
            at: [0; FLASH_BLOCK],
            list: [0; FLASH_BLOCK],
        }
    }

    /// Asks for every head's key and value rows of the block of entries from `first` (none
    /// past the end), so that they arrive while the block before it computes: at depth,
    /// the rows come from the last-level cache, each cell's some way from the last
    /// (`docs/PERFORMANCE.md`, twelfth part: four streams at depth 1024 +6%).
    fn prefetch(&mut self, calls: &[Call<'_>], cells: Span<'_>, first: usize) {
        if first >= cells.len() {
            return;
        }
        let n = cells.block(first, &mut self.ids);
        for call in calls {
            for &c in &self.ids[..n] {
                call.keys.prefetch_cell(c);
                call.values.prefetch_cell(c);
            }
        }
    }

    /// The block of entries from `first`: each row's visibility into `masks`, and the
    /// visible entries (their index in the block and their cell), or `None` when no row
    /// sees any. A block some row sees whole (a decode step's, but for its last) is its
    /// own list.
    fn visible<'b>(
        &'b mut self,
        call: &Call<'_>,
        cells: Span<'_>,
        first: usize,
        masks: &mut [u64],
    ) -> Option<(&'b [usize], &'b [usize])> {
        let n_ids = cells.block(first, &mut self.ids);
        let union = row_masks(call, &self.ids[..n_ids], masks);
        if union == 0 {
            return None;
        }
        if union == low_bits(n_ids) {
            return Some((&IN_ORDER[..n_ids], &self.ids[..n_ids]));
        }
        let mut n_vis = 0;
        let mut bits = union;
        while bits != 0 {
            let j = bits.trailing_zeros() as usize;
            self.at[n_vis] = j;
            self.list[n_vis] = self.ids[j];
            n_vis += 1;
            bits &= bits - 1;
        }
        Some((&self.at[..n_vis], &self.list[..n_vis]))
    }
}

/// One K/V head of a call: its arguments, its query as the key type takes it, its state.
struct Head<'h, 'c, A> {
    call: &'h Call<'c>,
    q: &'h [A],
    state: &'h mut FlashState,
}

impl<A> Head<'_, '_, A> {
    /// Scores the visible cells of a block (`masks` per row, entries `at` of the block,
    /// cells `list`), steps the online softmax and adds the weighted values.
    fn block<K: KeyKind<Act = A>>(
        self,
        isa: Isa,
        (masks, at, list): (&[u64], &[usize], &[usize]),
        scores: &mut [f32],
        value_buf: &mut [f32],
    ) -> Result<(), FlashAttnError> {
        let Self { call, q, state } = self;
        let misaligned = |h: &HeadRows<'_>| FlashAttnError::Misaligned {
            ty: h.ty,
            offset: h.offset,
            stride: h.stride,
        };
        let (n_vis, dv) = (list.len(), call.values.dim);
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
        Ok(())
    }
}

/// The entries of a block in order: the index list of a block seen whole.
const IN_ORDER: [usize; FLASH_BLOCK] = {
    let mut at = [0; FLASH_BLOCK];
    let mut j = 0;
    while j < FLASH_BLOCK {
        at[j] = j;
        j += 1;
    }
    at
};

/// The mask of a block's first `n` entries.
pub(super) fn low_bits(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
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
        let new = row_max(old, s);
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

/// The largest of `old` and the scores `s`, NaNs ignored: what folding `f32::max` over
/// them gives (the maximum of a set does not depend on the order it is taken in), in
/// sixteen lanes the compiler vectorizes instead of one chain of dependent comparisons.
fn row_max(old: f32, s: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut groups = s.chunks_exact(16);
    for g in &mut groups {
        for (l, &x) in lanes.iter_mut().zip(g) {
            // `x > l` is false for a NaN `x`: the lane keeps its value, as `max` does.
            *l = if x > *l { x } else { *l };
        }
    }
    for width in [8, 4, 2, 1] {
        for l in 0..width {
            let x = lanes[l + width];
            lanes[l] = if x > lanes[l] { x } else { lanes[l] };
        }
    }
    let rest = groups.remainder().iter().fold(old, |m, &x| m.max(x));
    rest.max(lanes[0])
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
#[path = "flash_attn_run_tests.rs"]
mod tests;
