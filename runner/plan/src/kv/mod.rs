//! The K/V cache as configured and sized: what a user chooses ([`KvConfig`], with the
//! storage types of [`CacheType`]), what a model stores per token ([`KvLayout`]), and
//! the sizes of the tables and rows that follow ([`KvPlan`]).
//!
//! The runner's `KvCache::new` allocates from a [`KvPlan`] and the estimate adds up the
//! same plan's [`KvPlan::bytes`], so the estimate is the allocation. A cache holds
//! `num_ctx × num_parallel` cells for the layers that attend to everything, and for
//! sliding-window layers a table of `num_parallel × (window - 1) + num_batch` cells
//! (whichever is smaller).

mod cache_type;

use thiserror::Error;

pub use cache_type::{CacheType, UnknownCacheType};

/// Sequences a cache can hold at most: one bit each in a cell's set of sequences.
pub const MAX_SEQUENCES: usize = 64;

/// Bytes of metadata per cell: its position (i32), its set of sequences (u64) and its
/// pending shift (i32).
pub const CELL_BYTES: usize = 16;

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

/// Bytes a cache of some layout and configuration allocates.
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

/// Why a cache cannot be configured as asked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KvConfigError {
    /// A size in the configuration is zero or out of range.
    #[error("{what} is {value}: {why}")]
    BadConfig {
        /// The setting (`num_ctx`, `num_parallel`, ...).
        what: &'static str,
        /// Its value.
        value: usize,
        /// What is accepted.
        why: &'static str,
    },
    /// A head is not a whole number of the storage type's blocks.
    #[error(
        "{which} cache type {ty} stores blocks of {block} values, but this model's {which} heads have {head_dim}; use f16 or f32 for {which}"
    )]
    HeadNotBlocks {
        /// "K" or "V".
        which: &'static str,
        /// The type asked for.
        ty: CacheType,
        /// Its block size.
        block: usize,
        /// The head size.
        head_dim: usize,
    },
    /// The cache would not fit in the address space.
    #[error("a K/V cache of {num_parallel} × {num_ctx} positions is too large to allocate")]
    TooLarge {
        /// Positions per sequence.
        num_ctx: usize,
        /// Sequences.
        num_parallel: usize,
    },
}

/// The sizes of a cache, computed once and shared by the estimate ([`KvPlan::bytes`])
/// and the runner's allocation, so that the estimate is what gets allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPlan {
    /// Bytes of one key row (one token of one layer) in its storage type.
    pub k_row: usize,
    /// Bytes of one value row.
    pub v_row: usize,
    /// Cells and window of each table of cells.
    pub tables: Vec<(usize, Option<usize>)>,
    /// The table of each layer.
    pub layer_table: Vec<usize>,
}

/// 4-byte words holding `bytes` bytes: rows are stored in f32 words so that they stay
/// 4-byte aligned.
pub fn words(bytes: usize) -> usize {
    bytes.div_ceil(4)
}

impl KvPlan {
    /// Checks `config` against `layout` and sizes the cache.
    pub fn new(layout: &KvLayout, config: &KvConfig) -> Result<Self, KvConfigError> {
        let bad = |what, value, why| Err(KvConfigError::BadConfig { what, value, why });
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
            let not_blocks = KvConfigError::HeadNotBlocks {
                which,
                ty,
                block: ty.block_size(),
                head_dim,
            };
            if !head_dim.is_multiple_of(ty.block_size()) {
                return Err(not_blocks);
            }
            ty.row_bytes(dim).ok_or(not_blocks)
        };
        let k_row = row("K", config.type_k, layout.k_dim, layout.head_dim_k)?;
        let v_row = row("V", config.type_v, layout.v_dim, layout.head_dim_v)?;
        let too_large = KvConfigError::TooLarge {
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

    /// Bytes a cache for `layout` and `config` allocates, without allocating it.
    pub fn bytes_for(layout: &KvLayout, config: &KvConfig) -> Result<KvBytes, KvConfigError> {
        let plan = Self::new(layout, config)?;
        plan.bytes().ok_or(KvConfigError::TooLarge {
            num_ctx: config.num_ctx,
            num_parallel: config.num_parallel,
        })
    }

    /// The f32 words of key rows and of value rows of `layer` (all the cells of its
    /// table); `None` when they overflow (never for a plan [`KvPlan::new`] made).
    pub fn layer_words(&self, layer: usize) -> Option<(usize, usize)> {
        let cells = self.tables[self.layer_table[layer]].0;
        let k = words(cells.checked_mul(self.k_row)?);
        let v = words(cells.checked_mul(self.v_row)?);
        Some((k, v))
    }

    /// Bytes of the whole cache; `None` when they overflow.
    pub fn bytes(&self) -> Option<KvBytes> {
        let (mut k, mut v) = (0usize, 0usize);
        for layer in 0..self.layer_table.len() {
            let (kw, vw) = self.layer_words(layer)?;
            k = k.checked_add(kw.checked_mul(4)?)?;
            v = v.checked_add(vw.checked_mul(4)?)?;
        }
        let cells = self.tables.iter().try_fold(0usize, |acc, &(n, _)| {
            acc.checked_add(n.checked_mul(CELL_BYTES)?)
        })?;
        Some(KvBytes { k, v, cells })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(windows: Vec<Option<usize>>) -> KvLayout {
        KvLayout {
            k_dim: 64,
            v_dim: 64,
            head_dim_k: 32,
            head_dim_v: 32,
            windows,
        }
    }

    #[test]
    fn sliding_layers_share_a_smaller_table() {
        let config = KvConfig {
            num_parallel: 2,
            num_batch: 8,
            ..KvConfig::reference(100)
        };
        let plan = KvPlan::new(&layout(vec![Some(10), None, Some(10)]), &config).unwrap();
        assert_eq!(plan.tables, vec![(2 * 9 + 8, Some(10)), (200, None)]);
        assert_eq!(plan.layer_table, vec![0, 1, 0]);
        let bytes = plan.bytes().unwrap();
        assert_eq!(bytes.k, (26 * 2 + 200) * 64 * 4);
        assert_eq!(bytes.cells, (26 + 200) * CELL_BYTES);
    }

    #[test]
    fn bad_configurations_name_the_setting() {
        let l = layout(vec![None]);
        let err = |c: KvConfig| KvPlan::bytes_for(&l, &c).unwrap_err();
        assert!(matches!(
            err(KvConfig::new(0)),
            KvConfigError::BadConfig {
                what: "num_ctx",
                ..
            }
        ));
        let too_many = KvConfig {
            num_parallel: MAX_SEQUENCES + 1,
            ..KvConfig::new(8)
        };
        assert!(matches!(
            err(too_many),
            KvConfigError::BadConfig {
                what: "num_parallel",
                ..
            }
        ));
        let odd_heads = KvLayout {
            head_dim_k: 48,
            k_dim: 96,
            ..layout(vec![None])
        };
        let q8 = KvConfig {
            type_k: CacheType::Q8_0,
            ..KvConfig::new(8)
        };
        let e = KvPlan::new(&odd_heads, &q8).unwrap_err().to_string();
        assert!(e.contains("use f16 or f32 for K"), "{e}");
    }
}
