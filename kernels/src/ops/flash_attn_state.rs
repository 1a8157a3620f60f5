//! The memory of flash attention: the running online-softmax state of the query rows
//! ([`FlashState`], one per range of cells, merged at the end) and the per-call scratch
//! ([`FlashScratch`], one per thread). Both are sized once and reused.

use ggml_type::scratch;

use super::FLASH_BLOCK;

/// Running online-softmax state of `n_rows` query rows: per row the largest score seen so
/// far, the sum of `exp(score - max)` over the cells seen, and the unnormalised output
/// `Σ exp(score - max) · v` (`dv` values).
#[derive(Debug, Default)]
pub struct FlashState {
    /// Per row: the largest score seen, `-inf` before any cell.
    pub(super) max: Vec<f32>,
    /// Per row: `Σ exp(score - max)`.
    pub(super) sum: Vec<f32>,
    /// `n_rows` rows of `dv`: `Σ exp(score - max) · v`.
    pub(super) acc: Vec<f32>,
    /// Rows.
    pub(super) n_rows: usize,
    /// Output values per row.
    pub(super) dv: usize,
}

impl FlashState {
    /// An empty state (no rows).
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts over for `n_rows` rows of `dv` output values: no cell seen. Reuses the memory
    /// it holds when it is enough.
    pub fn reset(&mut self, n_rows: usize, dv: usize) {
        fill_exact(&mut self.max, n_rows, f32::NEG_INFINITY);
        fill_exact(&mut self.sum, n_rows, 0.0);
        fill_exact(&mut self.acc, n_rows * dv, 0.0);
        self.n_rows = n_rows;
        self.dv = dv;
    }

    /// Rows of the state.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Output values per row.
    pub fn dv(&self) -> usize {
        self.dv
    }

    /// Folds in `other`, the state of the same rows over a disjoint range of cells: the
    /// result is the state of both ranges together.
    ///
    /// # Panics
    ///
    /// When the two states have different rows or output sizes.
    pub fn merge(&mut self, other: &FlashState) {
        assert!(
            self.n_rows == other.n_rows && self.dv == other.dv,
            "FlashState::merge: {}x{} into {}x{}",
            other.n_rows,
            other.dv,
            self.n_rows,
            self.dv
        );
        let dv = self.dv;
        for r in 0..self.n_rows {
            let (m1, m2) = (self.max[r], other.max[r]);
            if m2 == f32::NEG_INFINITY {
                continue;
            }
            let acc = &mut self.acc[r * dv..(r + 1) * dv];
            let theirs = &other.acc[r * dv..(r + 1) * dv];
            if m1 == f32::NEG_INFINITY {
                acc.copy_from_slice(theirs);
                self.sum[r] = other.sum[r];
                self.max[r] = m2;
                continue;
            }
            let m = m1.max(m2);
            let (a1, a2) = ((m1 - m).exp(), (m2 - m).exp());
            for (a, &b) in acc.iter_mut().zip(theirs) {
                *a = *a * a1 + b * a2;
            }
            self.sum[r] = self.sum[r] * a1 + other.sum[r] * a2;
            self.max[r] = m;
        }
    }

    /// Row `row`'s attention output, `acc / sum`, into `out` (`dv` values); zeros when the
    /// row saw no cell.
    ///
    /// # Panics
    ///
    /// When `row >= n_rows` or `out.len() != dv`.
    pub fn write(&self, row: usize, out: &mut [f32]) {
        assert!(
            row < self.n_rows,
            "FlashState::write: row {row} of {}",
            self.n_rows
        );
        assert_eq!(out.len(), self.dv, "FlashState::write: output length");
        let sum = self.sum[row];
        let acc = &self.acc[row * self.dv..(row + 1) * self.dv];
        if sum > 0.0 {
            for (o, &a) in out.iter_mut().zip(acc) {
                *o = a / sum;
            }
        } else {
            out.fill(0.0);
        }
    }

