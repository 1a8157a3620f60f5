//! Pre-tokenizers: split text into words before BPE merges, as `tokenizer.ggml.pre` names.
//!
//! Each split follows llama.cpp's hand-written equivalents of the Hugging Face regexes
//! (`unicode_regex_split_custom_*`), including their corner cases, because tokens must
//! match llama.cpp's exactly. A list of splitters runs in order, each one splitting the
//! pieces left by the previous one; text a splitter does not match stays a piece.

use super::unicode::{CharClass, classify};

/// The pre-tokenizer families we implement, by the names GGUF files use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// `gpt2`, `mpt`, `olmo`, `jais`, `trillion`, `granite-docling`: the GPT-2 regex.
    Gpt2,
    /// `smollm`, `starcoder`, `refact`, `command-r`, `codeshell`, `exaone`, `minerva`:
    /// every digit alone, then the GPT-2 regex.
    DigitsThenGpt2,
    /// `llama3`, `llama-bpe`, `dbrx`, `smaug-bpe`: the Llama 3 regex (digits in threes).
    Llama3,
    /// `qwen2`, `stablelm2`, `hunyuan`: the Llama 3 regex with single digits.
    Qwen2,
    /// `default` (or missing): punctuation runs, GPT-2 regex, digit runs, digit triples.
    Default,
}

impl PreTokenizer {
    /// The pre-tokenizer named by `tokenizer.ggml.pre`, or `None` when we do not know it.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "gpt2" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling" => Self::Gpt2,
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" | "mellum2" => Self::DigitsThenGpt2,
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "dbrx" | "smaug-bpe" | "pixtral" => {
                Self::Llama3
            }
            "qwen2" | "stablelm2" | "hunyuan" | "deepseek-r1-qwen" | "megrez" => Self::Qwen2,
            "default" | "" => Self::Default,
            _ => return None,
        })
    }

    /// Splits `text` into words (byte ranges of `text`, in order, covering it exactly).
    pub fn split(self, text: &str) -> Vec<std::ops::Range<usize>> {
        let chars: Vec<(usize, char, CharClass)> = text
            .char_indices()
            .map(|(i, c)| (i, c, classify(c)))
            .collect();
        let mut pieces: Vec<std::ops::Range<usize>> = std::iter::once(0..chars.len()).collect();
        let steps: &[Step] = match self {
            Self::Gpt2 => &[Step::Gpt2],
            Self::DigitsThenGpt2 => &[Step::EachNumber, Step::Gpt2],
            Self::Llama3 => &[Step::Llama3 { digits: 3 }],
            Self::Qwen2 => &[Step::Llama3 { digits: 1 }],
            Self::Default => &[
                Step::PunctuationRuns,
                Step::Gpt2,
                Step::NumberRuns,
                Step::AsciiDigitTriples,
            ],
        };
        for step in steps {
            let mut next = Vec::with_capacity(pieces.len());
            for piece in pieces {
                step.split(&chars[piece.clone()], piece.start, &mut next);
            }
            pieces = next;
        }
        pieces
            .into_iter()
            .map(|r| {
                let start = chars[r.start].0;
                let end = chars.get(r.end).map_or(text.len(), |c| c.0);
                start..end
            })
            .collect()
    }
}

/// One splitter; ranges are in characters until the final conversion to bytes.
#[derive(Clone, Copy)]
enum Step {
    Gpt2,
    Llama3 { digits: usize },
    EachNumber,
    NumberRuns,
    PunctuationRuns,
    AsciiDigitTriples,
}

/// Collects the words of one piece: `cut(end)` closes a word at character `end`.
struct Words<'a> {
    base: usize,
    prev: usize,
    out: &'a mut Vec<std::ops::Range<usize>>,
}

impl Words<'_> {
    fn cut(&mut self, end: usize) -> usize {
        let len = end - self.prev;
        if len > 0 {
            self.out.push(self.base + self.prev..self.base + end);
        }
        self.prev = end;
        len
    }
}

