//! Gemma 2 and Gemma 3 (the text models; `general.architecture = gemma2`, `gemma3`).
//!
//! Per token: embedding lookup scaled by `sqrt(n_embd)`; per layer, RMSNorm → Q/K/V
//! projections → (Gemma 3) RMSNorm of each Q and K head → RoPE (NeoX layout) on Q and K
//! → Q scaled by the attention scale → grouped-query attention (causal, and limited to
//! the last `attention.sliding_window` positions on the sliding-window layers; Gemma 2
//! soft-caps its attention logits, `c·tanh(q·k/c)`) → output projection → RMSNorm →
//! residual add → RMSNorm → GeGLU feed-forward (tanh GELU) → RMSNorm → residual add;
//! then the final RMSNorm, the output head (the embedding table unless the file has
//! `output.weight`) and logit soft-capping (always for Gemma 2, when the file asks for
//! Gemma 3). A batch that asks for embeddings gets the rows after the final RMSNorm.
//!
//! Gemma 3: five layers of six use a sliding window and RoPE base `rope.freq_base_swa`
//! (10,000 by default, unscaled); every sixth layer is global, with `rope.freq_base` and
//! the file's linear RoPE scaling. Gemma 2: every other layer slides, with the same RoPE.
//! Gemma's RMSNorm multiplies by `1 + w`; llama.cpp's converter stores `1 + w` in the
//! GGUF, so the norm weights are used as stored.
//!
//! The order of operations is llama.cpp's (`src/models/gemma2.cpp`, `gemma3.cpp`;
//! hyper-parameters as `plan::arch::gemma` reads them).
//! References: Gemma Team, "Gemma 2: Improving Open Language Models at a Practical Size"
//! (2024), "Gemma 3 Technical Report" (2025); google/gemma_pytorch.

use std::sync::Arc;

use gguf::GgufFile;
use kernels::ops::RopeLayout;
use plan::arch::gemma::{Generation, HyperParams};

use super::decoder::{Block, Decoder, Gated, Parts, Recipe};
use super::hparams::rope;
use super::{LoadOptions, Model, ModelError};

/// RoPE number 0 is the sliding-window layers', number 1 the global layers'.
const LOCAL: usize = 0;
const GLOBAL: usize = 1;

/// Loads a Gemma 2 or 3 model: blocks with post-norms (and Gemma 3's per-head Q/K
/// norms), two RoPEs.
pub fn load(file: Arc<GgufFile>, options: &LoadOptions) -> Result<Box<dyn Model>, ModelError> {
    let hp = HyperParams::read(&file)?;
    let (n_embd, a) = (hp.n_embd, hp.attn);
    let post_norms = ("post_attention_norm", "post_ffw_norm");
    let blocks = (hp.sliding.iter().enumerate())
        .map(|(i, &sliding)| {
            let rope = if sliding && hp.window.is_some() {
                LOCAL
            } else {
                GLOBAL
            };
            let block = Block::standard(&file, i, n_embd, hp.n_ff, &a)?;
            let block = match hp.generation {
                Generation::Gemma2 => block,
                Generation::Gemma3 => block.with_qk_norm(&file, i, a.head_dim_k)?,
            };
            Ok(block
                .with_post_norms(&file, i, n_embd, post_norms)?
                .with_rope(rope))
        })
        .collect::<Result<_, ModelError>>()?;
    let recipe = Recipe {
        name: match hp.generation {
            Generation::Gemma2 => "gemma2",
            Generation::Gemma3 => "gemma3",
        },
        n_embd,
        eps: hp.eps,
        train_ctx: hp.train_ctx,
        attn: a,
        embd_scale: Some((n_embd as f32).sqrt()),
        query_scale: Some(hp.query_scale),
        act: Gated::GeGlu,
        final_softcap: hp.softcap,
    };
    let ropes = vec![
        rope(&hp.rope_local, a.head_dim_k, RopeLayout::NeoX, None)?,
        rope(&hp.rope_global, a.head_dim_k, RopeLayout::NeoX, None)?,
    ];
    let plan = hp.plan();
    Ok(Box::new(Decoder::new(
        file,
        options,
        recipe,
        Parts {
            blocks,
            ropes,
            plan,
        },
    )?))
}
