//! A WordPiece vocabulary read from a Hugging Face directory, written the way llama.cpp's
//! converter writes `tokenizer.ggml.model = bert`.
//!
//! The tokens come from `tokenizer.json` (`model.type = WordPiece`) or, failing that,
//! `vocab.txt` (one token a line, the line number its id). llama.cpp stores them with a
//! "phantom space" instead of `##` (`convert_hf_to_gguf.py`, `BertModel.set_vocab`): a
//! control token (`[CLS]`, ...) is kept as it is, a continuation `##ing` becomes `ing`,
//! and a word-initial piece `play` becomes `▁play`. Its WordPiece tokenizer (and ours)
//! reads that form. The special tokens' ids come from `tokenizer_config.json` (or
//! `special_tokens_map.json`), defaulting to BERT's names.
//!
//! The tokenizer we and llama.cpp run lower-cases, strips accents and splits CJK
//! characters; a `tokenizer.json` whose normalizer says otherwise is refused by name
//! rather than converted into a model that tokenizes differently.

use std::collections::HashMap;
use std::path::Path;

use gguf::GgufWriter;
use serde_json::Value;

use super::ImportError;

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;

/// The vocabulary and special tokens of a BERT model.
#[derive(Debug, Clone, PartialEq)]
pub struct WordPieceVocab {
    /// Tokens by id, in the HF form (`##` continuations).
    pub tokens: Vec<String>,
    /// Ids of the special (control) tokens.
    pub control: Vec<u32>,
    /// `[CLS]`, `[SEP]`, `[PAD]`, `[UNK]`, `[MASK]` ids.
    pub cls: u32,
    /// Separator id.
    pub sep: u32,
    /// Padding id.
    pub pad: u32,
    /// Unknown-word id.
    pub unk: u32,
    /// Mask id, when the vocabulary has one.
    pub mask: Option<u32>,
}

impl WordPieceVocab {
    /// Reads `dir/tokenizer.json`, or `dir/vocab.txt` when there is none.
    pub fn read(dir: &Path) -> Result<Self, ImportError> {
        let json = dir.join("tokenizer.json");
        let txt = dir.join("vocab.txt");
        let (tokens, control) = if json.is_file() {
            from_tokenizer_json(&json)?
        } else if txt.is_file() {
            let text = super::read_text(&txt)?;
            let tokens: Vec<String> = text.lines().map(str::to_owned).collect();
            let control = (tokens.iter().enumerate())
                .filter(|(_, t)| is_bracketed(t) && !t.starts_with("[unused"))
                .map(|(i, _)| i as u32)
                .collect();
            (tokens, control)
        } else {
            return Err(ImportError::MissingFile {
                dir: dir.to_path_buf(),
                what: "tokenizer (tokenizer.json or vocab.txt)",
            });
        };
        let names = special_names(dir)?;
        let index: HashMap<&str, u32> = (tokens.iter().enumerate())
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect();
        let find = |role: &'static str, default: &str| -> Result<u32, ImportError> {
            let name = names.get(role).map_or(default, String::as_str);
            index.get(name).copied().ok_or_else(|| {
                ImportError::Tokenizer(format!("the {role} '{name}' is not in the vocabulary"))
            })
        };
        Ok(Self {
            cls: find("cls_token", "[CLS]")?,
            sep: find("sep_token", "[SEP]")?,
            pad: find("pad_token", "[PAD]")?,
            unk: find("unk_token", "[UNK]")?,
            mask: find("mask_token", "[MASK]").ok(),
            tokens,
            control,
        })
    }

    /// Writes the `tokenizer.ggml.*` keys as llama.cpp's converter does for this model.
    pub fn write(&self, w: &mut GgufWriter<'_>, type_vocab_size: u32) {
        let types: Vec<i32> = (0..self.tokens.len() as u32)
            .map(|i| {
                if self.control.contains(&i) {
                    TOKEN_CONTROL
                } else {
                    TOKEN_NORMAL
                }
            })
            .collect();
        let tokens: Vec<String> = (self.tokens.iter().zip(&types))
            .map(|(t, &ty)| phantom(t, ty == TOKEN_CONTROL))
            .collect();
        w.set("tokenizer.ggml.model", "bert")
            .set("tokenizer.ggml.pre", "default")
            .set("tokenizer.ggml.tokens", tokens)
            .set("tokenizer.ggml.token_type", types)
            .set("tokenizer.ggml.token_type_count", type_vocab_size)
            .set("tokenizer.ggml.bos_token_id", self.cls)
            .set("tokenizer.ggml.eos_token_id", self.sep)
            .set("tokenizer.ggml.unknown_token_id", self.unk)
            .set("tokenizer.ggml.seperator_token_id", self.sep)
            .set("tokenizer.ggml.padding_token_id", self.pad);
        if let Some(mask) = self.mask {
            w.set("tokenizer.ggml.mask_token_id", mask);
        }
        w.set("tokenizer.ggml.add_bos_token", true)
            .set("tokenizer.ggml.add_eos_token", true)
            .set("tokenizer.ggml.add_sep_token", false);
    }
}

