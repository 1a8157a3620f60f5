//! The device memory of a model loaded on a GPU, as sizes: the weights uploaded in the
//! file's blocks, the buffers of one forward pass, and the transient buffers of the
//! output head and the cache's cell tables.
//!
//! The runner's GPU pass sizes its buffers with these functions ([`pass_buffer_widths`],
//! [`HEAD_ROWS`]) and its K/V cache with [`crate::KvPlan`], so the estimate's
//! `device_bytes` is what a GPU load allocates; runner/tests/it/memory_gpu.rs holds it
//! to the runner's reported `device_bytes`.

use gguf::GgufFile;

use crate::PlanError;
use crate::compute::ActivationDims;

/// The architectures the runner's GPU pass runs: its decoders. The others (the BERT
/// encoders) run on the CPU on every server, say so in the runner's log, and are
/// estimated on the CPU.
pub const GPU_ARCHITECTURES: [&str; 7] = [
    "llama", "gemma2", "gemma3", "qwen2", "qwen3", "phi3", "qwen3moe",
];

/// Whether models of `general.architecture` `architecture` run on a GPU when one is
/// asked for.
pub fn runs_on_gpu(architecture: &str) -> bool {
    GPU_ARCHITECTURES.contains(&architecture)
}

/// Bytes a device buffer of `len_bytes` takes: the `gpu` crate allocates whole 4-byte
/// words, at least one (its `GpuBuffer` allocation, which this mirrors).
pub fn buffer_bytes(len_bytes: usize) -> usize {
    len_bytes.max(4).next_multiple_of(4)
}

/// Output rows multiplied by the vocabulary projection at a time on the GPU, so the
/// logits of a long prompt stay within one binding: the head's logits buffer holds this
/// many rows at most.
pub const HEAD_ROWS: usize = 16;

/// The device buffers of one GPU forward pass, each as (name, f32 values per token), in
/// the order the runner's pass allocates them: the hidden states (and the rows kept for
/// output), the normalized states, queries, keys (and both normed), values, the attention
/// output, the projections (and those kept), and the feed-forward network's gate, up and
/// hidden rows, the widest of the products' inputs quantized to 8 bits (bytes four to a
/// word, and a scale and a sum per 32); for a mixture of experts, then the router's logits, the rows gathered for
/// one expert, and every chosen expert's output row (`n_expert_used` a token) until they
/// are mixed.
pub fn pass_buffer_widths(dims: &ActivationDims) -> Vec<(&'static str, usize)> {
    let a = &dims.attn;
    let mut widths = vec![
        ("hidden states", dims.n_embd),
        ("hidden states kept", dims.n_embd),
        ("normalized states", dims.n_embd),
        ("queries", a.q_dim()),
        ("queries normed", a.q_dim()),
        ("keys", a.k_dim()),
        ("keys normed", a.k_dim()),
        ("values", a.v_dim()),
        ("attention output", a.out_dim()),
        ("projections", dims.n_embd),
        ("projections kept", dims.n_embd),
        ("gate", dims.n_ff),
        ("up", dims.n_ff),
        ("hidden", dims.n_ff),
        ("quantized inputs", q8_width(dims) / 4),
        ("input scales", q8_width(dims) / 16),
    ];
    if let Some(m) = dims.moe {
        widths.extend([
            ("router logits", m.n_expert),
            ("expert inputs", dims.n_embd),
            ("expert outputs", m.n_expert_used * dims.n_embd),
        ]);
    }
    widths
}

/// Values per token the GPU pass quantizes to 8 bits at most: the widest input of a
/// matrix product (the hidden size, the attention output or the feed-forward width), in
/// whole runs of 32.
pub fn q8_width(dims: &ActivationDims) -> usize {
    let widest = dims.n_embd.max(dims.attn.out_dim()).max(dims.n_ff);
    widest.next_multiple_of(32)
}

/// Device bytes of the pass's buffers for batches of up to `num_batch` tokens.
pub fn pass_buffers_bytes(dims: &ActivationDims, num_batch: usize) -> usize {
    pass_buffer_widths(dims)
        .iter()
        .map(|&(_, width)| buffer_bytes(num_batch * width.max(1) * 4))
        .sum()
}

/// Device bytes of the output head's logits buffer at its largest: [`HEAD_ROWS`] rows
/// (fewer when a batch holds fewer tokens) of `n_vocab` logits. It lives while the head
/// runs; the allocator keeps its memory for the next one.
pub fn head_logits_bytes(n_vocab: usize, num_batch: usize) -> usize {
    buffer_bytes(HEAD_ROWS.min(num_batch.max(1)) * n_vocab * 4)
}

/// Device bytes of a cell table of `n_cells` cells as the attention kernels read it: a
/// position and a 64-bit sequence set, three words a cell. One per cache table lives
/// while a pass runs.
pub fn cell_table_bytes(n_cells: usize) -> usize {
    buffer_bytes(n_cells * 12)
}

/// Whether the GPU pass uploads tensor `name` with the weights: every tensor but the
/// RoPE frequency factors, which go with each RoPE call.
fn uploaded(name: &str) -> bool {
    name != "rope_freqs.weight"
}

