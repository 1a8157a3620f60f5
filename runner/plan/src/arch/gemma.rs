//! Gemma 2's and Gemma 3's hyper-parameters (the text models; `general.architecture =
//! gemma2`, `gemma3`), as llama.cpp's `llama_model_gemma{2,3}::load_arch_hparams` read
//! them.
//!
//! Both alternate sliding-window layers with global ones. Gemma 3: five layers of six
//! slide, with RoPE base `rope.freq_base_swa` (10,000 by default, unscaled); every sixth
//! layer is global, with `rope.freq_base` and the file's linear RoPE scaling. Gemma 2:
//! every other layer slides (a window of 4,096 unless the file says otherwise), both
//! kinds with the same RoPE, and attention and final logits are always soft-capped (50
//! and 30 unless the file says otherwise).

use gguf::{GgufFile, MetadataArray, MetadataValue};

use super::hparams::{attention_shape, layers, rope, widths};
use super::{ArchPlan, RopeSpec};
use crate::PlanError;
use crate::compute::AttentionShape;

/// Which Gemma: the two differ in hyper-parameters only where llama.cpp's readers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Gemma 2 (`gemma2`).
    Gemma2,
    /// Gemma 3 (`gemma3`).
    Gemma3,
}

impl Generation {
    /// llama.cpp's sliding-window pattern when the file names none: of every `p` layers,
    /// the first `p - 1` slide.
    fn default_swa_pattern(self) -> u32 {
        match self {
            Self::Gemma2 => 2,
            Self::Gemma3 => 6,
        }
    }

    /// The largest size is the one whose query scale comes from `n_embd / n_head` rather
    /// than the head size; llama.cpp recognises it by its layer count.
    fn layers_27b(self) -> usize {
        match self {
            Self::Gemma2 => 46,
            Self::Gemma3 => 62,
        }
    }
}

/// llama.cpp's RoPE base for Gemma 3's sliding-window layers when the file names none.
const DEFAULT_FREQ_BASE_SWA: f32 = 10_000.0;
/// Gemma 2's sliding window when the file names none.
const GEMMA2_WINDOW: u32 = 4096;
/// Gemma 2's attention logit soft cap when the file names none.
const GEMMA2_ATTN_SOFTCAP: f32 = 50.0;
/// Gemma 2's final logit soft cap when the file names none.
const GEMMA2_FINAL_SOFTCAP: f32 = 30.0;

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
    /// Which Gemma.
    pub generation: Generation,
    /// Attention with `scale` 1: the queries are scaled beforehand, as in llama.cpp
    /// (Gemma 2: with its logit soft cap).
    pub attn: AttentionShape,
    /// The factor applied to the queries after RoPE (`f_attention_scale`).
    pub query_scale: f32,
    /// `attention.sliding_window`, `None` when absent or 0 (no layer slides).
    pub window: Option<usize>,
    /// `final_logit_softcapping`, `None` when absent or 0.
    pub softcap: Option<f32>,
    /// The context length the model was trained for.
    pub train_ctx: usize,
    /// For each layer, whether the pattern makes it a sliding-window layer (it slides
    /// only when [`HyperParams::window`] is set too).
    pub sliding: Vec<bool>,
    /// RoPE of the sliding-window layers (Gemma 3: base `rope.freq_base_swa`, no
    /// scaling; Gemma 2: the global one unless the file gives a base).
    pub rope_local: RopeSpec,
    /// RoPE of the global layers: base `rope.freq_base`, the file's linear scaling.
    pub rope_global: RopeSpec,
}

impl HyperParams {
    /// Reads them from `file`'s metadata, naming the key of a missing or bad one.
    pub fn read(file: &GgufFile) -> Result<Self, PlanError> {
        let md = file.metadata();
        let generation = match md.architecture()? {
            "gemma2" => Generation::Gemma2,
            _ => Generation::Gemma3,
        };
        let n_layer = layers(file)?;
        let (n_embd, n_ff) = widths(file)?;
        let mut attn = attention_shape(file, 1.0)?;
        let (n_head, head_dim_k, head_dim_v) = (attn.n_head, attn.head_dim_k, attn.head_dim_v);
        for (suffix, full) in [
            ("attention.key_length_swa", head_dim_k),
            ("attention.value_length_swa", head_dim_v),
        ] {
            if let Some(swa) = md.arch_get_opt::<u32>(suffix)?
                && swa as usize != full
            {
                return Err(PlanError::BadHyperParameter {
                    key: md.arch_key(suffix)?,
                    value: swa.to_string(),
                    why: "sliding-window layers with their own head size are not implemented",
                });
            }
        }
        let query_scale = if n_layer == generation.layers_27b() {
            1.0 / ((n_embd / n_head) as f32).sqrt()
        } else {
            1.0 / (head_dim_k as f32).sqrt()
        };
        let final_cap = md.arch_get_opt::<f32>("final_logit_softcapping")?;
        let mut window = md.sliding_window()?;
        let softcap = match generation {
            Generation::Gemma2 => {
                window = window.or(Some(GEMMA2_WINDOW));
                let cap = md.arch_get_opt::<f32>("attn_logit_softcapping")?;
                attn.softcap = Some(cap.unwrap_or(GEMMA2_ATTN_SOFTCAP));
                Some(final_cap.unwrap_or(GEMMA2_FINAL_SOFTCAP))
            }
            Generation::Gemma3 => final_cap,
        };
        for (key, cap) in [
            ("attn_logit_softcapping", attn.softcap),
            ("final_logit_softcapping", softcap),
        ] {
            if let Some(c) = cap
                && !(c.is_finite() && c >= 0.0)
            {
                return Err(PlanError::BadHyperParameter {
                    key: md.arch_key(key)?,
                    value: c.to_string(),
                    why: "must be a number of at least 0 (0 turns it off)",
                });
            }
        }
        let (rope_local, rope_global) = ropes(file, head_dim_k, generation)?;
        Ok(Self {
            n_layer,
            n_embd,
            n_ff,
            eps: md.rms_norm_epsilon()?,
            generation,
            query_scale,
            window: window.filter(|&w| w > 0).map(|w| w as usize),
            attn: AttentionShape {
                softcap: attn.softcap.filter(|&c| c != 0.0),
                ..attn
            },
            softcap: softcap.filter(|&c| c != 0.0),
            train_ctx: md.context_length()? as usize,
            sliding: sliding_layers(file, n_layer, generation.default_swa_pattern())?,
            rope_local,
            rope_global,
        })
    }

