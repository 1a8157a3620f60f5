//! The prompt path of [`super::matmul_fast`] over the 32-element block types: tokens in
//! tiles of eight, one token per register lane (see [`crate::dot::lanes`]).
//!
//! The activations are interleaved into tiles once per product, on the pool. Each task
//! then takes a run of weight rows, decodes [`LANE_ROW_CHUNK`] of them at a time into its
//! thread's [`DecodedRows`], and passes every tile over them: a tile (20 KiB for rows of
//! 2048 values) stays in L1 while the chunk's rows pass, and the decoded rows in L2 while
//! the tiles pass.

use std::cell::RefCell;

use ggml_type::scratch::{LANE_ROW_CHUNK, lane_tile_bytes};

use super::{Product, StackRows};
use crate::arch::cast::{as_blocks, as_blocks_mut, as_bytes, as_bytes_mut};
use crate::arch::scoped::Split;
use crate::dot::FastDot;
use crate::dot::lanes::{DecodedRows, LANES, LaneTile, TILE_BLOCK_BYTES, interleave};

thread_local! {
    /// A task's weight rows decoded for the token-lane kernels; it grows to the widest
    /// rows a thread has taken and stays ([`ggml_type::scratch::lane_rows_bytes`]).
    static DECODED: RefCell<DecodedRows> = RefCell::new(DecodedRows::default());
}

/// u32 words of one tile over `per_row` blocks.
fn tile_words(per_row: usize) -> usize {
    lane_tile_bytes(per_row) / size_of::<u32>()
}

/// One tile's three parts in its words.
fn tile_view(words: &[u32], per_row: usize) -> LaneTile<'_> {
    let (q, terms) = words.split_at(per_row * TILE_BLOCK_BYTES / size_of::<u32>());
    let terms = as_blocks::<f32>(as_bytes(terms)).expect("u32 storage is aligned for f32");
    let (d, aux) = terms.split_at(per_row * LANES);
    LaneTile {
        q: as_bytes(q),
        d,
        aux,
    }
}

impl Product<'_> {
    /// [`super::matmul_fast`] for five tokens or more: `acts` holds every token's
    /// activation blocks, `da` and `aux` their two terms, and `words` (at least
    /// [`lane_tile_bytes`] per tile) takes the tiles.
    pub(super) fn run_lanes<K: FastDot>(
        &self,
        weights: &StackRows<'_, K::Weight>,
        acts: &[K::Act],
        (da, aux): (&[f32], &[f32]),
        words: &mut [u32],
        out: &mut [f32],
    ) {
        let (n_tokens, rows, isa) = (self.n_tokens, self.w.rows, self.isa);
        let per_row = weights.per_row;
        if rows == 0 || per_row == 0 || n_tokens == 0 {
            out.fill(0.0);
            return;
        }
        let tw = tile_words(per_row);
        let words = &mut words[..n_tokens.div_ceil(LANES) * tw];
        self.fill_tiles(words, tw, |t0, nt, tile| {
            let range = t0 * per_row..(t0 + nt) * per_row;
            let (q, terms) = tile.split_at_mut(per_row * TILE_BLOCK_BYTES / size_of::<u32>());
            let terms =
                as_blocks_mut::<f32>(as_bytes_mut(terms)).expect("u32 storage is aligned for f32");
            let (d, tile_aux) = terms.split_at_mut(per_row * LANES);
            interleave(
                &acts[range.clone()],
                &da[range.clone()],
                &aux[range],
                per_row,
                as_bytes_mut(q),
                d,
                tile_aux,
            );
        });
        self.pass_tiles(
            out,
            words,
            tw,
            |decoded, first, chunk| {
                decoded.reserve(chunk, per_row);
                weights.runs(first, chunk, |blocks, done, _| {
                    K::decode_rows(isa, blocks, done, decoded);
                });
            },
            |decoded, i, tile| K::dot_lanes::<1>(isa, decoded, i, &tile_view(tile, per_row))[0],
            |decoded, i, tile| K::dot_lanes::<2>(isa, decoded, i, &tile_view(tile, per_row)),
        );
    }

    /// Fills the product's tiles (`tw` words each, in `words`) on the pool:
    /// `fill(first_token, tokens, tile)`.
    pub(super) fn fill_tiles(
        &self,
        words: &mut [u32],
        tw: usize,
        fill: impl Fn(usize, usize, &mut [u32]) + Sync,
    ) {
        let (n_tokens, tiles) = (self.n_tokens, words.len() / tw.max(1));
        let split = Split {
            outer: 1,
            inner: words.len(),
            per_task: tw * tiles.div_ceil(self.pool.threads() * 2).max(1),
        };
        self.pool.run_split(words, split, |_, mut part| {
            let first_tile = part.start() / tw;
            for (i, tile) in part.row(0).chunks_exact_mut(tw).enumerate() {
                let t0 = (first_tile + i) * LANES;
                fill(t0, (n_tokens - t0).min(LANES), tile);
            }
        });
    }

    /// Fills `out` from the tiles in `words` (`tw` words each): each task decodes its
    /// rows [`LANE_ROW_CHUNK`] at a time (`decode(rows, first, chunk)`) and passes every
    /// tile over them, two rows at a time (`dot2(rows, i, tile)` for the chunk's rows `i`
    /// and `i + 1`) and an odd last row alone (`dot`).
    pub(super) fn pass_tiles(
        &self,
        out: &mut [f32],
        words: &[u32],
        tw: usize,
        decode: impl Fn(&mut DecodedRows, usize, usize) + Sync,
        dot: impl Fn(&DecodedRows, usize, &[u32]) -> [f32; LANES] + Sync,
        dot2: impl Fn(&DecodedRows, usize, &[u32]) -> [[f32; LANES]; 2] + Sync,
    ) {
        let (n_tokens, rows) = (self.n_tokens, self.w.rows);
        let tiles = words.len() / tw.max(1);
        let split = Split {
            outer: n_tokens,
            inner: rows,
            per_task: self.rows_per_task(),
        };
        self.pool.run_split(out, split, |_, mut part| {
            let first = part.start();
            let n_rows = part.row(0).len();
            DECODED.with_borrow_mut(|decoded| {
                for c0 in (0..n_rows).step_by(LANE_ROW_CHUNK) {
                    let chunk = (n_rows - c0).min(LANE_ROW_CHUNK);
                    decode(decoded, first + c0, chunk);
                    for tile in 0..tiles {
                        let words = &words[tile * tw..(tile + 1) * tw];
                        let nt = (n_tokens - tile * LANES).min(LANES);
                        let mut store = |i: usize, sums: [f32; LANES]| {
                            for (k, &s) in sums[..nt].iter().enumerate() {
                                part.row(tile * LANES + k)[c0 + i] = s;
                            }
                        };
                        for i in (0..chunk - chunk % 2).step_by(2) {
                            let [a, b] = dot2(decoded, i, words);
                            store(i, a);
                            store(i + 1, b);
                        }
                        if chunk % 2 == 1 {
                            store(chunk - 1, dot(decoded, chunk - 1, words));
                        }
                    }
                }
            });
        });
    }
}
