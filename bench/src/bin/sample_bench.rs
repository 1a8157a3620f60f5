//! `sample-bench`: the time the sampler takes per token over a real vocabulary's logits,
//! for the option sets requests use: greedy, greedy with Ollama's repeat penalty, and
//! Ollama's defaults (temperature 0.8, top-k 40, top-p 0.9, repeat penalty 1.1 over the
//! last 64 tokens).
//!
//! ```text
//! cargo run --release -p bench --bin sample-bench -- [--vocab 49152] [--reps 2000]
//! ```
//!
//! The sampler runs on the engine's thread once per sequence per decode step, while the
//! kernel pool's other threads wait: with four streams its time is paid four times a step.
//! The logits are a fixed pseudo-random draw shaped like a model's (a few high values over
//! a broad low mass); the history is 64 tokens of it. Figures are the median of 7 runs.

use std::time::Instant;

use anyhow::{Context, bail};
use runner::sample::{Sampler, SamplerOptions};

const USAGE: &str = "\
sample-bench: microseconds per token of the sampler, for greedy and Ollama's default options

usage: sample-bench [OPTIONS]

options:
  --vocab N   logits per token (default: 49152, SmolLM2's vocabulary)
  --reps N    tokens sampled per run (default: 2000)
  -h, --help  print this help and exit
";

struct Options {
    vocab: usize,
    reps: usize,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut o = Options {
        vocab: 49_152,
        reps: 2_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--vocab" => o.vocab = value()?.parse()?,
            "--reps" => o.reps = value()?.parse()?,
            "--help" | "-h" => bench::print_usage_and_exit(USAGE),
            other => bail!("unknown argument {other:?}"),
        }
    }
    if o.vocab == 0 || o.reps == 0 {
        bail!("--vocab and --reps must be positive");
    }
    Ok(o)
}

fn main() -> anyhow::Result<()> {
    let Options { vocab, reps } = bench::options_or_exit(parse_args());
    let logits = logits(vocab);
    let history: Vec<u32> = (0..64u32).map(|i| (i * 7_919) % vocab as u32).collect();
    let greedy = SamplerOptions {
        temperature: 0.0,
        repeat_penalty: 1.0,
        ..SamplerOptions::default()
    };
    let greedy_penalty = SamplerOptions {
        temperature: 0.0,
        ..SamplerOptions::default()
    };
    let cases = [
        ("greedy", greedy),
        ("greedy, repeat penalty 1.1", greedy_penalty),
        ("Ollama's defaults", SamplerOptions::default()),
    ];
    println!("| options ({vocab} logits) | µs per token |");
    println!("|---|---:|");
    for (name, options) in cases {
        let mut sampler = Sampler::new(options)?;
        let mut runs = Vec::new();
        let mut sink = 0u64;
        for _ in 0..7 {
            let start = Instant::now();
            for _ in 0..reps {
                sink = sink.wrapping_add(u64::from(sampler.next_token(&logits, &history)));
            }
            runs.push(start.elapsed().as_secs_f64() * 1e6 / reps as f64);
        }
        runs.sort_by(f64::total_cmp);
        std::hint::black_box(sink);
        println!("| {name} | {:.1} |", runs[3]);
    }
    Ok(())
}

/// Logits shaped like a model's: most between -10 and 0, a few dozen up to 10 higher.
fn logits(vocab: usize) -> Vec<f32> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..vocab)
        .map(|i| {
            let base = -10.0 * next();
            if i % 1_500 == 0 {
                base + 20.0 * next()
            } else {
                base
            }
        })
        .collect()
}
