//! The constraint on a small hand-made vocabulary: what it refuses to compile, what it
//! masks, and that a walk through its masks always ends in a valid document. The real
//! vocabularies are checked in the runner's integration tests (`structured`).

use std::sync::Arc;

use serde_json::Value;

use super::*;
use crate::sample::{Sampler, SamplerOptions};
use crate::tokenizer::{TokenKind, VocabData};

/// A SentencePiece vocabulary of single characters, a few JSON words, and `<eos>`.
fn tokenizer() -> Arc<Tokenizer> {
    let mut tokens: Vec<String> = ["<pad>", "<eos>", "<bos>", "<unk>"]
        .iter()
        .map(|t| t.to_string())
        .collect();
    let pieces = "{}[]\":,.-_0123456789abcdefghijklmnopqrstuvwxyz\n";
    tokens.extend(pieces.chars().map(|c| c.to_string()));
    tokens.extend(
        [
            "▁", "true", "false", "null", "\"name\"", "\":", "▁\"", "}\n",
        ]
        .iter()
        .map(|t| t.to_string()),
    );
    let mut kinds = vec![TokenKind::Normal; tokens.len()];
    kinds[..4].copy_from_slice(&[
        TokenKind::Control,
        TokenKind::Control,
        TokenKind::Control,
        TokenKind::Unknown,
    ]);
    let data = VocabData {
        scores: vec![0.0; tokens.len()],
        tokens,
        kinds,
        bos: Some(2),
        eos: Some(1),
        unknown: Some(3),
        add_space_prefix: Some(false),
        ..Default::default()
    };
    Arc::new(Tokenizer::new("llama", None, data).unwrap())
}

const EOS: TokenId = 1;

/// Samples with random logits from `seed` through the constraint until it completes or
/// `<eos>` is drawn (at most `limit` tokens); returns the text and whether it ended.
fn walk(
    grammars: &Grammars,
    tokenizer: &Tokenizer,
    schema: &str,
    seed: u64,
    limit: usize,
) -> (String, bool) {
    let mut constraint = grammars.compile(schema).unwrap();
    let mut sampler = Sampler::new(SamplerOptions {
        seed,
        top_k: 0,
        top_p: 1.0,
        temperature: 1.0,
        repeat_penalty: 1.0,
        ..SamplerOptions::default()
    })
    .unwrap();
    let mut rng = crate::sample::SamplerRng::new(seed ^ 0x5eed);
    let mut out = Vec::new();
    for _ in 0..limit {
        let logits: Vec<f32> = (0..tokenizer.vocab().len())
            .map(|_| (rng.next_f64() * 4.0) as f32)
            .collect();
        let masked = constraint.mask(&logits).unwrap();
        let token = sampler.next_token(masked, &[]);
        if token == EOS {
            return (tokenizer.decode(&out, false), true);
        }
        constraint.commit(token).unwrap();
        out.push(token);
        if constraint.is_complete() {
            return (tokenizer.decode(&out, false), true);
        }
    }
    (tokenizer.decode(&out, false), false)
}

#[test]
fn every_walk_through_the_masks_is_a_valid_document() {
    let t = tokenizer();
    let grammars = Grammars::new(Arc::clone(&t));
    let schema = r#"{"type":"object","properties":{
        "ok":{"type":"boolean"},
        "n":{"type":"integer","minimum":0,"maximum":99},
        "tag":{"enum":["red","green"]},
        "name":{"type":"string","maxLength":4}
    },"required":["ok","n","tag","name"],"additionalProperties":false}"#;
    for seed in 0..20 {
        let (text, ended) = walk(&grammars, &t, schema, seed, 400);
        assert!(ended, "seed {seed}: no end in 400 tokens: {text:?}");
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("seed {seed}: {text:?} does not parse: {e}"));
        let n = value["n"].as_i64().unwrap();
        assert!((0..=99).contains(&n), "{text}");
        assert!(
            ["red", "green"].contains(&value["tag"].as_str().unwrap()),
            "{text}"
        );
        assert!(
            value["name"].as_str().unwrap().chars().count() <= 4,
            "{text}"
        );
        assert!(value["ok"].is_boolean(), "{text}");
    }
}

