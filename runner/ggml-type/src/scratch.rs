//! Bytes of the kernels' scratch buffers, as plain arithmetic over types and shapes.
//!
//! The kernels reserve exactly these sizes (`kernels::matmul::MatmulScratch`,
//! `kernels::ops::FlashScratch`, `kernels::ops::FlashState` call these functions), and
//! the memory estimate adds them up without linking the kernels: one formula for both.

use crate::GgmlType;

/// Cells flash attention visits per block: the scores of one block are the only ones it
/// holds at a time.
pub const FLASH_BLOCK: usize = 64;

/// The key types' activation types flash attention converts query rows to (Q8_0 for
/// q8_0, q4_0, q5_0 and iq4_nl keys; Q8_1 for q4_1 and q5_1). f32 and f16 keys read the
/// query rows as they are.
const FLASH_QUERY_TYPES: [GgmlType; 2] = [GgmlType::Q8_0, GgmlType::Q8_1];

/// f32 words of one query row of `dk` values converted for flash attention: the most any
/// key type needs, so one scratch serves every cache type.
pub fn flash_query_words(dk: usize) -> usize {
    FLASH_QUERY_TYPES
        .iter()
        .map(|t| (dk / t.block_size() * t.type_size()).div_ceil(size_of::<f32>()))
        .max()
        .unwrap_or(0)
}

/// Bytes the scratch of one flash-attention call takes for `n_rows` query rows, keys of
/// `dk` values and values of `dv`: the converted query rows, one visibility mask per row,
/// one block of scores per row and one block of values as f32.
pub fn flash_scratch_bytes(n_rows: usize, dk: usize, dv: usize) -> usize {
    let floats = n_rows * flash_query_words(dk) + n_rows * FLASH_BLOCK + FLASH_BLOCK * dv;
    floats * size_of::<f32>() + n_rows * size_of::<u64>()
}

/// Bytes the online-softmax state of `n_rows` query rows of `dv` output values takes: a
/// running maximum and sum per row and the unnormalised output.
pub fn flash_state_bytes(n_rows: usize, dv: usize) -> usize {
    (2 * n_rows + n_rows * dv) * size_of::<f32>()
}

/// Tokens in one tile of the fast product's token-lane kernels (the lanes of a 256-bit
/// register of f32).
pub const LANE_TOKENS: usize = 8;

/// The fewest tokens a fast product over the 32-element block types multiplies in
/// token-lane tiles; fewer take the one-row kernels.
pub const LANES_FROM: usize = 5;

/// Bytes of one token-lane tile of activations over `blocks` blocks: per block, 32 quants
/// of each of [`LANE_TOKENS`] tokens, then their f32 scales and second terms.
pub fn lane_tile_bytes(blocks: usize) -> usize {
    blocks.saturating_mul(LANE_TOKENS * (32 + 2 * size_of::<f32>()))
}

/// Rows of weights one compute thread decodes at a time for the token-lane kernels.
pub const LANE_ROW_CHUNK: usize = 16;

/// Bytes one compute thread keeps for decoded weight rows of at most `cols` values in the
/// token-lane kernels, at most: per element an unsigned value and a sign byte (2 bytes),
/// per block of 32 the scale and minimum as f32 (0.25 a value), per k-quant super-block
/// 16 i16 scales and 16 minimums (0.25 a value); 3 bytes a value bounds them.
pub fn lane_rows_bytes(cols: usize) -> usize {
    LANE_ROW_CHUNK.saturating_mul(cols).saturating_mul(3)
}

/// Bytes of one token-lane tile of Q8_K activations over `blocks` super-blocks: per
/// super-block 256 quants, eight pairs of i16 sums and an f32 scale per token.
pub fn lane_tile_bytes_k(blocks: usize) -> usize {
    blocks.saturating_mul(LANE_TOKENS * (256 + 8 * 4 + 4))
}

/// Bytes of the quantized activations a matrix product over weights of type `ty` needs
/// for `n_tokens` rows of `cols` values (0 for a type without a product, see
/// [`GgmlType::vec_dot_type`]).
///
/// For the 32-element block types this includes the f32 terms (the scale and a second
/// term per block) that the fast-numerics kernels read, after the activations rounded up
/// to whole f32 words, and from [`LANES_FROM`] tokens the token-lane tiles after them.
pub fn matmul_activation_bytes(ty: GgmlType, cols: usize, n_tokens: usize) -> usize {
    ty.vec_dot_type().map_or(0, |act| {
        let blocks = cols / act.block_size();
        let acts = blocks
            .saturating_mul(act.type_size())
            .saturating_mul(n_tokens);
        let tiles = n_tokens.div_ceil(LANE_TOKENS);
        if act == GgmlType::Q8_K && n_tokens >= LANES_FROM {
            let tile_bytes = lane_tile_bytes_k(blocks).saturating_mul(tiles);
            return acts
                .next_multiple_of(size_of::<f32>())
                .saturating_add(tile_bytes);
        }
        if !matches!(act, GgmlType::Q8_0 | GgmlType::Q8_1) || n_tokens == 0 {
            return acts;
        }
        let scales = blocks
            .saturating_mul(2 * size_of::<f32>())
            .saturating_mul(n_tokens);
        let tiles = if n_tokens >= LANES_FROM {
            lane_tile_bytes(blocks).saturating_mul(tiles)
        } else {
            0
        };
        acts.next_multiple_of(size_of::<f32>())
            .saturating_add(scales)
            .saturating_add(tiles)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_query_rows_fit_the_widest_activation_block() {
        // 128 values: 4 blocks of Q8_1 (36 bytes) = 144 bytes = 36 words.
        assert_eq!(flash_query_words(128), 36);
        assert_eq!(flash_state_bytes(2, 64), (4 + 128) * 4);
        assert_eq!(
            flash_scratch_bytes(1, 32, 8),
            (9 + FLASH_BLOCK + FLASH_BLOCK * 8) * 4 + 8
        );
    }

    #[test]
    fn matmul_activations_are_rows_of_the_partner_type() {
        // Q8_0 rows, then f32 `d` and `d * sum` per block.
        assert_eq!(
            matmul_activation_bytes(GgmlType::Q4_0, 64, 3),
            2 * 34 * 3 + 2 * 8 * 3
        );
        // From five tokens, tiles of eight tokens: per block 8 × (32 quants + two f32).
        assert_eq!(
            matmul_activation_bytes(GgmlType::Q4_1, 32, 9),
            36 * 9 + 8 * 9 + 2 * 8 * (32 + 8)
        );
        assert_eq!(matmul_activation_bytes(GgmlType::Q8_0, 32, 1), 36 + 8);
        assert_eq!(matmul_activation_bytes(GgmlType::Q4_K, 256, 1), 292);
        // Q8_K rows, then from five tokens tiles of eight: per super-block 8 × (256 quants,
        // eight pairs of i16 sums, an f32 scale).
        assert_eq!(
            matmul_activation_bytes(GgmlType::Q6_K, 512, 5),
            292 * 2 * 5 + 2 * 8 * (256 + 32 + 4)
        );
        assert_eq!(matmul_activation_bytes(GgmlType::F16, 10, 2), 80);
        assert_eq!(matmul_activation_bytes(GgmlType::I8, 10, 2), 0);
    }
}
