//! `format-bench`: what structured output (`format`, a JSON schema) costs per generated
//! token, next to free text, through the runner's real engine.
//!
//! ```text
//! cargo run --release -p bench --bin format-bench -- [--model PATH]... [--threads 2]
//!     [--reps 5]
//! ```
//!
//! Without `--model` it measures both test models (`scripts/fetch-models`). Each rep runs
//! one greedy free-text generation (96 tokens at most) and one constrained by a schema
//! of six fields (the car of `runner/tests/data/json-schemas.json`), alternating, and
//! times each from its first token to its last (`Timings.generation_duration`), so the
//! prompt is left out. It prints the medians per token and their ratio; the constraint's
//! own work per token (mask, masked logits, advance) timed alone by replaying the tokens
//! of the last constrained run, which the noise of a shared machine cannot hide; and the
//! one-time costs: building the vocabulary's trie (the first request with a format on a
//! model) and compiling the schema.

use bench::median;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ollama_proto::runner as pb;
use runner::engine::{Engine, Event, GenerateJob};
use runner::grammar::Grammars;
use runner::service::load;
use runner::tokenizer::TokenId;

/// The schema the constrained runs use.
const SCHEMA: &str = r#"{"type":"object","properties":{"make":{"type":"string","maxLength":20},
"model":{"type":"string","maxLength":20},"year":{"type":"integer","minimum":1950,"maximum":2030},
"electric":{"type":"boolean"},"colour":{"enum":["black","white","red","blue"]},
"doors":{"type":"integer","minimum":2,"maximum":5}},
"required":["make","model","year","electric"],"additionalProperties":false}"#;

/// What `--help` prints: every option, what it does, its default.
const USAGE: &str = "\
format-bench: what structured output (a JSON schema `format`) costs per generated token,
next to free text

usage: format-bench [OPTIONS]

options:
  --model PATH  a GGUF model to measure; repeat for more (default: both test models,
                SmolLM2 and Gemma3, from scripts/fetch-models)
  --threads N   compute threads (default: 2)
  --reps N      free-text and constrained runs each, medians taken (default: 5)
  -h, --help    print this help and exit
";

struct Options {
    models: Vec<PathBuf>,
    threads: u32,
    reps: usize,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut o = Options {
        models: Vec::new(),
        threads: 2,
        reps: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--model" => o.models.push(PathBuf::from(value()?)),
            "--threads" => o.threads = value()?.parse()?,
            "--reps" => o.reps = value()?.parse()?,
            "--help" | "-h" => bench::print_usage_and_exit(USAGE),
            other => bail!("unknown argument {other:?}"),
        }
    }
    if o.models.is_empty() {
        o.models = [e2e::TestModel::SmolLm2, e2e::TestModel::Gemma3]
            .iter()
            .map(|m| m.path())
            .collect();
    }
    if o.reps == 0 || o.threads == 0 {
        bail!("--reps and --threads must be positive");
    }
    Ok(o)
}

/// A user turn in the chat format of the model's vocabulary.
fn chat(engine: &Engine, ask: &str) -> String {
    if engine.tokenizer().vocab().id("<start_of_turn>").is_some() {
        format!("<start_of_turn>user\n{ask}<end_of_turn>\n<start_of_turn>model\n")
    } else {
        format!("<|im_start|>user\n{ask}<|im_end|>\n<|im_start|>assistant\n")
    }
}

/// Runs `job` to its end: milliseconds per token after the first, and the tokens.
fn per_token(engine: &Engine, job: GenerateJob) -> anyhow::Result<(f64, Vec<TokenId>)> {
    let mut events = engine.generate(job)?;
    let mut tokens = Vec::new();
    while let Some(event) = events.blocking_recv() {
        match event {
            Event::Piece { token, .. } => tokens.extend(token.map(|t| t.id)),
            Event::Done { timings, .. } => {
                let n = timings.generated_tokens;
                if n < 8 {
                    bail!("only {n} tokens generated: too few to time");
                }
                let ms = timings.generation_duration.as_secs_f64() * 1e3 / (n - 1) as f64;
                return Ok((ms, tokens));
            }
            Event::Failed(e) => bail!("generation failed: {e}"),
        }
    }
    bail!("the engine stopped without Done")
}

fn job(engine: &Engine, ask: &str, schema: Option<&str>) -> GenerateJob {
    let prompt = engine.tokenizer().encode(&chat(engine, ask), true, true);
    GenerateJob {
        json_schema: schema.map(str::to_owned),
        ..GenerateJob::greedy(prompt, Some(96))
    }
}

/// Median time of `f` over 5 calls.
fn time(mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let mut t = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        f()?;
        t.push(start.elapsed().as_secs_f64());
    }
    Ok(Duration::from_secs_f64(median(t)))
}

fn bench(path: &Path, o: &Options) -> anyhow::Result<()> {
    let config = load::from_request(&pb::LoadRequest {
        protocol_version: ollama_proto::RUNNER_PROTOCOL_VERSION,
        model_path: path.display().to_string(),
        num_threads: o.threads,
        ..Default::default()
    })
    .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    let loaded = load::load(config)?;
    let engine = &loaded.engine;
    let tokenizer = Arc::clone(engine.tokenizer());
    let first = time(|| {
        Grammars::new(Arc::clone(&tokenizer)).compile(SCHEMA)?;
        Ok(())
    })?;
    let warm = Grammars::new(Arc::clone(&tokenizer));
    warm.compile(SCHEMA)?;
    let compile = time(|| {
        warm.compile(SCHEMA)?;
        Ok(())
    })?;
    // Warm-up: the engine builds its own trie on its first constrained request.
    per_token(engine, job(engine, "Describe a car as JSON.", Some(SCHEMA)))?;
    per_token(engine, job(engine, "Tell a long story about a car.", None))?;
    let (mut free, mut constrained) = (Vec::new(), Vec::new());
    let (mut free_n, mut constrained_n, mut replay) = (0, 0, Vec::new());
    for _ in 0..o.reps {
        let (ms, n) = per_token(engine, job(engine, "Tell a long story about a car.", None))?;
        free.push(ms);
        free_n = n.len();
        let (ms, n) = per_token(engine, job(engine, "Describe a car as JSON.", Some(SCHEMA)))?;
        constrained.push(ms);
        constrained_n = n.len();
        replay = n;
    }
    // The same tokens through a fresh constraint, with nothing else timed.
    let logits = vec![0.0f32; tokenizer.vocab().len()];
    let step = time(|| {
        let mut c = warm.compile(SCHEMA)?;
        for &t in &replay {
            c.mask(&logits)?;
            c.commit(t)?;
        }
        Ok(())
    })?
    .as_secs_f64()
        * 1e6
        / replay.len() as f64;
    let (free, constrained) = (median(free), median(constrained));
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    println!(
        "| {name} | {} | {free:.2} ({free_n} tokens) | {constrained:.2} ({constrained_n} tokens) | {:.2} | {step:.0} ({:.1}%) | {:.0} | {:.2} |",
        tokenizer.vocab().len(),
        constrained / free,
        step / (free * 1e3) * 100.0,
        first.as_secs_f64() * 1e3,
        compile.as_secs_f64() * 1e3,
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let o = bench::options_or_exit(parse_args());
    println!(
        "{} threads, median of {} reps, greedy, milliseconds per generated token",
        o.threads, o.reps
    );
    println!();
    println!(
        "| model | vocabulary | free text ms/token | schema ms/token | ratio | constraint alone µs/token (of free text's) | first format on a model: trie + compile (ms) | compile (ms) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for path in &o.models {
        bench(path, &o)?;
    }
    Ok(())
}
