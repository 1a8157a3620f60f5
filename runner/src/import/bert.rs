//! BERT (`BertModel`, `BertForMaskedLM`) into `general.architecture = bert`, with the keys
//! and tensor names of llama.cpp's converter (`BertModel` in `convert_hf_to_gguf.py`):
//!
//! | Hugging Face | GGUF |
//! | --- | --- |
//! | `embeddings.word_embeddings` | `token_embd` |
//! | `embeddings.position_embeddings` | `position_embd` (F32) |
//! | `embeddings.token_type_embeddings` | `token_types` (F32) |
//! | `embeddings.LayerNorm` | `token_embd_norm` |
//! | `encoder.layer.N.attention.self.{query,key,value}` | `blk.N.attn_{q,k,v}` |
//! | `encoder.layer.N.attention.output.dense` | `blk.N.attn_output` |
//! | `encoder.layer.N.attention.output.LayerNorm` | `blk.N.attn_output_norm` |
//! | `encoder.layer.N.intermediate.dense` | `blk.N.ffn_up` |
//! | `encoder.layer.N.output.dense` | `blk.N.ffn_down` |
//! | `encoder.layer.N.output.LayerNorm` | `blk.N.layer_output_norm` |
//!
//! A `bert.` prefix and the old `gamma`/`beta` names are accepted; the position-id buffer,
//! the pooler and the masked-LM head are dropped, as llama.cpp drops them. The pooling
//! (`bert.pooling_type`) comes from sentence-transformers' `modules.json` and its Pooling
//! module's `config.json` when the directory has them.

use std::collections::HashMap;

use serde_json::Value;

use super::tensors::{Builder, Role};
use super::{HfModel, ImportError, WordPieceVocab};

/// llama.cpp's pooling types (`LLAMA_POOLING_TYPE_*`).
const POOLING_MEAN: u32 = 1;
const POOLING_CLS: u32 = 2;
const POOLING_LAST: u32 = 3;

