//! Byte-level BPE (GPT-2 style): words from the pre-tokenizer are mapped byte by byte to
//! printable characters, then adjacent symbols are merged lowest merge rank first (ties:
//! leftmost first), as llama.cpp's `llm_tokenizer_bpe_session` does.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

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

#[derive(PartialEq, Eq)]
struct Candidate {
    rank: u32,
    left: usize,
    right: usize,
    len: usize,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap pops the greatest: lowest rank first, then leftmost
        other.rank.cmp(&self.rank).then(other.left.cmp(&self.left))
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

/// Merges one byte-encoded word and appends its tokens to `out`.
pub fn encode_word(word: &str, vocab: &Vocab, ranks: &MergeRanks, out: &mut Vec<TokenId>) {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(word.len());
    for (i, (start, c)) in word.char_indices().enumerate() {
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
    let text = |s: &Symbol| &word[s.start..s.start + s.len];
    let mut key = String::new();
    let mut queue = BinaryHeap::new();
    let mut push = |queue: &mut BinaryHeap<Candidate>,
                    symbols: &[Symbol],
                    left: Option<usize>,
                    right: Option<usize>| {
        let (Some(l), Some(r)) = (left, right) else {
            return;
        };
        if let Some(rank) = ranks.rank(&mut key, text(&symbols[l]), text(&symbols[r])) {
            queue.push(Candidate {
                rank,
                left: l,
                right: r,
                len: symbols[l].len + symbols[r].len,
            });
        }
    };
    for i in 1..symbols.len() {
        push(&mut queue, &symbols, Some(i - 1), Some(i));
    }
    while let Some(c) = queue.pop() {
        let (l, r) = (&symbols[c.left], &symbols[c.right]);
        // stale candidates: either side already merged away or grown since
        if l.len == 0 || r.len == 0 || l.next != Some(c.right) || l.len + r.len != c.len {
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
        push(&mut queue, &symbols, prev, Some(c.left));
        push(&mut queue, &symbols, Some(c.left), right_next);
    }
    let mut i = if symbols.is_empty() { None } else { Some(0) };
    while let Some(idx) = i {
        let s = &symbols[idx];
        let piece = text(s);
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
        i = s.next;
    }
}
