//! What a model will take in memory, from its GGUF metadata and a configuration, before
//! anything is loaded: the weights (mapped from the file), the K/V cache and the compute
//! buffers. The runner allocates through the same functions ([`KvCache::bytes_for`],
//! [`Activations::bytes_for`], [`matmul_scratch_bytes`]), so the figure is the
//! allocation, not a guess; the supervisor adds its overhead margin on top.

use gguf::GgufFile;
use serde::Serialize;

use crate::kvcache::{KvBytes, KvCache, KvConfig};
use crate::model::activations::{Activations, ComputeConfig};
use crate::model::weights::matmul_scratch_bytes;
use crate::model::{self, ModelError};

/// The bytes a load will take, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Estimate {
    /// Tensor data in the file (memory-mapped; resident once read).
    pub weights_bytes: usize,
    /// The K/V cache: key rows, value rows and cell metadata.
    pub kv_bytes: usize,
    /// Key rows alone.
    pub k_bytes: usize,
    /// Value rows alone.
    pub v_bytes: usize,
    /// Activations, attention and matmul scratch, and one row of logits per sequence.
    pub compute_bytes: usize,
    /// Everything.
    pub total_bytes: usize,
}

/// Bytes of one row of logits per sequence: what a server samples from each step.
fn logits_bytes(file: &GgufFile, num_parallel: usize) -> usize {
    let n_vocab = file
        .tensor("token_embd.weight")
        .and_then(|t| t.dims().get(1).copied())
        .unwrap_or(0) as usize;
    n_vocab * num_parallel * 4
}

/// The estimate for the model in `file` run with cache `kv` on `threads` threads.
pub fn estimate(file: &GgufFile, kv: &KvConfig, threads: usize) -> Result<Estimate, ModelError> {
    let plan = model::plan(file)?;
    let weights_bytes = file
        .tensors()
        .iter()
        .map(|t| file.tensor_data(t).map(<[u8]>::len))
        .sum::<Result<usize, _>>()?;
    let KvBytes { k, v, cells } = KvCache::bytes_for(&plan.kv, kv)?;
    let compute = ComputeConfig {
        num_ctx: kv.num_ctx,
        num_batch: kv.num_batch,
        num_parallel: kv.num_parallel,
        flash_attention: kv.flash_attention,
        threads,
    };
    let compute_bytes = Activations::bytes_for(&plan.dims, &compute)
        + matmul_scratch_bytes(file, kv.num_batch)
        + logits_bytes(file, kv.num_parallel);
    let kv_bytes = k + v + cells;
    Ok(Estimate {
        weights_bytes,
        kv_bytes,
        k_bytes: k,
        v_bytes: v,
        compute_bytes,
        total_bytes: weights_bytes + kv_bytes + compute_bytes,
    })
}

/// `bytes` in MiB, for people.
pub fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
