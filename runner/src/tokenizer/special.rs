//! Splits raw text around special tokens before the tokenizer proper sees it.
//!
//! As in llama.cpp's `tokenizer_st_partition`: control, user-defined and unknown tokens are
//! searched for, longest text first; user-defined tokens always match, control and
//! unknown ones only when the caller parses special tokens (chat templates do).

use super::vocab::{TokenId, TokenKind, Vocab};

/// A piece of the input: text still to tokenize, or a special token matched whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment<'a> {
    /// Ordinary text.
    Text(&'a str),
    /// A special token found in the text.
    Token(TokenId),
}

/// The special tokens to look for, longest text first (ties by id, for determinism).
pub fn special_tokens(vocab: &Vocab) -> Vec<TokenId> {
    let mut ids: Vec<TokenId> = (0..vocab.len() as TokenId)
        .filter(|&id| {
            matches!(
                vocab.kind(id),
                TokenKind::Control | TokenKind::UserDefined | TokenKind::Unknown
            ) && vocab.text(id).is_some_and(|t| !t.is_empty())
        })
        .collect();
    ids.sort_by(|&a, &b| {
        let (ta, tb) = (vocab.text(a).unwrap_or(""), vocab.text(b).unwrap_or(""));
        tb.len().cmp(&ta.len()).then(a.cmp(&b))
    });
    ids
}

/// Splits `text` at every occurrence of the special tokens in `specials` (in that order).
pub fn partition<'a>(
    text: &'a str,
    vocab: &Vocab,
    specials: &[TokenId],
    parse_special: bool,
) -> Vec<Fragment<'a>> {
    let mut fragments = vec![Fragment::Text(text)];
    for &id in specials {
        if !parse_special && matches!(vocab.kind(id), TokenKind::Control | TokenKind::Unknown) {
            continue;
        }
        let Some(needle) = vocab.text(id) else {
            continue;
        };
        if !fragments
            .iter()
            .any(|f| matches!(f, Fragment::Text(t) if t.contains(needle)))
        {
            continue;
        }
        let mut next = Vec::with_capacity(fragments.len() + 2);
        for fragment in fragments {
            let Fragment::Text(mut rest) = fragment else {
                next.push(fragment);
                continue;
            };
            while let Some(at) = rest.find(needle) {
                if at > 0 {
                    next.push(Fragment::Text(&rest[..at]));
                }
                next.push(Fragment::Token(id));
                rest = &rest[at + needle.len()..];
            }
            if !rest.is_empty() {
                next.push(Fragment::Text(rest));
            }
        }
        fragments = next;
    }
    fragments
}
