//! Qwen 3's mixture-of-experts models (`general.architecture = qwen3moe`:
//! Qwen3-30B-A3B, Qwen3-235B-A22B).
//!
//! Qwen 3's attention (per-head Q/K RMSNorm before RoPE, NeoX layout, no biases) with a
//! mixture of experts in place of every feed-forward network ([`super::moe`]): the
//! router picks `expert_used_count` of `expert_count` experts per token. The order of
//! operations is llama.cpp's (`src/models/qwen3moe.cpp`); the hyper-parameters are read
//! by `plan::arch::qwen3moe`.
//! Reference: Qwen Team, "Qwen3 Technical Report" (2025).

use std::sync::Arc;

use gguf::GgufFile;
use kernels::ops::RopeLayout;
use plan::arch::qwen3moe::HyperParams;

use super::decoder::{Block, Decoder, Parts, Qkv, Recipe};
use super::hparams::rope;
use super::moe::{FeedForward, Moe};
use super::{LoadOptions, Model, ModelError};

/// Loads a Qwen 3 MoE model: Qwen 3's blocks with routed experts.
pub fn load(file: Arc<GgufFile>, options: &LoadOptions) -> Result<Box<dyn Model>, ModelError> {
    let hp = HyperParams::read(&file)?;
    let b = &hp.base;
    let a = b.attn;
    let blocks = (0..b.n_layer)
        .map(|i| {
            let p = format!("blk.{i}");
            let qkv = Qkv::separate(&file, &p, b.n_embd, &a)?;
            let moe = Moe::load(&file, &format!("{p}.ffn"), b.n_embd, hp.n_ff_exp, hp.moe)?;
            Block::with_projections(&file, i, b.n_embd, &a, qkv, FeedForward::Experts(moe))?
                .with_qk_norm(&file, i, a.head_dim_k)
        })
        .collect::<Result<_, ModelError>>()?;
    let recipe = Recipe::llama_like("qwen3moe", b.n_embd, b.eps, b.train_ctx, a);
    let parts = Parts {
        blocks,
        ropes: vec![rope(&b.rope, a.head_dim_k, RopeLayout::NeoX, None)?],
        plan: hp.plan(),
    };
    Ok(Box::new(Decoder::new(file, options, recipe, parts)?))
}
