//! A byte-level BPE tokenizer (`tokenizer.json` with a `BPE` model, GPT-2's byte
//! alphabet) written as llama.cpp's converter writes it (`_set_vocab_gpt2` and gguf-py's
//! `SpecialVocab`): `tokenizer.ggml.model = gpt2`, the tokens by id in their byte-level
//! form, the merges as `"a b"` strings, token types (added tokens that are special are
//! CONTROL, other added tokens USER_DEFINED, ids the tokenizer lacks below `vocab_size`
//! `[PADn]` and UNUSED), the bos/eos/unk/pad ids from `tokenizer_config.json`'s
//! `*_token` names (else `config.json`'s `*_token_id`), `add_bos_token`/`add_eos_token`
//! from the post-processor and `tokenizer_config.json`, and the chat template from
//! `tokenizer_config.json` (or `chat_template.jinja`).
//!
//! llama.cpp names the pre-tokenizer by hashing what the Hugging Face tokenizer makes of
//! a test text; we cannot run that tokenizer, so [`pre_name`] reads the pre-tokenizer's
//! structure in `tokenizer.json` instead and knows the shapes of the families our
//! tokenizer implements (`gpt2`, `smollm`, `llama-bpe`, `qwen2`); any other is refused
//! by name rather than guessed.

use std::collections::HashMap;

use gguf::GgufWriter;
use serde_json::Value;

use super::{HfModel, ImportError};

/// llama.cpp's token types (`LLAMA_TOKEN_TYPE_*`).
const NORMAL: i32 = 1;
const UNUSED: i32 = 5;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// Llama 3's split regex (digits in threes), as its `tokenizer.json` spells it.
const LLAMA3_REGEX: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/// Qwen 2's split regex (single digits).
const QWEN2_REGEX: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/// A BPE tokenizer ready to be written into a GGUF.
#[derive(Debug, Clone, PartialEq)]
pub struct BpeVocab {
    /// Tokens by id, in byte-level form, padded to the model's vocabulary size.
    pub tokens: Vec<String>,
    /// llama.cpp's token type of each token.
    pub types: Vec<i32>,
    /// The merges, `"left right"`, in priority order.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.pre`.
    pub pre: &'static str,
    /// Special token ids by role (`bos`, `eos`, `unk`, `pad`).
    pub special: Vec<(&'static str, u32)>,
    /// `add_bos_token` / `add_eos_token`, where the tokenizer says.
    pub add: Vec<(&'static str, bool)>,
    /// `add_prefix_space` of `tokenizer_config.json`, where present.
    pub add_space_prefix: Option<bool>,
    /// The chat template.
    pub chat_template: Option<String>,
}

impl BpeVocab {
    /// Reads the tokenizer of `model`, whose embedding table has `vocab_size` rows.
    pub fn read(model: &HfModel, vocab_size: usize) -> Result<Self, ImportError> {
        let dir = &model.dir;
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(ImportError::MissingFile {
                dir: dir.clone(),
                what: "tokenizer.json (a BPE tokenizer)",
            });
        }
        let doc: Value = super::read_json(&path)?;
        let bad = |why: String| ImportError::Tokenizer(format!("{}: {why}", path.display()));
        let bpe = &doc["model"];
        if bpe["type"].as_str() != Some("BPE") {
            return Err(bad(format!(
                "the tokenizer model is {}; this architecture is imported with a BPE tokenizer",
                bpe["type"]
            )));
        }
        let mut tokens: Vec<Option<String>> = vec![None; vocab_size];
        let mut types = vec![NORMAL; vocab_size];
        let mut place = |token: &str, id: &Value, ty: i32| -> Result<(), ImportError> {
            let slot = id
                .as_u64()
                .and_then(|i| usize::try_from(i).ok())
                .filter(|&i| i < vocab_size)
                .ok_or_else(|| {
                    bad(format!(
                        "token {token:?} has id {id}, outside the model's vocabulary of {vocab_size}"
                    ))
                })?;
            tokens[slot] = Some(token.to_owned());
            types[slot] = ty;
            Ok(())
        };
        let vocab = bpe["vocab"]
            .as_object()
            .ok_or_else(|| bad("model.vocab is not an object".into()))?;
        for (token, id) in vocab {
            place(token, id, NORMAL)?;
        }
        let added = doc["added_tokens"].as_array().cloned().unwrap_or_default();
        for t in &added {
            let content = t["content"]
                .as_str()
                .ok_or_else(|| bad(format!("added token {t} has no content")))?;
            let ty = if t["special"].as_bool() == Some(true) {
                CONTROL
            } else {
                USER_DEFINED
            };
            place(content, &t["id"], ty)?;
        }
        let tokens: Vec<String> = tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                t.unwrap_or_else(|| {
                    types[i] = UNUSED;
                    format!("[PAD{i}]")
                })
            })
            .collect();
        let merges = merges(&bpe["merges"]).map_err(bad)?;
        let pre = pre_name(&doc["pre_tokenizer"]).map_err(bad)?;

