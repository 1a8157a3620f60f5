//! A SentencePiece tokenizer (`tokenizer.model`) written as llama.cpp's converter writes
//! it (`_create_vocab_sentencepiece`, `_set_vocab_sentencepiece`):
//! `tokenizer.ggml.model = llama`, `tokenizer.ggml.pre = default`, and by id the pieces,
//! their scores and their token types. The model's vocabulary size (`config.json`'s
//! `vocab_size`, else the piece count) sets the length: ids without a piece are
//! `[PADn]`, score -10000, UNUSED; pieces past it are dropped. A piece's type is kept
//! when it is UNKNOWN, CONTROL, UNUSED or BYTE, any other piece (USER_DEFINED included)
//! is NORMAL. Then `added_tokens.json` (USER_DEFINED) and `tokenizer_config.json`'s
//! `added_tokens_decoder` (CONTROL when `special` or when the text looks special, as
//! `<unused3>` or `<|x|>` do; else USER_DEFINED, `▁` written as a space) replace
//! tokens, with score -1000. The special tokens and the chat template are
//! [`SpecialVocab`]'s.
//!
//! `tokenizer.model` is a protobuf `ModelProto` (sentencepiece's
//! `sentencepiece_model.proto`); [`ModelProto`] declares the one field we read, the
//! pieces, and prost (already in the tree for gRPC) decodes it: its decoder checks wire
//! types, lengths and UTF-8 and skips the fields we do not declare (trainer and
//! normalizer specs), which a hand-written varint reader would have to do again.

use std::collections::BTreeMap;

use gguf::GgufWriter;
use prost::Message;
use serde_json::Value;

use super::special::SpecialVocab;
use super::{HfModel, ImportError};

/// llama.cpp's token types (`LLAMA_TOKEN_TYPE_*`), which are SentencePiece's piece types.
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// SentencePiece's word-boundary mark.
const SPACE_MARK: &str = "\u{2581}";

/// sentencepiece's `ModelProto`, the fields we read.
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    /// The vocabulary, by id.
    #[prost(message, repeated, tag = "1")]
    pub pieces: Vec<Piece>,
}

/// sentencepiece's `ModelProto.SentencePiece`.
#[derive(Clone, PartialEq, Message)]
pub struct Piece {
    /// The piece's text, `▁` for a space.
    #[prost(string, optional, tag = "1")]
    pub piece: Option<String>,
    /// Its score (a log probability for unigram models, a merge rank for BPE ones).
    #[prost(float, optional, tag = "2")]
    pub score: Option<f32>,
    /// Its type (the enum `Type`, NORMAL when absent): 1 NORMAL, 2 UNKNOWN, 3 CONTROL,
    /// 4 USER_DEFINED, 5 UNUSED, 6 BYTE.
    #[prost(int32, optional, tag = "3")]
    pub kind: Option<i32>,
}

/// A SentencePiece vocabulary ready to be written into a GGUF.
#[derive(Debug, Clone, PartialEq)]
pub struct SpmVocab {
    /// Tokens by id.
    pub tokens: Vec<String>,
    /// Their scores.
    pub scores: Vec<f32>,
    /// Their llama.cpp token types.
    pub types: Vec<i32>,
    /// Special tokens, flags and chat template.
    pub special: SpecialVocab,
}

/// The pieces of a `tokenizer.model`'s bytes, checked: each has a text and a known type.
pub fn parse_model(bytes: &[u8]) -> Result<Vec<Piece>, String> {
    let model = ModelProto::decode(bytes).map_err(|e| format!("not a SentencePiece model: {e}"))?;
    if model.pieces.is_empty() {
        return Err("the SentencePiece model has no pieces".into());
    }
    for (id, p) in model.pieces.iter().enumerate() {
        if p.piece.as_deref().is_none_or(str::is_empty) {
            return Err(format!("piece {id} has no text"));
        }
        if let Some(kind) = p.kind.filter(|k| !(NORMAL..=BYTE).contains(k)) {
            return Err(format!(
                "piece {id} has type {kind}, which SentencePiece lacks"
            ));
        }
    }
    Ok(model.pieces)
}

