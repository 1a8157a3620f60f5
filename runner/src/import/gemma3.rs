//! Gemma 3's text model (`Gemma3ForCausalLM`) into `general.architecture = gemma3`, with
//! the keys and tensor names of llama.cpp's converter (`Gemma3Model` in its
//! `conversion/gemma.py`; gguf-py's `tensor_mapping.py`):
//!
//! | Hugging Face | GGUF |
//! | --- | --- |
//! | `model.embed_tokens` | `token_embd` (rows past the vocabulary dropped; also the output head) |
//! | `model.layers.N.input_layernorm` | `blk.N.attn_norm` |
//! | `model.layers.N.self_attn.{q,k,v,o}_proj` | `blk.N.attn_{q,k,v,output}` (not permuted: NeoX RoPE) |
//! | `model.layers.N.self_attn.{q,k}_norm` | `blk.N.attn_{q,k}_norm` |
//! | `model.layers.N.post_attention_layernorm` | `blk.N.post_attention_norm` |
//! | `model.layers.N.pre_feedforward_layernorm` | `blk.N.ffn_norm` |
//! | `model.layers.N.mlp.{gate,up,down}_proj` | `blk.N.ffn_{gate,up,down}` |
//! | `model.layers.N.post_feedforward_layernorm` | `blk.N.post_ffw_norm` |
//! | `model.norm` | `output_norm` |
//!
//! Gemma's RMSNorm multiplies by `1 + w` and stores `w`; the converter writes `w + 1`
//! for every tensor whose name ends in `norm.weight` (all nine kinds above, Q/K norms
//! included), in F32, so that llama.cpp multiplies by the stored weight. The
//! embedding is tied (`lm_head` is skipped, or written as `output` when
//! `tie_word_embeddings` is false).
//!
//! Our graph (`model::gemma`, `plan::arch::gemma`) has llama.cpp's fixed choices, so a
//! configuration that differs is refused by name rather than imported into a model that
//! computes something else: the sliding-window layers must be llama.cpp's (five of six,
//! or none), the query scale `query_pre_attn_scalar^-1/2` must be the one llama.cpp
//! derives (the head size, `hidden_size / num_attention_heads` for the 62-layer 27B),
//! the activation tanh-GELU, no attention logit soft-capping and no biases; RoPE scaling
//! may be linear only.
//!
//! Hyper-parameters the converter gives defaults keep them (`max_position_embeddings`
//! 131072, `num_attention_heads` 8, `num_key_value_heads` 4, `head_dim` 256,
//! `rms_norm_eps` 1e-6, `rope_theta` 1e6). The converter of today writes
//! `rope.freq_base_swa` whenever the configuration names the local base
//! (`rope_local_base_freq`); files converted before it do not.

use std::collections::HashSet;

use super::spm::SpmVocab;
use super::tensors::{Builder, Role};
use super::{HfModel, ImportError};

/// llama.cpp's Gemma 3 pattern: of every six layers the first five slide.
const SWA_PATTERN: usize = 6;
/// The layer count of Gemma 3 27B, whose query scale llama.cpp takes from the width.
const LAYERS_27B: usize = 62;

/// A `config.json` value that is present and not null.
fn present<'a>(model: &'a HfModel, key: &str) -> Option<&'a serde_json::Value> {
    model.config.get(key).filter(|v| !v.is_null())
}

/// An unsigned `config.json` value, or `default` when absent.
fn usize_or(model: &HfModel, key: &str, default: usize) -> Result<usize, ImportError> {
    present(model, key).map_or(Ok(default), |_| model.usize(key))
}

/// A numeric `config.json` value, or `default` when absent.
fn f64_or(model: &HfModel, key: &str, default: f64) -> Result<f64, ImportError> {
    present(model, key).map_or(Ok(default), |_| model.f64(key))
}

/// A refusal of `key`'s value.
fn refuse(key: &str, why: String) -> ImportError {
    ImportError::Config {
        key: key.to_owned(),
        why,
    }
}