impl Step {
    fn split(
        self,
        s: &[(usize, char, CharClass)],
        base: usize,
        out: &mut Vec<std::ops::Range<usize>>,
    ) {
        let mut words = Words { base, prev: 0, out };
        match self {
            Step::Gpt2 => gpt2(s, &mut words),
            Step::Llama3 { digits } => llama3(s, digits, &mut words),
            Step::EachNumber => isolate_runs(s, &mut words, |c| c.2.number, Some(1)),
            Step::NumberRuns => isolate_runs(s, &mut words, |c| c.2.number, None),
            Step::PunctuationRuns => isolate_runs(
                s,
                &mut words,
                |c| c.2.punctuation || "$+<=>^~|".contains(c.1),
                None,
            ),
            Step::AsciiDigitTriples => {
                let mut i = 0;
                while i < s.len() {
                    if i + 3 <= s.len() && s[i..i + 3].iter().all(|c| c.1.is_ascii_digit()) {
                        words.cut(i);
                        words.cut(i + 3);
                        i += 3;
                    } else {
                        i += 1;
                    }
                }
            }
        }
        words.cut(s.len());
    }
}

/// Matches of `class` become words (runs of at most `max` characters, if given); the text
/// between them stays as it is.
fn isolate_runs(
    s: &[(usize, char, CharClass)],
    words: &mut Words<'_>,
    class: impl Fn(&(usize, char, CharClass)) -> bool,
    max: Option<usize>,
) {
    let mut i = 0;
    while i < s.len() {
        if class(&s[i]) {
            let start = i;
            while i < s.len() && class(&s[i]) && max.is_none_or(|m| i - start < m) {
                i += 1;
            }
            words.cut(start);
            words.cut(i);
        } else {
            i += 1;
        }
    }
}

