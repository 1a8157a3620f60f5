//! The Unicode facts the pre-tokenizers ask about, and GPT-2's byte <-> character map.
//!
//! Categories come from the `unicode-general-category` tables; whitespace is Unicode's
//! `White_Space` property, as in llama.cpp's `unicode_set_whitespace`.

use unicode_general_category::{GeneralCategory, get_general_category};

/// What a pre-tokenizer needs to know about one character.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CharClass {
    /// `\p{L}`.
    pub letter: bool,
    /// `\p{N}`.
    pub number: bool,
    /// `\s` (Unicode `White_Space`).
    pub whitespace: bool,
    /// `\p{P}`.
    pub punctuation: bool,
}

/// Classifies `c`.
pub fn classify(c: char) -> CharClass {
    use GeneralCategory as G;
    let cat = get_general_category(c);
    CharClass {
        letter: matches!(
            cat,
            G::UppercaseLetter
                | G::LowercaseLetter
                | G::TitlecaseLetter
                | G::ModifierLetter
                | G::OtherLetter
        ),
        number: matches!(cat, G::DecimalNumber | G::LetterNumber | G::OtherNumber),
        whitespace: c.is_whitespace(),
        punctuation: matches!(
            cat,
            G::ConnectorPunctuation
                | G::DashPunctuation
                | G::OpenPunctuation
                | G::ClosePunctuation
                | G::InitialPunctuation
                | G::FinalPunctuation
                | G::OtherPunctuation
        ),
    }
}

/// GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes map
/// to themselves, the rest to U+0100 onwards in byte order.
pub fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).expect("U+0100..U+0143 are valid characters");
            next += 1;
            c
        };
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_a_bijection_with_gpt2_landmarks() {
        let table = byte_to_char_table();
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[b'a' as usize], 'a');
        let mut seen = std::collections::HashSet::new();
        assert!(table.iter().all(|c| seen.insert(*c)));
    }

    #[test]
    fn classes_cover_scripts_and_digits() {
        assert!(classify('é').letter);
        assert!(classify('中').letter);
        assert!(classify('٣').number);
        assert!(classify('\u{3000}').whitespace);
        assert!(classify('!').punctuation);
        let emoji = classify('😀');
        assert!(!emoji.letter && !emoji.number && !emoji.whitespace);
    }
}
