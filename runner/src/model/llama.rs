//! Llama (and the models that share its GGUF layout: Llama 2/3, Mistral, SmolLM2).
//!
//! Per token: embedding lookup; per layer, RMSNorm → Q/K/V projections → RoPE (normal,
//! adjacent-pair layout, with Llama 3.1's per-pair frequency factors `rope_freqs.weight`
//! when the file has them) on Q and K → causal grouped-query attention → output
//! projection → residual add → RMSNorm → SwiGLU feed-forward → residual add; then the
//! final RMSNorm and the output head (`output.weight`, or the embedding table when the
//! file ties them). The order of operations is llama.cpp's (`src/models/llama.cpp`); the
//! hyper-parameters are read by `plan::arch::llama`, which the supervisor's estimate
//! shares.
//! References: Touvron et al., "LLaMA" (2023); Meta, "The Llama 3 Herd of Models" (2024).

use std::sync::Arc;

use gguf::GgufFile;
use kernels::ops::RopeLayout;
use plan::arch::llama::HyperParams;

use super::decoder::{Block, Decoder, Parts, Recipe};
use super::hparams::rope;
use super::weights::vector_opt;
use super::{LoadOptions, Model, ModelError};

/// Loads a llama model: the decoder with llama's blocks.
pub fn load(file: Arc<GgufFile>, options: &LoadOptions) -> Result<Box<dyn Model>, ModelError> {
    let hp = HyperParams::read(&file)?;
    let a = hp.attn;
    let blocks = (0..hp.n_layer)
        .map(|i| Block::standard(&file, i, hp.n_embd, hp.n_ff, &a))
        .collect::<Result<_, _>>()?;
    let factors = vector_opt(&file, "rope_freqs.weight", hp.rope.n_rot / 2)?;
    let rope = rope(
        &hp.rope,
        a.head_dim_k,
        RopeLayout::Normal,
        factors.as_deref(),
    )?;
    let recipe = Recipe::llama_like("llama", hp.n_embd, hp.eps, hp.train_ctx, a);
    let parts = Parts {
        blocks,
        ropes: vec![rope],
        plan: hp.plan(),
    };
    Ok(Box::new(Decoder::new(file, options, recipe, parts)?))
}