/// Writes a BERT model's metadata, vocabulary and tensors.
pub fn write(model: &HfModel, b: &mut Builder<'_>) -> Result<(), ImportError> {
    let n_embd = model.usize("hidden_size")?;
    let n_ff = model.usize("intermediate_size")?;
    let n_layer = model.usize("num_hidden_layers")?;
    b.set_layers(n_layer);
    let n_head = model.usize("num_attention_heads")?;
    let n_ctx = model.usize("max_position_embeddings")?;
    let n_types = model.config["type_vocab_size"].as_u64().unwrap_or(2) as usize;
    let eps = model.f64("layer_norm_eps")? as f32;
    if let Some(act) = model.str_opt("hidden_act").filter(|a| *a != "gelu") {
        return Err(ImportError::Config {
            key: "hidden_act".into(),
            why: format!("is '{act}'; the bert architecture runs 'gelu' (erf)"),
        });
    }
    if let Some(pos) = model
        .str_opt("position_embedding_type")
        .filter(|p| *p != "absolute")
    {
        return Err(ImportError::Config {
            key: "position_embedding_type".into(),
            why: format!("is '{pos}'; the bert architecture has absolute positions"),
        });
    }
    if n_head == 0 || !n_embd.is_multiple_of(n_head) {
        return Err(ImportError::Config {
            key: "num_attention_heads".into(),
            why: format!("is {n_head}, which does not divide hidden_size {n_embd}"),
        });
    }
    let vocab = WordPieceVocab::read(&model.dir)?;
    let n_vocab = vocab.tokens.len();

    let w = b.writer();
    w.set("bert.context_length", n_ctx as u32)
        .set("bert.embedding_length", n_embd as u32)
        .set("bert.feed_forward_length", n_ff as u32)
        .set("bert.block_count", n_layer as u32)
        .set("bert.attention.head_count", n_head as u32)
        .set("bert.attention.layer_norm_epsilon", eps)
        .set("bert.attention.causal", false);
    if let Some(pooling) = pooling_type(model)? {
        w.set("bert.pooling_type", pooling);
    }
    vocab.write(w, n_types as u32);

    // The checkpoint's names without a `bert.` prefix and with gamma/beta renamed.
    let names: HashMap<String, String> = b
        .checkpoint()
        .names()
        .map(|n| (canonical(n), n.to_owned()))
        .collect();
    for (canon, hf) in &names {
        let dropped = canon == "embeddings.position_ids"
            || canon.starts_with("pooler.")
            || canon.starts_with("cls.predictions")
            || canon.starts_with("cls.seq_relationship");
        if dropped {
            b.skip(hf);
        }
    }
    let hf = |canon: &str| -> Result<String, ImportError> {
        names
            .get(canon)
            .cloned()
            .ok_or_else(|| ImportError::MissingTensor(canon.to_owned()))
    };
    let mut t = |canon: &str, name: &str, shape: &[usize], role| -> Result<(), ImportError> {
        b.tensor(&hf(canon)?, name, shape, role)
    };
    use Role::{KeepF32, Matrix};
    t(
        "embeddings.word_embeddings.weight",
        "token_embd.weight",
        &[n_vocab, n_embd],
        Matrix,
    )?;
    t(
        "embeddings.position_embeddings.weight",
        "position_embd.weight",
        &[n_ctx, n_embd],
        KeepF32,
    )?;
    t(
        "embeddings.token_type_embeddings.weight",
        "token_types.weight",
        &[n_types, n_embd],
        KeepF32,
    )?;
    t(
        "embeddings.LayerNorm.weight",
        "token_embd_norm.weight",
        &[n_embd],
        KeepF32,
    )?;
    t(
        "embeddings.LayerNorm.bias",
        "token_embd_norm.bias",
        &[n_embd],
        KeepF32,
    )?;
    for i in 0..n_layer {
        let (p, q) = (format!("encoder.layer.{i}."), format!("blk.{i}."));
        let layer: [(&str, &str, usize, usize); 6] = [
            ("attention.self.query", "attn_q", n_embd, n_embd),
            ("attention.self.key", "attn_k", n_embd, n_embd),
            ("attention.self.value", "attn_v", n_embd, n_embd),
            ("attention.output.dense", "attn_output", n_embd, n_embd),
            ("intermediate.dense", "ffn_up", n_ff, n_embd),
            ("output.dense", "ffn_down", n_embd, n_ff),
        ];
        for (from, to, rows, cols) in layer {
            t(
                &format!("{p}{from}.weight"),
                &format!("{q}{to}.weight"),
                &[rows, cols],
                Matrix,
            )?;
            t(
                &format!("{p}{from}.bias"),
                &format!("{q}{to}.bias"),
                &[rows],
                KeepF32,
            )?;
        }
        for (from, to) in [
            ("attention.output.LayerNorm", "attn_output_norm"),
            ("output.LayerNorm", "layer_output_norm"),
        ] {
            for part in ["weight", "bias"] {
                t(
                    &format!("{p}{from}.{part}"),
                    &format!("{q}{to}.{part}"),
                    &[n_embd],
                    KeepF32,
                )?;
            }
        }
    }
    Ok(())
}

/// A checkpoint name as llama.cpp's converter normalizes it before mapping.
fn canonical(name: &str) -> String {
    let name = name.strip_prefix("bert.").unwrap_or(name);
    if let Some(stem) = name.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = name.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        name.to_owned()
    }
}

/// The pooling sentence-transformers applies, from `modules.json` and the Pooling
/// module's `config.json`; `None` without them (the file then has no pooling key).
fn pooling_type(model: &HfModel) -> Result<Option<u32>, ImportError> {
    let modules = model.dir.join("modules.json");
    if !modules.is_file() {
        return Ok(None);
    }
    let modules: Vec<Value> = super::read_json(&modules)?;
    let Some(path) = modules
        .iter()
        .find(|m| m["type"].as_str() == Some("sentence_transformers.models.Pooling"))
        .and_then(|m| m["path"].as_str())
    else {
        return Ok(None);
    };
    let config: Value = super::read_json(&model.dir.join(path).join("config.json"))?;
    let on = |key: &str| config[key].as_bool() == Some(true);
    if on("pooling_mode_mean_tokens") {
        Ok(Some(POOLING_MEAN))
    } else if on("pooling_mode_cls_token") {
        Ok(Some(POOLING_CLS))
    } else if on("pooling_mode_lasttoken") {
        Ok(Some(POOLING_LAST))
    } else {
        Err(ImportError::Config {
            key: format!("{path}/config.json"),
            why: "names a pooling other than mean, cls or last token".into(),
        })
    }
}
