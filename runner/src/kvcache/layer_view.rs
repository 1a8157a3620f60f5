//! What attention reads from one layer of the cache.

use kernels::arch::cast::as_blocks;
use kernels::ops::{CellMask, FlashAttnError, HeadRows};
use kernels::quant::dequantize_row;

use super::cells::seq_bit;
use super::{CacheType, KvError};

/// One layer's cells (positions, sequence sets), key and value rows, and window.
#[derive(Debug, Clone, Copy)]
pub struct LayerView<'a> {
    /// The table the layer stores into (the index into a [`super::Placement`]).
    pub table: usize,
    /// Each cell's position.
    pub pos: &'a [i32],
    /// Each cell's set of sequences (bit `s` for sequence `s`; 0 when empty).
    pub seqs: &'a [u64],
    /// The layer's sliding window.
    pub window: Option<usize>,
    /// Key storage type.
    pub type_k: CacheType,
    /// Value storage type.
    pub type_v: CacheType,
    /// Key rows, `k_row` bytes per cell.
    pub k: &'a [u8],
    /// Value rows, `v_row` bytes per cell.
    pub v: &'a [u8],
    /// Bytes of one cell's keys.
    pub k_row: usize,
    /// Bytes of one cell's values.
    pub v_row: usize,
    /// Values per key head.
    pub head_dim_k: usize,
    /// Values per value head.
    pub head_dim_v: usize,
}

/// The rows of one sequence over a run of positions, in position order, as f32.
#[derive(Debug, Default)]
pub struct Gathered {
    /// First position.
    pub first: i32,
    /// Whether each position is present (a missing one is masked).
    pub present: Vec<bool>,
    /// Keys, `k_dim` values per position.
    pub k: Vec<f32>,
    /// Values, `v_dim` values per position.
    pub v: Vec<f32>,
}

impl<'a> LayerView<'a> {
    /// Number of cells.
    pub fn n_cells(&self) -> usize {
        self.pos.len()
    }

    /// The mask flash attention applies.
    pub fn mask(&self) -> CellMask<'a> {
        CellMask {
            pos: self.pos,
            seqs: self.seqs,
            window: self.window,
        }
    }

    /// Key head `h` at every cell.
    pub fn key_head(&self, h: usize) -> Result<HeadRows<'a>, FlashAttnError> {
        let bytes = self.type_k.row_bytes(self.head_dim_k).unwrap_or(0);
        HeadRows::new(
            self.type_k.ggml(),
            self.k,
            self.k_row,
            h * bytes,
            self.head_dim_k,
            self.n_cells(),
        )
    }

    /// Value head `h` at every cell.
    pub fn value_head(&self, h: usize) -> Result<HeadRows<'a>, FlashAttnError> {
        let bytes = self.type_v.row_bytes(self.head_dim_v).unwrap_or(0);
        HeadRows::new(
            self.type_v.ggml(),
            self.v,
            self.v_row,
            h * bytes,
            self.head_dim_v,
            self.n_cells(),
        )
    }

    /// When `seq`'s positions `first..first + n` are consecutive f32 cells, in order, all
    /// present: those keys and values, read in place.
    pub fn contiguous_f32(
        &self,
        seq: usize,
        first: i32,
        n: usize,
    ) -> Option<(&'a [f32], &'a [f32])> {
        if self.type_k != CacheType::F32 || self.type_v != CacheType::F32 || n == 0 {
            return None;
        }
        let bit = seq_bit(seq);
        let c0 = (0..self.n_cells()).find(|&c| self.seqs[c] & bit != 0 && self.pos[c] == first)?;
        let cells = c0..c0 + n;
        if cells.end > self.n_cells() {
            return None;
        }
        let in_order = cells
            .clone()
            .zip(first..)
            .all(|(c, p)| self.seqs[c] & bit != 0 && self.pos[c] == p);
        if !in_order {
            return None;
        }
        let k = as_blocks::<f32>(&self.k[c0 * self.k_row..cells.end * self.k_row])?;
        let v = as_blocks::<f32>(&self.v[c0 * self.v_row..cells.end * self.v_row])?;
        Some((k, v))
    }

    /// Copies `seq`'s keys and values at positions `first..first + n` into `out`,
    /// dequantized, in position order; positions the sequence does not hold are zeros
    /// and marked absent.
    pub fn gather(
        &self,
        seq: usize,
        first: i32,
        n: usize,
        k_dim: usize,
        v_dim: usize,
        out: &mut Gathered,
    ) -> Result<(), KvError> {
        out.first = first;
        out.present.clear();
        out.present.resize(n, false);
        out.k.clear();
        out.k.resize(n * k_dim, 0.0);
        out.v.clear();
        out.v.resize(n * v_dim, 0.0);
        let bit = seq_bit(seq);
        let (tk, tv) = (self.type_k.ggml(), self.type_v.ggml());
        for c in 0..self.n_cells() {
            if self.seqs[c] & bit == 0 {
                continue;
            }
            let Ok(i) = usize::try_from(self.pos[c] - first) else {
                continue;
            };
            if i >= n {
                continue;
            }
            out.present[i] = true;
            let k = &self.k[c * self.k_row..(c + 1) * self.k_row];
            dequantize_row(tk, k, &mut out.k[i * k_dim..(i + 1) * k_dim])?;
            let v = &self.v[c * self.v_row..(c + 1) * self.v_row];
            dequantize_row(tv, v, &mut out.v[i * v_dim..(i + 1) * v_dim])?;
        }
        Ok(())
    }
}
