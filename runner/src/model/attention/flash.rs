//! Flash attention over the cache's cells: work split into (tile of tokens, key/value
//! head, range of cells) units, each streaming its cells through kernels' flash
//! attention; ranges of one tile and head are merged afterwards. One token (decode) gets
//! its cells split over the threads; a prompt gets tiles.

use std::sync::Mutex;

use kernels::cpu::Isa;
use kernels::ops::{FLASH_BLOCK, FlashAttnError, FlashScratch, FlashState, QueryRows, flash_attn};
use kernels::pool::ThreadPool;

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

/// Units of work a batch of `n` tokens splits into: tiles × heads × ranges of cells,
/// with at least four units per thread when the cells allow it.
fn split(n: usize, n_kv: usize, threads: usize, blocks: usize) -> (usize, usize) {
    let tiles = n.div_ceil(TILE).max(1);
    let base = tiles * n_kv;
    let chunks = if base >= 4 * threads {
        1
    } else {
        (4 * threads).div_ceil(base).min(blocks.max(1))
    };
    (tiles, chunks)
}

/// The most units any batch of up to `num_batch` tokens needs.
fn max_units(shape: &AttentionShape, num_batch: usize, threads: usize) -> usize {
    let tiles = num_batch.div_ceil(TILE).max(1) * shape.n_head_kv;
    tiles.max(4 * threads + shape.n_head_kv)
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
    /// Scratch for batches of up to `num_batch` tokens on `threads` threads, allocated now.
    pub fn new(shape: &AttentionShape, num_batch: usize, threads: usize) -> Self {
        let rows = unit_rows(shape, num_batch);
        let units = (0..max_units(shape, num_batch, threads))
            .map(|_| {
                let mut u = Unit::default();
                u.reserve(shape, rows);
                Mutex::new(u)
            })
            .collect();
        Self { units }
    }

    /// Bytes [`FlashWork::new`] allocates.
    pub fn bytes_for(shape: &AttentionShape, num_batch: usize, threads: usize) -> usize {
        let rows = unit_rows(shape, num_batch);
        let unit = rows * (shape.head_dim_k * 4 + 4 + 8)
            + FlashState::bytes_for(rows, shape.head_dim_v)
            + FlashScratch::bytes_for(rows, shape.head_dim_k, shape.head_dim_v);
        max_units(shape, num_batch, threads) * unit
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.units.iter().map(|u| lock(u).bytes()).sum()
    }
}

/// See the module docs; the batch's rows are already in `view`, whose cells in use all
/// lie below `active`.
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
    let n = batch.len();
    if n == 0 {
        return Ok(());
    }
    let (g, hk, hv) = (shape.group(), shape.head_dim_k, shape.head_dim_v);
    let blocks = active.div_ceil(FLASH_BLOCK);
    let (tiles, chunks) = split(n, shape.n_head_kv, pool.threads(), blocks);
    let per_chunk = blocks.div_ceil(chunks) * FLASH_BLOCK;
    let units = tiles * shape.n_head_kv * chunks;
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
        let tokens = tile * TILE..((tile + 1) * TILE).min(n);
        unit.q.clear();
        unit.pos.clear();
        unit.seq.clear();
        for t in tokens {
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
    for tile in 0..tiles {
        for kv_h in 0..shape.n_head_kv {
            let first = (tile * shape.n_head_kv + kv_h) * chunks;
            let mut head = lock(&work.units[first]);
            for c in 1..chunks {
                head.state.merge(&lock(&work.units[first + c]).state);
            }
            let tokens = tile * TILE..((tile + 1) * TILE).min(n);
            for (i, t) in tokens.enumerate() {
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
