//! The K/V cache: keys and values of every token a model has seen, per layer, in cells.
//!
//! One [`KvCache`] serves one model instance. It is allocated once, at load, and never
//! grows: `num_ctx × num_parallel` cells for the layers that attend to everything, and for
//! sliding-window layers a table of `num_parallel × (window - 1) + num_batch` cells
//! (whichever is smaller), whose cells are reused once every sequence's window has moved
//! past them. Each cell knows its position and the set of sequences using it, so
//! sequences share a prompt prefix without copying it ([`KvCache::seq_cp`]).
//!
//! Keys and values are stored in [`CacheType`]s chosen independently; rows are quantized
//! as they are written. Removing positions, sharing them, shifting them (the context
//! shift, which re-rotates the moved keys) and clearing are the operations a server needs.

mod cache_type;
mod cells;
mod error;
mod layer_view;
mod placement;

use kernels::arch::cast::{as_bytes, as_bytes_mut};
use kernels::ops::hadamard_in_place;
use kernels::quant::{dequantize_row, quantize_row};

pub use cache_type::{CacheType, UnknownCacheType};
pub use cells::MAX_SEQUENCES;
pub use error::KvError;
pub use layer_view::{Gathered, LayerView};
pub use placement::Placement;

use cells::CellTable;

/// How a cache is sized and stored: the per-load choices a user makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvConfig {
    /// Positions each sequence may hold.
    pub num_ctx: usize,
    /// Sequences (server slots) sharing the cache.
    pub num_parallel: usize,
    /// The most tokens one forward pass may bring.
    pub num_batch: usize,
    /// Storage type of keys.
    pub type_k: CacheType,
    /// Storage type of values.
    pub type_v: CacheType,
    /// Attention streams over the cells (flash attention) rather than gathering each
    /// sequence's keys and values into f32 rows first.
    pub flash_attention: bool,
}

impl KvConfig {
    /// `num_ctx` positions for one sequence, batches of up to 512 tokens, f16 keys and
    /// values and flash attention: llama.cpp's defaults on a CPU.
    pub fn new(num_ctx: usize) -> Self {
        Self {
            num_ctx,
            num_parallel: 1,
            num_batch: 512,
            type_k: CacheType::F16,
            type_v: CacheType::F16,
            flash_attention: true,
        }
    }

    /// The reference configuration: f32 keys and values, no flash attention (the
    /// arithmetic llama.cpp's reference path does, bit for bit).
    pub fn reference(num_ctx: usize) -> Self {
        Self {
            type_k: CacheType::F32,
            type_v: CacheType::F32,
            flash_attention: false,
            ..Self::new(num_ctx)
        }
    }
}

/// What a model stores per token, layer by layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvLayout {
    /// Key values per token and layer (`head_count_kv × head_dim_k`).
    pub k_dim: usize,
    /// Value values per token and layer (`head_count_kv × head_dim_v`).
    pub v_dim: usize,
    /// Values per key head.
    pub head_dim_k: usize,
    /// Values per value head.
    pub head_dim_v: usize,
    /// For each layer, its sliding window (`None`: it attends to every position).
    pub windows: Vec<Option<usize>>,
}

/// One table of cells and the layers that store into it.
#[derive(Debug)]
struct Table {
    cells: CellTable,
    window: Option<usize>,
}

/// The key and value rows of one layer.
#[derive(Debug)]
struct LayerRows {
    table: usize,
    // f32 words keep every row 4-byte aligned, so f32 rows can be read in place.
    k: Vec<f32>,
    v: Vec<f32>,
}

/// Bytes a cache of `layout` and `config` allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvBytes {
    /// Key rows.
    pub k: usize,
    /// Value rows.
    pub v: usize,
    /// Cell metadata (positions, sequence sets, pending shifts).
    pub cells: usize,
}

impl KvBytes {
    /// Everything.
    pub fn total(&self) -> usize {
        self.k + self.v + self.cells
    }
}

/// The sizes of a cache, computed once and shared by [`KvCache::bytes_for`] and
/// [`KvCache::new`] so that the estimate is what gets allocated.
struct Plan {
    k_row: usize,
    v_row: usize,
    /// Cells and window of each table.
    tables: Vec<(usize, Option<usize>)>,
    /// Table of each layer.
    layer_table: Vec<usize>,
}

fn words(bytes: usize) -> usize {
    bytes.div_ceil(4)
}

