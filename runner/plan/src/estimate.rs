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
use crate::device;
use crate::heap::{grammar_heap_bytes, header_heap_bytes, tokenizer_heap_bytes};
use crate::kv::{KvBytes, KvConfig, KvPlan};

/// The bytes a load will take, by kind.
///
/// Every host term but `process_bytes` is something the runner's counting allocator or
/// its file map holds, so their sum, `allocated_bytes`, is what the runner's own count
/// (`allocated_bytes` in its `Status`) comes to; `total_bytes` adds the process's
/// resident memory outside both and is what the supervisor budgets system memory with.
///
/// For a load on a GPU (`on_device` in [`estimate`]) those are the host side only: the
/// mapped file (read once to upload the weights, and kept), the tables, the cache's
/// cells, the rows of logits sampled here; the K/V rows and the pass's buffers are not
/// allocated in host memory. What the device holds is `device_bytes`, with its parts in
/// the `device_*` terms.
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
    /// The K/V cache in host memory: key rows, value rows and cell metadata; on a GPU
    /// the cell metadata alone (the rows are in `device_kv_bytes`).
    pub kv_bytes: usize,
    /// Key rows alone, wherever they are (on a GPU, part of `device_kv_bytes`).
    pub k_bytes: usize,
    /// Value rows alone, wherever they are.
    pub v_bytes: usize,
    /// Activations, attention and matmul scratch, and one row of logits per sequence; on
    /// a GPU the rows of logits alone (the pass's buffers are in `device_compute_bytes`).
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
    /// Everything in host memory: what the supervisor budgets system memory with.
    pub total_bytes: usize,
    /// On a GPU, the weights as uploaded: matrices in the file's blocks, norm weights
    /// and biases as f32 ([`device::weights_bytes`]); 0 on the CPU.
    pub device_weights_bytes: usize,
    /// On a GPU, the K/V cache's key and value rows; 0 on the CPU.
    pub device_kv_bytes: usize,
    /// On a GPU, the forward pass's buffers ([`device::pass_buffers_bytes`]), the output
    /// head's logits buffer and the cache's cell tables uploaded for a pass; 0 on the CPU.
    pub device_compute_bytes: usize,
    /// On a GPU, what wgpu's allocator reserves beyond the buffers: wgpu's own zeroing
    /// buffer and the unused space of its memory blocks once the model's buffers are
    /// packed into them ([`device::reserved_bytes`]); 0 on the CPU.
    pub device_allocator_bytes: usize,
    /// The part of `device_compute_bytes` that lives only while a pass runs: the output
    /// head's logits buffer at its largest and the cell tables. A runner between
    /// requests holds `device_bytes` less this; the budget keeps room for it.
    pub device_transient_bytes: usize,
    /// Device memory a GPU load allocates, the sum of the `device_*` terms but
    /// `device_transient_bytes` (part of `device_compute_bytes`): what the
    /// runner reports as `device_bytes` in its `Status` and what the supervisor budgets
    /// the device's free memory with; 0 for a load on the CPU.
    pub device_bytes: usize,
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

