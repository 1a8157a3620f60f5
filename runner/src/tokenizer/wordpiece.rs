//! WordPiece (`tokenizer.ggml.model = "bert"`), as BERT's tokenizer (Hugging Face's
//! `BertNormalizer`, `BertPreTokenizer` and `WordPiece`) splits text, over the vocabulary
//! in llama.cpp's phantom-space form (`▁word` starts a word, a bare piece continues one;
//! see `runner::import::wordpiece`).
//!
//! 1. Normalize: drop NUL, U+FFFD and control characters, turn every whitespace into a
//!    space, put spaces around CJK ideographs, decompose (NFD) and drop non-spacing marks
//!    (accents), lower-case.
//! 2. Split into words at whitespace; every punctuation character (Unicode `P*`, or ASCII
//!    punctuation such as `$`, `+`, `^`) is a word of its own.
//! 3. Each word: the longest prefix in the vocabulary, then the longest continuation from
//!    where it ended, and so on; a word with a part that matches nothing, or longer than
//!    100 characters, is one unknown token (`[UNK]`).

use icu_normalizer::DecomposingNormalizerBorrowed;
use unicode_general_category::{GeneralCategory as G, get_general_category};

use super::vocab::{TokenId, Vocab};

/// Words longer than this many characters are unknown (Hugging Face's
/// `max_input_chars_per_word`).
const MAX_WORD_CHARS: usize = 100;

/// The word-start marker of the phantom-space vocabulary.
const WORD_START: char = '\u{2581}';

/// Tokenizes `text` and appends the ids to `out`; `unknown` stands for words that do not
/// split into vocabulary pieces.
pub fn encode(text: &str, vocab: &Vocab, unknown: Option<TokenId>, out: &mut Vec<TokenId>) {
    let normalized = normalize(text);
    let mut piece = String::new();
    for word in split_words(&normalized) {
        let start = out.len();
        if word.chars().count() > MAX_WORD_CHARS || !encode_word(word, vocab, &mut piece, out) {
            out.truncate(start);
            out.extend(unknown);
        }
    }
}

/// Greedy longest match of `word`; false when some part matches no token.
fn encode_word(word: &str, vocab: &Vocab, piece: &mut String, out: &mut Vec<TokenId>) -> bool {
    let mut start = 0;
    while start < word.len() {
        let mut end = word.len();
        let found = loop {
            piece.clear();
            if start == 0 {
                piece.push(WORD_START);
            }
            piece.push_str(&word[start..end]);
            if let Some(id) = vocab.id(piece) {
                break Some(id);
            }
            match word[start..end].char_indices().next_back() {
                Some((last, _)) if last > 0 => end = start + last,
                _ => break None,
            }
        };
        let Some(id) = found else {
            return false;
        };
        out.push(id);
        start = end;
    }
    true
}

/// BERT's normalization (step 1 above).
fn normalize(text: &str) -> String {
    let mut cleaned = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c == '\0' || c == '\u{fffd}' || is_control(c) {
            continue;
        }
        if c.is_whitespace() {
            cleaned.push(' ');
        } else if is_cjk(c) {
            cleaned.push(' ');
            cleaned.push(c);
            cleaned.push(' ');
        } else {
            cleaned.push(c);
        }
    }
    let nfd = DecomposingNormalizerBorrowed::new_nfd();
    let mut out = String::with_capacity(cleaned.len());
    for c in nfd.normalize(&cleaned).chars() {
        if get_general_category(c) != G::NonspacingMark {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Splits at whitespace, with each punctuation character a word of its own.
fn split_words(text: &str) -> impl Iterator<Item = &str> {
    text.split(char::is_whitespace).flat_map(|chunk| {
        let mut words = Vec::new();
        let mut start = 0;
        for (i, c) in chunk.char_indices() {
            if is_punctuation(c) {
                words.push(&chunk[start..i]);
                words.push(&chunk[i..i + c.len_utf8()]);
                start = i + c.len_utf8();
            }
        }
        words.push(&chunk[start..]);
        words.into_iter().filter(|w| !w.is_empty())
    })
}

/// A control or other invisible character (`C*` but tab, newline and carriage return,
/// which count as whitespace).
fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    matches!(
        get_general_category(c),
        G::Control | G::Format | G::Surrogate | G::PrivateUse | G::Unassigned
    )
}

/// Punctuation as BERT counts it: ASCII punctuation (symbols included) or Unicode `P*`.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(
            get_general_category(c),
            G::ConnectorPunctuation
                | G::DashPunctuation
                | G::OpenPunctuation
                | G::ClosePunctuation
                | G::InitialPunctuation
                | G::FinalPunctuation
                | G::OtherPunctuation
        )
}

/// The CJK ideograph blocks BERT puts spaces around (its `_is_chinese_char`).
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B820..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_lowercases_strips_accents_and_spaces_cjk() {
        assert_eq!(normalize("Crème BRÛLÉE\tnaïve"), "creme brulee naive");
        assert_eq!(normalize("中文ok"), " 中  文 ok");
        assert_eq!(normalize("a\u{200b}b\u{0}c"), "abc");
    }

    #[test]
    fn punctuation_is_split_into_words() {
        let words: Vec<&str> = split_words("don't  stop!!! $5+x").collect();
        assert_eq!(
            words,
            ["don", "'", "t", "stop", "!", "!", "!", "$", "5", "+", "x"]
        );
    }
}
