//! Tokenizers built from GGUF metadata: byte-level BPE (`gpt2`) with the pre-tokenizer
//! that `tokenizer.ggml.pre` names, SentencePiece BPE (`llama`) with scores and byte
//! fallback, and BERT's WordPiece (`bert`, [`wordpiece`]). Output matches llama.cpp token for token: same special-token handling,
//! same BOS/EOS rules, same merge order.

mod bpe;
mod from_gguf;
mod merge;
mod pretokenize;
mod special;
mod spm;
mod stream;
mod unicode;
mod vocab;
mod wordpiece;

pub use pretokenize::PreTokenizer;
pub use special::Fragment;
pub use stream::Utf8Stream;
pub use vocab::{TokenId, TokenKind, Vocab, VocabData};

use thiserror::Error;

/// Why a tokenizer could not be built.
#[derive(Debug, Error, PartialEq)]
pub enum TokenizerError {
    /// `tokenizer.ggml.model` names a kind we do not implement.
    #[error(
        "tokenizer model {0:?} is not supported (supported: \"gpt2\" byte-level BPE, \"llama\" SentencePiece, \"bert\" WordPiece)"
    )]
    UnsupportedModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer we do not implement.
    #[error(
        "pre-tokenizer {0:?} is not supported (supported: gpt2, smollm, llama3, qwen2, default and their aliases)"
    )]
    UnsupportedPreTokenizer(String),
    /// The vocabulary is unusable.
    #[error("invalid tokenizer data: {0}")]
    Invalid(String),
}

enum Kind {
    Bpe {
        pre: PreTokenizer,
        ranks: bpe::MergeRanks,
        byte_to_char: Box<[char; 256]>,
        char_to_byte: std::collections::HashMap<char, u8>,
    },
    Spm,
    Wpm,
}

/// A tokenizer for one model.
pub struct Tokenizer {
    vocab: Vocab,
    kind: Kind,
    specials: Vec<TokenId>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("model", &self.model_name())
            .field("vocab_size", &self.vocab.len())
            .finish()
    }
}

impl Tokenizer {
    /// Builds the tokenizer that `tokenizer.ggml.model` (`model`) and `tokenizer.ggml.pre`
    /// (`pre`) name, over the vocabulary in `data`.
    pub fn new(model: &str, pre: Option<&str>, data: VocabData) -> Result<Self, TokenizerError> {
        if data.tokens.is_empty() {
            return Err(TokenizerError::Invalid("the vocabulary is empty".into()));
        }
        let n = data.tokens.len();
        for (name, len) in [
            ("scores", data.scores.len()),
            ("token types", data.kinds.len()),
        ] {
            if len != 0 && len != n {
                return Err(TokenizerError::Invalid(format!(
                    "{len} {name} for {n} tokens"
                )));
            }
        }
        for (name, id) in [
            ("bos", data.bos),
            ("eos", data.eos),
            ("eot", data.eot),
            ("unknown", data.unknown),
        ] {
            if id.is_some_and(|id| id as usize >= n) {
                return Err(TokenizerError::Invalid(format!(
                    "{name} token id {} is outside the vocabulary of {n}",
                    id.unwrap_or_default()
                )));
            }
        }
        let (kind, add_bos, add_eos, add_space_prefix) = match model {
            "gpt2" => {
                let pre_name = pre.unwrap_or("default");
                let pre = PreTokenizer::from_name(pre_name)
                    .ok_or_else(|| TokenizerError::UnsupportedPreTokenizer(pre_name.into()))?;
                let ranks = bpe::MergeRanks::new(&data.merges).map_err(TokenizerError::Invalid)?;
                let byte_to_char = Box::new(unicode::byte_to_char_table());
                let char_to_byte = (0..=255u8).map(|b| (byte_to_char[b as usize], b)).collect();
                let kind = Kind::Bpe {
                    pre,
                    ranks,
                    byte_to_char,
                    char_to_byte,
                };
                (
                    kind,
                    data.add_bos.unwrap_or(false),
                    data.add_eos.unwrap_or(false),
                    false,
                )
            }
            "llama" => (
                Kind::Spm,
                data.add_bos.unwrap_or(true),
                data.add_eos.unwrap_or(false),
                data.add_space_prefix.unwrap_or(true),
            ),
            // [CLS] text [SEP]: the converter writes them as BOS and EOS.
            "bert" => (
                Kind::Wpm,
                data.add_bos.unwrap_or(true),
                data.add_eos.unwrap_or(true),
                false,
            ),
            other => return Err(TokenizerError::UnsupportedModel(other.into())),
        };
        if add_bos && data.bos.is_none() {
            return Err(TokenizerError::Invalid(
                "add_bos is set but there is no bos token id".into(),
            ));
        }
        if add_eos && data.eos.is_none() {
            return Err(TokenizerError::Invalid(
                "add_eos is set but there is no eos token id".into(),
            ));
        }
        let vocab = Vocab::new(data);
        let specials = special::special_tokens(&vocab);
        Ok(Self {
            vocab,
            kind,
            specials,
            add_bos,
            add_eos,
            add_space_prefix,
        })
    }

