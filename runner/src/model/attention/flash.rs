//! Flash attention over the cache's cells, batch-invariant: a token's output depends on
//! its own sequence's keys and values only, never on where the cells lie in the cache or
//! on which other sequences share the batch.
//!
//! Each sequence's cells are listed by position (a hole where it has none), so blocks
//! of [`FLASH_BLOCK`] cells are blocks of positions. The positions are cut into chunks
//! of a size fixed at load; each chunk's attention goes into a fresh state and the
//! states are merged from the first chunk to the last. A tile holds up to [`TILE`]
//! tokens of one sequence. A small tile (a decode step) spreads its chunks over the
//! threads and merges afterwards; a larger one folds them in turn: the same sums either
//! way.

use std::sync::Mutex;

use kernels::cpu::Isa;
use kernels::ops::{
    CellMask, FLASH_BLOCK, FlashAttnError, FlashScratch, FlashState, HeadCall, NO_CELL, QueryRows,
    Scores, flash_attn_list, flash_attn_list_heads,
};
use kernels::pool::ThreadPool;
use plan::compute::flash::{FlashSizes, SMALL_TILE, TILE, chunk_positions};

use super::reference::tokens_by_seq;
use super::{AttentionShape, lock};
use crate::kvcache::LayerView;
use crate::model::{Batch, ModelError};

/// One thread's buffers: query rows of a tile, the kernel's scratch, a chunk's state.
#[derive(Debug, Default)]
struct Worker {
    q: Vec<f32>,
    pos: Vec<i32>,
    seq: Vec<u64>,
    scratch: FlashScratch,
    part: FlashState,
}

/// Scratch of the flash path, sized at load.
#[derive(Debug, Default)]
pub struct FlashWork {
    workers: Vec<Mutex<Worker>>,
    /// One state per (large tile, head).
    large: Vec<Mutex<FlashState>>,
    /// One state per (small tile, head, chunk).
    small: Vec<Mutex<FlashState>>,
    /// Each sequence's cells by position, sequence after sequence.
    maps: Vec<u32>,
    chunk: usize,
    /// At most this many K/V heads in one unit ([`FlashSizes::heads_per_unit`]).
    heads_per_unit: usize,
}

impl FlashWork {
    /// Scratch for batches of up to `num_batch` tokens of up to `num_parallel` sequences
    /// of `num_ctx` positions on `threads` threads, allocated now, as [`FlashSizes`]
    /// says: [`plan::compute::flash::bytes_for`] bytes.
    pub fn new(
        shape: &AttentionShape,
        num_ctx: usize,
        num_batch: usize,
        num_parallel: usize,
        threads: usize,
    ) -> Self {
        let s = FlashSizes::new(shape, num_ctx, num_batch, num_parallel);
        let (hk, hv) = (shape.head_dim_k, shape.head_dim_v);
        let state = |rows: usize| {
            let mut st = FlashState::new();
            st.reset(rows, hv);
            Mutex::new(st)
        };
        let workers = (0..threads.max(1))
            .map(|_| {
                let mut w = Worker::default();
                w.q.reserve(s.rows * hk);
                w.pos.reserve(s.rows);
                w.seq.reserve(s.rows);
                w.scratch.reserve(s.rows, hk, hv);
                w.part.reset(s.rows, hv);
                Mutex::new(w)
            })
            .collect();
        let mut maps = Vec::with_capacity(s.map);
        maps.resize(s.map, std::hint::black_box(NO_CELL));
        maps.clear();
        Self {
            workers,
            large: (0..s.large).map(|_| state(s.rows)).collect(),
            small: (0..s.small).map(|_| state(s.small_rows)).collect(),
            maps,
            chunk: chunk_positions(num_ctx),
            heads_per_unit: s.heads_per_unit,
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        let workers: usize = self
            .workers
            .iter()
            .map(|w| {
                let w = lock(w);
                w.q.capacity() * 4
                    + w.pos.capacity() * 4
                    + w.seq.capacity() * 8
                    + w.scratch.capacity_bytes()
                    + w.part.capacity_bytes()
            })
            .sum();
        let states: usize = self
            .large
            .iter()
            .chain(&self.small)
            .map(|s| lock(s).capacity_bytes())
            .sum();
        workers + states + self.maps.capacity() * 4
    }

    /// A free worker's buffers (there are as many as threads, so one is free).
    fn worker(&self) -> std::sync::MutexGuard<'_, Worker> {
        self.workers
            .iter()
            .find_map(|w| w.try_lock().ok())
            .unwrap_or_else(|| lock(&self.workers[0]))
    }
}

