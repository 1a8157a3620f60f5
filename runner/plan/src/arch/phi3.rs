//! Phi-3 and Phi-4-mini's hyper-parameters (`general.architecture = phi3`), as llama.cpp's
//! `llama_model_phi3` reads them.
//!
//! The head size is `embedding_length / head_count`. Part of each head may be rotated
//! (`rope.dimension_count`, Phi-4-mini's `partial_rotary_factor`). The 128k-context
//! models stretch RoPE with LongRoPE: per-pair frequency factors for contexts up to
//! `rope.scaling.original_context_length` and others beyond it (tensors, chosen by the
//! runner from its context), and a magnitude factor `rope.scaling.attn_factor` on cos
//! and sin. The queries are scaled by `1/sqrt(head_dim)` before attention, which then
//! scales by 1. `attention.sliding_window` is ignored, as llama.cpp ignores it for Phi-3
//! (its converter writes a value the models were not trained to need).

use gguf::GgufFile;

use super::hparams::{equal_heads, layers, rope, widths};
use super::{ArchPlan, RopeSpec};
use crate::PlanError;
use crate::compute::AttentionShape;

/// The hyper-parameters the graph needs.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperParams {
    /// Layers.
    pub n_layer: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Feed-forward hidden size (the fused gate-up matrix has twice as many rows).
    pub n_ff: usize,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// Attention heads; the scale on `q·k` is 1 (see [`HyperParams::query_scale`]).
    pub attn: AttentionShape,
    /// The factor on the queries after RoPE: `1/sqrt(head_dim)`.
    pub query_scale: f32,
    /// The context length the model was trained for.
    pub train_ctx: usize,
    /// The context past which the long LongRoPE factors apply
    /// (`rope.scaling.original_context_length`, else the training context).
    pub orig_ctx: usize,
    /// The rotary embedding (NeoX layout), with `rope.scaling.attn_factor`.
    pub rope: RopeSpec,
}

impl HyperParams {
    /// Reads them from `file`'s metadata, naming the key of a missing or bad one.
    pub fn read(file: &GgufFile) -> Result<Self, PlanError> {
        let md = file.metadata();
        let (n_embd, n_ff) = widths(file)?;
        let attn = equal_heads(file, 1.0)?;
        let head_dim = attn.head_dim_k;
        let mut rope = rope(file, head_dim)?;
        if let Some(f) = md.arch_get_opt::<f32>("rope.scaling.attn_factor")? {
            if !(f.is_finite() && f > 0.0) {
                return Err(PlanError::BadHyperParameter {
                    key: md.arch_key("rope.scaling.attn_factor")?,
                    value: f.to_string(),
                    why: "must be a positive number",
                });
            }
            rope.attn_factor = f;
        }
        let train_ctx = md.context_length()? as usize;
        let orig_ctx = match md.arch_get_opt::<u32>("rope.scaling.original_context_length")? {
            Some(n) if n > 0 => n as usize,
            _ => train_ctx,
        };
        Ok(Self {
            n_layer: layers(file)?,
            n_embd,
            n_ff,
            eps: md.rms_norm_epsilon()?,
            attn,
            query_scale: 1.0 / (head_dim as f32).sqrt(),
            train_ctx,
            orig_ctx,
            rope,
        })
    }

    /// The buffer widths and cache layout these imply: no layer slides.
    pub fn plan(&self) -> ArchPlan {
        ArchPlan::dense(
            self.n_layer,
            self.n_embd,
            self.n_ff,
            self.attn,
            self.rope.n_rot,
        )
    }
}

/// The plan of a phi3 file, from its metadata only.
pub fn plan(file: &GgufFile) -> Result<ArchPlan, PlanError> {
    Ok(HyperParams::read(file)?.plan())
}