/// Writes a Gemma 3 model's metadata, vocabulary and tensors.
pub fn write(model: &HfModel, b: &mut Builder<'_>) -> Result<(), ImportError> {
    let n_embd = model.usize("hidden_size")?;
    let n_ff = model.usize("intermediate_size")?;
    let n_layer = model.usize("num_hidden_layers")?;
    let n_head = usize_or(model, "num_attention_heads", 8)?;
    let n_head_kv = usize_or(model, "num_key_value_heads", 4)?;
    let head_dim = usize_or(model, "head_dim", 256)?;
    let n_ctx = usize_or(model, "max_position_embeddings", 131072)?;
    let eps = f64_or(model, "rms_norm_eps", 1e-6)? as f32;
    if n_head == 0 || n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
        return Err(refuse(
            "num_key_value_heads",
            format!("is {n_head_kv}, which does not divide num_attention_heads {n_head}"),
        ));
    }
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        return Err(refuse(
            "head_dim",
            format!("is {head_dim}; RoPE needs an even head size"),
        ));
    }
    check_graph(model, n_layer, n_embd / n_head, head_dim)?;
    let window = sliding_window(model, n_layer)?;
    let rope = Rope::of(model)?;
    let softcap = present(model, "final_logit_softcapping")
        .map(|_| model.f64("final_logit_softcapping"))
        .transpose()?
        .filter(|&c| c != 0.0);
    let tied = model.config["tie_word_embeddings"]
        .as_bool()
        .unwrap_or(true);
    let vocab = SpmVocab::read(model)?;
    let n_vocab = vocab.tokens.len();

    b.set_layers(n_layer);
    b.set_has_output(!tied);
    let w = b.writer();
    w.set("gemma3.block_count", n_layer as u32)
        .set("gemma3.context_length", n_ctx as u32)
        .set("gemma3.embedding_length", n_embd as u32)
        .set("gemma3.feed_forward_length", n_ff as u32)
        .set("gemma3.attention.head_count", n_head as u32)
        .set("gemma3.attention.head_count_kv", n_head_kv as u32)
        .set("gemma3.attention.key_length", head_dim as u32)
        .set("gemma3.attention.value_length", head_dim as u32)
        .set("gemma3.attention.layer_norm_rms_epsilon", eps)
        .set("gemma3.rope.freq_base", rope.theta);
    if let Some(base) = rope.theta_local {
        w.set("gemma3.rope.freq_base_swa", base);
    }
    if let Some(factor) = rope.linear {
        w.set("gemma3.rope.scaling.type", "linear")
            .set("gemma3.rope.scaling.factor", factor);
    }
    if let Some(window) = window {
        w.set("gemma3.attention.sliding_window", window as u32);
    }
    if let Some(cap) = softcap {
        w.set("gemma3.final_logit_softcapping", cap as f32);
    }
    vocab.write(w);
    // The converter's Gemma 3: SentencePiece's dummy prefix is off.
    w.set("tokenizer.ggml.add_space_prefix", false);

    let known: HashSet<String> = b.checkpoint().names().map(str::to_owned).collect();
    let hf = |name: String| -> Result<String, ImportError> {
        if known.contains(&name) {
            Ok(name)
        } else {
            Err(ImportError::MissingTensor(name))
        }
    };
    for name in &known {
        if name.ends_with(".rotary_emb.inv_freq") || (tied && name == "lm_head.weight") {
            b.skip(name);
        }
    }
    let embed = hf("model.embed_tokens.weight".into())?;
    let rows = match b.checkpoint().shape(&embed)? {
        [rows, cols] if *rows >= n_vocab && *cols == n_embd => *rows,
        _ => n_vocab,
    };
    b.tensor_edited(
        &embed,
        "token_embd.weight",
        (&[rows, n_embd], &[n_vocab, n_embd]),
        Role::Matrix,
        |mut v| {
            v.truncate(n_vocab * n_embd);
            v
        },
    )?;
    let norm = |b: &mut Builder<'_>, from: String, to: &str, n: usize| {
        b.tensor_edited(&hf(from)?, to, (&[n], &[n]), Role::KeepF32, shift_norm)
    };
    let (q_rows, kv_rows) = (n_head * head_dim, n_head_kv * head_dim);
    for i in 0..n_layer {
        let (p, q) = (format!("model.layers.{i}."), format!("blk.{i}."));
        let name = |to: &str| format!("{q}{to}.weight");
        let norms: [(&str, &str, usize); 6] = [
            ("input_layernorm", "attn_norm", n_embd),
            ("self_attn.q_norm", "attn_q_norm", head_dim),
            ("self_attn.k_norm", "attn_k_norm", head_dim),
            ("post_attention_layernorm", "post_attention_norm", n_embd),
            ("pre_feedforward_layernorm", "ffn_norm", n_embd),
            ("post_feedforward_layernorm", "post_ffw_norm", n_embd),
        ];
        for (from, to, n) in norms {
            norm(b, format!("{p}{from}.weight"), &name(to), n)?;
        }
        let matrices: [(&str, &str, usize, usize); 7] = [
            ("self_attn.q_proj", "attn_q", q_rows, n_embd),
            ("self_attn.k_proj", "attn_k", kv_rows, n_embd),
            ("self_attn.v_proj", "attn_v", kv_rows, n_embd),
            ("self_attn.o_proj", "attn_output", n_embd, q_rows),
            ("mlp.gate_proj", "ffn_gate", n_ff, n_embd),
            ("mlp.up_proj", "ffn_up", n_ff, n_embd),
            ("mlp.down_proj", "ffn_down", n_embd, n_ff),
        ];
        for (from, to, rows, cols) in matrices {
            let from = hf(format!("{p}{from}.weight"))?;
            b.tensor(&from, &name(to), &[rows, cols], Role::Matrix)?;
        }
    }
    norm(b, "model.norm.weight".into(), "output_norm.weight", n_embd)?;
    if !tied {
        let head = hf("lm_head.weight".into())?;
        b.tensor(&head, "output.weight", &[n_vocab, n_embd], Role::Matrix)?;
    }
    Ok(())
}