/// Whether an added token's text looks like a control token although it is not marked
/// special (llama.cpp's `does_token_look_special`).
fn looks_special(text: &str) -> bool {
    matches!(text, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (text.starts_with("<|") && text.ends_with("|>"))
        || (text.starts_with("<\u{ff5c}") && text.ends_with("\u{ff5c}>"))
        || (text.starts_with("<unused") && text.ends_with('>'))
}

impl SpmVocab {
    /// Reads `model`'s `tokenizer.model` and added tokens.
    pub fn read(model: &HfModel) -> Result<Self, ImportError> {
        let dir = &model.dir;
        let path = dir.join("tokenizer.model");
        if !path.is_file() {
            return Err(ImportError::MissingFile {
                dir: dir.clone(),
                what: "tokenizer.model (a SentencePiece model; importing this architecture \
                       from tokenizer.json alone is not supported)",
            });
        }
        let bytes = std::fs::read(&path).map_err(|source| ImportError::Io {
            path: path.clone(),
            source,
        })?;
        let bad = |why: String| ImportError::Tokenizer(format!("{}: {why}", path.display()));
        let pieces = parse_model(&bytes).map_err(bad)?;
        let n_vocab = match model.config.get("vocab_size") {
            Some(v) if !v.is_null() => model.usize("vocab_size")?,
            _ => pieces.len(),
        };
        let mut tokens: Vec<String> = (0..n_vocab).map(|i| format!("[PAD{i}]")).collect();
        let mut scores = vec![-10000.0f32; n_vocab];
        let mut types = vec![UNUSED; n_vocab];
        for (id, p) in pieces.into_iter().take(n_vocab).enumerate() {
            types[id] = match p.kind.unwrap_or(NORMAL) {
                k @ (UNKNOWN | CONTROL | UNUSED | BYTE) => k,
                _ => NORMAL,
            };
            scores[id] = p.score.unwrap_or(0.0);
            tokens[id] = p.piece.unwrap_or_default();
        }
        let mut replace = |id: u64, text: String, ty: i32| {
            if let Some(id) = usize::try_from(id).ok().filter(|&i| i < n_vocab) {
                (tokens[id], scores[id], types[id]) = (text, -1000.0, ty);
            }
        };
        let added_path = dir.join("added_tokens.json");
        if added_path.is_file() {
            let added: BTreeMap<String, Value> = super::read_json(&added_path)?;
            for (text, id) in added {
                let id = id.as_u64().ok_or_else(|| {
                    ImportError::Tokenizer(format!(
                        "{}: token {text:?} has id {id}, not an unsigned integer",
                        added_path.display()
                    ))
                })?;
                replace(id, text, USER_DEFINED);
            }
        }
        let config_path = dir.join("tokenizer_config.json");
        if config_path.is_file() {
            let config: Value = super::read_json(&config_path)?;
            if let Some(decoder) = config["added_tokens_decoder"].as_object() {
                for (id, token) in decoder {
                    let bad = |why: &str| {
                        ImportError::Tokenizer(format!(
                            "{}: added_tokens_decoder entry {id:?} {why}",
                            config_path.display()
                        ))
                    };
                    let id: u64 = id.parse().map_err(|_| bad("is not a token id"))?;
                    let text = token["content"]
                        .as_str()
                        .ok_or_else(|| bad("has no content"))?;
                    if token["special"].as_bool() == Some(true) || looks_special(text) {
                        replace(id, text.to_owned(), CONTROL);
                    } else {
                        replace(id, text.replace(SPACE_MARK, " "), USER_DEFINED);
                    }
                }
            }
        }
        let special = SpecialVocab::read(model, n_vocab)?;
        Ok(Self {
            tokens,
            scores,
            types,
            special,
        })
    }

    /// Writes the `tokenizer.*` keys.
    pub fn write(&self, w: &mut GgufWriter<'static>) {
        w.set("tokenizer.ggml.model", "llama")
            .set("tokenizer.ggml.pre", "default")
            .set("tokenizer.ggml.tokens", self.tokens.clone())
            .set("tokenizer.ggml.scores", self.scores.clone())
            .set("tokenizer.ggml.token_type", self.types.clone());
        self.special.write(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model of `pieces` (text, score, type) as sentencepiece writes it.
    fn encode(pieces: &[(&str, f32, i32)]) -> Vec<u8> {
        let model = ModelProto {
            pieces: pieces
                .iter()
                .map(|&(t, s, k)| Piece {
                    piece: Some(t.to_owned()),
                    score: Some(s),
                    kind: Some(k),
                })
                .collect(),
        };
        model.encode_to_vec()
    }

    #[test]
    fn pieces_decode_by_hand_written_bytes() {
        // One piece: field 1 (length-delimited) holding piece "▁a", score -2.5, type 6,
        // then a trainer spec (field 2) that is skipped.
        let mut piece = vec![0x0a, 4, 0xe2, 0x96, 0x81, b'a', 0x15];
        piece.extend_from_slice(&(-2.5f32).to_le_bytes());
        piece.extend_from_slice(&[0x18, 6]);
        let mut bytes = vec![0x0a, piece.len() as u8];
        bytes.extend_from_slice(&piece);
        bytes.extend_from_slice(&[0x12, 2, 0x18, 2]);
        let pieces = parse_model(&bytes).unwrap();
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].piece.as_deref(), Some("\u{2581}a"));
        assert_eq!(pieces[0].score, Some(-2.5));
        assert_eq!(pieces[0].kind, Some(BYTE));
        // prost writes the same bytes for the piece, fields in tag order.
        assert_eq!(encode(&[("\u{2581}a", -2.5, 6)]), bytes[..bytes.len() - 4]);
    }

    #[test]
    fn malformed_models_are_refused_by_what_is_wrong() {
        // Truncated: a piece whose length runs past the end.
        let err = parse_model(&[0x0a, 9, 0x0a]).unwrap_err();
        assert!(err.starts_with("not a SentencePiece model"), "{err}");
        // Invalid UTF-8 in a piece.
        let err = parse_model(&[0x0a, 3, 0x0a, 1, 0xff]).unwrap_err();
        assert!(err.starts_with("not a SentencePiece model"), "{err}");
        assert_eq!(
            parse_model(&[]).unwrap_err(),
            "the SentencePiece model has no pieces"
        );
        let err = parse_model(&encode(&[("a", 0.0, 1), ("", 0.0, 1)])).unwrap_err();
        assert_eq!(err, "piece 1 has no text");
        let err = parse_model(&encode(&[("a", 0.0, 9)])).unwrap_err();
        assert_eq!(err, "piece 0 has type 9, which SentencePiece lacks");
    }

    #[test]
    fn special_looking_texts() {
        assert!(looks_special("<unused12>"));
        assert!(looks_special("<|im_start|>"));
        assert!(looks_special("<mask>"));
        assert!(!looks_special("<start_of_turn>"));
        assert!(!looks_special("\n\n"));
    }
}
