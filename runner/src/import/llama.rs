//! Llama (`LlamaForCausalLM`, `LlamaModel`, `MistralForCausalLM` without sliding
//! windows) into `general.architecture = llama`, with the keys and tensor names of
//! llama.cpp's converter (`LlamaModel` in its `conversion/llama.py`):
//!
//! | Hugging Face | GGUF |
//! | --- | --- |
//! | `model.embed_tokens` | `token_embd` |
//! | `model.layers.N.input_layernorm` | `blk.N.attn_norm` (F32) |
//! | `model.layers.N.self_attn.{q,k}_proj` | `blk.N.attn_{q,k}`, rows permuted |
//! | `model.layers.N.self_attn.{v,o}_proj` | `blk.N.attn_{v,output}` |
//! | `model.layers.N.post_attention_layernorm` | `blk.N.ffn_norm` (F32) |
//! | `model.layers.N.mlp.{gate,up,down}_proj` | `blk.N.ffn_{gate,up,down}` |
//! | `model.norm` | `output_norm` (F32) |
//! | `lm_head` | `output`, absent when `tie_word_embeddings` |
//!
//! Hugging Face rotates each head's first half against its second half; llama.cpp's
//! RoPE rotates adjacent pairs, so the converter reorders the rows of the query and key
//! projections within each head: GGUF row `2i + j` of a head is Hugging Face row
//! `j * head_dim / 2 + i` ([`permute_rows`]). Rotary inverse-frequency buffers are
//! dropped; Llama 3.1's `llama3` RoPE scaling becomes the `rope_freqs` tensor, `linear`
//! scaling the `rope.scaling.*` keys, and any other scaling, biases or an activation
//! other than SiLU are refused by name.

use std::collections::HashMap;

use super::bpe::BpeVocab;
use super::tensors::{Builder, Role};
use super::{HfModel, ImportError};

