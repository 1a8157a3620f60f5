//! The vocabulary: token texts, scores and kinds, and the special token ids, as GGUF
//! stores them under `tokenizer.ggml.*`.

use std::collections::HashMap;

/// A token id.
pub type TokenId = u32;

/// What a token is, from `tokenizer.ggml.token_type` (values as llama.cpp defines them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// 0 or anything unknown.
    Undefined,
    /// 1: ordinary text.
    Normal,
    /// 2: the unknown-token marker.
    Unknown,
    /// 3: control tokens such as `<|im_start|>`; matched in text only when asked.
    Control,
    /// 4: user-defined tokens, always matched whole in text.
    UserDefined,
    /// 5: unused slots.
    Unused,
    /// 6: byte-fallback tokens `<0xXX>`.
    Byte,
}

impl TokenKind {
    /// The kind for a `token_type` value.
    pub fn from_gguf(value: i32) -> Self {
        match value {
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Undefined,
        }
    }
}

/// The tokenizer data a GGUF file carries, gathered into one place.
#[derive(Debug, Clone, Default)]
pub struct VocabData {
    /// `tokenizer.ggml.tokens`.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores` (SentencePiece merge priorities; may be empty for BPE).
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.token_type` (may be empty: every token is then normal).
    pub kinds: Vec<TokenKind>,
    /// `tokenizer.ggml.merges` (BPE only), each "left right".
    pub merges: Vec<String>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<TokenId>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<TokenId>,
    /// `tokenizer.ggml.eot_token_id`.
    pub eot: Option<TokenId>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unknown: Option<TokenId>,
    /// `tokenizer.ggml.add_bos_token` when present.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token` when present.
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix` when present.
    pub add_space_prefix: Option<bool>,
}

/// The vocabulary with its lookup tables built.
#[derive(Debug, Clone)]
pub struct Vocab {
    pub(super) data: VocabData,
    pub(super) by_text: HashMap<String, TokenId>,
}

impl Vocab {
    pub(super) fn new(data: VocabData) -> Self {
        let mut by_text = HashMap::with_capacity(data.tokens.len());
        for (id, text) in data.tokens.iter().enumerate() {
            // the first of duplicate texts wins, as in llama.cpp's token_to_id map
            by_text.entry(text.clone()).or_insert(id as TokenId);
        }
        Self { data, by_text }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.data.tokens.len()
    }

    /// True when the vocabulary has no tokens.
    pub fn is_empty(&self) -> bool {
        self.data.tokens.is_empty()
    }

    /// The token whose text is exactly `text`.
    pub fn id(&self, text: &str) -> Option<TokenId> {
        self.by_text.get(text).copied()
    }

    /// The stored text of a token.
    pub fn text(&self, id: TokenId) -> Option<&str> {
        self.data.tokens.get(id as usize).map(String::as_str)
    }

    /// The kind of a token.
    pub fn kind(&self, id: TokenId) -> TokenKind {
        self.data
            .kinds
            .get(id as usize)
            .copied()
            .unwrap_or(TokenKind::Normal)
    }

    /// The SentencePiece score of a token (0 when the file has none).
    pub fn score(&self, id: TokenId) -> f32 {
        self.data.scores.get(id as usize).copied().unwrap_or(0.0)
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<TokenId> {
        self.data.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<TokenId> {
        self.data.eos
    }

    /// True for tokens that end generation: EOS, EOT, and control tokens whose text marks
    /// an end of turn (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`, `<|endoftext|>`).
    pub fn is_end_of_generation(&self, id: TokenId) -> bool {
        if Some(id) == self.data.eos || Some(id) == self.data.eot {
            return true;
        }
        self.kind(id) == TokenKind::Control
            && matches!(
                self.text(id),
                Some("<|im_end|>" | "<end_of_turn>" | "<|eot_id|>" | "<|endoftext|>" | "<|end|>")
            )
    }
}
