//! The compute buffers of a model, as sizes: the per-pass activations, the scratch of
//! the two attention paths and the quantized activations of the matrix products.
//!
//! The runner sizes its buffers with these functions (its `Activations`, `FlashWork`,
//! `ReferenceWork` and matmul scratch) and the estimate adds them up, so the estimate is
//! what a load allocates.

pub mod flash;
pub mod reference;

use ggml_type::GgmlType;
use ggml_type::scratch::matmul_activation_bytes;
use gguf::GgufFile;

use crate::kv::KvConfig;

/// The head layout of one attention layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionShape {
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads; each serves `n_head / n_head_kv` query heads.
    pub n_head_kv: usize,
    /// Values per query/key head.
    pub head_dim_k: usize,
    /// Values per value head.
    pub head_dim_v: usize,
    /// Factor applied to `q·k` before the softmax (usually `1/sqrt(head_dim_k)`).
    pub scale: f32,
    /// Attention logit soft-capping (Gemma 2): `q·k` becomes `c·tanh(q·k / c)` before
    /// the softmax. Gemma 2 scales its queries beforehand, so `scale` is 1 with it, where
    /// llama.cpp's two paths agree on where the scale goes.
    pub softcap: Option<f32>,
}

impl AttentionShape {
    /// Key values per token.
    pub fn k_dim(&self) -> usize {
        self.n_head_kv * self.head_dim_k
    }

    /// Value values per token.
    pub fn v_dim(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }

    /// Query values per token.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim_k
    }

    /// Attention output values per token.
    pub fn out_dim(&self) -> usize {
        self.n_head * self.head_dim_v
    }

    /// Query heads per key/value head.
    pub fn group(&self) -> usize {
        self.n_head / self.n_head_kv
    }
}

/// The per-token widths that size a model's buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationDims {
    /// Hidden size.
    pub n_embd: usize,
    /// Feed-forward hidden size.
    pub n_ff: usize,
    /// Attention heads.
    pub attn: AttentionShape,
    /// Rotated values per head of each RoPE the model uses (one table of cosines and
    /// sines per token for each).
    pub n_rot: Vec<usize>,
    /// The routing of the feed-forward networks when they are mixtures of experts,
    /// whose buffers come on top ([`MoeDims::floats_per_token`]).
    pub moe: Option<MoeDims>,
}

/// The routing of a mixture-of-experts feed-forward network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoeDims {
    /// Experts.
    pub n_expert: usize,
    /// Experts each token is routed to.
    pub n_expert_used: usize,
}

impl MoeDims {
    /// f32 values per token of the buffers of one mixture-of-experts pass with hidden
    /// size `n_embd`: the router's logits, the chosen experts and their weights, the
    /// token gathered for an expert and its output, and each chosen expert's output
    /// kept until they are summed in the router's order.
    pub fn floats_per_token(&self, n_embd: usize) -> usize {
        self.n_expert + 2 * self.n_expert_used + 2 * n_embd + self.n_expert_used * n_embd
    }
}

impl ActivationDims {
    /// f32 values of the activations per token: three rows of the hidden size (hidden
    /// states, normalized states, output projections), queries, keys, values, attention
    /// outputs, a table of cosines and sines per RoPE, the MLP's gate and up rows, and a
    /// mixture of experts' buffers.
    pub fn floats_per_token(&self) -> usize {
        let a = &self.attn;
        3 * self.n_embd
            + a.q_dim()
            + a.k_dim()
            + a.v_dim()
            + a.out_dim()
            + self.n_rot.iter().sum::<usize>()
            + 2 * self.n_ff
            + self.moe.map_or(0, |m| m.floats_per_token(self.n_embd))
    }
}

