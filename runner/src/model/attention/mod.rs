//! Causal grouped-query attention over the [`KvCache`]: the batch's keys and values are
//! stored first, then every token attends to the cells its sequence holds at positions up
//! to its own (within the layer's window).
//!
//! Two paths compute it. [`reference`] gathers each sequence's keys and values in
//! position order as f32 and computes every score, one softmax and the weighted sum in
//! llama.cpp's order: with an f32 cache it is llama.cpp's non-flash arithmetic bit for
//! bit, and it is what the tests hold the other path to. [`flash`] streams over the
//! cells in blocks with an online softmax (kernels' flash attention) and reads every
//! storage type in place. The cache's configuration picks the path.

mod flash;
mod reference;

use std::sync::Mutex;

use kernels::cpu::Isa;
use kernels::ops::hadamard_in_place;
use kernels::pool::ThreadPool;

use super::activations::ComputeConfig;
use super::{Batch, ModelError};
use crate::kvcache::{KvCache, Placement};

pub use flash::FlashWork;
pub use reference::ReferenceWork;

pub use plan::compute::AttentionShape;

/// Scratch of one path of attention, sized at load for the largest batch.
#[derive(Debug)]
pub enum AttentionScratch {
    /// For [`reference`].
    Reference(ReferenceWork),
    /// For [`flash`].
    Flash(FlashWork),
}

impl AttentionScratch {
    /// Scratch for the batches `c` allows (up to `num_batch` tokens of up to
    /// `num_parallel` sequences over `num_ctx` positions, on `threads` threads), allocated
    /// now: [`plan::compute::attention_scratch_bytes`] bytes.
    pub fn new(shape: &AttentionShape, c: &ComputeConfig) -> Self {
        if c.flash_attention {
            Self::Flash(FlashWork::new(
                shape,
                c.num_ctx,
                c.num_batch,
                c.num_parallel,
                c.threads,
            ))
        } else {
            Self::Reference(ReferenceWork::new(shape, c.num_ctx, c.threads))
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        match self {
            Self::Reference(w) => w.bytes(),
            Self::Flash(w) => w.bytes(),
        }
    }
}

/// Attention of layer `layer` for every token of `batch`, whose cells are `placement`.
///
/// `q`, `k` and `v` hold the batch's projections (RoPE applied), token after token; with
/// a quantized cache they are first turned into the cache's Hadamard basis (see
/// [`KvCache::k_rotation`]), which is why they are mutable. The keys and values are
/// written to the cache, then each token's heads attend and write `out_dim` values per
/// token to `out`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    pool: &ThreadPool,
    isa: Isa,
    shape: &AttentionShape,
    cache: &mut KvCache,
    layer: usize,
    placement: &Placement,
    batch: &Batch,
    q: &mut [f32],
    k: &mut [f32],
    v: &mut [f32],
    scratch: &mut AttentionScratch,
    out: &mut [f32],
) -> Result<(), ModelError> {
    let (k_rot, v_rot) = (cache.k_rotation(), cache.v_rotation());
    if let Some(n) = k_rot {
        hadamard_in_place(q, n);
        hadamard_in_place(k, n);
    }
    if let Some(n) = v_rot {
        hadamard_in_place(v, n);
    }
    cache.write(layer, placement, k, v)?;
    let q = &*q;
    let view = cache.layer(layer);
    let flash = cache.config().flash_attention;
    if flash && !matches!(scratch, AttentionScratch::Flash(_)) {
        let n_seq = cache.config().num_parallel;
        *scratch = AttentionScratch::Flash(FlashWork::new(
            shape,
            cache.config().num_ctx,
            batch.len(),
            n_seq,
            pool.threads(),
        ));
    } else if !flash && !matches!(scratch, AttentionScratch::Reference(_)) {
        let n_ctx = cache.config().num_ctx;
        *scratch = AttentionScratch::Reference(ReferenceWork::new(shape, n_ctx, pool.threads()));
    }
    match scratch {
        AttentionScratch::Flash(work) => {
            let active = placement.active(view.table);
            flash::attention(pool, isa, shape, &view, active, batch, q, work, out)?;
        }
        AttentionScratch::Reference(work) => {
            reference::attention(pool, isa, shape, &view, batch, q, work, out)?;
        }
    }
    if let Some(n) = v_rot {
        hadamard_in_place(out, n);
    }
    Ok(())
}

/// Locks a run's scratch; a poisoned lock (a panicking task, re-raised by the pool) still
/// holds usable buffers.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
