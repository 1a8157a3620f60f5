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
//! as they are written. The configuration ([`KvConfig`], [`KvLayout`]) and the sizes
//! ([`plan::kv::KvPlan`]) come from the `plan` crate, which the memory estimate reads
//! too, so a cache takes what was estimated. Removing positions, sharing them, shifting them (the context
//! shift, which re-rotates the moved keys) and clearing are the operations a server needs.

mod cells;
mod device;
mod error;
mod layer_view;
mod placement;

use kernels::arch::cast::{as_bytes, as_bytes_mut};
use kernels::ops::hadamard_in_place;
use kernels::quant::{dequantize_row, quantize_row};
use plan::kv::KvPlan;

pub use device::DeviceLayer;
pub use error::KvError;
pub use layer_view::{Gathered, LayerView};
pub use placement::Placement;
pub use plan::kv::{
    CacheType, KvBytes, KvConfig, KvConfigError, KvLayout, MAX_SEQUENCES, UnknownCacheType,
};

use cells::CellTable;

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
    k: Rows,
    v: Rows,
}

/// Where a layer's rows live: in memory here, or on the GPU the model computes on.
#[derive(Debug)]
enum Rows {
    // f32 words keep every row 4-byte aligned, so f32 rows can be read in place.
    Host(Vec<f32>),
    Device(gpu::GpuBuffer),
}

impl Rows {
    /// The rows in host memory; a device cache has none (its attention runs on the GPU).
    fn host(&self) -> &[f32] {
        match self {
            Self::Host(words) => words,
            Self::Device(_) => &[],
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Self::Host(words) => words.capacity() * 4,
            Self::Device(buffer) => usize::try_from(buffer.allocated_bytes()).unwrap_or(usize::MAX),
        }
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
    /// The GPU holding the rows, for a cache made by [`KvCache::new_on_device`].
    device: Option<std::sync::Arc<gpu::Gpu>>,
}

/// A zero whose value the optimiser cannot see, so that filling a fresh allocation with it
/// really writes every page: the cache is resident from load on, as its estimate says.
fn touched(len: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    v.resize(len, std::hint::black_box(0.0));
    v
}

impl KvCache {
    /// Bytes a cache for `layout` and `config` allocates, without allocating it (the
    /// plan's arithmetic, which [`KvCache::new`] allocates by).
    pub fn bytes_for(layout: &KvLayout, config: &KvConfig) -> Result<KvBytes, KvError> {
        Ok(KvPlan::bytes_for(layout, config)?)
    }

    /// Allocates (and touches) the whole cache now, as [`KvPlan`] sizes it.
    pub fn new(layout: KvLayout, config: KvConfig) -> Result<Self, KvError> {
        Self::allocate(layout, config, None)
    }

    fn allocate(
        layout: KvLayout,
        config: KvConfig,
        device: Option<std::sync::Arc<gpu::Gpu>>,
    ) -> Result<Self, KvError> {
        let plan = KvPlan::new(&layout, &config)?;
        let tables = plan
            .tables
            .iter()
            .map(|&(n, window)| Table {
                cells: CellTable::new(n),
                window,
            })
            .collect();
        let too_large = KvConfigError::TooLarge {
            num_ctx: config.num_ctx,
            num_parallel: config.num_parallel,
        };
        let layers = (plan.layer_table.iter().enumerate())
            .map(|(il, &t)| {
                let (k, v) = plan.layer_words(il).ok_or(too_large.clone())?;
                let rows = |words: usize, what: &str| match &device {
                    None => Ok(Rows::Host(touched(words))),
                    Some(gpu) => gpu
                        .zeros_f32(&format!("K/V cache layer {il} {what}"), words)
                        .map(Rows::Device)
                        .map_err(KvError::from),
                };
                Ok(LayerRows {
                    table: t,
                    k: rows(k, "keys")?,
                    v: rows(v, "values")?,
                })
            })
            .collect::<Result<_, KvError>>()?;
        Ok(Self {
            config,
            layout,
            tables,
            layers,
            k_row: plan.k_row,
            v_row: plan.v_row,
            device,
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
        if self.device.is_some() || !self.config.type_k.is_quantized() || !d.is_multiple_of(64) {
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
        let quantized = self.config.type_v.is_quantized() && self.device.is_none();
        (quantized && self.layout.head_dim_v.is_multiple_of(64)).then_some(64)
    }

    /// Bytes held, as allocated.
    pub fn bytes(&self) -> KvBytes {
        let k = self.layers.iter().map(|l| l.k.bytes()).sum();
        let v = self.layers.iter().map(|l| l.v.bytes()).sum();
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
                    self.copy_cell(t, from, to)?;
                }
            }
            self.tables[t].cells.shift(seq, range.clone(), delta);
        }
        Ok(())
    }

    fn copy_cell(&mut self, table: usize, from: usize, to: usize) -> Result<(), KvError> {
        let (kr, vr) = (self.k_row, self.v_row);
        let device = self.device.as_ref();
        for l in self.layers.iter_mut().filter(|l| l.table == table) {
            device::edit_rows(device, &mut l.k, |k| {
                k.copy_within(from * kr..(from + 1) * kr, to * kr);
                Ok::<(), KvError>(())
            })?;
            device::edit_rows(device, &mut l.v, |v| {
                v.copy_within(from * vr..(from + 1) * vr, to * vr);
                Ok::<(), KvError>(())
            })?;
        }
        Ok(())
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
        let device = self.device.as_ref();
        for (t, table) in self.tables.iter_mut().enumerate() {
            if !table.cells.has_pending() {
                continue;
            }
            let shifts: Vec<(usize, i32)> = table.cells.pending_shifts().collect();
            for (il, l) in self.layers.iter_mut().enumerate() {
                if l.table != t {
                    continue;
                }
                device::edit_rows(device, &mut l.k, |k: &mut [u8]| -> Result<(), E> {
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
                    Ok(())
                })?;
            }
            table.cells.shifts_applied();
        }
        Ok(())
    }

    /// What attention in `layer` reads: the cells, their rows and the window. A cache
    /// on a GPU has no rows here (see [`KvCache::device_layer`]).
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
            k: as_bytes(l.k.host())
                .get(..table.cells.len() * self.k_row)
                .unwrap_or_default(),
            v: as_bytes(l.v.host())
                .get(..table.cells.len() * self.v_row)
                .unwrap_or_default(),
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
        let (Rows::Host(kw), Rows::Host(vw)) = (&mut l.k, &mut l.v) else {
            return Err(KvError::Device(
                "rows on the GPU are written by the GPU forward pass, not from host memory"
                    .to_owned(),
            ));
        };
        let kb = as_bytes_mut(kw);
        for (t, &c) in cells.iter().enumerate() {
            quantize_row(tk, &k[t * kd..(t + 1) * kd], &mut kb[c * kr..(c + 1) * kr])?;
        }
        let vb = as_bytes_mut(vw);
        for (t, &c) in cells.iter().enumerate() {
            quantize_row(tv, &v[t * vd..(t + 1) * vd], &mut vb[c * vr..(c + 1) * vr])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
