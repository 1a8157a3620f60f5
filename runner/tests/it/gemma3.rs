//! Gemma 3 270M (Q4_K_M) beyond the llama.cpp comparison of `generate_refs.rs`: a prompt
//! past the 512-position sliding window gives the same bits whether it comes in one batch
//! or in chunks, the model answers plain questions, and bad input is an error.

use e2e::TestModel;
use runner::kvcache::KvConfig;
use runner::model::{Batch, Logits, Model};
use runner::tokenizer::{TokenId, Tokenizer};

use crate::support;

const THREADS: usize = 2;

fn load(threads: usize) -> (Tokenizer, Box<dyn Model>) {
    support::load(TestModel::Gemma3, threads)
}

/// The GPL-3 preamble: about 600 tokens, past the window.
fn long_prompt() -> String {
    let text = std::fs::read_to_string("/usr/share/common-licenses/GPL-3").unwrap();
    let lines: Vec<&str> = text.lines().skip(9).take(58).collect();
    lines
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The long prompt in chunks of 100 tokens (each chunk attending to the keys the earlier
/// ones stored, through the window) gives the logits of the prompt in one batch, bit for
/// bit: batching never changes a token's arithmetic.
#[test]
fn chunked_prompt_past_the_window_matches_one_batch() {
    let (tokenizer, mut model) = load(THREADS);
    let prompt = tokenizer.encode(&long_prompt(), true, true);
    assert!(prompt.len() > 512 + 100, "{} tokens", prompt.len());
    let run = |model: &mut dyn Model, num_batch: usize| {
        let kv = KvConfig {
            num_batch,
            ..support::reference_cache()
        };
        support::generate(model, &tokenizer, &prompt, 1, kv).first_logits
    };
    let chunked = run(model.as_mut(), 100);
    let whole = run(model.as_mut(), 1024);
    assert!(chunked == whole, "chunked and whole prompt logits differ");
}

#[test]
fn generate_cli_answers_a_factual_question() {
    let prompt = "Question: What is the capital of France?\nAnswer:";
    let (stdout, stderr) = support::run_generate(TestModel::Gemma3, prompt, 8, &[]);
    assert!(stdout.starts_with(" Paris\n"), "{stdout:?}");
    assert!(stderr.contains("generated: 8 tokens"), "{stderr}");
}

#[test]
fn greedy_continuation_names_the_other_element() {
    let (tokenizer, mut model) = load(THREADS);
    let prompt = tokenizer.encode("Water is made of hydrogen and", true, true);
    // llama.cpp's default cache (f16 keys and values, flash attention).
    let generation = support::generate(model.as_mut(), &tokenizer, &prompt, 4, KvConfig::new(64));
    let text = tokenizer.decode(&generation.generated, false);
    assert!(text.starts_with(" oxygen"), "{text:?}");
}

#[test]
fn a_token_outside_the_vocabulary_is_an_error() {
    let (_, mut model) = load(1);
    let mut cache = runner::model::new_cache(model.as_ref(), KvConfig::reference(8)).unwrap();
    let (mut batch, mut logits) = (Batch::new(), Logits::new());
    let n_vocab = model.n_vocab() as TokenId;
    batch.push(n_vocab, 0, 0, true);
    let err = model.forward(&batch, &mut cache, &mut logits).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("token {n_vocab} is outside the vocabulary of {n_vocab}")
    );
}
