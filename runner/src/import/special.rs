//! The special tokens, `add_*_token` flags and chat template of a Hugging Face tokenizer,
//! read as gguf-py's `SpecialVocab` reads them for a SentencePiece vocabulary:
//!
//! - the ids of `bos`, `eos`, `unk`, `sep`, `pad` and `mask`: `tokenizer_config.json`'s
//!   `*_token` (a string or `{"content": ...}`) looked up among `tokenizer.json`'s
//!   `added_tokens`, else `config.json`'s `*_token_id` (or its `text_config`'s); ids at
//!   or past the vocabulary are dropped;
//! - `add_bos_token`, `add_eos_token`, `add_sep_token`: from `tokenizer.json`'s
//!   post-processor where it says (a `TemplateProcessing` that starts with the BOS token
//!   adds it, one that ends with the EOS token adds that, a separator between the two
//!   sequences of its pair template is `add_sep`), else `tokenizer_config.json`'s flags;
//! - the chat template: `tokenizer_config.json`'s `chat_template`, else
//!   `chat_template.jinja`, else `chat_template.json`'s `chat_template`.
//!
//! Not carried over: gguf-py's rewriting of EOS into EOT when a template ends with
//! another token, named templates beside `chat_template.jinja`
//! (`additional_chat_templates/`) and the normalizer flags of a `tokenizer.json`
//! (lowercasing, accent stripping), which SentencePiece models do not use.

use std::path::Path;

use serde_json::Value;

use super::{HfModel, ImportError};

/// The special token roles with a GGUF key, and that key.
const ROLES: [(&str, &str); 6] = [
    ("bos", "tokenizer.ggml.bos_token_id"),
    ("eos", "tokenizer.ggml.eos_token_id"),
    ("unk", "tokenizer.ggml.unknown_token_id"),
    // gguf-py's spelling.
    ("sep", "tokenizer.ggml.seperator_token_id"),
    ("pad", "tokenizer.ggml.padding_token_id"),
    ("mask", "tokenizer.ggml.mask_token_id"),
];

/// The `add_*_token` flags with a GGUF key.
const ADD_ROLES: [&str; 3] = ["bos", "eos", "sep"];