    /// Bytes [`FlashState::reset`] allocates for `n_rows` rows of `dv` values.
    pub fn bytes_for(n_rows: usize, dv: usize) -> usize {
        scratch::flash_state_bytes(n_rows, dv)
    }

    /// Bytes this state holds now.
    pub fn capacity_bytes(&self) -> usize {
        (self.max.capacity() + self.sum.capacity() + self.acc.capacity()) * size_of::<f32>()
    }
}

/// Scratch of [`super::flash_attn`]: the query rows converted for the key type, the rows'
/// visibility of one block, one block of scores per row and one block of dequantized
/// values. [`FlashScratch::reserve`] sizes it; a call with sizes it was reserved for
/// allocates nothing (a larger call grows it).
#[derive(Debug, Default)]
pub struct FlashScratch {
    /// The query rows as the key type's activation blocks (f32 storage, viewed as bytes).
    pub(super) query: Vec<f32>,
    /// Per row: bit `j` set when the row sees cell `j` of the block.
    pub(super) masks: Vec<u64>,
    /// `n_rows` rows of [`FLASH_BLOCK`]: a block's scores, then its probabilities.
    pub(super) scores: Vec<f32>,
    /// [`FLASH_BLOCK`] rows of `dv`: a block's values as f32.
    pub(super) values: Vec<f32>,
}

/// Query storage (in f32) per row of `dk` values: the largest any key type needs.
fn query_len(dk: usize) -> usize {
    scratch::flash_query_words(dk)
}

impl FlashScratch {
    /// An empty scratch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allocates everything a call with `n_rows` query rows, keys of `dk` and values of
    /// `dv` values needs, whatever the storage types, so such calls allocate nothing.
    pub fn reserve(&mut self, n_rows: usize, dk: usize, dv: usize) {
        grow_exact(&mut self.query, n_rows * query_len(dk), 0.0);
        grow_exact(&mut self.masks, n_rows, 0);
        grow_exact(&mut self.scores, n_rows * FLASH_BLOCK, 0.0);
        grow_exact(&mut self.values, FLASH_BLOCK * dv, 0.0);
    }

    /// Bytes [`FlashScratch::reserve`] allocates for these sizes (on an empty scratch).
    pub fn bytes_for(n_rows: usize, dk: usize, dv: usize) -> usize {
        scratch::flash_scratch_bytes(n_rows, dk, dv)
    }

    /// Bytes this scratch holds now.
    pub fn capacity_bytes(&self) -> usize {
        (self.query.capacity() + self.scores.capacity() + self.values.capacity()) * size_of::<f32>()
            + self.masks.capacity() * size_of::<u64>()
    }
}

/// Makes `v` exactly `len` copies of `value`, allocating exactly `len` when it must grow.
fn fill_exact<T: Copy>(v: &mut Vec<T>, len: usize, value: T) {
    v.clear();
    v.reserve_exact(len);
    v.resize(len, value);
}

/// Grows `v` to at least `len` elements, allocating exactly `len` when it must grow.
fn grow_exact<T: Copy>(v: &mut Vec<T>, len: usize, value: T) {
    if v.len() < len {
        v.reserve_exact(len - v.len());
        v.resize(len, value);
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::{BlockKeys, F16Keys, F32Keys, KeyKind};
    use super::*;
    use crate::dot::kind;

    /// The scratch formula shared with the memory estimate covers every key type.
    #[test]
    fn query_storage_is_the_largest_any_key_type_needs() {
        for dk in [32, 64, 96, 128, 256] {
            let need = [
                F32Keys::query_len(dk),
                F16Keys::query_len(dk),
                BlockKeys::<kind::Q8_0>::query_len(dk),
                BlockKeys::<kind::Q4_0>::query_len(dk),
                BlockKeys::<kind::Q4_1>::query_len(dk),
                BlockKeys::<kind::Q5_0>::query_len(dk),
                BlockKeys::<kind::Q5_1>::query_len(dk),
                BlockKeys::<kind::IQ4_NL>::query_len(dk),
            ];
            assert_eq!(query_len(dk), need.into_iter().max().unwrap(), "dk = {dk}");
        }
    }
}