fn contraction_len(s: &[(usize, char, CharClass)], pos: usize, fold_case: bool) -> usize {
    if s[pos].1 != '\'' || pos + 1 >= s.len() {
        return 0;
    }
    let lower = |c: char| if fold_case { c.to_ascii_lowercase() } else { c };
    let next = lower(s[pos + 1].1);
    if matches!(next, 's' | 't' | 'm' | 'd') {
        return 2;
    }
    if pos + 2 < s.len() {
        let next2 = lower(s[pos + 2].1);
        if matches!((next, next2), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
            return 3;
        }
    }
    0
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
fn gpt2(s: &[(usize, char, CharClass)], words: &mut Words<'_>) {
    let class = |i: usize| s.get(i).map(|c| c.2);
    let mut pos = 0;
    while pos < s.len() {
        let (c, cls) = (s[pos].1, s[pos].2);
        let n = contraction_len(s, pos, false);
        if n > 0 {
            pos += words.cut(pos + n);
            continue;
        }
        let lead = usize::from(c == ' ');
        let cls2 = if c == ' ' { class(pos + 1) } else { Some(cls) };
        let run = |pred: &dyn Fn(CharClass) -> bool, mut p: usize| {
            while class(p).is_some_and(pred) {
                p += 1;
            }
            p
        };
        if let Some(c2) = cls2 {
            if c2.letter {
                pos = run(&|k| k.letter, pos + lead);
                words.cut(pos);
                continue;
            }
            if c2.number {
                pos = run(&|k| k.number, pos + lead);
                words.cut(pos);
                continue;
            }
            if !(c2.whitespace || c2.letter || c2.number) {
                pos = run(&|k| !(k.whitespace || k.letter || k.number), pos + lead);
                words.cut(pos);
                continue;
            }
        }
        let spaces = run(&|k| k.whitespace, pos) - pos;
        pos = whitespace_run(s.len(), pos, spaces, words);
    }
}

/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
fn llama3(s: &[(usize, char, CharClass)], digits: usize, words: &mut Words<'_>) {
    let class = |i: usize| s.get(i).map(|c| c.2);
    let is_letter = |i: usize| class(i).is_some_and(|k| k.letter);
    let is_number = |i: usize| class(i).is_some_and(|k| k.number);
    let is_newline = |i: usize| s.get(i).is_some_and(|c| c.1 == '\r' || c.1 == '\n');
    let mut pos = 0;
    while pos < s.len() {
        let (c, cls) = (s[pos].1, s[pos].2);
        let n = contraction_len(s, pos, true);
        if n > 0 {
            pos += words.cut(pos + n);
            continue;
        }
        if !(c == '\r' || c == '\n' || cls.number) && (cls.letter || is_letter(pos + 1)) {
            pos += 1;
            while is_letter(pos) {
                pos += 1;
            }
            words.cut(pos);
            continue;
        }
        if cls.number {
            let mut start = pos;
            while is_number(pos) {
                pos += 1;
                if pos - start >= digits {
                    words.cut(pos);
                    start = pos;
                }
            }
            words.cut(pos);
            continue;
        }
        let cls2 = if c == ' ' { class(pos + 1) } else { Some(cls) };
        if cls2.is_some_and(|k| !(k.whitespace || k.letter || k.number)) {
            pos += usize::from(c == ' ');
            while class(pos).is_some_and(|k| !(k.whitespace || k.letter || k.number)) {
                pos += 1;
            }
            while is_newline(pos) {
                pos += 1;
            }
            words.cut(pos);
            continue;
        }
        let mut spaces = 0;
        let mut last_newline_end = None;
        while class(pos + spaces).is_some_and(|k| k.whitespace) {
            if is_newline(pos + spaces) {
                last_newline_end = Some(pos + spaces + 1);
            }
            spaces += 1;
        }
        if let Some(end) = last_newline_end {
            pos = end;
            words.cut(pos);
            continue;
        }
        pos = whitespace_run(s.len(), pos, spaces, words);
    }
}

/// `\s+(?!\S)|\s+`, or a lone character that nothing else matched: a run of `spaces`
/// whitespace characters at `pos` leaves its last one to the next word when a word
/// follows. Returns where the next word starts.
fn whitespace_run(len: usize, pos: usize, spaces: usize, words: &mut Words<'_>) -> usize {
    let end = match spaces {
        0 => pos + 1,
        n if n > 1 && pos + n < len => pos + n - 1,
        n => pos + n,
    };
    words.cut(end);
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(p: PreTokenizer, text: &str) -> Vec<&str> {
        p.split(text).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn gpt2_splits_like_the_reference_regex() {
        assert_eq!(
            words(PreTokenizer::Gpt2, "Hello world's  end 123!!\n\n x"),
            [
                "Hello", " world", "'s", " ", " end", " 123", "!!", "\n\n", " x"
            ]
        );
    }

    #[test]
    fn smollm_isolates_every_digit_first() {
        assert_eq!(
            words(PreTokenizer::DigitsThenGpt2, "pi 3.14"),
            ["pi", " ", "3", ".", "1", "4"]
        );
    }

    #[test]
    fn llama3_groups_digits_in_threes_and_keeps_newlines_with_punctuation() {
        assert_eq!(
            words(PreTokenizer::Llama3, "1234567 I'M ok.\n\n  x"),
            ["123", "456", "7", " I", "'M", " ok", ".\n\n", " ", " x"]
        );
    }

    #[test]
    fn every_split_covers_the_text_exactly() {
        let text = "a  b\t\tc 😀😀 中文 ١٢٣ 'll\r\n";
        for p in [
            PreTokenizer::Gpt2,
            PreTokenizer::DigitsThenGpt2,
            PreTokenizer::Llama3,
            PreTokenizer::Qwen2,
            PreTokenizer::Default,
        ] {
            assert_eq!(words(p, text).concat(), text, "{p:?}");
        }
    }
}
