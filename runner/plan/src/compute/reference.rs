//! Sizes of the reference attention path's scratch: one sequence's keys and values
//! gathered as f32 rows (with a flag per row), and a row of scores per run.

use super::AttentionShape;

/// llama.cpp's score rows start at position 0, positions outside the window masked to
/// -inf; starting at a multiple of this below the window groups the sums as its do.
pub const ALIGN: usize = 64;

/// Runs to split `units` (token, head) pairs into: a few per thread, so uneven rows
/// (later tokens see more positions) balance out.
pub fn runs(threads: usize, units: usize) -> usize {
    (threads * 4).min(units).max(1)
}

/// Bytes the reference path's scratch takes for `num_ctx` positions on `threads`
/// threads.
pub fn bytes_for(shape: &AttentionShape, num_ctx: usize, threads: usize) -> usize {
    let rows = num_ctx + ALIGN;
    rows * (1 + 4 * (shape.k_dim() + shape.v_dim())) + runs(threads, usize::MAX) * num_ctx * 4
}
