//! Flash attention over the cache's cells: work split into (tile of tokens, key/value
//! head, range of cells) units, each streaming its cells through kernels' flash
//! attention; ranges of one tile and head are merged afterwards. A tile holds tokens of
//! one sequence, so rows are only scored against cells their sequence may see. A few
//! tokens (decode) get their cells split over the threads; a prompt gets tiles.

use std::sync::Mutex;

use kernels::cpu::Isa;
use kernels::ops::{FLASH_BLOCK, FlashAttnError, FlashScratch, FlashState, QueryRows, flash_attn};
use kernels::pool::ThreadPool;

use super::reference::tokens_by_seq;
use super::{AttentionShape, lock};
use crate::kvcache::LayerView;
use crate::model::{Batch, ModelError};

/// Tokens per unit of work: their query rows share each block of keys and values read.
const TILE: usize = 32;

/// One unit's query rows and running state.
#[derive(Debug, Default)]
struct Unit {
    q: Vec<f32>,
    pos: Vec<i32>,
    seq: Vec<u64>,
    state: FlashState,
    scratch: FlashScratch,
}

/// Scratch of the flash path: one [`Unit`] per unit of work of the largest batch.
#[derive(Debug, Default)]
pub struct FlashWork {
    units: Vec<Mutex<Unit>>,
}

/// Cell ranges each (tile, head) pair is split into so that `base` such pairs still
/// give every thread about four units of work (when the cells allow it).
fn chunks_for(base: usize, threads: usize, blocks: usize) -> usize {
    if base >= 4 * threads {
        1
    } else {
        (4 * threads).div_ceil(base.max(1)).min(blocks.max(1))
    }
}

/// The most tiles a batch of `num_batch` tokens of up to `num_parallel` sequences has:
/// each sequence's tokens are tiled apart, so each may end with a partial tile.
fn max_tiles(num_batch: usize, num_parallel: usize) -> usize {
    num_batch.div_ceil(TILE) + num_parallel.min(num_batch).saturating_sub(1)
}

/// The most units any batch needs.
fn max_units(
    shape: &AttentionShape,
    num_batch: usize,
    num_parallel: usize,
    threads: usize,
) -> usize {
    max_tiles(num_batch, num_parallel).max(1) * shape.n_head_kv + 4 * threads
}

fn unit_rows(shape: &AttentionShape, num_batch: usize) -> usize {
    num_batch.min(TILE) * shape.group()
}

impl Unit {
    fn reserve(&mut self, shape: &AttentionShape, rows: usize) {
        self.q.reserve(rows * shape.head_dim_k);
        self.pos.reserve(rows);
        self.seq.reserve(rows);
        self.state.reset(rows, shape.head_dim_v);
        self.scratch
            .reserve(rows, shape.head_dim_k, shape.head_dim_v);
    }

    fn bytes(&self) -> usize {
        self.q.capacity() * 4
            + self.pos.capacity() * 4
            + self.seq.capacity() * 8
            + self.state.capacity_bytes()
            + self.scratch.capacity_bytes()
    }
}

impl FlashWork {
    /// Scratch for batches of up to `num_batch` tokens of up to `num_parallel` sequences
    /// on `threads` threads, allocated now.
    pub fn new(
        shape: &AttentionShape,
        num_batch: usize,
        num_parallel: usize,
        threads: usize,
    ) -> Self {
        let rows = unit_rows(shape, num_batch);
        let units = (0..max_units(shape, num_batch, num_parallel, threads))
            .map(|_| {
                let mut u = Unit::default();
                u.reserve(shape, rows);
                Mutex::new(u)
            })
            .collect();
        Self { units }
    }

    /// Bytes [`FlashWork::new`] allocates.
    pub fn bytes_for(
        shape: &AttentionShape,
        num_batch: usize,
        num_parallel: usize,
        threads: usize,
    ) -> usize {
        let rows = unit_rows(shape, num_batch);
        let unit = rows * (shape.head_dim_k * 4 + 4 + 8)
            + FlashState::bytes_for(rows, shape.head_dim_v)
            + FlashScratch::bytes_for(rows, shape.head_dim_k, shape.head_dim_v);
        max_units(shape, num_batch, num_parallel, threads) * unit
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.units.iter().map(|u| lock(u).bytes()).sum()
    }
}

