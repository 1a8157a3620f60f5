//! [`Product`]s over F32 and F16 weights in fast numerics: [`crate::dot::float_tile`]'s
//! tiles over each task's run of rows, with F16 rows widened to f32 for big batches.

use crate::GgmlType;
use crate::arch::cast::as_blocks;
use crate::arch::scoped::{Split, SplitPart};
use crate::cpu::Isa;
use crate::dot::float_tile::{FloatWeight, TILE_ROWS, TILE_TOKENS, tile_up_to};

use super::{MatmulError, Product};

impl Product<'_> {
    /// Float weights in fast numerics: [`FloatWeight::tile`]s of [`TILE_ROWS`] rows by
    /// [`TILE_TOKENS`] tokens over each task's run of rows, the activations read as they
    /// are. A task's weight rows stay in cache while its token tiles pass. F16 rows that
    /// serve many tiles of tokens are widened to f32 first, once per task, so the
    /// conversion leaves the inner loop; widening is exact and the F16 kernel converts the
    /// same way before the same additions, so the bits do not change. A run of more than
    /// [`WIDE_MAX`] values (which would not stay in cache) is not widened.
    pub(super) fn run_float_fast<E: FloatWeight>(
        &self,
        out: &mut [f32],
    ) -> Result<(), MatmulError> {
        let w = as_blocks::<E>(self.w.bytes).ok_or(MatmulError::Misaligned(self.w.ty))?;
        let (rows, cols, n_tokens) = (self.w.rows, self.w.cols, self.n_tokens);
        if rows == 0 || n_tokens == 0 || cols == 0 {
            out.fill(0.0);
            return Ok(());
        }
        let split = Split {
            outer: n_tokens,
            inner: rows,
            per_task: self.rows_per_task(),
        };
        let (x, isa) = (self.x, self.isa);
        let widen = E::TYPE != GgmlType::F32 && n_tokens >= WIDEN_FROM_TOKENS;
        self.pool.run_split(out, split, |_, mut part| {
            let first = part.start();
            let n_rows = part.row(0).len();
            let w = &w[first * cols..(first + n_rows) * cols];
            if widen && w.len() <= WIDE_MAX {
                WIDE_ROWS.with_borrow_mut(|wide| {
                    wide.resize(w.len(), 0.0);
                    E::widen(w, wide);
                    float_tiles(isa, wide, x, cols, &mut part);
                });
            } else {
                float_tiles(isa, w, x, cols, &mut part);
            }
        });
        Ok(())
    }
}

/// The fewest tokens for which [`Product::run_float_fast`] widens F16 rows: below it the
/// widening costs about what it saves (a 14-token sentence ran at half speed).
const WIDEN_FROM_TOKENS: usize = 32;

/// The most values of F16 weight rows a task widens to f32 (512 KiB of f32, an L2 of
/// the smaller CPUs); the bound on each thread's [`WIDE_ROWS`].
pub const WIDE_MAX: usize = 128 * 1024;

thread_local! {
    /// A task's F16 weight rows widened to f32 (see [`Product::run_float_fast`]); it grows
    /// to the largest run of rows a thread has taken and stays.
    static WIDE_ROWS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A task's part of a float product: its weight rows `w` (`cols` values each) by every
/// token of `x`, tile by tile, into `part`.
fn float_tiles<E: FloatWeight>(
    isa: Isa,
    w: &[E],
    x: &[f32],
    cols: usize,
    part: &mut SplitPart<'_, f32>,
) {
    let n_rows = w.len() / cols;
    let n_tokens = x.len() / cols;
    let w_row = |r: usize| &w[r * cols..(r + 1) * cols];
    let x_row = |t: usize| &x[t * cols..(t + 1) * cols];
    for t in (0..n_tokens).step_by(TILE_TOKENS) {
        let nt = (n_tokens - t).min(TILE_TOKENS);
        let xs: [&[f32]; TILE_TOKENS] = std::array::from_fn(|k| x_row(t + k.min(nt - 1)));
        for r in (0..n_rows).step_by(TILE_ROWS) {
            let nr = (n_rows - r).min(TILE_ROWS);
            let ws: [&[E]; TILE_ROWS] = std::array::from_fn(|i| w_row(r + i.min(nr - 1)));
            let sums = tile_up_to(isa, &ws[..nr], &xs[..nt]);
            for (k, t) in (t..t + nt).enumerate() {
                let out = part.row(t);
                for (i, sums) in sums[..nr].iter().enumerate() {
                    out[r + i] = sums[k];
                }
            }
        }
    }
}