    /// `gpt2`, `llama` or `bert`, as GGUF names the tokenizer model.
    pub fn model_name(&self) -> &'static str {
        match self.kind {
            Kind::Bpe { .. } => "gpt2",
            Kind::Spm => "llama",
            Kind::Wpm => "bert",
        }
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Whether [`Tokenizer::encode`] with `add_special` puts BOS first.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// Tokenizes `text`. `add_special` adds BOS/EOS as the model's metadata asks;
    /// `parse_special` matches control tokens written in the text (for chat templates).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<TokenId> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.vocab.bos());
        }
        let fragments = if text.is_empty() {
            Vec::new()
        } else {
            special::partition(text, &self.vocab, &self.specials, parse_special)
        };
        let mut prev_special = true;
        for fragment in fragments {
            match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(t) => {
                    self.encode_text(t, prev_special, &mut out);
                    prev_special = false;
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.vocab.eos());
        }
        out
    }

    fn encode_text(&self, text: &str, prev_special: bool, out: &mut Vec<TokenId>) {
        match &self.kind {
            Kind::Bpe {
                pre,
                ranks,
                byte_to_char,
                ..
            } => {
                let mut encoded = String::new();
                for range in pre.split(text) {
                    encoded.clear();
                    encoded.extend(text[range].bytes().map(|b| byte_to_char[b as usize]));
                    bpe::encode_word(&encoded, &self.vocab, ranks, out);
                }
            }
            Kind::Spm => {
                let mut escaped = String::with_capacity(text.len() + 3);
                if self.add_space_prefix && prev_special {
                    escaped.push('\u{2581}');
                }
                escaped.extend(text.chars().map(|c| if c == ' ' { '\u{2581}' } else { c }));
                spm::encode(&escaped, &self.vocab, out);
            }
            Kind::Wpm => wordpiece::encode(text, &self.vocab, self.vocab.data.unknown, out),
        }
    }

    /// The bytes a token stands for. Control and unknown tokens give their text only when
    /// `special` is set, else nothing (as llama.cpp's `token_to_piece`). Bytes, not text:
    /// a byte-level token may hold part of a UTF-8 character (see [`Utf8Stream`]).
    pub fn token_bytes(&self, id: TokenId, special: bool) -> Vec<u8> {
        let Some(text) = self.vocab.text(id) else {
            return Vec::new();
        };
        match self.vocab.kind(id) {
            TokenKind::Control | TokenKind::Unknown => {
                if special {
                    text.as_bytes().to_vec()
                } else {
                    Vec::new()
                }
            }
            TokenKind::UserDefined => text.as_bytes().to_vec(),
            TokenKind::Byte => parse_byte_token(text).map(|b| vec![b]).unwrap_or_default(),
            TokenKind::Normal => match &self.kind {
                Kind::Bpe { char_to_byte, .. } => {
                    let mut bytes = Vec::with_capacity(text.len());
                    for c in text.chars() {
                        match char_to_byte.get(&c) {
                            Some(&b) => bytes.push(b),
                            None => bytes.extend_from_slice(c.to_string().as_bytes()),
                        }
                    }
                    bytes
                }
                Kind::Spm | Kind::Wpm => text.replace('\u{2581}', " ").into_bytes(),
            },
            TokenKind::Undefined | TokenKind::Unused => Vec::new(),
        }
    }

    /// Detokenizes a whole sequence (lossy only where the tokens are not valid UTF-8).
    pub fn decode(&self, ids: &[TokenId], special: bool) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(self.token_bytes(id, special));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// `<0xAB>` -> 0xAB.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests;
