//! [`super::matmul_fast`] over Q4_K, Q5_K and Q6_K (see [`crate::dot::kfast`]): the
//! one-row kernel for up to [`super::FAST_TILE`] tokens, the token-lane kernel in tiles
//! of eight for more, as [`super::lanes`] does for the 32-element block types.

use ggml_type::scratch::lane_tile_bytes_k;

use super::{FAST_TILE, LANES_FROM, MatmulError, MatmulScratch, Product, TOKEN_TILE};
use crate::arch::cast::{as_bytes, as_bytes_mut};
use crate::dot::FastKDot;
use crate::dot::kfast::{KTile, decode_k, interleave_k};
use crate::dot::lanes::LANES;

impl Product<'_> {
    /// The fast product over k-quant weights.
    pub(super) fn run_fast_k<K: FastKDot>(
        &self,
        out: &mut [f32],
        scratch: &mut MatmulScratch,
    ) -> Result<(), MatmulError> {
        let weights = self.stack_rows::<K::Weight>()?;
        let per_row = self.w.cols / K::ACT_TYPE.block_size();
        let n_tokens = self.n_tokens;
        let act_words = (n_tokens * per_row * size_of::<K::Act>()).div_ceil(size_of::<u32>());
        let (act_words, tile_words) = scratch.words.split_at_mut(act_words);
        let acts = self.quantize::<K>(act_words);
        let isa = self.isa;
        let act_row = |t: usize| &acts[t * per_row..(t + 1) * per_row];
        if n_tokens < LANES_FROM {
            self.tiles(out, FAST_TILE, |r, t, tile| {
                let mut sums = [0.0; TOKEN_TILE];
                for (k, s) in sums[..tile].iter_mut().enumerate() {
                    *s = K::dot_fast_k(isa, weights.row(r), act_row(t + k));
                }
                sums
            });
            return Ok(());
        }
        let (rows, tiles) = (self.w.rows, n_tokens.div_ceil(LANES));
        if rows == 0 || per_row == 0 {
            out.fill(0.0);
            return Ok(());
        }
        let tw = lane_tile_bytes_k(per_row) / size_of::<u32>();
        let words = &mut tile_words[..tiles * tw];
        self.fill_tiles(words, tw, |t0, nt, tile| {
            interleave_k(
                &acts[t0 * per_row..(t0 + nt) * per_row],
                per_row,
                as_bytes_mut(tile),
            );
        });
        self.pass_tiles(
            out,
            words,
            tw,
            |decoded, first, chunk| {
                decoded.reserve_k(chunk, per_row);
                weights.runs(first, chunk, |blocks, done, _| {
                    decode_k(blocks, done, decoded)
                });
            },
            |decoded, i, tile| K::dot_lanes_k::<1>(isa, decoded, i, &k_tile(tile))[0],
            |decoded, i, tile| K::dot_lanes_k::<2>(isa, decoded, i, &k_tile(tile)),
        );
        Ok(())
    }
}

/// A tile's words as the k-quant kernels read them.
fn k_tile(words: &[u32]) -> KTile<'_> {
    KTile {
        bytes: as_bytes(words),
    }
}
