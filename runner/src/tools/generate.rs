//! `ollama-runner generate`: runs a prompt through the model and prints the continuation.
//!
//! The prompt is tokenized raw (special tokens added and parsed, so a chat template can
//! be written into it), prefilled in chunks of `--batch` tokens, then decoded one token
//! at a time until `--num-predict` tokens or an end-of-generation token. Only the
//! generated text goes to stdout, streamed as whole UTF-8 characters; timings go to
//! stderr. Greedy by default (`--temperature 0`, no repeat penalty), so the output is
//! the model's argmax continuation, comparable with llama.cpp's.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use gguf::GgufFile;

use super::cache_args::{CacheArgs, describe};
use crate::kvcache::KvCache;
use crate::model::{self, Batch, LoadOptions, Logits, Model};
use crate::sample::{Sampler, SamplerOptions};
use crate::tokenizer::{TokenId, Tokenizer, Utf8Stream};

/// Arguments of `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The GGUF model file.
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt, tokenized as is (write a chat template into it yourself).
    #[arg(long)]
    pub prompt: String,
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 128)]
    pub num_predict: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// The sampler's seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = SamplerOptions::default().top_k)]
    pub top_k: usize,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = SamplerOptions::default().top_p)]
    pub top_p: f32,
    /// Repeat penalty (1: off, the default here so greedy output is the argmax).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Compute threads.
    #[arg(long, default_value_t = default_threads())]
    pub threads: usize,
    /// Context length (prompt plus generated tokens).
    #[arg(long, default_value_t = 2048)]
    pub num_ctx: usize,
    /// Prompt tokens per forward pass.
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// The K/V cache.
    #[command(flatten)]
    pub cache: CacheArgs,
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What a generation produced, with its timings.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The prompt's tokens.
    pub prompt_tokens: Vec<TokenId>,
    /// The generated tokens, the end-of-generation token included if one came.
    pub generated: Vec<TokenId>,
    /// The logits after the last prompt token.
    pub first_logits: Vec<f32>,
    /// Time spent on the prompt.
    pub prompt_time: Duration,
    /// Time spent decoding.
    pub decode_time: Duration,
}

/// Runs `prompt_tokens` through `model` (in passes of the cache's `num_batch` tokens,
/// sequence 0 of `cache`, which is cleared first) and samples up to `num_predict` tokens,
/// calling `on_token` with each one as it comes.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    model: &mut dyn Model,
    tokenizer: &Tokenizer,
    sampler: &mut Sampler,
    prompt_tokens: &[TokenId],
    num_predict: usize,
    cache: &mut KvCache,
    mut on_token: impl FnMut(TokenId) -> anyhow::Result<()>,
) -> anyhow::Result<Generation> {
    anyhow::ensure!(!prompt_tokens.is_empty(), "the prompt has no tokens");
    cache.clear();
    let batch_size = cache.config().num_batch;
    let mut batch = Batch::new();
    let mut logits = Logits::new();

    let start = Instant::now();
    let mut pos = 0usize;
    for chunk in prompt_tokens.chunks(batch_size) {
        batch.clear();
        for &t in chunk {
            batch.push(t, pos_i32(pos)?, 0, pos + 1 == prompt_tokens.len());
            pos += 1;
        }
        model.forward(&batch, cache, &mut logits)?;
    }
    let prompt_time = start.elapsed();
    let first_logits = logits.last().context("no logits for the prompt")?.to_vec();

    let start = Instant::now();
    let mut history = prompt_tokens.to_vec();
    let mut generated = Vec::new();
    while generated.len() < num_predict {
        let row = logits.last().context("no logits")?;
        let token = sampler.next_token(row, &history);
        generated.push(token);
        history.push(token);
        on_token(token)?;
        if tokenizer.vocab().is_end_of_generation(token) || generated.len() == num_predict {
            break;
        }
        batch.clear();
        batch.push(token, pos_i32(pos)?, 0, true);
        pos += 1;
        model.forward(&batch, cache, &mut logits)?;
    }
    Ok(Generation {
        prompt_tokens: prompt_tokens.to_vec(),
        generated,
        first_logits,
        prompt_time,
        decode_time: start.elapsed(),
    })
}

fn pos_i32(pos: usize) -> anyhow::Result<i32> {
    i32::try_from(pos).context("position does not fit in i32")
}

fn per_second(n: usize, time: Duration) -> f64 {
    n as f64 / time.as_secs_f64().max(1e-9)
}

/// Generates and prints the continuation of the prompt.
pub fn run(args: &GenerateArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let file = GgufFile::open(&args.model)?;
    let tokenizer = Tokenizer::from_metadata(file.metadata())?;
    let kv = args.cache.config(args.num_ctx, 1, args.batch);
    let options = LoadOptions {
        threads: args.threads,
        kv,
        numerics: args.cache.numerics()?,
        device: args.cache.device()?,
    };
    let file = model::prepare(file, &options)?;
    let mut model = model::load(Arc::clone(&file), &options)?;
    let mut sampler = Sampler::new(SamplerOptions {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        repeat_penalty: args.repeat_penalty,
        seed: args.seed,
        ..SamplerOptions::default()
    })?;
    let prompt = tokenizer.encode(&args.prompt, true, true);
    anyhow::ensure!(
        prompt.len() + args.num_predict <= args.num_ctx,
        "{} prompt tokens plus {} to generate do not fit in a context of {}",
        prompt.len(),
        args.num_predict,
        args.num_ctx
    );
    let mut cache = model::new_cache(model.as_ref(), kv)?;
    eprintln!("{}", describe(&cache));
    let mut stream = Utf8Stream::new();
    let generation = generate(
        model.as_mut(),
        &tokenizer,
        &mut sampler,
        &prompt,
        args.num_predict,
        &mut cache,
        |token| {
            if !tokenizer.vocab().is_end_of_generation(token) {
                out.write_all(stream.push(&tokenizer.token_bytes(token, false)).as_bytes())?;
                out.flush()?;
            }
            Ok(())
        },
    )?;
    out.write_all(stream.finish().as_bytes())?;
    writeln!(out)?;
    let (np, ng) = (generation.prompt_tokens.len(), generation.generated.len());
    eprintln!(
        "prompt: {np} tokens in {:.3} s ({:.1} tok/s)",
        generation.prompt_time.as_secs_f64(),
        per_second(np, generation.prompt_time)
    );
    // The first generated token comes from the prompt's logits: decode time covers the
    // other forward passes.
    eprintln!(
        "generated: {ng} tokens in {:.3} s ({:.1} tok/s, {} threads)",
        generation.decode_time.as_secs_f64(),
        per_second(ng.saturating_sub(1), generation.decode_time),
        args.threads
    );
    Ok(())
}