impl Plan {
    fn new(layout: &KvLayout, config: &KvConfig) -> Result<Self, KvError> {
        let bad = |what, value, why| Err(KvError::BadConfig { what, value, why });
        if config.num_ctx == 0 {
            return bad("num_ctx", 0, "it must be at least 1");
        }
        if config.num_parallel == 0 || config.num_parallel > MAX_SEQUENCES {
            return bad("num_parallel", config.num_parallel, "it must be 1 to 64");
        }
        if config.num_batch == 0 {
            return bad("num_batch", 0, "it must be at least 1");
        }
        if config.num_ctx > i32::MAX as usize / 2 {
            return bad("num_ctx", config.num_ctx, "it must be below 2^30");
        }
        let row = |which, ty: CacheType, dim: usize, head_dim: usize| {
            if !head_dim.is_multiple_of(ty.block_size()) {
                return Err(KvError::HeadNotBlocks {
                    which,
                    ty,
                    block: ty.block_size(),
                    head_dim,
                });
            }
            ty.row_bytes(dim).ok_or(KvError::HeadNotBlocks {
                which,
                ty,
                block: ty.block_size(),
                head_dim,
            })
        };
        let k_row = row("K", config.type_k, layout.k_dim, layout.head_dim_k)?;
        let v_row = row("V", config.type_v, layout.v_dim, layout.head_dim_v)?;
        let too_large = KvError::TooLarge {
            num_ctx: config.num_ctx,
            num_parallel: config.num_parallel,
        };
        let full = config
            .num_ctx
            .checked_mul(config.num_parallel)
            .ok_or(too_large.clone())?;
        let mut tables: Vec<(usize, Option<usize>)> = Vec::new();
        let mut layer_table = Vec::with_capacity(layout.windows.len());
        for &window in &layout.windows {
            let window = window.filter(|&w| w < config.num_ctx);
            let t = match tables.iter().position(|&(_, w)| w == window) {
                Some(t) => t,
                None => {
                    let cells = match window {
                        None => full,
                        Some(w) => (config.num_parallel * w.saturating_sub(1))
                            .saturating_add(config.num_batch)
                            .min(full),
                    };
                    tables.push((cells, window));
                    tables.len() - 1
                }
            };
            layer_table.push(t);
        }
        let plan = Self {
            k_row,
            v_row,
            tables,
            layer_table,
        };
        plan.bytes().ok_or(too_large)?;
        Ok(plan)
    }

    fn bytes(&self) -> Option<KvBytes> {
        let (mut k, mut v) = (0usize, 0usize);
        for &t in &self.layer_table {
            let cells = self.tables[t].0;
            k = k.checked_add(words(cells.checked_mul(self.k_row)?) * 4)?;
            v = v.checked_add(words(cells.checked_mul(self.v_row)?) * 4)?;
        }
        let cells = self
            .tables
            .iter()
            .try_fold(0usize, |acc, &(n, _)| acc.checked_add(n.checked_mul(16)?))?;
        Some(KvBytes { k, v, cells })
    }
}

/// Keys and values of up to `num_parallel` sequences, in cells; see the module docs.
#[derive(Debug)]
pub struct KvCache {
    config: KvConfig,
    layout: KvLayout,
    tables: Vec<Table>,
    layers: Vec<LayerRows>,
    k_row: usize,
    v_row: usize,
}

/// A zero whose value the optimiser cannot see, so that filling a fresh allocation with it
/// really writes every page: the cache is resident from load on, as its estimate says.
fn touched(len: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    v.resize(len, std::hint::black_box(0.0));
    v
}

impl KvCache {
    /// Bytes a cache for `layout` and `config` allocates, without allocating it.
    pub fn bytes_for(layout: &KvLayout, config: &KvConfig) -> Result<KvBytes, KvError> {
        let plan = Plan::new(layout, config)?;
        plan.bytes().ok_or(KvError::TooLarge {
            num_ctx: config.num_ctx,
            num_parallel: config.num_parallel,
        })
    }

