//! Byte-level BPE (GPT-2 style): words from the pre-tokenizer are mapped byte by byte to
//! printable characters, then adjacent symbols are merged lowest merge rank first (ties:
//! leftmost first), as llama.cpp's `llm_tokenizer_bpe_session` does.

use std::cmp::Reverse;
use std::collections::HashMap;

use super::merge::merge;

use super::vocab::{TokenId, Vocab};

/// Merge ranks keyed by "left\0right".
#[derive(Debug, Clone)]
pub struct MergeRanks {
    ranks: HashMap<String, u32>,
}

impl MergeRanks {
    /// Builds the rank table from `tokenizer.ggml.merges` ("left right" each; the split is
    /// at the first space after the first character, so a left part may start with one).
    pub fn new(merges: &[String]) -> Result<Self, String> {
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            let split = merge
                .char_indices()
                .skip(1)
                .find(|(_, c)| *c == ' ')
                .map(|(i, _)| i)
                .ok_or_else(|| format!("merge {rank} ({merge:?}) has no space separator"))?;
            let key = format!("{}\0{}", &merge[..split], &merge[split + 1..]);
            ranks.entry(key).or_insert(rank as u32);
        }
        Ok(Self { ranks })
    }

    fn rank(&self, key: &mut String, left: &str, right: &str) -> Option<u32> {
        key.clear();
        key.push_str(left);
        key.push('\0');
        key.push_str(right);
        self.ranks.get(key.as_str()).copied()
    }
}

/// Merges one byte-encoded word and appends its tokens to `out`.
pub fn encode_word(word: &str, vocab: &Vocab, ranks: &MergeRanks, out: &mut Vec<TokenId>) {
    let mut key = String::new();
    let pieces = merge(word, |left, right| {
        ranks.rank(&mut key, left, right).map(Reverse)
    });
    for range in pieces {
        let piece = &word[range];
        match vocab.id(piece) {
            Some(id) => out.push(id),
            None => {
                // a symbol no merge produced: fall back to one token per byte-character
                for c in piece.chars() {
                    let mut buf = [0u8; 4];
                    if let Some(id) = vocab.id(c.encode_utf8(&mut buf)).or(vocab.data.unknown) {
                        out.push(id);
                    }
                }
            }
        }
    }
}
