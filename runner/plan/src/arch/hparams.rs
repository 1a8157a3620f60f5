//! Hyper-parameters every architecture reads the same way: positive counts, the head
//! layout of attention and the rotary embedding.

use gguf::GgufFile;

use super::RopeSpec;
use crate::PlanError;
use crate::compute::AttentionShape;

/// `value` as a count, or an error naming `key` when it is 0.
pub(crate) fn positive(key: String, value: u32) -> Result<usize, PlanError> {
    if value == 0 {
        return Err(PlanError::BadHyperParameter {
            key,
            value: value.to_string(),
            why: "must be positive",
        });
    }
    Ok(value as usize)
}

/// `block_count`: the number of layers.
pub(crate) fn layers(file: &GgufFile) -> Result<usize, PlanError> {
    Ok(file.metadata().block_count()? as usize)
}

/// `embedding_length` and `feed_forward_length`.
pub(crate) fn widths(file: &GgufFile) -> Result<(usize, usize), PlanError> {
    let md = file.metadata();
    let n_embd = positive(md.arch_key("embedding_length")?, md.embedding_length()?)?;
    let n_ff = positive(
        md.arch_key("feed_forward_length")?,
        md.feed_forward_length()?,
    )?;
    Ok((n_embd, n_ff))
}

/// The head layout: query and key/value head counts (the second dividing the first) and
/// head sizes, with `scale` applied to `q·k`.
pub(crate) fn attention_shape(file: &GgufFile, scale: f32) -> Result<AttentionShape, PlanError> {
    let md = file.metadata();
    let n_head = positive(md.arch_key("attention.head_count")?, md.head_count()?)?;
    let n_head_kv = positive(md.arch_key("attention.head_count_kv")?, md.head_count_kv()?)?;
    if !n_head.is_multiple_of(n_head_kv) {
        return Err(PlanError::BadHyperParameter {
            key: md.arch_key("attention.head_count_kv")?,
            value: n_head_kv.to_string(),
            why: "must divide the query head count",
        });
    }
    Ok(AttentionShape {
        n_head,
        n_head_kv,
        head_dim_k: positive(md.arch_key("attention.key_length")?, md.key_length()?)?,
        head_dim_v: positive(md.arch_key("attention.value_length")?, md.value_length()?)?,
        scale,
        softcap: None,
    })
}

/// The global rotary embedding: `rope.dimension_count` dimensions (the whole head of
/// `head_dim` by default), base `rope.freq_base`, linear scaling by
/// `rope.scaling.factor` (as llama.cpp: the factor applies whatever the type, and a
/// missing type is linear; other types are refused).
pub(crate) fn rope(file: &GgufFile, head_dim: usize) -> Result<RopeSpec, PlanError> {
    let md = file.metadata();
    let n_rot = match md.rope_dimension_count()? {
        Some(n) => n as usize,
        None => head_dim,
    };
    match md.arch_get_opt::<&str>("rope.scaling.type")? {
        None | Some("none") | Some("linear") => {}
        Some(other) => {
            return Err(PlanError::BadHyperParameter {
                key: md.arch_key("rope.scaling.type")?,
                value: other.to_owned(),
                why: "only linear RoPE scaling is implemented",
            });
        }
    }
    let mut spec = RopeSpec::new(n_rot, md.rope_freq_base()?);
    if let Some(factor) = md.arch_get_opt::<f32>("rope.scaling.factor")?
        && factor != 0.0
    {
        spec.freq_scale = 1.0 / factor;
    }
    Ok(spec)
}

/// [`attention_shape`] for an architecture whose key and value heads are one size, which
/// llama.cpp asserts (Qwen, Phi-3): a file that says otherwise is refused by key.
pub(crate) fn equal_heads(file: &GgufFile, scale: f32) -> Result<AttentionShape, PlanError> {
    let attn = attention_shape(file, scale)?;
    if attn.head_dim_v != attn.head_dim_k {
        return Err(PlanError::BadHyperParameter {
            key: file.metadata().arch_key("attention.value_length")?,
            value: attn.head_dim_v.to_string(),
            why: "must equal attention.key_length",
        });
    }
    Ok(attn)
}