/// The estimate for the model in `file` run with cache `kv` on `threads` threads, on the
/// CPU or, with `on_device`, on a GPU (`OLLAMA_DEVICE` or the load's `device` naming one
/// that is not `cpu`): then the cache's rows and the pass's buffers are device memory,
/// counted in `device_bytes` and not in `total_bytes`. An architecture without a GPU
/// pass ([`device::runs_on_gpu`]) runs on the CPU whatever was asked, and is estimated
/// there.
pub fn estimate(
    file: &GgufFile,
    kv: &KvConfig,
    threads: usize,
    on_device: bool,
) -> Result<Estimate, PlanError> {
    let plan = arch::plan(file)?;
    let on_device = on_device && device::runs_on_gpu(file.metadata().architecture()?);
    let weights_bytes = file
        .tensors()
        .iter()
        .map(|t| file.tensor_data(t).map(<[u8]>::len))
        .sum::<Result<usize, _>>()?;
    let KvBytes { k, v, cells } = KvPlan::bytes_for(&plan.kv, kv)?;
    let logits_bytes = logits_bytes(file, kv.num_parallel);
    let mut device_allocator_bytes = 0;
    let mut device_transient_bytes = 0;
    let (kv_bytes, compute_bytes, device_weights_bytes, device_kv_bytes, device_compute_bytes) =
        if on_device {
            let kv_plan = KvPlan::new(&plan.kv, kv)?;
            let tables = kv_plan
                .tables
                .iter()
                .map(|&(n, _)| device::cell_table_bytes(n))
                .sum::<usize>();
            device_transient_bytes =
                device::head_logits_bytes(n_vocab(file), kv.num_batch) + tables;
            let device_compute =
                device::pass_buffers_bytes(&plan.dims, kv.num_batch) + device_transient_bytes;
            // The buffers kept for the model's life, in the order the runner makes them,
            // packed into the allocator's blocks: what it reserves beyond them.
            let mut kept = vec![device::WGPU_INTERNAL_BYTES];
            kept.extend(device::weight_allocations(file)?);
            kept.extend(
                device::pass_buffer_widths(&plan.dims)
                    .iter()
                    .map(|&(_, w)| device::buffer_bytes(kv.num_batch * w.max(1) * 4)),
            );
            for layer in 0..kv_plan.layer_table.len() {
                let (kw, vw) = kv_plan.layer_words(layer).ok_or(PlanError::Kv(
                    crate::KvConfigError::TooLarge {
                        num_ctx: kv.num_ctx,
                        num_parallel: kv.num_parallel,
                    },
                ))?;
                kept.extend([device::buffer_bytes(kw * 4), device::buffer_bytes(vw * 4)]);
            }
            let kept_bytes: usize = kept.iter().sum();
            device_allocator_bytes = device::WGPU_INTERNAL_BYTES
                + device::reserved_bytes(kept).saturating_sub(kept_bytes);
            (
                cells,
                logits_bytes,
                device::weights_bytes(file)?,
                k + v,
                device_compute,
            )
        } else {
            let compute = activations_bytes(&plan.dims, &ComputeConfig::new(kv, threads))
                + matmul_scratch_bytes(file, kv.num_batch)
                + widening_bytes(file, kv.num_batch, threads)
                + decoded_rows_bytes(file, kv.num_batch, threads)
                + logits_bytes;
            (k + v + cells, compute, 0, 0, 0)
        };
    let header_bytes = (file.len() as usize).saturating_sub(weights_bytes);
    let metadata_bytes = header_heap_bytes(file);
    let tokenizer_bytes = tokenizer_heap_bytes(file);
    let vectors_bytes = vectors_bytes(file);
    // At most, per sequence: an (u32 id, f32 logit) candidate per vocabulary entry (top-k
    // off) and a penalized copy of the logits; with top-k, a copy of the logits to select
    // in stands for most of the candidates.
    let sampler_bytes = n_vocab(file) * 12 * kv.num_parallel;
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
        device_weights_bytes,
        device_kv_bytes,
        device_compute_bytes,
        device_allocator_bytes,
        device_transient_bytes,
        device_bytes: device_weights_bytes
            + device_kv_bytes
            + device_compute_bytes
            + device_allocator_bytes,
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

    /// 16 cells of f16 keys and values, passes of 4 tokens.
    fn small_f16_cache() -> KvConfig {
        KvConfig {
            num_batch: 4,
            type_k: CacheType::F16,
            type_v: CacheType::F16,
            ..KvConfig::reference(16)
        }
    }

    #[test]
    fn the_estimate_adds_up_weights_cache_and_buffers() {
        let kv = small_f16_cache();
        let e = estimate(&tiny_llama(2), &kv, 1, false).unwrap();
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
        assert_eq!(e.sampler_bytes, 10 * 12);
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
        assert_eq!(e.device_bytes, 0);
    }

    #[test]
    fn on_a_gpu_the_rows_and_the_pass_are_device_memory() {
        let kv = small_f16_cache();
        let cpu = estimate(&tiny_llama(2), &kv, 1, false).unwrap();
        let e = estimate(&tiny_llama(2), &kv, 1, true).unwrap();
        // The weights as uploaded: both matrices in their blocks.
        assert_eq!(e.device_weights_bytes, 2560 + 2304);
        assert_eq!(e.device_kv_bytes, 2048 * 2);
        // The pass: 1032 floats a token (3 × 64 hidden, 2 × 64 queries, 2 × 32 keys, 32
        // values, 64 attention output, 2 × 64 projections, 3 × 128 feed-forward, and the
        // widest input, 128, as 8-bit activations: 32 words of bytes, 8 of scales) × 4
        // tokens; 4 rows of 10 logits; a cell table of 16 cells of 12 bytes.
        assert_eq!(e.device_compute_bytes, 1032 * 4 * 4 + 4 * 10 * 4 + 16 * 12);
        assert_eq!(e.device_transient_bytes, 4 * 10 * 4 + 16 * 12);
        // wgpu's zeroing buffer, and the rest of the one 4 MiB block every buffer (the
        // zeroing buffer, the weights, the pass's buffers, the rows) fits in.
        let kept = (512 << 10) + (2560 + 2304) + 1032 * 4 * 4 + 2048 * 2;
        assert_eq!(e.device_allocator_bytes, (512 << 10) + (4 << 20) - kept);
        assert_eq!(
            e.device_bytes,
            e.device_weights_bytes
                + e.device_kv_bytes
                + e.device_compute_bytes
                + e.device_allocator_bytes
        );
        // The host keeps the mapped file and the tables, the cells and the logits row.
        assert_eq!(e.weights_bytes, cpu.weights_bytes);
        assert_eq!(e.kv_bytes, 16 * 16);
        assert_eq!((e.k_bytes, e.v_bytes), (cpu.k_bytes, cpu.v_bytes));
        assert_eq!(e.compute_bytes, 40);
        assert_eq!(
            cpu.allocated_bytes - e.allocated_bytes,
            (cpu.kv_bytes - e.kv_bytes) + (cpu.compute_bytes - e.compute_bytes)
        );
        assert_eq!(e.total_bytes, e.allocated_bytes + e.process_bytes);
    }

    #[test]
    fn a_bad_file_or_configuration_is_named() {
        let err = estimate(&tiny_llama(3), &KvConfig::new(16), 1, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metadata key 'llama.attention.head_count_kv' is 3: must divide the query head count"
        );
        let err = estimate(&tiny_llama(2), &KvConfig::new(0), 1, false).unwrap_err();
        assert!(matches!(err, PlanError::Kv(_)), "{err}");
        let mut w = GgufWriter::new();
        w.set("general.architecture", "mamba");
        let file = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
        let err = estimate(&file, &KvConfig::new(16), 1, false).unwrap_err();
        assert_eq!(err.to_string(), "unknown model architecture 'mamba'");
    }
}
