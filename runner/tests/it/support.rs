//! What several test modules need: a real model loaded with its tokenizer, and the
//! greedy sampler llama.cpp's references use.

use std::sync::Arc;

use e2e::TestModel;
use gguf::GgufFile;
use runner::model::{self, LoadOptions, Model};
use runner::sample::{Sampler, SamplerOptions};
use runner::tokenizer::Tokenizer;

/// The tokenizer and the model of a test model file, on `threads` threads.
pub fn load(model: TestModel, threads: usize) -> (Tokenizer, Box<dyn Model>) {
    let file = Arc::new(GgufFile::open(model.path()).unwrap());
    let tokenizer = Tokenizer::from_metadata(file.metadata()).unwrap();
    let model = model::load(file, &LoadOptions { threads }).unwrap();
    (tokenizer, model)
}

/// The tokenizer of a test model file alone.
pub fn tokenizer(model: TestModel) -> Tokenizer {
    let file = GgufFile::open(model.path()).unwrap();
    Tokenizer::from_metadata(file.metadata()).unwrap()
}

/// `ollama-runner generate` on `prompt` for `n` tokens on 2 threads: its stdout and
/// stderr, after asserting it succeeded.
pub fn run_generate(model: TestModel, prompt: &str, n: usize) -> (String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
        .arg("generate")
        .arg("--model")
        .arg(model.path())
        .args(["--prompt", prompt])
        .args(["--num-predict", &n.to_string(), "--threads", "2"])
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
