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

/// Temperature 0 and no repeat penalty: the argmax at every step.
pub fn greedy() -> Sampler {
    Sampler::new(SamplerOptions {
        temperature: 0.0,
        repeat_penalty: 1.0,
        ..SamplerOptions::default()
    })
    .unwrap()
}