/// Gemma's stored norm weight `w` as the `1 + w` llama.cpp multiplies by.
fn shift_norm(mut values: Vec<f32>) -> Vec<f32> {
    for v in &mut values {
        *v += 1.0;
    }
    values
}

/// Refuses what our graph (llama.cpp's) does not compute: another query scale, another
/// activation, attention soft-capping, biases. `width_per_head` is `hidden_size /
/// num_attention_heads`.
fn check_graph(
    model: &HfModel,
    n_layer: usize,
    width_per_head: usize,
    head_dim: usize,
) -> Result<(), ImportError> {
    let scalar_expected = if n_layer == LAYERS_27B {
        width_per_head
    } else {
        head_dim
    };
    if let Some(v) = present(model, "query_pre_attn_scalar") {
        let scalar = model.f64("query_pre_attn_scalar")?;
        if scalar != scalar_expected as f64 {
            return Err(refuse(
                "query_pre_attn_scalar",
                format!(
                    "is {v}; llama.cpp's gemma3 scales queries by {scalar_expected}^-1/2 for \
                     {n_layer} layers"
                ),
            ));
        }
    }
    for key in ["hidden_activation", "hidden_act"] {
        if let Some(act) = model
            .str_opt(key)
            .filter(|a| !matches!(*a, "gelu_pytorch_tanh" | "gelu_new"))
        {
            return Err(refuse(
                key,
                format!("is '{act}'; gemma3 runs the tanh GELU (gelu_pytorch_tanh)"),
            ));
        }
    }
    if present(model, "attn_logit_softcapping").is_some() {
        return Err(refuse(
            "attn_logit_softcapping",
            "is set; Gemma 3 has no attention logit soft-capping".into(),
        ));
    }
    if model.config["attention_bias"].as_bool() == Some(true) {
        return Err(refuse(
            "attention_bias",
            "is true; biases in a gemma3 model are not supported".into(),
        ));
    }
    Ok(())
}

/// The sliding window to write: `None` when no layer slides. The layers that slide
/// (`layer_types`, else `sliding_window_pattern`) must be llama.cpp's: five of every six,
/// or none.
fn sliding_window(model: &HfModel, n_layer: usize) -> Result<Option<usize>, ImportError> {
    let sliding: Vec<bool> = if let Some(types) = present(model, "layer_types") {
        let types = types
            .as_array()
            .filter(|t| t.len() == n_layer)
            .ok_or_else(|| refuse("layer_types", format!("is not a list of {n_layer} layers")))?;
        types
            .iter()
            .map(|t| match t.as_str() {
                Some("sliding_attention") => Ok(true),
                Some("full_attention") => Ok(false),
                _ => Err(refuse("layer_types", format!("has an entry {t}"))),
            })
            .collect::<Result<_, _>>()?
    } else {
        let pattern = usize_or(model, "sliding_window_pattern", SWA_PATTERN)?;
        (0..n_layer)
            .map(|i| pattern != 1 && (pattern == 0 || (i + 1) % pattern != 0))
            .collect()
    };
    if sliding.iter().all(|s| !s) {
        return Ok(None);
    }
    let ours: Vec<bool> = (0..n_layer).map(|i| (i + 1) % SWA_PATTERN != 0).collect();
    if sliding != ours {
        return Err(refuse(
            "layer_types",
            "slides other layers than llama.cpp's gemma3 (five of every six)".into(),
        ));
    }
    model.usize("sliding_window").map(Some)
}

/// The model's RoPE: the global layers' base and scaling, the local layers' base.
struct Rope {
    /// `rope.freq_base`, the global layers'.
    theta: f32,
    /// `rope.freq_base_swa`, when the configuration names it.
    theta_local: Option<f32>,
    /// Linear scaling's factor (global layers).
    linear: Option<f32>,
}

