//! Qwen 2 and Qwen 2.5 (`general.architecture = qwen2`).
//!
//! Llama's block with biases on the Q, K and V projections and RoPE in the NeoX layout
//! (the two halves of each head rotate together). Per token: embedding lookup; per
//! layer, RMSNorm → Q/K/V projections plus their biases → RoPE on Q and K → causal
//! grouped-query attention scaled by `1/sqrt(head_dim)` → output projection → residual
//! add → RMSNorm → SwiGLU feed-forward → residual add; then the final RMSNorm and the
//! output head (`output.weight` and its bias when the file has them, else the embedding
//! table). The order of operations is llama.cpp's (`src/models/qwen2.cpp`); the
//! hyper-parameters are read by `plan::arch::qwen`.
//! References: Qwen Team, "Qwen2 Technical Report" (2024), "Qwen2.5 Technical Report"
//! (2024).

use std::sync::Arc;

use gguf::GgufFile;
use kernels::ops::RopeLayout;
use plan::arch::qwen::HyperParams;

use super::decoder::{Block, Decoder, Parts, Recipe};
use super::hparams::rope;
use super::{LoadOptions, Model, ModelError};

/// Loads a Qwen 2 model: llama's blocks, whose Q/K/V biases `Block::standard` finds.
pub fn load(file: Arc<GgufFile>, options: &LoadOptions) -> Result<Box<dyn Model>, ModelError> {
    let hp = HyperParams::read(&file)?;
    let a = hp.attn;
    let blocks = (0..hp.n_layer)
        .map(|i| Block::standard(&file, i, hp.n_embd, hp.n_ff, &a))
        .collect::<Result<_, _>>()?;
    let recipe = Recipe::llama_like("qwen2", hp.n_embd, hp.eps, hp.train_ctx, a);
    let parts = Parts {
        blocks,
        ropes: vec![rope(&hp.rope, a.head_dim_k, RopeLayout::NeoX, None)?],
        plan: hp.plan(),
    };
    Ok(Box::new(Decoder::new(file, options, recipe, parts)?))
}