/// Special token ids, `add_*_token` flags and the chat template of a tokenizer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecialVocab {
    /// `(GGUF key, id)` of each special token found.
    pub ids: Vec<(&'static str, u32)>,
    /// `(role, add)` of each `add_*_token` flag found.
    pub add: Vec<(&'static str, bool)>,
    /// The chat template.
    pub chat_template: Option<String>,
}

/// The chat template of a model directory, where gguf-py's `SpecialVocab` finds it:
/// `tokenizer_config.json`'s `chat_template` (a string, or the one named `default` of a
/// list), else `chat_template.jinja`, else `chat_template.json`.
pub fn chat_template(config: &Value, dir: &Path) -> Result<Option<String>, ImportError> {
    Ok(match &config["chat_template"] {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list
            .iter()
            .find(|t| t["name"].as_str() == Some("default"))
            .and_then(|t| t["template"].as_str())
            .map(str::to_owned),
        _ if dir.join("chat_template.jinja").is_file() => {
            Some(super::read_text(&dir.join("chat_template.jinja"))?)
        }
        _ if dir.join("chat_template.json").is_file() => {
            super::read_json::<Value>(&dir.join("chat_template.json"))?["chat_template"]
                .as_str()
                .map(str::to_owned)
        }
        _ => None,
    })
}

impl SpecialVocab {
    /// Reads the special tokens of `model`'s directory for a vocabulary of `n_vocab`.
    pub fn read(model: &HfModel, n_vocab: usize) -> Result<Self, ImportError> {
        let dir = &model.dir;
        let optional_json = |name: &str| -> Result<Value, ImportError> {
            let path = dir.join(name);
            if path.is_file() {
                super::read_json(&path)
            } else {
                Ok(Value::Null)
            }
        };
        let tokenizer = optional_json("tokenizer.json")?;
        let config = optional_json("tokenizer_config.json")?;
        let token_name = |role: &str| match &config[format!("{role}_token")] {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
        let added = tokenizer["added_tokens"].as_array();
        let mut ids = Vec::new();
        for (role, key) in ROLES {
            let by_name = token_name(role).and_then(|name| {
                added?
                    .iter()
                    .find(|t| t["content"].as_str() == Some(name.as_str()))?["id"]
                    .as_u64()
            });
            let from_config = || {
                let key = format!("{role}_token_id");
                let c = &model.config;
                c[&key].as_u64().or_else(|| c["text_config"][&key].as_u64())
            };
            let id = by_name
                .or_else(from_config)
                .and_then(|i| u32::try_from(i).ok());
            if let Some(id) = id.filter(|&i| (i as usize) < n_vocab) {
                ids.push((key, id));
            }
        }
        let names = (token_name("bos"), token_name("eos"));
        let mut add = post_processor_adds(&tokenizer["post_processor"], names);
        for role in ADD_ROLES {
            let flag = config[format!("add_{role}_token")].as_bool();
            if let Some(v) = flag.filter(|_| !add.iter().any(|(r, _)| *r == role)) {
                add.push((role, v));
            }
        }
        let chat_template = chat_template(&config, dir)?;
        Ok(Self {
            ids,
            add,
            chat_template,
        })
    }

    /// Writes the special token ids, the flags and the chat template.
    pub fn write(&self, w: &mut gguf::GgufWriter<'static>) {
        for (key, id) in &self.ids {
            w.set(*key, *id);
        }
        for (role, on) in &self.add {
            w.set(format!("tokenizer.ggml.add_{role}_token"), *on);
        }
        if let Some(template) = &self.chat_template {
            w.set("tokenizer.chat_template", template.as_str());
        }
    }
}

/// The id (`A`, `B`) of a template's `Sequence` piece.
fn sequence(v: Option<&Value>) -> Option<&str> {
    v?["Sequence"]["id"].as_str()
}

/// The `add_*_token` flags a `tokenizer.json` post-processor implies, given the BOS and
/// EOS token names of `tokenizer_config.json`.
fn post_processor_adds(
    post: &Value,
    (bos, eos): (Option<String>, Option<String>),
) -> Vec<(&'static str, bool)> {
    let steps: Vec<&Value> = match post["processors"].as_array() {
        Some(list) => list.iter().collect(),
        None if post.is_object() => vec![post],
        None => vec![],
    };
    let special = |v: &Value| v["SpecialToken"]["id"].as_str().map(str::to_owned);
    let mut add: Vec<(&'static str, bool)> = Vec::new();
    let mut set = |role: &'static str, on: bool, only_default: bool| match add
        .iter_mut()
        .find(|(r, _)| *r == role)
    {
        Some(_) if only_default => {}
        Some(slot) => slot.1 = on,
        None => add.push((role, on)),
    };
    for step in steps {
        match step["type"].as_str() {
            Some("ByteLevel") => {
                set("bos", false, true);
                set("eos", false, true);
            }
            Some("TemplateProcessing") => {
                let single = step["single"].as_array().cloned().unwrap_or_default();
                let (first, last) = match single.as_slice() {
                    [first, .., last] => (special(first), special(last)),
                    _ => (None, None),
                };
                if let Some(first) = &first {
                    set("bos", bos.is_none() || bos.as_ref() == Some(first), false);
                }
                if let Some(last) = &last {
                    set("eos", eos.is_none() || eos.as_ref() == Some(last), false);
                }
                // The pair template without the single one's ends: A [separators] B.
                let pair = step["pair"].as_array().cloned().unwrap_or_default();
                let start = usize::from(first.is_some() && pair.first().and_then(special) == first);
                let end = pair.len()
                    - usize::from(last.is_some() && pair.last().and_then(special) == last);
                let inner = pair.get(start..end.max(start)).unwrap_or_default();
                if let ([_, middle @ .., _], Some("A"), Some("B")) =
                    (inner, sequence(inner.first()), sequence(inner.last()))
                    && !middle.is_empty()
                {
                    let is_separator = middle.iter().any(|m| {
                        let id = special(m);
                        id.is_some() && id == eos && last.is_none()
                    });
                    set("sep", is_separator, false);
                }
            }
            _ => {}
        }
    }
    add
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> (Option<String>, Option<String>) {
        (Some("<bos>".into()), Some("<eos>".into()))
    }

    #[test]
    fn gemma_s_template_adds_bos_only() {
        let post = json!({"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<bos>"}}, {"Sequence": {"id": "A"}}],
            "pair": [{"SpecialToken": {"id": "<bos>"}}, {"Sequence": {"id": "A"}},
                     {"SpecialToken": {"id": "<bos>"}}, {"Sequence": {"id": "B"}}]});
        assert_eq!(
            post_processor_adds(&post, names()),
            vec![("bos", true), ("sep", false)]
        );
    }

    #[test]
    fn byte_level_adds_nothing() {
        let post = json!({"type": "Sequence", "processors": [{"type": "ByteLevel"}]});
        assert_eq!(
            post_processor_adds(&post, names()),
            vec![("bos", false), ("eos", false)]
        );
        assert!(post_processor_adds(&Value::Null, names()).is_empty());
    }
}