/// One tile: up to [`TILE`] tokens of one sequence, and the positions its rows may see.
struct Tile<'t> {
    tokens: &'t [usize],
    /// Offset of the sequence's map in `maps` and the position of its first entry.
    map: usize,
    map_base: i64,
    /// Positions `first..=last` that the tile's rows may see.
    first: i64,
    last: i64,
}

impl Tile<'_> {
    /// The chunks of the tile's positions, as ranges of its sequence's map.
    fn chunks(&self, chunk: usize) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        let c = chunk as i64;
        (self.first / c..=self.last / c).map(move |k| {
            let (from, to) = ((k * c).max(self.first), ((k + 1) * c).min(self.last + 1));
            let at = |p: i64| self.map + (p - self.map_base) as usize;
            at(from)..at(to)
        })
    }

    fn n_chunks(&self, chunk: usize) -> usize {
        (self.last / chunk as i64 - self.first / chunk as i64 + 1) as usize
    }

    fn is_small(&self) -> bool {
        self.tokens.len() <= SMALL_TILE
    }
}

/// A unit of work: a large tile's head, or a small tile's chunk for the K/V heads
/// `heads`. The states of a small tile's head `h` and chunk `c` are
/// `work.small[base + h * n_chunks + c]`; a large tile's head `h` is
/// `work.large[base + h]`.
#[derive(Clone)]
enum Unit {
    Large {
        tile: usize,
        kv_h: usize,
        state: usize,
    },
    Small {
        tile: usize,
        heads: std::ops::Range<usize>,
        chunk: usize,
        base: usize,
    },
}

/// Small tiles' chunks per thread from which a unit takes every K/V head of its chunk:
/// a cell's keys (and values) of all heads lie side by side in the cache, so one thread
/// going through the heads of a chunk in turn reads whole cell rows, where a unit per
/// head strides over the other heads' bytes and its neighbours fetch the same lines anew.
/// At one chunk a thread or more the heads go together: four streams at depth 64 decode
/// 7% faster, two or three 3% (`docs/PERFORMANCE.md`, twelfth part). Fewer chunks than
/// threads (one stream at a shallow depth) keep a unit per head, so that the threads
/// share the heads.
const CHUNKS_PER_THREAD_FOR_ALL_HEADS: usize = 1;

/// The first position a row at `pos` may see: its window's start, on a block boundary.
fn first_seen(window: Option<usize>, pos: i64) -> i64 {
    let lo = window.map_or(0, |w| (pos + 1 - w as i64).max(0));
    lo - lo % FLASH_BLOCK as i64
}

