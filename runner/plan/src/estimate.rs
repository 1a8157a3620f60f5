//! What a model will take in memory, from its GGUF metadata and a configuration, before
//! anything is loaded: the mapped file (weights and header), the K/V cache and the compute
//! buffers, the tables built from the metadata (the parsed header, the tokenizer, the
//! grammar engine's tries), and what every runner process holds whatever its model (the
//! runtime's heap, code and stacks). The runner allocates its cache and buffers through
//! the same functions ([`KvPlan`], [`activations_bytes`], [`matmul_scratch_bytes`]) and
//! the table sizes follow its data structures ([`crate::heap`]), so the figure is the
//! allocation, not a guess: runner/tests/it/memory.rs holds it to the runner's counted
//! heap within 5% (docs/MEMORY.md has the figures). The supervisor adds its overhead
//! margin on top.

use gguf::GgufFile;
use serde::Serialize;

use crate::PlanError;
use crate::arch;
use crate::compute::{
    ComputeConfig, activations_bytes, decoded_rows_bytes, matmul_scratch_bytes, widening_bytes,
};
use crate::heap::{grammar_heap_bytes, header_heap_bytes, tokenizer_heap_bytes};
use crate::kv::{KvBytes, KvConfig, KvPlan};

/// The bytes a load will take, by kind.
///
/// Every term but `process_bytes` is something the runner's counting allocator or its
/// file map holds, so their sum, `allocated_bytes`, is what the runner's own count
/// (`allocated_bytes` in its `Status`) comes to; `total_bytes` adds the process's
/// resident memory outside both and is what the supervisor budgets with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Estimate {
    /// Tensor data in the file (memory-mapped; resident once read).
    pub weights_bytes: usize,
    /// The rest of the mapped file: the header (the vocabulary's strings are there) read
    /// while parsing, and the padding between tensors.
    pub header_bytes: usize,
    /// The parsed header on the heap, kept for the life of the model: metadata keys and
    /// values (the vocabulary again, its scores and types, the merges) and the tensor
    /// table. See [`header_heap_bytes`].
    pub metadata_bytes: usize,
    /// The tokenizer's tables: its copy of the vocabulary, the text-to-id map, the BPE
    /// merge ranks. See [`tokenizer_heap_bytes`].
    pub tokenizer_bytes: usize,
    /// Small tensors (norm weights, biases) the model copies out of the file as `f32`.
    pub vectors_bytes: usize,
    /// The K/V cache: key rows, value rows and cell metadata.
    pub kv_bytes: usize,
    /// Key rows alone.
    pub k_bytes: usize,
    /// Value rows alone.
    pub v_bytes: usize,
    /// Activations, attention and matmul scratch, and one row of logits per sequence.
    pub compute_bytes: usize,
    /// What the sampler holds while a sequence generates: an (id, logit) candidate per
    /// vocabulary entry per sequence (freed when the request ends).
    pub sampler_bytes: usize,
    /// The grammar engine's tries over the vocabulary, built on the first
    /// structured-output request and kept. See [`grammar_heap_bytes`].
    pub grammar_bytes: usize,
    /// Heap every runner holds whatever its model: the async runtime, the gRPC server and
    /// its connection buffers, the model's and the engine's small structures
    /// ([`RUNTIME_HEAP_BYTES`]).
    pub runtime_bytes: usize,
    /// Resident memory outside the heap and the file map: the binary's code and data, the
    /// threads' stacks, and `malloc`'s own overhead, which grows with the number of small
    /// blocks the vocabulary's strings take ([`process_bytes`]).
    pub process_bytes: usize,
    /// Everything the runner's count holds (all but `process_bytes`): live heap plus the
    /// mapped file, once a grammar has been built and while a sequence samples.
    pub allocated_bytes: usize,
    /// Everything: what the supervisor budgets with.
    pub total_bytes: usize,
}

/// Heap bytes a runner holds whatever its model, beyond the terms computed from the file:
/// the tokio runtime, the gRPC server and its connection buffers, the model's, cache's
/// and engine's own structures (besides their buffers), a request's token lists.
///
/// Measured with the counting allocator on `ollama-runner serve` (runner/tests/it/
/// memory.rs prints it): the live heap beyond every computed term was 0.04 to 0.05 MiB
/// after the load (SmolLM2; Gemma 3 the same less its logits row, not yet allocated),
/// 0.24 to 0.51 MiB after a generation (the sampler's candidates, a term of their own,
/// set apart), -2.6 to 0.65 MiB after a JSON request (the candidates sometimes freed
/// before the count, and the grammar term's error), on both test models at all twelve
/// configurations.
pub const RUNTIME_HEAP_BYTES: usize = 512 << 10;