    /// The buffer widths and cache layout these imply.
    pub fn plan(&self) -> ArchPlan {
        let windows = (self.sliding.iter())
            .map(|&s| if s { self.window } else { None })
            .collect();
        let n_rot = vec![self.rope_local.n_rot, self.rope_global.n_rot];
        ArchPlan::decoder(self.n_embd, self.n_ff, self.attn, n_rot, windows)
    }
}

/// The plan of a gemma2 or gemma3 file, from its metadata only.
pub fn plan(file: &GgufFile) -> Result<ArchPlan, PlanError> {
    Ok(HyperParams::read(file)?.plan())
}

/// Which layers use the sliding window, as llama.cpp's `load_swa_pattern(ml, 6)`:
/// `attention.sliding_window_pattern` as one flag per layer, or as a period `p` (layer
/// `il` slides when `il % p < p - 1`; 0 makes every layer slide), `default` when absent.
fn sliding_layers(file: &GgufFile, n_layer: usize, default: u32) -> Result<Vec<bool>, PlanError> {
    let md = file.metadata();
    let key = md.arch_key("attention.sliding_window_pattern")?;
    let bad = |value: String, why| PlanError::BadHyperParameter {
        key: key.clone(),
        value,
        why,
    };
    let flags: Vec<bool> = match md.get(&key) {
        None => return Ok(period_pattern(default, n_layer)),
        Some(MetadataValue::Array(array)) => match array {
            MetadataArray::Bool(v) => v.clone(),
            MetadataArray::U32(v) => v.iter().map(|&f| f != 0).collect(),
            MetadataArray::I32(v) => v.iter().map(|&f| f != 0).collect(),
            _ => {
                let what = format!("an array of {:?}", array.element_type());
                return Err(bad(what, "must be flags or a period"));
            }
        },
        Some(_) => return Ok(period_pattern(md.get_u32(&key)?, n_layer)),
    };
    if flags.len() != n_layer {
        return Err(bad(
            format!("{} flags", flags.len()),
            "must hold one flag per layer",
        ));
    }
    Ok(flags)
}

/// llama.cpp's `set_swa_pattern(period, dense_first = false)`.
fn period_pattern(period: u32, n_layer: usize) -> Vec<bool> {
    let p = period as usize;
    (0..n_layer).map(|il| p == 0 || il % p < p - 1).collect()
}

/// The two rotary embeddings over `rope.dimension_count` dimensions (the whole head by
/// default): the sliding-window layers' with `rope.dimension_count_swa` dimensions, base
/// `rope.freq_base_swa` (Gemma 3: 10,000 by default, and no scaling; Gemma 2: the
/// global base and scaling by default), and the global layers' with base
/// `rope.freq_base` and linear scaling by `rope.scaling.factor`.
/// `rope.scaling.attn_factor` scales both, as in llama.cpp.
fn ropes(
    file: &GgufFile,
    head_dim: usize,
    generation: Generation,
) -> Result<(RopeSpec, RopeSpec), PlanError> {
    let md = file.metadata();
    let mut global = rope(file, head_dim)?;
    let n_rot_swa = match md.arch_get_opt::<u32>("rope.dimension_count_swa")? {
        Some(n) => n as usize,
        None => global.n_rot,
    };
    let attn_factor = md
        .arch_get_opt::<f32>("rope.scaling.attn_factor")?
        .unwrap_or(1.0);
    global.attn_factor = attn_factor;
    let base_swa = md.arch_get_opt::<f32>("rope.freq_base_swa")?;
    let mut local = match generation {
        Generation::Gemma2 => RopeSpec {
            n_rot: n_rot_swa,
            freq_base: base_swa.unwrap_or(global.freq_base),
            ..global
        },
        Generation::Gemma3 => RopeSpec::new(n_rot_swa, base_swa.unwrap_or(DEFAULT_FREQ_BASE_SWA)),
    };
    local.attn_factor = attn_factor;
    Ok((local, global))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sixth_layer_is_global_by_default() {
        let pattern = period_pattern(Generation::Gemma3.default_swa_pattern(), 18);
        let global: Vec<usize> = (0..18).filter(|&il| !pattern[il]).collect();
        assert_eq!(global, vec![5, 11, 17]);
        assert!(period_pattern(0, 4).iter().all(|&s| s));
        assert_eq!(period_pattern(1, 3), vec![false; 3]);
    }
}