/// Device bytes of the weights of the model in `file`: each matrix in its file's blocks
/// (the kernels dequantize them), each one-dimensional tensor (norm weights, biases)
/// as f32; an output head tied to the embeddings is not uploaded twice, as the file
/// holds it once.
pub fn weights_bytes(file: &GgufFile) -> Result<usize, PlanError> {
    let mut total = 0;
    for t in file.tensors().iter().filter(|t| uploaded(t.name())) {
        total += if t.dims().len() == 1 {
            buffer_bytes(t.n_elements() as usize * 4)
        } else {
            buffer_bytes(file.tensor_data(t)?.len())
        };
    }
    Ok(total)
}

/// Bytes of the memory blocks wgpu's allocator carves buffers of up to this size out of;
/// a larger buffer gets a block of its own. The runner opens its device with this size
/// (`gpu::SUBALLOCATION_BLOCK_BYTES`, which a runner test holds equal).
pub const ALLOCATOR_BLOCK_BYTES: usize = 4 << 20;

/// The alignment the estimate gives each buffer within a block: Vulkan drivers ask 16
/// to 256 bytes of a storage buffer; the largest is taken.
pub const ALLOCATOR_ALIGNMENT: usize = 256;

/// Bytes wgpu allocates on every device for itself: the buffer it clears others from
/// (512 KiB), made when the device is opened.
pub const WGPU_INTERNAL_BYTES: usize = 512 << 10;

/// Device bytes the allocator reserves for buffers of `sizes` made in that order and
/// kept: each larger than [`ALLOCATOR_BLOCK_BYTES`] in a block of its own, the others
/// placed in the first block with room (as wgpu's allocator, gpu-allocator, searches its
/// blocks), a new block when none has. What the runner reports beyond its live buffers
/// is this packing's unused space.
pub fn reserved_bytes(sizes: impl IntoIterator<Item = usize>) -> usize {
    let mut dedicated = 0;
    let mut free: Vec<usize> = Vec::new();
    for size in sizes {
        let size = size.next_multiple_of(ALLOCATOR_ALIGNMENT);
        if size > ALLOCATOR_BLOCK_BYTES {
            dedicated += size;
        } else if let Some(room) = free.iter_mut().find(|room| **room >= size) {
            *room -= size;
        } else {
            free.push(ALLOCATOR_BLOCK_BYTES - size);
        }
    }
    dedicated + free.len() * ALLOCATOR_BLOCK_BYTES
}

/// The order the runner uploads one block's tensors in (`gpu_pass/upload.rs`); a
/// tensor of the block not named here (a fused projection) comes after them.
const BLOCK_ORDER: [&str; 22] = [
    "attn_q_norm.weight",
    "attn_k_norm.weight",
    "attn_norm.weight",
    "attn_q.weight",
    "attn_q.bias",
    "attn_k.weight",
    "attn_k.bias",
    "attn_v.weight",
    "attn_v.bias",
    "attn_output.weight",
    "attn_output.bias",
    "post_attention_norm.weight",
    "ffn_norm.weight",
    "ffn_gate.weight",
    "ffn_up.weight",
    "ffn_down.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_exps.weight",
    "ffn_up_exps.weight",
    "ffn_down_exps.weight",
    "post_ffw_norm.weight",
    "ffn_down.bias",
];

/// Device bytes of each weight of `file` as the runner uploads them, in its order: the
/// embeddings, each block's tensors, the output head and the final norm.
pub fn weight_allocations(file: &GgufFile) -> Result<Vec<usize>, PlanError> {
    let size = |t: &gguf::TensorInfo| -> Result<usize, PlanError> {
        Ok(if t.dims().len() == 1 {
            buffer_bytes(t.n_elements() as usize * 4)
        } else {
            buffer_bytes(file.tensor_data(t)?.len())
        })
    };
    let tensors = file.tensors();
    let mut out = Vec::with_capacity(tensors.len());
    let mut placed = vec![false; tensors.len()];
    let mut take = |pred: &dyn Fn(&str) -> bool, out: &mut Vec<usize>| -> Result<(), PlanError> {
        for (i, t) in tensors.iter().enumerate() {
            if !placed[i] && uploaded(t.name()) && pred(t.name()) {
                placed[i] = true;
                out.push(size(t)?);
            }
        }
        Ok(())
    };
    take(&|n| n == "token_embd.weight", &mut out)?;
    let n_block = tensors
        .iter()
        .filter_map(|t| {
            t.name()
                .strip_prefix("blk.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |m| m + 1);
    for il in 0..n_block {
        let prefix = format!("blk.{il}.");
        for part in BLOCK_ORDER {
            take(&|n| n.strip_prefix(&prefix) == Some(part), &mut out)?;
        }
        take(&|n| n.starts_with(&prefix), &mut out)?;
    }
    take(
        &|n| n.starts_with("output.") && n != "output_norm.weight",
        &mut out,
    )?;
    take(&|_| true, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_pack_into_the_first_block_with_room_and_large_ones_alone() {
        const MIB: usize = 1 << 20;
        assert_eq!(reserved_bytes([]), 0);
        // 3 + 3 MiB need two blocks; the 1 MiB goes back into the first.
        assert_eq!(reserved_bytes([3 * MIB, 3 * MIB, MIB]), 8 * MIB);
        // Larger than a block: a block of its own, of its size (aligned).
        assert_eq!(reserved_bytes([5 * MIB + 1]), 5 * MIB + 256);
        // Alignment: 16 buffers of 257 bytes take 512 bytes each.
        assert_eq!(reserved_bytes(std::iter::repeat_n(257, 16)), 4 * MIB);
        assert_eq!(buffer_bytes(0), 4);
        assert_eq!(buffer_bytes(5), 8);
    }
}