#[test]
fn end_of_generation_is_masked_until_the_document_may_end() {
    let t = tokenizer();
    let grammars = Grammars::new(Arc::clone(&t));
    let mut c = grammars.compile(r#"{"type":"integer"}"#).unwrap();
    let logits = vec![0.0; t.vocab().len()];
    assert_eq!(c.mask(&logits).unwrap()[EOS as usize], f32::NEG_INFINITY);
    let seven = t.vocab().id("7").unwrap();
    c.commit(seven).unwrap();
    assert_eq!(c.mask(&logits).unwrap()[EOS as usize], 0.0);
    assert!(!c.is_complete(), "an integer may still grow");
    for control in [0, 2, 3] {
        assert_eq!(c.mask(&logits).unwrap()[control], f32::NEG_INFINITY);
    }
}

#[test]
fn a_closed_object_completes_the_document() {
    let t = tokenizer();
    let grammars = Grammars::new(Arc::clone(&t));
    let mut c = grammars.compile(ANY_JSON_OBJECT).unwrap();
    for piece in ["{", "}"] {
        c.commit(t.vocab().id(piece).unwrap()).unwrap();
    }
    assert!(c.is_complete());
}

#[test]
fn logits_past_the_vocabulary_are_masked() {
    let t = tokenizer();
    let grammars = Grammars::new(Arc::clone(&t));
    let mut c = grammars.compile(ANY_JSON_OBJECT).unwrap();
    let logits = vec![1.0; t.vocab().len() + 3];
    let masked = c.mask(&logits).unwrap();
    assert_eq!(masked.len(), logits.len());
    assert!(masked[t.vocab().len()..].iter().all(|l| l.is_infinite()));
    let open = t.vocab().id("{").unwrap() as usize;
    assert_eq!(masked[open], 1.0);
}

#[test]
fn a_forbidden_token_is_an_error_not_a_panic() {
    let t = tokenizer();
    let grammars = Grammars::new(Arc::clone(&t));
    let mut c = grammars.compile(ANY_JSON_OBJECT).unwrap();
    let close = t.vocab().id("}").unwrap();
    assert!(matches!(c.commit(close), Err(GrammarError::Step(_))));
}

#[test]
fn schemas_that_cannot_be_compiled_name_the_problem() {
    let t = tokenizer();
    let grammars = Grammars::new(Arc::clone(&t));
    let refuse = |schema: &str| match grammars.compile(schema) {
        Err(e) => e,
        Ok(_) => panic!("{schema} was accepted"),
    };
    assert!(matches!(refuse("{\"type\":"), GrammarError::NotJson(_)));
    for (schema, named) in [
        (r#"{"type":"nonsense"}"#, "nonsense"),
        (r#"{"type":"integer","minimum":5,"maximum":1}"#, "5"),
        (r##"{"$ref":"#/$defs/missing"}"##, "missing"),
    ] {
        let e = refuse(schema);
        assert!(matches!(e, GrammarError::Schema(_)), "{schema}: {e}");
        assert!(e.to_string().contains(named), "{schema}: {e}");
        assert!(!e.to_string().contains('\n'), "{schema}: {e}");
    }
}

#[test]
fn our_whitespace_bound_replaces_the_callers_options() {
    let t = tokenizer();
    let grammars = Grammars::new(Arc::clone(&t));
    let schema = r#"{"type":"object","x-guidance":{"whitespace_pattern":"[\\n]*"}}"#;
    let mut c = grammars.compile(schema).unwrap();
    let newline = t.vocab().id("\n").unwrap();
    c.commit(t.vocab().id("{").unwrap()).unwrap();
    for _ in 0..MAX_WHITESPACE {
        c.commit(newline).unwrap();
    }
    assert!(c.commit(newline).is_err(), "whitespace is bounded");
}
