//! Our tokenizers against llama.cpp's tokens for a corpus of prose, code, numbers,
//! whitespace runs, emoji, CJK and chat-template special tokens, on both real models
//! (references from `scripts/make-tokenizer-refs.py`), and lossless streaming decode.

use std::collections::HashMap;

use e2e::TestModel;
use gguf::GgufFile;
use runner::tokenizer::{TokenId, Tokenizer, Utf8Stream};

fn data(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[derive(serde::Deserialize)]
struct Modes {
    plain: Vec<Vec<TokenId>>,
    special: Vec<Vec<TokenId>>,
}

fn check(model: TestModel) {
    check_file(&model.path(), model.file_name(), "tokenizer-refs.json");
}

/// Our tokens against `refs` (a file of tests/data) for the model at `path`, whose file
/// name `name` keys the references.
fn check_file(path: &std::path::Path, name: &str, refs: &str) {
    let corpus: Vec<String> = serde_json::from_str(&data("tokenizer-corpus.json")).unwrap();
    let mut refs: HashMap<String, serde_json::Value> = serde_json::from_str(&data(refs)).unwrap();
    let refs: Modes = serde_json::from_value(refs.remove(name).unwrap()).unwrap();
    let file = GgufFile::open(path).unwrap();
    let tokenizer = Tokenizer::from_metadata(file.metadata()).unwrap();
    for (i, text) in corpus.iter().enumerate() {
        let plain = tokenizer.encode(text, true, false);
        assert_eq!(plain, refs.plain[i], "{}: plain tokens of {text:?}", name);
        let special = tokenizer.encode(text, true, true);
        assert_eq!(
            special, refs.special[i],
            "{}: special tokens of {text:?}",
            name
        );

        let mut stream = Utf8Stream::new();
        let mut decoded = String::new();
        for &id in &plain {
            let piece = stream.push(&tokenizer.token_bytes(id, false));
            assert!(
                !piece.contains('\u{FFFD}'),
                "a piece split a character: {piece:?}"
            );
            decoded.push_str(&piece);
        }
        decoded.push_str(&stream.finish());
        assert_eq!(&decoded, text, "{}: decode(encode(text))", name);
    }
}

#[test]
fn smollm2_tokens_equal_llama_cpp() {
    check(TestModel::SmolLm2);
}

#[test]
fn gemma3_tokens_equal_llama_cpp() {
    check(TestModel::Gemma3);
}

/// The `qwen2` and `llama-bpe` pre-tokenizers (SmolLM2's vocabulary in the synthetic
/// models of `scripts/make-synthetic-models.py`), and Gemma 3's SentencePiece vocabulary
/// as the gemma2 and phi3 models carry it, against `llama-tokenize`
/// (`tokenizer-refs-synthetic.json`, from `scripts/make-synthetic-refs.sh`).
#[test]
fn synthetic_pre_tokenizers_equal_llama_cpp() {
    for arch in ["qwen2", "llama", "gemma2"] {
        let path = e2e::synthetic_model(arch, "F32");
        let name = format!("{arch}-synthetic-F32.gguf");
        check_file(&path, &name, "tokenizer-refs-synthetic.json");
    }
}
