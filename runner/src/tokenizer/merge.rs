//! The merge loop BPE and SentencePiece share: start from single characters and keep
//! merging the adjacent pair with the highest priority (ties: leftmost), re-scoring the
//! neighbours of each merge, as llama.cpp's tokenizer sessions do.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::ops::Range;

struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Candidate<P> {
    priority: P,
    left: Reverse<usize>,
    right: usize,
    len: usize,
}

impl<P: Ord> Ord for Candidate<P> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then(self.left.cmp(&other.left))
    }
}

impl<P: Ord> PartialOrd for Candidate<P> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<P: Ord> PartialEq for Candidate<P> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<P: Ord> Eq for Candidate<P> {}

/// Merges the characters of `text` pairwise; `priority(left, right)` says whether two
/// adjacent pieces may merge and how urgently (greater first). Returns the final pieces.
pub fn merge<P: Ord>(
    text: &str,
    mut priority: impl FnMut(&str, &str) -> Option<P>,
) -> Vec<Range<usize>> {
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
    let piece = |s: &Symbol| s.start..s.start + s.len;
    let mut queue = BinaryHeap::new();
    let mut consider = |queue: &mut BinaryHeap<Candidate<P>>,
                        symbols: &[Symbol],
                        left: Option<usize>,
                        right: Option<usize>| {
        let (Some(l), Some(r)) = (left, right) else {
            return;
        };
        let (a, b) = (&symbols[l], &symbols[r]);
        if let Some(p) = priority(&text[piece(a)], &text[piece(b)]) {
            queue.push(Candidate {
                priority: p,
                left: Reverse(l),
                right: r,
                len: a.len + b.len,
            });
        }
    };
    for i in 1..symbols.len() {
        consider(&mut queue, &symbols, Some(i - 1), Some(i));
    }
    while let Some(c) = queue.pop() {
        let (left, right) = (c.left.0, c.right);
        let (l, r) = (&symbols[left], &symbols[right]);
        // stale: one side was merged away or has grown since the pair was scored
        if l.len == 0 || r.len == 0 || l.next != Some(right) || l.len + r.len != c.len {
            continue;
        }
        let right_next = r.next;
        symbols[left].len += symbols[right].len;
        symbols[right].len = 0;
        symbols[left].next = right_next;
        if let Some(n) = right_next {
            symbols[n].prev = Some(left);
        }
        let prev = symbols[left].prev;
        consider(&mut queue, &symbols, prev, Some(left));
        consider(&mut queue, &symbols, Some(left), right_next);
    }
    let mut pieces = Vec::new();
    let mut i = if symbols.is_empty() { None } else { Some(0) };
    while let Some(idx) = i {
        pieces.push(piece(&symbols[idx]));
        i = symbols[idx].next;
    }
    pieces
}
