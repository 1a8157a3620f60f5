//! Sizes of the flash-attention path's scratch. Tokens of one sequence go in tiles of up
//! to [`TILE`]; positions are cut into chunks of [`chunk_positions`]; a tile of up to
//! [`SMALL_TILE`] tokens (a decode step) spreads its chunks over the threads, each chunk
//! into a state of its own.

use ggml_type::scratch::{FLASH_BLOCK, flash_scratch_bytes, flash_state_bytes};

use super::AttentionShape;

/// Tokens per tile: their query rows share each block of keys and values read.
pub const TILE: usize = 32;

/// Tiles of at most this many tokens spread their chunks over the threads.
pub const SMALL_TILE: usize = 4;

/// Positions per chunk for a context of `num_ctx`: at least four blocks, at most about
/// 32 chunks per sequence.
pub fn chunk_positions(num_ctx: usize) -> usize {
    (num_ctx.div_ceil(32))
        .next_multiple_of(FLASH_BLOCK)
        .max(4 * FLASH_BLOCK)
}

/// The sizes the flash path's scratch is allocated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashSizes {
    /// Query rows of a tile (tokens × query heads per K/V head).
    pub rows: usize,
    /// Query rows of a small tile.
    pub small_rows: usize,
    /// States of the large tiles: one per (tile, K/V head).
    pub large: usize,
    /// States of the small tiles: one per (tile, K/V head, chunk).
    pub small: usize,
    /// Entries of the sequences' position-to-cell maps.
    pub map: usize,
    /// K/V heads a small tile's unit may take together: as many as a worker's query
    /// buffer (`rows` rows) holds small tiles' rows for (`small_rows` each).
    pub heads_per_unit: usize,
}

impl FlashSizes {
    /// The sizes for batches of up to `num_batch` tokens of up to `n_seq` sequences of
    /// `num_ctx` positions.
    pub fn new(shape: &AttentionShape, num_ctx: usize, num_batch: usize, n_seq: usize) -> Self {
        let n_seq = n_seq.min(num_batch).max(1);
        let max_tiles = num_batch.div_ceil(TILE) + n_seq - 1;
        let chunks = num_ctx.div_ceil(chunk_positions(num_ctx)) + 1;
        Self {
            rows: num_batch.min(TILE) * shape.group(),
            small_rows: num_batch.min(SMALL_TILE) * shape.group(),
            large: max_tiles * shape.n_head_kv,
            small: n_seq * shape.n_head_kv * chunks,
            map: n_seq * (num_ctx + FLASH_BLOCK),
            heads_per_unit: (num_batch.min(TILE) / num_batch.clamp(1, SMALL_TILE)).max(1),
        }
    }
}

/// Bytes the flash path's scratch takes for batches of up to `num_batch` tokens of up to
/// `num_parallel` sequences of `num_ctx` positions on `threads` threads: per thread a
/// tile's query rows (values, positions, sequence sets), the kernel's scratch and a
/// chunk's state; the tiles' states; the position maps.
pub fn bytes_for(
    shape: &AttentionShape,
    num_ctx: usize,
    num_batch: usize,
    num_parallel: usize,
    threads: usize,
) -> usize {
    let s = FlashSizes::new(shape, num_ctx, num_batch, num_parallel);
    let (hk, hv) = (shape.head_dim_k, shape.head_dim_v);
    let worker = s.rows * (hk * 4 + 4 + 8)
        + flash_scratch_bytes(s.rows, hk, hv)
        + flash_state_bytes(s.rows, hv);
    threads.max(1) * worker
        + s.large * flash_state_bytes(s.rows, hv)
        + s.small * flash_state_bytes(s.small_rows, hv)
        + s.map * 4
}
