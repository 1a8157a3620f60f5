//! What several test modules need: a real model loaded with its tokenizer, and the
//! greedy sampler llama.cpp's references use.

use std::sync::Arc;

use e2e::TestModel;
use gguf::GgufFile;
use runner::kvcache::KvConfig;
use runner::model::{self, LoadOptions, Model, Numerics};
use runner::sample::{Sampler, SamplerOptions};
use runner::tokenizer::{TokenId, Tokenizer};
use runner::tools::generate::Generation;

/// The cache the reference tests run with: llama.cpp's reference path (f32 K/V, no flash
/// attention), 2048 positions, batches of up to 1024 tokens.
pub fn reference_cache() -> KvConfig {
    KvConfig {
        num_batch: 1024,
        ..KvConfig::reference(2048)
    }
}

/// The tokenizer and the model of a test model file, on `threads` threads, sized for
/// [`reference_cache`].
pub fn load(model: TestModel, threads: usize) -> (Tokenizer, Box<dyn Model>) {
    load_path(&model.path(), threads)
}

/// [`load`] for any GGUF file, such as one a test has just written.
pub fn load_path(path: &std::path::Path, threads: usize) -> (Tokenizer, Box<dyn Model>) {
    let file = Arc::new(GgufFile::open(path).unwrap());
    let tokenizer = Tokenizer::from_metadata(file.metadata()).unwrap();
    let kv = reference_cache();
    let model = model::load(
        file,
        &LoadOptions {
            threads,
            kv,
            numerics: Numerics::Exact,
            device: None,
        },
    )
    .unwrap();
    (tokenizer, model)
}

/// Greedy generation of `n` tokens after `prompt` with a fresh cache made as `kv` says.
pub fn generate(
    model: &mut dyn Model,
    tokenizer: &Tokenizer,
    prompt: &[TokenId],
    n: usize,
    kv: KvConfig,
) -> Generation {
    let mut cache = model::new_cache(model, kv).unwrap();
    runner::tools::generate::generate(
        model,
        tokenizer,
        &mut greedy(),
        prompt,
        n,
        &mut cache,
        |_| Ok(()),
    )
    .unwrap()
}

/// The tokenizer of a test model file alone.
pub fn tokenizer(model: TestModel) -> Tokenizer {
    let file = GgufFile::open(model.path()).unwrap();
    Tokenizer::from_metadata(file.metadata()).unwrap()
}

/// The flags of llama.cpp's reference path.
pub const REFERENCE_FLAGS: [&str; 8] = [
    "--numerics",
    "exact",
    "--cache-type-k",
    "f32",
    "--cache-type-v",
    "f32",
    "--flash-attention",
    "off",
];

/// `ollama-runner generate` on `prompt` for `n` tokens on 2 threads with `flags` added:
/// its stdout and stderr, after asserting it succeeded.
pub fn run_generate(model: TestModel, prompt: &str, n: usize, flags: &[&str]) -> (String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
        .arg("generate")
        .arg("--model")
        .arg(model.path())
        .args(["--prompt", prompt])
        .args(["--num-predict", &n.to_string(), "--threads", "2"])
        .args(flags)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "generate failed: {stderr}");
    (String::from_utf8(output.stdout).unwrap(), stderr)
}

/// Temperature 0 and no repeat penalty: the argmax at every step.
pub fn greedy() -> Sampler {
    Sampler::new(SamplerOptions {
        temperature: 0.0,
        repeat_penalty: 1.0,
        ..SamplerOptions::default()
    })
    .unwrap()
}

/// The number after `label` in `report`.
pub fn figure(report: &str, label: &str) -> f64 {
    let line = report
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in:\n{report}"));
    line.trim()
        .trim_end_matches('%')
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
