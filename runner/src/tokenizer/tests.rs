//! Tokenizer behaviour on small hand-made vocabularies. The real models are checked
//! against llama.cpp's tokens in the runner's integration tests.

use super::*;

fn bpe_vocab() -> Tokenizer {
    // byte-level: 'Ġ' is a space
    let tokens = [
        "<|endoftext|>",
        "<|im_start|>",
        "h",
        "e",
        "l",
        "o",
        "Ġ",
        "w",
        "r",
        "d",
        "he",
        "ll",
        "hell",
        "hello",
        "Ġw",
        "Ġwo",
        "1",
        "2",
        "!",
        "<tool>",
    ];
    let mut kinds = vec![TokenKind::Normal; tokens.len()];
    kinds[0] = TokenKind::Control;
    kinds[1] = TokenKind::Control;
    kinds[19] = TokenKind::UserDefined;
    let data = VocabData {
        tokens: tokens.iter().map(|t| t.to_string()).collect(),
        kinds,
        merges: ["h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o"]
            .iter()
            .map(|m| m.to_string())
            .collect(),
        bos: Some(0),
        eos: Some(0),
        ..Default::default()
    };
    Tokenizer::new("gpt2", Some("smollm"), data).unwrap()
}

#[test]
fn bpe_merges_by_rank_and_round_trips() {
    let t = bpe_vocab();
    let ids = t.encode("hello world", false, false);
    // "hello" | " wo" "r" "l" "d"
    assert_eq!(ids, [13, 15, 8, 4, 9]);
    assert_eq!(t.decode(&ids, false), "hello world");
}

#[test]
fn control_tokens_match_only_when_asked_but_user_defined_always() {
    let t = bpe_vocab();
    let plain = t.encode("<|im_start|>", false, false);
    assert!(
        !plain.contains(&1),
        "control token matched without parse_special"
    );
    assert_eq!(t.encode("<|im_start|>hello", false, true), [1, 13]);
    assert_eq!(t.encode("hello<tool>", false, false), [13, 19]);
    assert_eq!(t.decode(&[1, 13], false), "hello");
    assert_eq!(t.decode(&[1, 13], true), "<|im_start|>hello");
}

#[test]
fn smollm_digits_are_single_tokens() {
    let t = bpe_vocab();
    assert_eq!(t.encode("12!", false, false), [16, 17, 18]);
}

fn spm_vocab() -> Tokenizer {
    let mut tokens: Vec<String> = [
        "<pad>",
        "<eos>",
        "<bos>",
        "<unk>",
        "▁",
        "a",
        "b",
        "ab",
        "▁ab",
        "<start_of_turn>",
    ]
    .iter()
    .map(|t| t.to_string())
    .collect();
    let mut kinds = vec![
        TokenKind::Control,
        TokenKind::Control,
        TokenKind::Control,
        TokenKind::Unknown,
        TokenKind::Normal,
        TokenKind::Normal,
        TokenKind::Normal,
        TokenKind::Normal,
        TokenKind::Normal,
        TokenKind::Control,
    ];
    let mut scores = vec![0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -2.0, -0.5, -0.1, 0.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        kinds.push(TokenKind::Byte);
        scores.push(0.0);
    }
    let data = VocabData {
        tokens,
        scores,
        kinds,
        bos: Some(2),
        eos: Some(1),
        unknown: Some(3),
        add_bos: Some(true),
        add_space_prefix: Some(false),
        ..Default::default()
    };
    Tokenizer::new("llama", None, data).unwrap()
}

#[test]
fn spm_merges_by_score_and_falls_back_to_bytes() {
    let t = spm_vocab();
    // "ab ab" -> "ab" "▁ab": the higher-scored merges win
    assert_eq!(t.encode("ab ab", true, false), [2, 7, 8]);
    // 'é' is not in the vocabulary: its two UTF-8 bytes as byte tokens
    let e = t.encode("é", false, false);
    assert_eq!(e, [10 + 0xC3, 10 + 0xA9]);
    assert_eq!(t.decode(&e, false), "é");
    assert_eq!(t.decode(&[2, 7, 8], false), "ab ab");
}

#[test]
fn spm_parses_control_tokens_in_templates() {
    let t = spm_vocab();
    assert_eq!(t.encode("<start_of_turn>ab", true, true), [2, 9, 7]);
}

#[test]
fn bad_vocabularies_are_refused_with_reasons() {
    let err = Tokenizer::new(
        "wordpiece",
        None,
        VocabData {
            tokens: vec!["a".into()],
            ..Default::default()
        },
    );
    assert!(matches!(err, Err(TokenizerError::UnsupportedModel(m)) if m == "wordpiece"));
    let err = Tokenizer::new(
        "gpt2",
        Some("klingon"),
        VocabData {
            tokens: vec!["a".into()],
            ..Default::default()
        },
    );
    assert!(matches!(
        err,
        Err(TokenizerError::UnsupportedPreTokenizer(_))
    ));
    let err = Tokenizer::new(
        "llama",
        None,
        VocabData {
            tokens: vec!["a".into()],
            bos: Some(5),
            ..Default::default()
        },
    );
    assert!(matches!(err, Err(TokenizerError::Invalid(m)) if m.contains("bos token id 5")));
    let err = Tokenizer::new(
        "gpt2",
        Some("gpt2"),
        VocabData {
            tokens: vec!["a".into()],
            merges: vec!["ab".into()],
            ..Default::default()
        },
    );
    assert!(matches!(err, Err(TokenizerError::Invalid(m)) if m.contains("no space")));
}