/// Lists each sequence's cells by position into `work.maps` and cuts the batch into
/// tiles. One pass over the cells fills every sequence's map: a cell shared by several
/// sequences goes into each of theirs, and where two cells of a sequence hold the same
/// position the later one is listed.
fn tiles<'b>(
    view: &LayerView<'_>,
    active: usize,
    batch: &Batch,
    groups: &'b [(usize, Vec<usize>)],
    maps: &mut Vec<u32>,
) -> Vec<Tile<'b>> {
    let mask = view.mask();
    let active = active.min(mask.pos.len()).min(mask.seqs.len());
    let pos = |t: usize| i64::from(batch.positions()[t]);
    maps.clear();
    let mut tiles = Vec::new();
    // Each batch sequence's map: where it starts in `maps` and the positions it lists.
    let mut spans = [(0usize, 0i64, -1i64); u64::BITS as usize];
    let mut wanted = 0u64;
    for (seq, tokens) in groups {
        let p_min = tokens.iter().map(|&t| pos(t)).min().unwrap_or(0);
        let p_max = tokens.iter().map(|&t| pos(t)).max().unwrap_or(0);
        let base = first_seen(view.window, p_min);
        let map = maps.len();
        maps.resize(map + (p_max - base + 1).max(0) as usize, NO_CELL);
        if let Some(span) = spans.get_mut(*seq) {
            *span = (map, base, p_max);
            wanted |= 1u64 << seq;
        }
        for tokens in tokens.chunks(TILE) {
            let t_min = tokens.iter().map(|&t| pos(t)).min().unwrap_or(0);
            let last = tokens.iter().map(|&t| pos(t)).max().unwrap_or(0);
            tiles.push(Tile {
                tokens,
                map,
                map_base: base,
                first: first_seen(view.window, t_min),
                last,
            });
        }
    }
    for (c, (&p, &seqs)) in mask.pos[..active]
        .iter()
        .zip(&mask.seqs[..active])
        .enumerate()
    {
        let mut bits = seqs & wanted;
        let p = i64::from(p);
        while bits != 0 {
            let (map, base, p_max) = spans[bits.trailing_zeros() as usize];
            bits &= bits - 1;
            if (base..=p_max).contains(&p) {
                maps[map + (p - base) as usize] = c as u32;
            }
        }
    }
    tiles
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
    if batch.is_empty() {
        return Ok(());
    }
    let groups = tokens_by_seq(batch);
    let mut maps = std::mem::take(&mut work.maps);
    let tiles = tiles(view, active, batch, &groups, &mut maps);
    work.maps = maps;
    let chunk = work.chunk;
    let n_kv = shape.n_head_kv;
    let small_chunks: usize = tiles
        .iter()
        .filter(|t| t.is_small())
        .map(|t| t.n_chunks(chunk))
        .sum();
    let all_heads = small_chunks >= CHUNKS_PER_THREAD_FOR_ALL_HEADS * pool.threads();
    let mut units = Vec::new();
    let mut bases = Vec::with_capacity(tiles.len());
    let (mut large, mut small) = (0, 0);
    for (tile, t) in tiles.iter().enumerate() {
        if t.is_small() {
            bases.push(small);
            let n = t.n_chunks(chunk);
            let per_set = if all_heads {
                n_kv.min(work.heads_per_unit).max(1)
            } else {
                1
            };
            for first_head in (0..n_kv).step_by(per_set) {
                let heads = first_head..(first_head + per_set).min(n_kv);
                for c in 0..n {
                    units.push(Unit::Small {
                        tile,
                        heads: heads.clone(),
                        chunk: c,
                        base: small,
                    });
                }
            }
            small += n_kv * n;
        } else {
            bases.push(large);
            for kv_h in 0..n_kv {
                units.push(Unit::Large {
                    tile,
                    kv_h,
                    state: large + kv_h,
                });
            }
            large += n_kv;
        }
    }
    while work.large.len() < large {
        work.large.push(Mutex::new(FlashState::new()));
    }
    while work.small.len() < small {
        work.small.push(Mutex::new(FlashState::new()));
    }
    let failure: Mutex<Option<FlashAttnError>> = Mutex::new(None);
    let mask = view.mask();
    let work = &*work;
    pool.run(units.len(), |u| {
        let mut worker = work.worker();
        let job = UnitJob {
            shape,
            view,
            batch,
            q,
            work,
            mask: &mask,
            tiles: &tiles,
            chunk,
            isa,
        };
        if let Err(e) = job.run(&units[u], &mut worker) {
            lock(&failure).get_or_insert(e);
        }
    });
    if let Some(e) = lock(&failure).take() {
        return Err(e.into());
    }
    write_outputs(shape, &tiles, &bases, work, out);
    Ok(())
}

/// What every unit of one layer's attention shares.
struct UnitJob<'j, 'v> {
    shape: &'j AttentionShape,
    view: &'j LayerView<'v>,
    batch: &'j Batch,
    q: &'j [f32],
    work: &'j FlashWork,
    mask: &'j CellMask<'j>,
    tiles: &'j [Tile<'j>],
    chunk: usize,
    isa: Isa,
}

impl UnitJob<'_, '_> {
    /// Copies the query rows of tile `t`'s heads `heads` into `w.q`, head after head, and
    /// the rows' positions and sequences (the same for every head) into `w.pos`/`w.seq`.
    fn gather(&self, t: &Tile<'_>, heads: std::ops::Range<usize>, w: &mut Worker) {
        let (g, hk, q_dim) = (
            self.shape.group(),
            self.shape.head_dim_k,
            self.shape.q_dim(),
        );
        w.q.clear();
        w.pos.clear();
        w.seq.clear();
        for kv_h in heads {
            for &tok in t.tokens {
                let start = tok * q_dim + kv_h * g * hk;
                w.q.extend_from_slice(&self.q[start..start + g * hk]);
            }
        }
        for &tok in t.tokens {
            for _ in 0..g {
                w.pos.push(self.batch.positions()[tok]);
                w.seq.push(1u64 << self.batch.seqs()[tok]);
            }
        }
    }

    fn scores(&self) -> Scores {
        Scores {
            scale: self.shape.scale,
            softcap: self.shape.softcap,
        }
    }

