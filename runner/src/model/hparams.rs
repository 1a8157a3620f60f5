//! Hyper-parameters every architecture reads the same way: positive counts and the head
//! layout of attention.

use gguf::GgufFile;

use super::ModelError;
use super::attention::AttentionShape;

/// `value` as a count, or an error naming `key` when it is 0.
pub(crate) fn positive(key: String, value: u32) -> Result<usize, ModelError> {
    if value == 0 {
        return Err(ModelError::BadHyperParameter {
            key,
            value: value.to_string(),
            why: "must be positive",
        });
    }
    Ok(value as usize)
}

/// `embedding_length` and `feed_forward_length`.
pub(crate) fn widths(file: &GgufFile) -> Result<(usize, usize), ModelError> {
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
pub(crate) fn attention_shape(file: &GgufFile, scale: f32) -> Result<AttentionShape, ModelError> {
    let md = file.metadata();
    let n_head = positive(md.arch_key("attention.head_count")?, md.head_count()?)?;
    let n_head_kv = positive(md.arch_key("attention.head_count_kv")?, md.head_count_kv()?)?;
    if !n_head.is_multiple_of(n_head_kv) {
        return Err(ModelError::BadHyperParameter {
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
    })
}
