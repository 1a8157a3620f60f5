//! Phi-3 and Phi-4-mini (`general.architecture = phi3`).
//!
//! Llama's block with its projections fused: one matrix gives the queries, keys and values
//! (`attn_qkv`), one the gate and up halves of the SwiGLU network (`ffn_up`, gate rows
//! first). Per token: embedding lookup; per layer, RMSNorm → fused Q/K/V projection →
//! RoPE (NeoX layout, over `rope.dimension_count` of each head, with the LongRoPE factors
//! for the context) on Q and K → Q scaled by `1/sqrt(head_dim)` → causal grouped-query
//! attention → output projection → residual add → RMSNorm → SwiGLU → residual add; then
//! the final RMSNorm and the output head (`output.weight`, or the embedding table). The
//! order of operations is llama.cpp's (`src/models/phi3.cpp`); the hyper-parameters are
//! read by `plan::arch::phi3`.
//!
//! LongRoPE: `rope_factors_short.weight` divide the frequencies while a sequence's context
//! is at most `rope.scaling.original_context_length`, `rope_factors_long.weight` beyond
//! it; like llama.cpp, the choice is made once, from the context the runner is loaded
//! with, not per token.
//! References: Abdin et al., "Phi-3 Technical Report" (2024); Ding et al., "LongRoPE"
//! (2024).

use std::sync::Arc;

use gguf::GgufFile;
use kernels::ops::RopeLayout;
use plan::arch::phi3::HyperParams;

use super::decoder::{Block, Decoder, Parts, Qkv, Recipe};
use super::hparams::rope;
use super::layers::GatedMlp;
use super::moe::FeedForward;
use super::weights::vector_opt;
use super::{LoadOptions, Model, ModelError};

/// Loads a Phi-3 model: llama's blocks with fused projections, LongRoPE.
pub fn load(file: Arc<GgufFile>, options: &LoadOptions) -> Result<Box<dyn Model>, ModelError> {
    let hp = HyperParams::read(&file)?;
    let a = hp.attn;
    let (n_embd, n_ff) = (hp.n_embd, hp.n_ff);
    let blocks = (0..hp.n_layer)
        .map(|i| {
            let p = format!("blk.{i}");
            let qkv = Qkv::fused(&file, &p, n_embd, &a)?;
            let mlp =
                FeedForward::Dense(GatedMlp::fused(&file, &format!("{p}.ffn"), n_embd, n_ff)?);
            Block::with_projections(&file, i, n_embd, &a, qkv, mlp)
        })
        .collect::<Result<_, ModelError>>()?;
    let long = options.kv.num_ctx > hp.orig_ctx;
    let name = if long {
        "rope_factors_long.weight"
    } else {
        "rope_factors_short.weight"
    };
    let factors = vector_opt(&file, name, hp.rope.n_rot / 2)?;
    tracing::debug!(
        factors = factors.as_ref().map(|_| name),
        num_ctx = options.kv.num_ctx,
        orig_ctx = hp.orig_ctx,
        "phi3 RoPE"
    );
    let rope = rope(&hp.rope, a.head_dim_k, RopeLayout::NeoX, factors.as_deref())?;
    let recipe = Recipe {
        query_scale: Some(hp.query_scale),
        ..Recipe::llama_like("phi3", n_embd, hp.eps, hp.train_ctx, a)
    };
    let parts = Parts {
        blocks,
        ropes: vec![rope],
        plan: hp.plan(),
    };
    Ok(Box::new(Decoder::new(file, options, recipe, parts)?))
}
