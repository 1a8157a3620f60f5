//! The token-lane layout of the fast 32-element block product, for prompts.
//!
//! A prompt's product multiplies every weight row with many activation rows. The one-row
//! kernels ([`super::FastDot::dot_fast`]) reduce each block's 32 products across a
//! register and fold eight blocks together with horizontal additions, once per token.
//! Here the eight lanes of a register are eight tokens instead: four weight values are
//! broadcast to every lane and multiplied with four values of each of eight tokens
//! (a [`LaneTile`], built once per product by [`interleave`]), so a block's sum for eight
//! tokens takes eight multiplies and no horizontal work. The weight rows are decoded once
//! per task into [`DecodedRows`] (plain bytes), so no block is unpacked twice.
//!
//! Each lane adds exactly as [`super::scalar_fast`] defines, so a token gets the same bits
//! here as in the one-row kernels of a decode step.

use super::scalar_fast::{FastAct, FastBlock, tree8};

/// Tokens in a tile: the eight f32 lanes of a 256-bit register.
pub const LANES: usize = ggml_type::scratch::LANE_TOKENS;

/// Bytes of one block of a [`LaneTile`]'s quants: 32 values of each of eight tokens.
pub const TILE_BLOCK_BYTES: usize = 32 * LANES;

/// Weight rows decoded for the token-lane kernels: per element the unsigned value the
/// products take (`|q|` for signed quants, the stored value otherwise) and, for signed
/// quants, the quant whose sign the activations take; per block the scale and minimum
/// as f32; for the k-quants ([`super::kfast`]) also each sub-block's integer scale and
/// minimum. Sized for a few rows at a time and reused.
#[derive(Debug, Default)]
pub struct DecodedRows {
    pub(crate) u: Vec<u8>,
    pub(crate) w: Vec<i8>,
    pub(crate) dw: Vec<f32>,
    pub(crate) mw: Vec<f32>,
    pub(crate) sc: Vec<i16>,
    pub(crate) mn: Vec<i16>,
    pub(crate) per_row: usize,
}

impl DecodedRows {
    /// Room for `rows` rows of `per_row` blocks (grows, never shrinks).
    pub fn reserve(&mut self, rows: usize, per_row: usize) {
        self.per_row = per_row;
        let blocks = rows * per_row;
        grow(&mut self.u, blocks * 32, 0);
        grow(&mut self.w, blocks * 32, 0);
        grow(&mut self.dw, blocks, 0.0);
        grow(&mut self.mw, blocks, 0.0);
    }

    /// Room for `rows` rows of `per_row` k-quant super-blocks (grows, never shrinks).
    pub fn reserve_k(&mut self, rows: usize, per_row: usize) {
        self.per_row = per_row;
        let blocks = rows * per_row;
        grow(&mut self.u, blocks * 256, 0);
        grow(&mut self.dw, blocks, 0.0);
        grow(&mut self.mw, blocks, 0.0);
        grow(&mut self.sc, blocks * 16, 0);
        grow(&mut self.mn, blocks * 16, 0);
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.u.len()
            + self.w.len()
            + (self.dw.len() + self.mw.len()) * size_of::<f32>()
            + (self.sc.len() + self.mn.len()) * size_of::<i16>()
    }
}

/// Grows `v` to `len` values, never shrinks it.
fn grow<T: Clone>(v: &mut Vec<T>, len: usize, value: T) {
    if v.len() < len {
        v.resize(len, value);
    }
}

/// Eight activation rows of one product, interleaved for the token-lane kernels: for each
/// block, eight groups of 32 bytes, group `g` holding values `4g..4g + 4` of each token in
/// turn; then each block's eight scales and eight second terms
/// ([`super::scalar_fast::act_terms`]). Rows past the product's tokens are zero.
#[derive(Debug, Clone, Copy)]
pub struct LaneTile<'a> {
    /// `blocks × TILE_BLOCK_BYTES` quants.
    pub q: &'a [u8],
    /// `blocks × 8` scales.
    pub d: &'a [f32],
    /// `blocks × 8` second terms.
    pub aux: &'a [f32],
}