/// Writes a Llama model's metadata, vocabulary and tensors.
pub fn write(model: &HfModel, b: &mut Builder<'_>) -> Result<(), ImportError> {
    let n_embd = model.usize("hidden_size")?;
    let n_ff = model.usize("intermediate_size")?;
    let n_layer = model.usize("num_hidden_layers")?;
    let n_head = model.usize("num_attention_heads")?;
    let n_head_kv = match model.config.get("num_key_value_heads") {
        Some(v) if !v.is_null() => model.usize("num_key_value_heads")?,
        _ => n_head,
    };
    let n_vocab = model.usize("vocab_size")?;
    let n_ctx = model.usize("max_position_embeddings")?;
    let eps = model.f64("rms_norm_eps")? as f32;
    let explicit_head_dim = match model.config.get("head_dim") {
        Some(v) if !v.is_null() => Some(model.usize("head_dim")?),
        _ => None,
    };
    if n_head == 0 || n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
        return Err(ImportError::Config {
            key: "num_key_value_heads".into(),
            why: format!("is {n_head_kv}, which does not divide num_attention_heads {n_head}"),
        });
    }
    let head_dim = explicit_head_dim.unwrap_or(n_embd / n_head);
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        return Err(ImportError::Config {
            key: "head_dim".into(),
            why: format!("is {head_dim}; RoPE needs an even head size"),
        });
    }
    if let Some(act) = model.str_opt("hidden_act").filter(|a| *a != "silu") {
        return Err(ImportError::Config {
            key: "hidden_act".into(),
            why: format!("is '{act}'; the llama architecture runs 'silu'"),
        });
    }
    for key in ["attention_bias", "mlp_bias"] {
        if model.config[key].as_bool() == Some(true) {
            return Err(ImportError::Config {
                key: key.into(),
                why: "is true; biases in a llama model are not supported".into(),
            });
        }
    }
    if model.config["sliding_window"].as_u64().is_some() {
        return Err(ImportError::Config {
            key: "sliding_window".into(),
            why: "is set; the llama architecture attends to the whole context".into(),
        });
    }
    let rope = Rope::of(model, head_dim)?;
    let tied = model.config["tie_word_embeddings"]
        .as_bool()
        .unwrap_or(false);
    let vocab = BpeVocab::read(model, n_vocab)?;

    b.set_layers(n_layer);
    b.set_has_output(!tied);
    let w = b.writer();
    w.set("llama.block_count", n_layer as u32)
        .set("llama.context_length", n_ctx as u32)
        .set("llama.embedding_length", n_embd as u32)
        .set("llama.feed_forward_length", n_ff as u32)
        .set("llama.attention.head_count", n_head as u32)
        .set("llama.attention.head_count_kv", n_head_kv as u32)
        .set("llama.rope.freq_base", rope.theta)
        .set("llama.attention.layer_norm_rms_epsilon", eps)
        .set("llama.vocab_size", n_vocab as u32)
        .set("llama.rope.dimension_count", head_dim as u32);
    if explicit_head_dim.is_some() {
        w.set("llama.attention.key_length", head_dim as u32)
            .set("llama.attention.value_length", head_dim as u32);
    }
    if let Some(factor) = rope.linear {
        w.set("llama.rope.scaling.type", "linear")
            .set("llama.rope.scaling.factor", factor);
    }
    vocab.write(w);

    // The checkpoint's names without the `model.` prefix (`LlamaModel` has none).
    let names: HashMap<String, String> = b
        .checkpoint()
        .names()
        .map(|n| {
            (
                n.strip_prefix("model.").unwrap_or(n).to_owned(),
                n.to_owned(),
            )
        })
        .collect();
    for (canon, hf) in &names {
        if canon.ends_with(".rotary_emb.inv_freq") || (tied && canon == "lm_head.weight") {
            b.skip(hf);
        }
    }
    let hf = |canon: &str| -> Result<String, ImportError> {
        names
            .get(canon)
            .cloned()
            .ok_or_else(|| ImportError::MissingTensor(format!("model.{canon}")))
    };
    use Role::{KeepF32, Matrix};
    b.tensor(
        &hf("embed_tokens.weight")?,
        "token_embd.weight",
        &[n_vocab, n_embd],
        Matrix,
    )?;
    if let Some(factors) = rope.freqs {
        let n = factors.len();
        b.generated("rope_freqs.weight", &[n], factors)?;
    }
    let (q_rows, kv_rows) = (n_head * head_dim, n_head_kv * head_dim);
    for i in 0..n_layer {
        let (p, q) = (format!("layers.{i}."), format!("blk.{i}."));
        let name = |to: &str| format!("{q}{to}.weight");
        b.tensor(
            &hf(&format!("{p}input_layernorm.weight"))?,
            &name("attn_norm"),
            &[n_embd],
            KeepF32,
        )?;
        b.tensor_permuted(
            &hf(&format!("{p}self_attn.q_proj.weight"))?,
            &name("attn_q"),
            &[q_rows, n_embd],
            n_head,
        )?;
        b.tensor_permuted(
            &hf(&format!("{p}self_attn.k_proj.weight"))?,
            &name("attn_k"),
            &[kv_rows, n_embd],
            n_head_kv,
        )?;
        let rest: [(&str, &str, usize, usize); 5] = [
            ("self_attn.v_proj", "attn_v", kv_rows, n_embd),
            ("self_attn.o_proj", "attn_output", n_embd, q_rows),
            ("mlp.gate_proj", "ffn_gate", n_ff, n_embd),
            ("mlp.up_proj", "ffn_up", n_ff, n_embd),
            ("mlp.down_proj", "ffn_down", n_embd, n_ff),
        ];
        for (from, to, rows, cols) in rest {
            b.tensor(
                &hf(&format!("{p}{from}.weight"))?,
                &name(to),
                &[rows, cols],
                Matrix,
            )?;
        }
        b.tensor(
            &hf(&format!("{p}post_attention_layernorm.weight"))?,
            &name("ffn_norm"),
            &[n_embd],
            KeepF32,
        )?;
    }
    b.tensor(
        &hf("norm.weight")?,
        "output_norm.weight",
        &[n_embd],
        KeepF32,
    )?;
    if !tied {
        b.tensor(
            &hf("lm_head.weight")?,
            "output.weight",
            &[n_vocab, n_embd],
            Matrix,
        )?;
    }
    Ok(())
}

