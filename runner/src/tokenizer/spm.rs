//! SentencePiece BPE (`tokenizer.ggml.model = "llama"`): start from UTF-8 characters, merge
//! the adjacent pair whose concatenation is a token with the highest score (ties: leftmost),
//! and spell anything left that is not a token with byte-fallback tokens `<0xXX>`, as
//! llama.cpp's `llm_tokenizer_spm_session` does. Every merge yields a token, so only
//! single characters outside the vocabulary ever need the byte fallback.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::vocab::{TokenId, Vocab};

struct Candidate {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        // highest score first, then leftmost
        self.score
            .total_cmp(&other.score)
            .then(other.left.cmp(&self.left))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// Tokenizes `text` (spaces already escaped to U+2581) and appends to `out`.
pub fn encode(text: &str, vocab: &Vocab, out: &mut Vec<TokenId>) {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (i, (start, c)) in text.char_indices().enumerate() {
        symbols.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: None,
        });
        if i > 0 {
            symbols[i - 1].next = Some(i);
        }
    }
    let mut queue = BinaryHeap::new();
    let try_pair = |queue: &mut BinaryHeap<Candidate>,
                    symbols: &[Symbol],
                    left: Option<usize>,
                    right: Option<usize>| {
        let (Some(l), Some(r)) = (left, right) else {
            return;
        };
        let (start, len) = (symbols[l].start, symbols[l].len + symbols[r].len);
        if let Some(id) = vocab.id(&text[start..start + len]) {
            queue.push(Candidate {
                score: vocab.score(id),
                left: l,
                right: r,
                len,
            });
        }
    };
    for i in 1..symbols.len() {
        try_pair(&mut queue, &symbols, Some(i - 1), Some(i));
    }
    while let Some(c) = queue.pop() {
        let (l, r) = (&symbols[c.left], &symbols[c.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != c.len {
            continue;
        }
        let right_next = symbols[c.right].next;
        symbols[c.left].len += symbols[c.right].len;
        symbols[c.right].len = 0;
        symbols[c.left].next = right_next;
        if let Some(n) = right_next {
            symbols[n].prev = Some(c.left);
        }
        let prev = symbols[c.left].prev;
        try_pair(&mut queue, &symbols, prev, Some(c.left));
        try_pair(&mut queue, &symbols, Some(c.left), right_next);
    }
    let mut i = if symbols.is_empty() { None } else { Some(0) };
    while let Some(idx) = i {
        let s = &symbols[idx];
        let piece = &text[s.start..s.start + s.len];
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
        i = s.next;
    }
}