/// One tile: up to [`TILE`] tokens of the same sequence, by batch index.
struct Tile<'t> {
    tokens: &'t [usize],
}

/// See the module docs; the batch's rows are already in `view`, whose cells in use all
/// lie below `active`. Each tile holds tokens of one sequence only, so a row is never
/// scored against cells of another sequence, and a sequence's result does not depend on
/// the tokens of other sequences that share its tiles.
#[allow(clippy::too_many_arguments)]
pub(super) fn attention(
    pool: &ThreadPool,
    isa: Isa,
    shape: &AttentionShape,
    view: &LayerView<'_>,
    active: usize,
    batch: &Batch,
    q: &[f32],
    work: &mut FlashWork,
    out: &mut [f32],
) -> Result<(), ModelError> {
    if batch.is_empty() {
        return Ok(());
    }
    let groups = tokens_by_seq(batch);
    let tiles: Vec<Tile<'_>> = groups
        .iter()
        .flat_map(|(_, tokens)| tokens.chunks(TILE).map(|tokens| Tile { tokens }))
        .collect();
    let (g, hk, hv) = (shape.group(), shape.head_dim_k, shape.head_dim_v);
    let blocks = active.div_ceil(FLASH_BLOCK);
    let chunks = chunks_for(tiles.len() * shape.n_head_kv, pool.threads(), blocks);
    let per_chunk = blocks.div_ceil(chunks) * FLASH_BLOCK;
    let units = tiles.len() * shape.n_head_kv * chunks;
    while work.units.len() < units {
        work.units.push(Mutex::new(Unit::default()));
    }
    let failure: Mutex<Option<FlashAttnError>> = Mutex::new(None);
    let mask = view.mask();
    pool.run(units, |u| {
        let (tile, rest) = (
            u / (shape.n_head_kv * chunks),
            u % (shape.n_head_kv * chunks),
        );
        let (kv_h, chunk) = (rest / chunks, rest % chunks);
        let mut unit = lock(&work.units[u]);
        let unit = &mut *unit;
        unit.q.clear();
        unit.pos.clear();
        unit.seq.clear();
        for &t in tiles[tile].tokens {
            for h in kv_h * g..(kv_h + 1) * g {
                let start = t * shape.q_dim() + h * hk;
                unit.q.extend_from_slice(&q[start..start + hk]);
                unit.pos.push(batch.positions()[t]);
                unit.seq.push(1u64 << batch.seqs()[t]);
            }
        }
        unit.state.reset(unit.pos.len(), hv);
        let cells = (chunk * per_chunk).min(active)..((chunk + 1) * per_chunk).min(active);
        let rows = QueryRows {
            q: &unit.q,
            dim: hk,
            pos: &unit.pos,
            seq: &unit.seq,
        };
        let result = view.key_head(kv_h).and_then(|keys| {
            let values = view.value_head(kv_h)?;
            let scale = shape.scale;
            flash_attn(
                isa,
                &rows,
                &keys,
                &values,
                &mask,
                scale,
                cells,
                &mut unit.scratch,
                &mut unit.state,
            )
        });
        if let Err(e) = result {
            lock(&failure).get_or_insert(e);
        }
    });
    if let Some(e) = lock(&failure).take() {
        return Err(e.into());
    }
    let od = shape.out_dim();
    for (tile, Tile { tokens }) in tiles.iter().enumerate() {
        for kv_h in 0..shape.n_head_kv {
            let first = (tile * shape.n_head_kv + kv_h) * chunks;
            let mut head = lock(&work.units[first]);
            for c in 1..chunks {
                head.state.merge(&lock(&work.units[first + c]).state);
            }
            for (i, &t) in tokens.iter().enumerate() {
                for j in 0..g {
                    let h = kv_h * g + j;
                    let o = &mut out[t * od + h * hv..t * od + (h + 1) * hv];
                    head.state.write(i * g + j, o);
                }
            }
        }
    }
    Ok(())
}