/// Reorders the rows of a query or key projection (`values`, row-major, rows of `cols`)
/// from Hugging Face's half-split rotary layout into llama.cpp's adjacent pairs, head by
/// head, as llama.cpp's converter's `permute` does.
pub fn permute_rows(values: &[f32], cols: usize, n_head: usize) -> Vec<f32> {
    let rows = values.len() / cols.max(1);
    let head = rows / n_head.max(1);
    let half = head / 2;
    let mut out = Vec::with_capacity(values.len());
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let src = h * head + j * half + i;
                out.extend_from_slice(&values[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// The model's RoPE: its base and scaling.
struct Rope {
    theta: f32,
    /// `linear` scaling's factor.
    linear: Option<f32>,
    /// `llama3` scaling's per-pair frequency factors.
    freqs: Option<Vec<f32>>,
}

impl Rope {
    /// Reads `rope_theta` and `rope_scaling` (or transformers' newer `rope_parameters`).
    fn of(model: &HfModel, head_dim: usize) -> Result<Self, ImportError> {
        let c = &model.config;
        let params = if c["rope_parameters"].is_object() {
            &c["rope_parameters"]
        } else {
            &c["rope_scaling"]
        };
        let theta = c["rope_theta"]
            .as_f64()
            .or_else(|| params["rope_theta"].as_f64())
            .unwrap_or(10000.0) as f32;
        let kind = params["rope_type"]
            .as_str()
            .or_else(|| params["type"].as_str())
            .unwrap_or("default");
        let factor = params["factor"].as_f64();
        let bad = |why: String| ImportError::Config {
            key: "rope_scaling".into(),
            why,
        };
        match (kind, factor) {
            ("default", _) => Ok(Self {
                theta,
                linear: None,
                freqs: None,
            }),
            ("linear", Some(f)) => Ok(Self {
                theta,
                linear: Some(f as f32),
                freqs: None,
            }),
            ("llama3", _) => {
                let get = |k: &str, d: f64| params[k].as_f64().unwrap_or(d) as f32;
                let freqs = llama3_factors(
                    theta,
                    head_dim,
                    get("factor", 8.0),
                    get("low_freq_factor", 1.0),
                    get("high_freq_factor", 4.0),
                    get("original_max_position_embeddings", 8192.0),
                );
                Ok(Self {
                    theta,
                    linear: None,
                    freqs: Some(freqs),
                })
            }
            ("linear", None) => Err(bad("is linear without a factor".into())),
            (other, _) => Err(bad(format!(
                "is of type '{other}'; the llama import handles default, linear and llama3"
            ))),
        }
    }
}

/// Llama 3.1's frequency factors: 1 for short wavelengths, `factor` for long ones, a
/// smooth blend between (llama.cpp's converter's `generate_extra_tensors`).
fn llama3_factors(theta: f32, dim: usize, factor: f32, low: f32, high: f32, old: f32) -> Vec<f32> {
    let (low_wavelen, high_wavelen) = (old / low, old / high);
    (0..dim)
        .step_by(2)
        .map(|k| {
            let freq = 1.0 / theta.powf(k as f32 / dim as f32);
            let wavelen = 2.0 * std::f32::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (old / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_interleaves_each_head_s_halves() {
        // Two heads of four rows, one column: HF rows 0..8.
        let hf: Vec<f32> = (0..8).map(|i| i as f32).collect();
        assert_eq!(
            permute_rows(&hf, 1, 2),
            vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]
        );
    }

    #[test]
    fn llama3_factors_span_one_to_factor() {
        let f = llama3_factors(500000.0, 64, 8.0, 1.0, 4.0, 8192.0);
        assert_eq!(f.len(), 32);
        assert_eq!(f[0], 1.0);
        assert_eq!(f[31], 8.0);
        assert!(f.iter().all(|&x| (1.0..=8.0).contains(&x)));
    }
}