/// Resident bytes of a runner outside its heap and its file map: the code the load and a
/// generation run, static data, the stacks of the main, runtime and compute threads, and
/// heap pages freed but kept by `malloc`.
///
/// Measured: the resident set minus the counted allocation (heap plus mapped file, all of
/// it touched by then) of `ollama-runner serve` after a load and a generation, on both
/// test models at the twelve configurations of runner/tests/it/memory.rs: 14.1 to 14.6 MiB
/// for SmolLM2, 24.6 to 25.2 MiB for Gemma 3, whatever the context or the cache type;
/// less [`MALLOC_OVERHEAD_PER_STRING`] for each small string, 8.1 and 8.4 MiB are left.
pub const PROCESS_BASE_BYTES: usize = 8 << 20;

/// Bytes `malloc` adds to each small block it hands out (glibc: an 8-byte header and
/// rounding to 16 bytes with a 32-byte minimum, for strings of a few bytes).
///
/// Measured with [`PROCESS_BASE_BYTES`]: the two test models' resident overhead differs
/// by 10.5 MiB for 492,276 more small strings (Gemma 3's larger vocabulary against
/// SmolLM2's merges).
pub const MALLOC_OVERHEAD_PER_STRING: usize = 22;

/// Resident bytes of a runner for `file` outside its heap and file map: the process base
/// and `malloc`'s overhead on the vocabulary's and merges' strings, held three times each
/// (the parsed header, the tokenizer's copy, its map's keys).
pub fn process_bytes(file: &GgufFile) -> usize {
    let md = file.metadata();
    let strings = md.tokens().map_or(0, <[String]>::len)
        + md.merges().ok().flatten().map_or(0, <[String]>::len);
    PROCESS_BASE_BYTES + 3 * strings * MALLOC_OVERHEAD_PER_STRING
}

/// Bytes of the small tensors the model copies out as `f32`: every one-dimensional one.
fn vectors_bytes(file: &GgufFile) -> usize {
    file.tensors()
        .iter()
        .filter(|t| t.dims().len() == 1)
        .map(|t| t.n_elements() as usize * 4)
        .sum()
}

/// Bytes of one row of logits per sequence: what a server samples from each step.
fn logits_bytes(file: &GgufFile, num_parallel: usize) -> usize {
    n_vocab(file) * num_parallel * 4
}

/// Rows of the embedding table: the vocabulary the model computes logits for.
fn n_vocab(file: &GgufFile) -> usize {
    file.tensor("token_embd.weight")
        .and_then(|t| t.dims().get(1).copied())
        .unwrap_or(0) as usize
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
        + widening_bytes(file, kv.num_batch, threads)
        + decoded_rows_bytes(file, kv.num_batch, threads)
        + logits_bytes(file, kv.num_parallel);
    let kv_bytes = k + v + cells;
    let header_bytes = (file.len() as usize).saturating_sub(weights_bytes);
    let metadata_bytes = header_heap_bytes(file);
    let tokenizer_bytes = tokenizer_heap_bytes(file);
    let vectors_bytes = vectors_bytes(file);
    // One (u32 id, f32 logit) pair per vocabulary entry per sequence.
    let sampler_bytes = n_vocab(file) * 8 * kv.num_parallel;
    let grammar_bytes = grammar_heap_bytes(file);
    let runtime_bytes = RUNTIME_HEAP_BYTES;
    let process_bytes = process_bytes(file);
    let allocated_bytes = weights_bytes
        + header_bytes
        + metadata_bytes
        + tokenizer_bytes
        + vectors_bytes
        + kv_bytes
        + compute_bytes
        + sampler_bytes
        + grammar_bytes
        + runtime_bytes;
    Ok(Estimate {
        weights_bytes,
        header_bytes,
        metadata_bytes,
        tokenizer_bytes,
        vectors_bytes,
        kv_bytes,
        k_bytes: k,
        v_bytes: v,
        compute_bytes,
        sampler_bytes,
        grammar_bytes,
        runtime_bytes,
        process_bytes,
        allocated_bytes,
        total_bytes: allocated_bytes + process_bytes,
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
        // No vocabulary in the metadata, no one-dimensional tensor: the tables are empty
        // but for the parsed header, and the process is its base.
        assert_eq!((e.tokenizer_bytes, e.grammar_bytes), (0, 0));
        assert_eq!(e.vectors_bytes, 0);
        assert_eq!(e.sampler_bytes, 10 * 8);
        assert!(e.metadata_bytes > 0 && e.header_bytes > 0);
        assert_eq!(e.process_bytes, PROCESS_BASE_BYTES);
        assert_eq!(
            e.allocated_bytes,
            e.weights_bytes
                + e.header_bytes
                + e.metadata_bytes
                + e.kv_bytes
                + e.compute_bytes
                + e.sampler_bytes
                + e.runtime_bytes
        );
        assert_eq!(e.total_bytes, e.allocated_bytes + e.process_bytes);
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