/// Fills one tile from up to eight activation rows of `per_row` blocks (`acts`) and their
/// terms (`da`, `aux`, one per block), zero past the last row.
pub fn interleave<A: FastAct>(
    acts: &[A],
    da: &[f32],
    aux: &[f32],
    per_row: usize,
    q: &mut [u8],
    d: &mut [f32],
    tile_aux: &mut [f32],
) {
    let rows = acts.len().checked_div(per_row).unwrap_or(0);
    assert!(rows <= LANES && acts.len() == rows * per_row);
    assert!(q.len() == per_row * TILE_BLOCK_BYTES && d.len() == per_row * LANES);
    q.fill(0);
    d.fill(0.0);
    tile_aux.fill(0.0);
    for t in 0..rows {
        for b in 0..per_row {
            let i = t * per_row + b;
            let qs = acts[i].qs();
            let block = &mut q[b * TILE_BLOCK_BYTES..(b + 1) * TILE_BLOCK_BYTES];
            for g in 0..8 {
                let at = g * 32 + 4 * t;
                for k in 0..4 {
                    block[at + k] = qs[4 * g + k] as u8;
                }
            }
            d[b * LANES + t] = da[i];
            tile_aux[b * LANES + t] = aux[i];
        }
    }
}

/// Whether a weight type multiplies by the sign trick (signed quants, no offset).
fn sign_trick<W: FastBlock>() -> bool {
    W::OFFSET == 0 && !W::HAS_MIN
}

/// Decodes weight rows (whole rows of `rows.per_row` blocks) into `rows`, from row
/// `at`: the portable twin of the SIMD decoders.
pub fn decode_portable<W: FastBlock>(x: &[W], at: usize, rows: &mut DecodedRows) {
    let first = at * rows.per_row;
    for (i, xb) in x.iter().enumerate() {
        let b = first + i;
        for j in 0..32 {
            let q = xb.quant(j);
            let (u, w) = if sign_trick::<W>() {
                (q.unsigned_abs() as u8, q as i8)
            } else {
                ((q + W::OFFSET) as u8, 0)
            };
            rows.u[b * 32 + j] = u;
            rows.w[b * 32 + j] = w;
        }
        rows.dw[b] = xb.scale();
        rows.mw[b] = xb.min().unwrap_or(0.0);
    }
}

/// The fast dots of decoded row `r` with the eight tokens of `tile`: the portable twin of
/// the SIMD token-lane kernels, adding as [`super::scalar_fast`] defines.
pub fn dot_lanes_portable<W: FastBlock>(
    rows: &DecodedRows,
    r: usize,
    tile: &LaneTile<'_>,
) -> [f32; LANES] {
    let per_row = rows.per_row;
    let mut p = [[0.0f32; 8]; LANES];
    let mut m = [[0.0f32; 8]; LANES];
    for b in 0..per_row {
        let wb = (r * per_row + b) * 32;
        let qb = &tile.q[b * TILE_BLOCK_BYTES..(b + 1) * TILE_BLOCK_BYTES];
        for t in 0..LANES {
            let a = |j: usize| i32::from(qb[(j / 4) * 32 + 4 * t + j % 4] as i8);
            let s: i32 = if sign_trick::<W>() {
                (0..32).map(|j| i32::from(rows.w[wb + j]) * a(j)).sum()
            } else {
                (0..32).map(|j| i32::from(rows.u[wb + j]) * a(j)).sum()
            };
            let aux = tile.aux[b * LANES + t];
            let s = if W::OFFSET != 0 {
                s as f32 - aux
            } else {
                s as f32
            };
            let c = tile.d[b * LANES + t] * rows.dw[r * per_row + b];
            p[t][b % 8] = s.mul_add(c, p[t][b % 8]);
            if W::HAS_MIN {
                m[t][b % 8] = rows.mw[r * per_row + b].mul_add(aux, m[t][b % 8]);
            }
        }
    }
    std::array::from_fn(|t| {
        if W::HAS_MIN {
            tree8(&p[t]) + tree8(&m[t])
        } else {
            tree8(&p[t])
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memory estimate counts a thread's decoded rows by its own formula.
    #[test]
    fn decoded_rows_take_what_the_estimate_counts() {
        use ggml_type::scratch::{LANE_ROW_CHUNK, lane_rows_bytes};
        let mut rows = DecodedRows::default();
        rows.reserve(LANE_ROW_CHUNK, 64);
        assert!(rows.bytes() <= lane_rows_bytes(64 * 32));
        rows.reserve(3, 64);
        let held = rows.bytes();
        assert!(held >= LANE_ROW_CHUNK * 64 * 64, "it never shrinks");
        // The same thread's k-quant rows of the same width on top.
        rows.reserve_k(LANE_ROW_CHUNK, 8);
        assert!(
            rows.bytes() <= lane_rows_bytes(64 * 32),
            "{} bytes",
            rows.bytes()
        );
    }
}