/// What, besides the model, sizes the buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComputeConfig {
    /// Positions per sequence.
    pub num_ctx: usize,
    /// Tokens per forward pass at most.
    pub num_batch: usize,
    /// Sequences a batch may hold.
    pub num_parallel: usize,
    /// Flash attention (otherwise the reference attention's gather buffers).
    pub flash_attention: bool,
    /// Threads.
    pub threads: usize,
}

impl ComputeConfig {
    /// The buffers' configuration for a cache configured as `kv` on `threads` threads.
    pub fn new(kv: &KvConfig, threads: usize) -> Self {
        Self {
            num_ctx: kv.num_ctx,
            num_batch: kv.num_batch,
            num_parallel: kv.num_parallel,
            flash_attention: kv.flash_attention,
            threads,
        }
    }
}

/// Bytes of a model's per-pass buffers for `config`: the activations of
/// `config.num_batch` tokens and the scratch of the attention path it picks.
pub fn activations_bytes(dims: &ActivationDims, config: &ComputeConfig) -> usize {
    dims.floats_per_token() * config.num_batch * 4 + attention_scratch_bytes(&dims.attn, config)
}

/// Bytes of the scratch of the attention path `c` picks (flash or reference) for
/// batches of up to `num_batch` tokens of `num_parallel` sequences on `threads` threads.
pub fn attention_scratch_bytes(shape: &AttentionShape, c: &ComputeConfig) -> usize {
    if c.flash_attention {
        flash::bytes_for(shape, c.num_ctx, c.num_batch, c.num_parallel, c.threads)
    } else {
        reference::bytes_for(shape, c.num_ctx, c.threads)
    }
}

/// Bytes of quantized activations the largest matrix product of `file` needs for
/// `n_tokens` tokens: what the runner reserves for its matrix products.
pub fn matmul_scratch_bytes(file: &GgufFile, n_tokens: usize) -> usize {
    file.tensors()
        .iter()
        .filter(|t| t.dims().len() >= 2)
        .map(|t| matmul_activation_bytes(t.ggml_type(), t.dims()[0] as usize, n_tokens))
        .max()
        .unwrap_or(0)
}

/// Bytes of the weight rows the compute threads of `file`'s products decode for the
/// fast token-lane kernels (the 32-element block types and Q4_K/Q5_K/Q6_K, passes of
/// [`ggml_type::scratch::LANES_FROM`] tokens or more): each thread keeps the widest.
pub fn decoded_rows_bytes(file: &GgufFile, num_batch: usize, threads: usize) -> usize {
    use ggml_type::scratch::{LANES_FROM, lane_rows_bytes};
    if num_batch < LANES_FROM {
        return 0;
    }
    let widest = (file.tensors().iter())
        .filter(|t| t.dims().len() >= 2)
        .filter(|t| {
            let ty = t.ggml_type();
            let act = ty.vec_dot_type();
            (ty.block_size() == 32 && matches!(act, Some(GgmlType::Q8_0 | GgmlType::Q8_1)))
                || matches!(ty, GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K)
        })
        .map(|t| lane_rows_bytes(t.dims()[0] as usize))
        .max()
        .unwrap_or(0);
    threads * widest
}

/// Bytes each compute thread keeps for F16 weight rows widened to f32 in fast numerics
/// (`kernels::matmul::WIDE_MAX` values; the runner's tests hold the two equal).
pub const WIDE_ROWS_BYTES: usize = 128 * 1024 * 4;

/// Bytes of the widened F16 rows of `file`'s products on `threads` threads: the kernels
/// widen rows when a pass holds 32 tokens or more, so a model with F16 matrices and
/// `num_batch` of 32 or more may keep [`WIDE_ROWS_BYTES`] per thread.
pub fn widening_bytes(file: &GgufFile, num_batch: usize, threads: usize) -> usize {
    let has_f16 =
        (file.tensors().iter()).any(|t| t.dims().len() >= 2 && t.ggml_type() == GgmlType::F16);
    if has_f16 && num_batch >= 32 {
        threads * WIDE_ROWS_BYTES
    } else {
        0
    }
}