impl Rope {
    /// Reads `rope_theta`, `rope_local_base_freq` and `rope_scaling`, or transformers'
    /// newer `rope_parameters` with its `full_attention` and `sliding_attention` parts.
    fn of(model: &HfModel) -> Result<Self, ImportError> {
        let c = &model.config;
        let params = if c["rope_parameters"].is_object() {
            &c["rope_parameters"]
        } else {
            &c["rope_scaling"]
        };
        let (global, local) = if params["full_attention"].is_object() {
            (
                &params["full_attention"],
                params["sliding_attention"].as_object(),
            )
        } else {
            (params, None)
        };
        let theta = global["rope_theta"]
            .as_f64()
            .or_else(|| c["rope_theta"].as_f64())
            .unwrap_or(1_000_000.0) as f32;
        let theta_local = local
            .and_then(|l| l.get("rope_theta"))
            .and_then(serde_json::Value::as_f64)
            .or_else(|| c["rope_local_base_freq"].as_f64())
            .map(|t| t as f32);
        let kind = |p: &serde_json::Value| {
            p["rope_type"]
                .as_str()
                .or_else(|| p["type"].as_str())
                .unwrap_or("default")
                .to_owned()
        };
        if let Some(local) = local
            && kind(&serde_json::Value::Object(local.clone())) != "default"
        {
            return Err(refuse(
                "rope_parameters",
                "scales the sliding-window layers' RoPE; llama.cpp's gemma3 does not".into(),
            ));
        }
        let linear = match (kind(global).as_str(), global["factor"].as_f64()) {
            ("default", _) => None,
            ("linear", Some(f)) => Some(f as f32),
            ("linear", None) => {
                return Err(refuse("rope_scaling", "is linear without a factor".into()));
            }
            (other, _) => {
                return Err(refuse(
                    "rope_scaling",
                    format!("is of type '{other}'; the gemma3 import handles default and linear"),
                ));
            }
        };
        Ok(Self {
            theta,
            theta_local,
            linear,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model(config: serde_json::Value) -> HfModel {
        HfModel {
            dir: "/nonexistent".into(),
            config,
        }
    }

    #[test]
    fn the_sliding_layers_must_be_llama_cpp_s() {
        let types = |full: &[usize]| {
            let t: Vec<&str> = (0..12)
                .map(|i| {
                    if full.contains(&i) {
                        "full_attention"
                    } else {
                        "sliding_attention"
                    }
                })
                .collect();
            model(json!({"layer_types": t, "sliding_window": 512}))
        };
        assert_eq!(sliding_window(&types(&[5, 11]), 12).unwrap(), Some(512));
        let err = sliding_window(&types(&[3, 11]), 12)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'layer_types'") && err.contains("five of every six"));
        let all_full = model(json!({"sliding_window_pattern": 1, "sliding_window": 512}));
        assert_eq!(sliding_window(&all_full, 12).unwrap(), None);
        let old = model(json!({"sliding_window_pattern": 6, "sliding_window": 4096}));
        assert_eq!(sliding_window(&old, 12).unwrap(), Some(4096));
    }

    #[test]
    fn rope_reads_both_config_forms() {
        let old = model(json!({"rope_theta": 1e6, "rope_local_base_freq": 1e4,
            "rope_scaling": {"rope_type": "linear", "factor": 8.0}}));
        let r = Rope::of(&old).unwrap();
        assert_eq!(
            (r.theta, r.theta_local, r.linear),
            (1e6, Some(1e4), Some(8.0))
        );
        let new = model(json!({"rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}));
        let r = Rope::of(&new).unwrap();
        assert_eq!((r.theta, r.theta_local, r.linear), (1e6, Some(1e4), None));
        let yarn = model(json!({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}));
        let err = Rope::of(&yarn).err().unwrap().to_string();
        assert!(err.contains("'yarn'"), "{err}");
    }

    #[test]
    fn another_query_scale_or_activation_is_refused() {
        let scale = model(json!({"query_pre_attn_scalar": 168}));
        let err = check_graph(&scale, 18, 160, 256).unwrap_err().to_string();
        assert!(err.contains("query_pre_attn_scalar"), "{err}");
        assert!(check_graph(&scale, LAYERS_27B, 168, 128).is_ok());
        let act = model(json!({"hidden_activation": "silu"}));
        let err = check_graph(&act, 18, 160, 256).unwrap_err().to_string();
        assert!(err.contains("'silu'"), "{err}");
    }

    #[test]
    fn norms_shift_by_one() {
        assert_eq!(shift_norm(vec![-1.0, 0.0, 0.5]), vec![0.0, 1.0, 1.5]);
    }
}