    /// Allocates (and touches) the whole cache now.
    pub fn new(layout: KvLayout, config: KvConfig) -> Result<Self, KvError> {
        let plan = Plan::new(&layout, &config)?;
        let tables = plan
            .tables
            .iter()
            .map(|&(n, window)| Table {
                cells: CellTable::new(n),
                window,
            })
            .collect();
        let layers = plan
            .layer_table
            .iter()
            .map(|&t| {
                let n = plan.tables[t].0;
                LayerRows {
                    table: t,
                    k: touched(words(n * plan.k_row)),
                    v: touched(words(n * plan.v_row)),
                }
            })
            .collect();
        Ok(Self {
            config,
            layout,
            tables,
            layers,
            k_row: plan.k_row,
            v_row: plan.v_row,
        })
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &KvConfig {
        &self.config
    }

    /// The layout it was made for.
    pub fn layout(&self) -> &KvLayout {
        &self.layout
    }

    /// The size of the Walsh-Hadamard rotation applied to queries and keys before they
    /// are stored or compared, when keys are quantized (llama.cpp's rule: heads of a
    /// multiple of 64 values, rotated in the largest power-of-two runs that divide them).
    /// Rotation keeps `q·k` and spreads outlier channels over a head, which quantization
    /// loses much less of.
    pub fn k_rotation(&self) -> Option<usize> {
        let d = self.layout.head_dim_k;
        if !self.config.type_k.is_quantized() || !d.is_multiple_of(64) {
            return None;
        }
        let mut n = 64;
        while d.is_multiple_of(n * 2) {
            n *= 2;
        }
        Some(n)
    }

    /// The rotation applied to values (and undone on the attention output) when values
    /// are quantized: runs of 64, llama.cpp's choice.
    pub fn v_rotation(&self) -> Option<usize> {
        let quantized = self.config.type_v.is_quantized();
        (quantized && self.layout.head_dim_v.is_multiple_of(64)).then_some(64)
    }

    /// Bytes held, as allocated.
    pub fn bytes(&self) -> KvBytes {
        let k = self.layers.iter().map(|l| l.k.capacity() * 4).sum();
        let v = self.layers.iter().map(|l| l.v.capacity() * 4).sum();
        let cells = self.tables.iter().map(|t| t.cells.bytes()).sum();
        KvBytes { k, v, cells }
    }

    /// Cells in use in the table of the layers without a window (the one that bounds
    /// how many tokens the cache holds).
    pub fn cells_used(&self) -> usize {
        self.tables
            .iter()
            .map(|t| t.cells.used())
            .max()
            .unwrap_or(0)
    }

    /// The highest position `seq` holds.
    pub fn seq_pos_max(&self, seq: usize) -> Option<i32> {
        self.tables
            .iter()
            .filter_map(|t| t.cells.pos_max(seq))
            .max()
    }

    /// The lowest position from which every layer still holds `seq`'s tokens (later than
    /// 0 once a sliding window dropped old ones: a prefix before it cannot be reused).
    pub fn seq_pos_min(&self, seq: usize) -> Option<i32> {
        self.tables
            .iter()
            .filter_map(|t| t.cells.pos_min(seq))
            .max()
    }

    /// Forgets the positions of `seq` in `range`.
    pub fn seq_rm(&mut self, seq: usize, range: std::ops::Range<i32>) {
        for t in &mut self.tables {
            t.cells.remove(seq, range.clone());
        }
    }

    /// Lets `dst` use the cells `src` holds at positions in `range`, without copying.
    pub fn seq_cp(&mut self, src: usize, dst: usize, range: std::ops::Range<i32>) {
        if src == dst || dst >= self.config.num_parallel {
            return;
        }
        for t in &mut self.tables {
            t.cells.share(src, dst, range.clone());
        }
    }

    /// Moves the positions of `seq` in `range` by `delta`; their keys are re-rotated
    /// before the next forward pass. Cells shared with other sequences are copied first,
    /// so the other sequences keep their positions.
    pub fn seq_shift(
        &mut self,
        seq: usize,
        range: std::ops::Range<i32>,
        delta: i32,
    ) -> Result<(), KvError> {
        for t in 0..self.tables.len() {
            let shared = self.tables[t].cells.shared_cells(seq, range.clone());
            if !shared.is_empty() {
                let table = &mut self.tables[t].cells;
                let free = table.find_free(shared.len()).ok_or(KvError::Full {
                    needed: shared.len(),
                    free: table.len() - table.used(),
                    cells: table.len(),
                })?;
                for (&from, &to) in shared.iter().zip(&free) {
                    self.tables[t].cells.move_seq(seq, from, to);
                    self.copy_cell(t, from, to);
                }
            }
            self.tables[t].cells.shift(seq, range.clone(), delta);
        }
        Ok(())
    }

    fn copy_cell(&mut self, table: usize, from: usize, to: usize) {
        let (kr, vr) = (self.k_row, self.v_row);
        for l in self.layers.iter_mut().filter(|l| l.table == table) {
            let k = as_bytes_mut(&mut l.k);
            k.copy_within(from * kr..(from + 1) * kr, to * kr);
            let v = as_bytes_mut(&mut l.v);
            v.copy_within(from * vr..(from + 1) * vr, to * vr);
        }
    }

    /// The context shift: keeps the first `num_keep` positions of `seq`, drops the
    /// oldest half of the rest and moves the newer half down. Returns how many positions
    /// were dropped.
    pub fn context_shift(&mut self, seq: usize, num_keep: usize) -> Result<usize, KvError> {
        let Some(max) = self.seq_pos_max(seq) else {
            return Ok(0);
        };
        let n_past = max as usize + 1;
        let keep = num_keep.min(n_past);
        let discard = (n_past - keep) / 2;
        if discard == 0 {
            return Ok(0);
        }
        let (keep, discard) = (keep as i32, discard as i32);
        self.seq_rm(seq, keep..keep + discard);
        self.seq_shift(seq, keep + discard..n_past as i32, -discard)?;
        Ok(discard as usize)
    }

    /// Empties every cell of every sequence.
    pub fn clear(&mut self) {
        for t in &mut self.tables {
            t.cells.clear();
        }
    }

    /// True when some keys wait for [`KvCache::apply_shifts`].
    pub fn has_pending_shifts(&self) -> bool {
        self.tables.iter().any(|t| t.cells.has_pending())
    }

    /// Re-rotates the keys of shifted cells: each key row is dequantized, taken out of
    /// the [`KvCache::k_rotation`] basis, handed to `rotate(layer, delta, row)`, and
    /// stored again.
    pub fn apply_shifts<E: From<KvError>>(
        &mut self,
        mut rotate: impl FnMut(usize, i32, &mut [f32]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut row = vec![0.0f32; self.layout.k_dim];
        let ty = self.config.type_k.ggml();
        let k_rot = self.k_rotation();
        let kr = self.k_row;
        for (t, table) in self.tables.iter_mut().enumerate() {
            if !table.cells.has_pending() {
                continue;
            }
            let shifts: Vec<(usize, i32)> = table.cells.pending_shifts().collect();
            for (il, l) in self.layers.iter_mut().enumerate() {
                if l.table != t {
                    continue;
                }
                let k = as_bytes_mut(&mut l.k);
                for &(c, delta) in &shifts {
                    let bytes = &mut k[c * kr..(c + 1) * kr];
                    dequantize_row(ty, bytes, &mut row).map_err(KvError::from)?;
                    if let Some(n) = k_rot {
                        hadamard_in_place(&mut row, n);
                    }
                    rotate(il, delta, &mut row)?;
                    if let Some(n) = k_rot {
                        hadamard_in_place(&mut row, n);
                    }
                    quantize_row(ty, &row, bytes).map_err(KvError::from)?;
                }
            }
            table.cells.shifts_applied();
        }
        Ok(())
    }

    /// What attention in `layer` reads: the cells, their rows and the window.
    pub fn layer(&self, layer: usize) -> LayerView<'_> {
        let l = &self.layers[layer];
        let table = &self.tables[l.table];
        LayerView {
            table: l.table,
            pos: table.cells.positions(),
            seqs: table.cells.seq_sets(),
            window: table.window,
            type_k: self.config.type_k,
            type_v: self.config.type_v,
            k: &as_bytes(&l.k)[..table.cells.len() * self.k_row],
            v: &as_bytes(&l.v)[..table.cells.len() * self.v_row],
            k_row: self.k_row,
            v_row: self.v_row,
            head_dim_k: self.layout.head_dim_k,
            head_dim_v: self.layout.head_dim_v,
        }
    }

    /// Stores the keys and values of the placed tokens (`k_dim`/`v_dim` values each,
    /// token after token) in `layer`, converting to the storage types.
    pub fn write(
        &mut self,
        layer: usize,
        placement: &Placement,
        k: &[f32],
        v: &[f32],
    ) -> Result<(), KvError> {
        let (kd, vd) = (self.layout.k_dim, self.layout.v_dim);
        let (kr, vr) = (self.k_row, self.v_row);
        let (tk, tv) = (self.config.type_k.ggml(), self.config.type_v.ggml());
        let l = &mut self.layers[layer];
        let cells = placement.cells(l.table);
        let kb = as_bytes_mut(&mut l.k);
        for (t, &c) in cells.iter().enumerate() {
            quantize_row(tk, &k[t * kd..(t + 1) * kd], &mut kb[c * kr..(c + 1) * kr])?;
        }
        let vb = as_bytes_mut(&mut l.v);
        for (t, &c) in cells.iter().enumerate() {
            quantize_row(tv, &v[t * vd..(t + 1) * vd], &mut vb[c * vr..(c + 1) * vr])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