/// A token in llama.cpp's phantom-space form.
fn phantom(token: &str, control: bool) -> String {
    if control {
        token.to_owned()
    } else if let Some(rest) = token.strip_prefix("##") {
        rest.to_owned()
    } else {
        format!("\u{2581}{token}")
    }
}

fn is_bracketed(t: &str) -> bool {
    t.len() > 2 && t.starts_with('[') && t.ends_with(']')
}

/// Tokens by id and the ids of special added tokens, from a `tokenizer.json`.
fn from_tokenizer_json(path: &Path) -> Result<(Vec<String>, Vec<u32>), ImportError> {
    let doc: Value = super::read_json(path)?;
    let bad = |why: String| ImportError::Tokenizer(format!("{}: {why}", path.display()));
    let model = &doc["model"];
    match model["type"].as_str() {
        Some("WordPiece") => {}
        other => {
            return Err(bad(format!(
                "the tokenizer model is {other:?}; a BERT model needs WordPiece"
            )));
        }
    }
    if let Some(norm) = doc.get("normalizer").filter(|n| !n.is_null()) {
        let lowercase = norm["lowercase"].as_bool().unwrap_or(true);
        let strip = norm["strip_accents"].as_bool().unwrap_or(lowercase);
        let chinese = norm["handle_chinese_chars"].as_bool().unwrap_or(true);
        if norm["type"].as_str() != Some("BertNormalizer") || !lowercase || !strip || !chinese {
            return Err(bad(format!(
                "normalizer {norm} is not supported: the bert tokenizer lower-cases, strips \
                 accents and splits CJK characters (a cased model is not supported yet)"
            )));
        }
    }
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| bad("model.vocab is not an object".into()))?;
    let mut tokens = vec![None; vocab.len()];
    for (token, id) in vocab {
        let slot = id
            .as_u64()
            .and_then(|i| tokens.get_mut(usize::try_from(i).ok()?))
            .ok_or_else(|| {
                bad(format!(
                    "token '{token}' has id {id}, outside 0..{}",
                    vocab.len()
                ))
            })?;
        if slot.replace(token.clone()).is_some() {
            return Err(bad(format!("id {id} is given to two tokens")));
        }
    }
    let tokens: Vec<String> = tokens.into_iter().map(Option::unwrap_or_default).collect();
    let control = doc["added_tokens"]
        .as_array()
        .map(|added| {
            added
                .iter()
                .filter(|t| t["special"].as_bool() == Some(true))
                .filter_map(|t| t["id"].as_u64().map(|i| i as u32))
                .collect()
        })
        .unwrap_or_default();
    Ok((tokens, control))
}

/// The special tokens' names by role (`cls_token`, ...), from `tokenizer_config.json`
/// and `special_tokens_map.json`; a role given as `{"content": ...}` is read too.
fn special_names(dir: &Path) -> Result<HashMap<&'static str, String>, ImportError> {
    let mut names = HashMap::new();
    for file in ["special_tokens_map.json", "tokenizer_config.json"] {
        let path = dir.join(file);
        if !path.is_file() {
            continue;
        }
        let doc: Value = super::read_json(&path)?;
        for role in [
            "cls_token",
            "sep_token",
            "pad_token",
            "unk_token",
            "mask_token",
        ] {
            let name = match &doc[role] {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            };
            if let Some(name) = name {
                names.insert(role, name);
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phantom_space_form_is_llama_cpp_s() {
        assert_eq!(phantom("[CLS]", true), "[CLS]");
        assert_eq!(phantom("##ing", false), "ing");
        assert_eq!(phantom("play", false), "\u{2581}play");
    }
}