        let config_path = dir.join("tokenizer_config.json");
        let config: Value = if config_path.is_file() {
            super::read_json(&config_path)?
        } else {
            Value::Null
        };
        let by_content: HashMap<&str, u32> = added
            .iter()
            .filter_map(|t| {
                Some((
                    t["content"].as_str()?,
                    u32::try_from(t["id"].as_u64()?).ok()?,
                ))
            })
            .collect();
        let mut special = Vec::new();
        for role in ["bos", "eos", "unk", "pad"] {
            let named = match &config[format!("{role}_token")] {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) => o.get("content").and_then(Value::as_str),
                _ => None,
            };
            let id = named.and_then(|n| by_content.get(n).copied()).or_else(|| {
                model.config[format!("{role}_token_id")]
                    .as_u64()
                    .and_then(|i| u32::try_from(i).ok())
            });
            if let Some(id) = id.filter(|&i| (i as usize) < vocab_size) {
                special.push((role, id));
            }
        }
        let mut add = Vec::new();
        let byte_level_post = doc["post_processor"]["type"].as_str() == Some("ByteLevel");
        for role in ["bos", "eos"] {
            let key = format!("add_{role}_token");
            if byte_level_post {
                add.push((role, false));
            } else if let Some(v) = config[key.as_str()].as_bool() {
                add.push((role, v));
            }
        }
        let chat_template = super::special::chat_template(&config, dir)?;
        Ok(Self {
            tokens,
            types,
            merges,
            pre,
            special,
            add,
            add_space_prefix: config["add_prefix_space"].as_bool(),
            chat_template,
        })
    }

    /// Writes the `tokenizer.*` keys.
    pub fn write(&self, w: &mut GgufWriter<'static>) {
        w.set("tokenizer.ggml.model", "gpt2")
            .set("tokenizer.ggml.pre", self.pre)
            .set("tokenizer.ggml.tokens", self.tokens.clone())
            .set("tokenizer.ggml.token_type", self.types.clone())
            .set("tokenizer.ggml.merges", self.merges.clone());
        if let Some(space) = self.add_space_prefix {
            w.set("tokenizer.ggml.add_space_prefix", space);
        }
        for (role, id) in &self.special {
            let key = match *role {
                "unk" => "tokenizer.ggml.unknown_token_id".to_owned(),
                "pad" => "tokenizer.ggml.padding_token_id".to_owned(),
                r => format!("tokenizer.ggml.{r}_token_id"),
            };
            w.set(key, *id);
        }
        for (role, on) in &self.add {
            w.set(format!("tokenizer.ggml.add_{role}_token"), *on);
        }
        if let Some(template) = &self.chat_template {
            w.set("tokenizer.chat_template", template.as_str());
        }
    }
}

/// The merges of `model.merges`, in either of the forms `tokenizer.json` uses (`"a b"`,
/// or `["a", "b"]` since transformers 4.45, whose spaces llama.cpp writes as U+0120).
fn merges(list: &Value) -> Result<Vec<String>, String> {
    let list = list
        .as_array()
        .ok_or_else(|| "model.merges is not a list".to_owned())?;
    list.iter()
        .map(|m| match m {
            Value::String(s) => Ok(s.clone()),
            Value::Array(pair) => match (pair.first(), pair.get(1), pair.len()) {
                (Some(Value::String(a)), Some(Value::String(b)), 2) => {
                    let enc = |s: &str| s.replace(' ', "\u{120}");
                    Ok(format!("{} {}", enc(a), enc(b)))
                }
                _ => Err(format!("merge {m} is not a pair of strings")),
            },
            _ => Err(format!("merge {m} is neither \"a b\" nor [\"a\", \"b\"]")),
        })
        .collect()
}

/// The regex of a `Split` pre-tokenizer step.
fn split_regex(v: &Value) -> Option<&str> {
    if v["type"].as_str() == Some("Split") {
        v["pattern"]["Regex"].as_str()
    } else {
        None
    }
}

/// The llama.cpp pre-tokenizer name of a `tokenizer.json` `pre_tokenizer`, by its shape.
pub fn pre_name(pre: &Value) -> Result<&'static str, String> {
    let steps: Vec<&Value> = match pre["type"].as_str() {
        Some("Sequence") => pre["pretokenizers"]
            .as_array()
            .map(|s| s.iter().collect())
            .unwrap_or_default(),
        Some(_) => vec![pre],
        None => vec![],
    };
    let is = |v: &Value, ty: &str| v["type"].as_str() == Some(ty);
    let byte_level = |v: &Value, regex: bool| {
        is(v, "ByteLevel")
            && v["use_regex"].as_bool().unwrap_or(true) == regex
            && v["add_prefix_space"].as_bool() != Some(true)
    };
    match steps.as_slice() {
        [b] if byte_level(b, true) => Ok("gpt2"),
        [d, b]
            if is(d, "Digits")
                && d["individual_digits"].as_bool() == Some(true)
                && byte_level(b, true) =>
        {
            Ok("smollm")
        }
        [s, b] if split_regex(s) == Some(LLAMA3_REGEX) && byte_level(b, false) => Ok("llama-bpe"),
        [s, b] if split_regex(s) == Some(QWEN2_REGEX) && byte_level(b, false) => Ok("qwen2"),
        _ => Err(format!(
            "the pre-tokenizer {pre} is not one we can name (GPT-2's byte level; digits \
             then byte level as SmolLM; Llama 3's or Qwen 2's split regex then byte level)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pre_tokenizers_are_named_by_shape() {
        let smollm = json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]});
        assert_eq!(pre_name(&smollm), Ok("smollm"));
        let gpt2 = json!({"type": "ByteLevel", "add_prefix_space": false});
        assert_eq!(pre_name(&gpt2), Ok("gpt2"));
        let llama3 = json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated"},
            {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}
        ]});
        assert_eq!(pre_name(&llama3), Ok("llama-bpe"));
        let odd = json!({"type": "Whitespace"});
        assert!(pre_name(&odd).unwrap_err().contains("not one we can name"));
    }

    #[test]
    fn merges_in_both_forms() {
        let old = json!(["a b", "ab c"]);
        assert_eq!(merges(&old).unwrap(), vec!["a b", "ab c"]);
        let new = json!([["a", "b"], ["x y", "z"]]);
        assert_eq!(merges(&new).unwrap(), vec!["a b", "x\u{120}y z"]);
        assert!(merges(&json!([1])).is_err());
    }
}
