//! Llama's hyper-parameters (and those of the models that share its GGUF layout: Llama
//! 2/3, Mistral, SmolLM2), as llama.cpp's `llama_model::load_hparams` reads them.

use gguf::GgufFile;

use super::hparams::{attention_shape, layers, positive, rope, widths};
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
    /// Feed-forward hidden size.
    pub n_ff: usize,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// Attention heads, with `attention.scale` (or `1/sqrt(head_dim_k)`) on `q·k`.
    pub attn: AttentionShape,
    /// The context length the model was trained for.
    pub train_ctx: usize,
    /// The rotary embedding (without `rope_freqs.weight`, which is a tensor).
    pub rope: RopeSpec,
}

impl HyperParams {
    /// Reads them from `file`'s metadata, naming the key of a missing or bad one.
    pub fn read(file: &GgufFile) -> Result<Self, PlanError> {
        let md = file.metadata();
        let head_dim_k = positive(md.arch_key("attention.key_length")?, md.key_length()?)?;
        let scale = match md.arch_get_opt::<f32>("attention.scale")? {
            Some(s) if s != 0.0 => s,
            _ => 1.0 / (head_dim_k as f32).sqrt(),
        };
        let (n_embd, n_ff) = widths(file)?;
        let attn = attention_shape(file, scale)?;
        Ok(Self {
            n_layer: layers(file)?,
            n_embd,
            n_ff,
            eps: md.rms_norm_epsilon()?,
            attn,
            train_ctx: md.context_length()? as usize,
            rope: rope(file, attn.head_dim_k)?,
        })
    }

    /// The buffer widths and cache layout these imply.
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

/// The plan of a llama file, from its metadata only.
pub fn plan(file: &GgufFile) -> Result<ArchPlan, PlanError> {
    Ok(HyperParams::read(file)?.plan())
}
