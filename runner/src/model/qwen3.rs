//! Qwen 3, the dense models (`general.architecture = qwen3`).
//!
//! Qwen 2's block without the Q/K/V biases and with an RMSNorm on each query and key head
//! before RoPE (the "QK-norm" that keeps attention logits bounded); the query width
//! (`head_count × key_length`) may be wider than the hidden size. Per token: embedding
//! lookup; per layer, RMSNorm → Q/K/V projections → RMSNorm of each Q and K head → RoPE
//! (NeoX layout) on Q and K → causal grouped-query attention scaled by
//! `1/sqrt(head_dim)` → output projection → residual add → RMSNorm → SwiGLU feed-forward
//! → residual add; then the final RMSNorm and the output head (`output.weight`, or the
//! embedding table when the file ties them). The order of operations is llama.cpp's
//! (`src/models/qwen3.cpp`); the hyper-parameters are read by `plan::arch::qwen`.
//! Reference: Qwen Team, "Qwen3 Technical Report" (2025).

use std::sync::Arc;

use gguf::GgufFile;
use kernels::ops::RopeLayout;
use plan::arch::qwen::HyperParams;

use super::decoder::{Block, Decoder, Parts, Recipe};
use super::hparams::rope;
use super::{LoadOptions, Model, ModelError};

/// Loads a Qwen 3 model: llama's blocks with per-head Q/K norms.
pub fn load(file: Arc<GgufFile>, options: &LoadOptions) -> Result<Box<dyn Model>, ModelError> {
    let hp = HyperParams::read(&file)?;
    let a = hp.attn;
    let blocks = (0..hp.n_layer)
        .map(|i| {
            Block::standard(&file, i, hp.n_embd, hp.n_ff, &a)?.with_qk_norm(&file, i, a.head_dim_k)
        })
        .collect::<Result<_, _>>()?;
    let recipe = Recipe::llama_like("qwen3", hp.n_embd, hp.eps, hp.train_ctx, a);
    let parts = Parts {
        blocks,
        ropes: vec![rope(&hp.rope, a.head_dim_k, RopeLayout::NeoX, None)?],
        plan: hp.plan(),
    };
    Ok(Box::new(Decoder::new(file, options, recipe, parts)?))
}