    /// The attention of the unit's heads over its cells, into their states.
    fn run(&self, unit: &Unit, w: &mut Worker) -> Result<(), FlashAttnError> {
        let (work, hv, chunk) = (self.work, self.shape.head_dim_v, self.chunk);
        match unit {
            Unit::Small {
                tile,
                heads,
                chunk: c,
                base,
            } => {
                let t = &self.tiles[*tile];
                self.gather(t, heads.clone(), w);
                let Worker {
                    q,
                    pos,
                    seq,
                    scratch,
                    ..
                } = w;
                let n_rows = pos.len();
                let n = t.n_chunks(chunk);
                let state_of = |kv_h: usize| lock(&work.small[base + kv_h * n + c]);
                let cells = &work.maps[t.chunks(chunk).nth(*c).unwrap_or(0..0)];
                if heads.len() == 1 {
                    // A unit per head (shallow contexts, most decode steps): the one-head
                    // call, which allocates nothing.
                    let kv_h = heads.start;
                    let mut st = state_of(kv_h);
                    st.reset(n_rows, hv);
                    let rows = QueryRows {
                        q,
                        dim: self.shape.head_dim_k,
                        pos,
                        seq,
                    };
                    return flash_attn_list(
                        self.isa,
                        &rows,
                        &self.view.key_head(kv_h)?,
                        &self.view.value_head(kv_h)?,
                        self.mask,
                        self.scores(),
                        cells,
                        scratch,
                        &mut st,
                    );
                }
                let per_head = n_rows * self.shape.head_dim_k;
                let mut calls = Vec::with_capacity(heads.len());
                for (i, kv_h) in heads.clone().enumerate() {
                    calls.push(HeadCall {
                        rows: QueryRows {
                            q: &q[i * per_head..(i + 1) * per_head],
                            dim: self.shape.head_dim_k,
                            pos,
                            seq,
                        },
                        keys: self.view.key_head(kv_h)?,
                        values: self.view.value_head(kv_h)?,
                    });
                }
                let mut guards: Vec<_> = heads.clone().map(state_of).collect();
                let mut states: Vec<&mut FlashState> =
                    guards.iter_mut().map(|g| &mut **g).collect();
                for st in &mut states {
                    st.reset(n_rows, hv);
                }
                flash_attn_list_heads(
                    self.isa,
                    &calls,
                    self.mask,
                    self.scores(),
                    cells,
                    scratch,
                    &mut states,
                )
            }
            Unit::Large { tile, kv_h, state } => {
                let t = &self.tiles[*tile];
                self.gather(t, *kv_h..*kv_h + 1, w);
                let Worker {
                    q,
                    pos,
                    seq,
                    scratch,
                    part,
                } = w;
                let rows = QueryRows {
                    q,
                    dim: self.shape.head_dim_k,
                    pos,
                    seq,
                };
                let n_rows = pos.len();
                let (keys, values) = (self.view.key_head(*kv_h)?, self.view.value_head(*kv_h)?);
                let mut run = |cells: std::ops::Range<usize>, state: &mut FlashState| {
                    flash_attn_list(
                        self.isa,
                        &rows,
                        &keys,
                        &values,
                        self.mask,
                        self.scores(),
                        &work.maps[cells],
                        scratch,
                        state,
                    )
                };
                let mut st = lock(&work.large[*state]);
                st.reset(n_rows, hv);
                for (k, cells) in t.chunks(chunk).enumerate() {
                    if k == 0 {
                        run(cells, &mut st)?;
                    } else {
                        part.reset(n_rows, hv);
                        let result = run(cells, part);
                        st.merge(part);
                        result?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Merges each small tile's chunk states in order and writes every row's output.
fn write_outputs(
    shape: &AttentionShape,
    tiles: &[Tile<'_>],
    bases: &[usize],
    work: &FlashWork,
    out: &mut [f32],
) {
    let (g, hv, od) = (shape.group(), shape.head_dim_v, shape.out_dim());
    for (t, &base) in tiles.iter().zip(bases) {
        for kv_h in 0..shape.n_head_kv {
            let head = if t.is_small() {
                let n = t.n_chunks(work.chunk);
                let first = base + kv_h * n;
                let mut head = lock(&work.small[first]);
                for k in 1..n {
                    head.merge(&lock(&work.small[first + k]));
                }
                head
            } else {
                lock(&work.large[base + kv_h])
            };
            for (i, &tok) in t.tokens.iter().enumerate() {
                for j in 0..g {
                    let h = kv_h * g + j;
                    head.write(
                        i * g + j,
                        &mut out[tok * od + h * hv..tok * od + (h + 1) * hv],
                    );
                }
            }
        }
    }
}
