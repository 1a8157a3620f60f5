//! What a model will take in memory, from its GGUF metadata and a configuration, before
//! anything is loaded: the weights (mapped from the file), the K/V cache and the compute
//! buffers. The runner allocates through the same functions ([`KvPlan`],
//! [`activations_bytes`], [`matmul_scratch_bytes`]), so the figure is the allocation, not
//! a guess; the supervisor adds its overhead margin on top.

use gguf::GgufFile;
use serde::Serialize;

use crate::PlanError;
use crate::arch;
use crate::compute::{ComputeConfig, activations_bytes, matmul_scratch_bytes};
use crate::kv::{KvBytes, KvConfig, KvPlan};

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
pub fn estimate(file: &GgufFile, kv: &KvConfig, threads: usize) -> Result<Estimate, PlanError> {
    let plan = arch::plan(file)?;
    let weights_bytes = file
        .tensors()
        .iter()
        .map(|t| file.tensor_data(t).map(<[u8]>::len))
        .sum::<Result<usize, _>>()?;
    let KvBytes { k, v, cells } = KvPlan::bytes_for(&plan.kv, kv)?;
    let compute_bytes = activations_bytes(&plan.dims, &ComputeConfig::new(kv, threads))
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

#[cfg(test)]
mod tests {
    use gguf::{GgmlType, GgufWriter};

    use super::*;
    use crate::kv::CacheType;

    /// A two-layer llama header: 64 wide, 4 query heads over 2 K/V heads of 16, a
    /// vocabulary of 10, and two tensors (an f32 embedding table and a q4_0 matrix).
    fn tiny_llama(head_count_kv: u32) -> GgufFile {
        let mut w = GgufWriter::new();
        w.set("general.architecture", "llama")
            .set("llama.block_count", 2u32)
            .set("llama.context_length", 256u32)
            .set("llama.embedding_length", 64u32)
            .set("llama.feed_forward_length", 128u32)
            .set("llama.attention.head_count", 4u32)
            .set("llama.attention.head_count_kv", head_count_kv)
            .set("llama.attention.layer_norm_rms_epsilon", 1e-5f32);
        w.add_tensor("token_embd.weight", &[64, 10], GgmlType::F32, vec![0; 2560])
            .unwrap()
            .add_tensor(
                "blk.0.attn_q.weight",
                &[64, 64],
                GgmlType::Q4_0,
                vec![0; 2304],
            )
            .unwrap();
        GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap()
    }

    #[test]
    fn the_estimate_adds_up_weights_cache_and_buffers() {
        let kv = KvConfig {
            num_batch: 4,
            type_k: CacheType::F16,
            type_v: CacheType::F16,
            ..KvConfig::reference(16)
        };
        let e = estimate(&tiny_llama(2), &kv, 1).unwrap();
        assert_eq!(e.weights_bytes, 2560 + 2304);
        // 2 layers × 16 cells × 32 values × 2 bytes, for keys and for values; 16 cells of
        // metadata.
        assert_eq!((e.k_bytes, e.v_bytes), (2048, 2048));
        assert_eq!(e.kv_bytes, 2048 * 2 + 16 * 16);
        // Activations: 656 floats a token × 4 tokens; the reference path's gathered rows
        // (80 × (1 + 4 × 64)) and 4 score rows of 16; the f32 embedding table's matmul
        // activations (64 floats × 4 tokens); one row of 10 logits.
        let activations = 656 * 4 * 4;
        let reference = 80 * 257 + 4 * 16 * 4;
        assert_eq!(e.compute_bytes, activations + reference + 1024 + 40);
        assert_eq!(
            e.total_bytes,
            e.weights_bytes + e.kv_bytes + e.compute_bytes
        );
    }

    #[test]
    fn a_bad_file_or_configuration_is_named() {
        let err = estimate(&tiny_llama(3), &KvConfig::new(16), 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metadata key 'llama.attention.head_count_kv' is 3: must divide the query head count"
        );
        let err = estimate(&tiny_llama(2), &KvConfig::new(0), 1).unwrap_err();
        assert!(matches!(err, PlanError::Kv(_)), "{err}");
        let mut w = GgufWriter::new();
        w.set("general.architecture", "mamba");
        let file = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
        let err = estimate(&file, &KvConfig::new(16), 1).unwrap_err();
        assert_eq!(err.to_string(), "unknown model architecture 'mamba'");
    }
}
