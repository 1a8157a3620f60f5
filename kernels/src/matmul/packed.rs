//! [`super::matmul_fast`] over weights repacked at load in groups of eight rows
//! ([`crate::repack`]): the eight-row kernels for every batch size, up to
//! [`FAST_TILE`] tokens at a time, with the bits of the one-row kernels on the rows as
//! the file stores them.

use super::{
    FAST_TILE, MAX_STACK, MatmulError, MatmulScratch, Order, Product, StackRows, Weights, row_sums,
};
use crate::arch::cast::{as_blocks, as_bytes};
use crate::arch::scoped::SplitPart;
use crate::dot::{PackedDot, ROWS8};

/// How a matrix's rows lie in its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Row after row, as GGUF stores them.
    #[default]
    Rows,
    /// Groups of eight rows interleaved block by block, as [`crate::repack::repack_rows8`]
    /// writes them: only fast numerics multiply them.
    Rows8,
}

/// Checks that the parts share one layout, and that a repacked one is something
/// [`Product::run_packed`] reads.
pub(super) fn check_layout(parts: &[Weights<'_>], order: Order) -> Result<(), MatmulError> {
    let Some(w) = parts.first() else {
        return Ok(());
    };
    if parts.iter().any(|p| p.layout != w.layout) {
        return Err(MatmulError::Stack("matrices of different layouts"));
    }
    if w.layout == Layout::Rows {
        return Ok(());
    }
    let why = if order != Order::Fast {
        "exact numerics read the rows as the file stores them"
    } else if !crate::repack::packable(w.ty) {
        "the type has no eight-row layout"
    } else if parts.iter().any(|p| !p.rows.is_multiple_of(ROWS8)) {
        "a matrix's rows are not whole groups of eight"
    } else {
        return Ok(());
    };
    Err(MatmulError::Layout { ty: w.ty, why })
}

impl Product<'_> {
    /// The product over weights repacked in groups of eight rows ([`Layout::Rows8`]):
    /// each group's eight rows with up to [`FAST_TILE`] tokens at a time, the bits of the
    /// one-row kernels on the rows as the file stores them.
    pub(super) fn run_packed<K: PackedDot>(
        &self,
        out: &mut [f32],
        scratch: &mut MatmulScratch,
    ) -> Result<(), MatmulError> {
        // Each part's rows are whole groups (`check_layout`), so group `g` of the stack is
        // "row" `g` of the parts' packed blocks.
        let mut groups = StackRows {
            parts: [(&[][..], 0); MAX_STACK],
            n: self.parts.len(),
            per_row: self.w.cols / self.w.ty.block_size(),
        };
        for (slot, p) in groups.parts.iter_mut().zip(self.parts) {
            let blocks = as_blocks::<K::Packed>(p.bytes).ok_or(MatmulError::Misaligned(p.ty))?;
            *slot = (blocks, p.rows / ROWS8);
        }
        let a_per_row = self.w.cols / K::ACT_TYPE.block_size();
        let (acts, da, sa, _) = self.fast_acts::<K>(&mut scratch.words);
        let isa = self.isa;
        let row = |t: usize| t * a_per_row..(t + 1) * a_per_row;
        let a = |t: usize| &acts[row(t)];
        let d = |t: usize| &da[row(t)];
        let s = |t: usize| &sa[row(t)];
        self.token_tiles(out, FAST_TILE, |part, first_row, t, tile| {
            let n_rows = part.row(0).len();
            let mut i = 0;
            while i < n_rows {
                let g = (first_row + i) / ROWS8;
                if i + 2 * ROWS8 <= n_rows {
                    let pair = [groups.row(g), groups.row(g + 1)];
                    // The task's next groups, fetched while this pair computes.
                    let next: [&[u8]; 2] = std::array::from_fn(|k| {
                        if i + (3 + k) * ROWS8 <= n_rows {
                            as_bytes(groups.row(g + 2 + k))
                        } else {
                            &[]
                        }
                    });
                    let sums = by_tile!(tile, t, (a, d, s), |ys, ds, ss| row_sums(
                        K::dot_packed16(isa, pair, ys, ds, ss, next)
                    ));
                    store(part, t, i, &sums[..tile]);
                    i += 2 * ROWS8;
                } else {
                    let sums = by_tile!(tile, t, (a, d, s), |ys, ds, ss| row_sums(K::dot_packed8(
                        isa,
                        groups.row(g),
                        ys,
                        ds,
                        ss
                    )));
                    store(part, t, i, &sums[..tile]);
                    i += ROWS8;
                }
            }
        });
        Ok(())
    }
}

/// Writes token `t + k`'s sums of `R` rows (`sums[k]`) into the task's rows from `i`.
fn store<const R: usize>(part: &mut SplitPart<'_, f32>, t: usize, i: usize, sums: &[[f32; R]]) {
    for (k, s) in sums.iter().enumerate() {
        part.row(t + k)[i..i + R].copy_from_slice(s);
    }
}
