//! SentencePiece BPE (`tokenizer.ggml.model = "llama"`): start from UTF-8 characters, merge
//! the adjacent pair whose concatenation is a token with the highest score (ties: leftmost),
//! and spell anything left that is not a token with byte-fallback tokens `<0xXX>`, as
//! llama.cpp's `llm_tokenizer_spm_session` does. Every merge yields a token, so only
//! single characters outside the vocabulary ever need the byte fallback.

use super::merge::merge;
use super::vocab::{TokenId, Vocab};

/// Orders scores as f32's total order, so they can be merge priorities.
#[derive(PartialEq)]
struct Score(f32);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Tokenizes `text` (spaces already escaped to U+2581) and appends to `out`.
pub fn encode(text: &str, vocab: &Vocab, out: &mut Vec<TokenId>) {
    let mut pair = String::new();
    let pieces = merge(text, |left, right| {
        pair.clear();
        pair.push_str(left);
        pair.push_str(right);
        vocab.id(&pair).map(|id| Score(vocab.score(id)))
    });
    for range in pieces {
        let piece = &text[range];
        match vocab.id(piece) {
            Some(id) => out.push(id),
            None => {
                for b in piece.bytes() {
                    if let Some(id) = vocab.id(&format!("<0x{b:02X}>")).or(vocab.data.unknown) {
                        out.push(id);
                    }
                }
            }
        }
    }
}
