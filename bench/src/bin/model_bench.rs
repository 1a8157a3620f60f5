//! `model-bench`: prompt and generation speed of real models, ours next to llama.cpp's
//! measured in the same run, as a markdown table.
//!
//! ```text
//! cargo run --release -p bench --bin model-bench -- [--model PATH]... [--threads 2]
//!     [--prompt 512] [--gen 128] [--reps 3] [--llama-bench PATH]
//! ```
//!
//! Without `--model` it measures both test models (`scripts/fetch-models`). The prompt
//! figure is one forward pass over `--prompt` tokens from an empty cache; the generation
//! figure is `--gen` single-token passes from position 0, as `llama-bench`'s `pp` and
//! `tg` tests do. Each figure is the median of `--reps` timed runs after one warm-up.
//! With `--llama-bench` (llama.cpp's `llama-bench`), its `-p`/`-n` figures for the same
//! model, threads and repetitions are taken right after ours, at llama.cpp's defaults.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use gguf::GgufFile;
use runner::model::{self, Batch, KvStore, LoadOptions, Logits, Model};

struct Options {
    models: Vec<PathBuf>,
    threads: usize,
    prompt: usize,
    gen_tokens: usize,
    reps: usize,
    llama_bench: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut o = Options {
        models: Vec::new(),
        threads: 2,
        prompt: 512,
        gen_tokens: 128,
        reps: 3,
        llama_bench: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--model" => o.models.push(PathBuf::from(value()?)),
            "--threads" => o.threads = value()?.parse()?,
            "--prompt" => o.prompt = value()?.parse()?,
            "--gen" => o.gen_tokens = value()?.parse()?,
            "--reps" => o.reps = value()?.parse()?,
            "--llama-bench" => o.llama_bench = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument {other}"),
        }
    }
    if o.models.is_empty() {
        o.models = [e2e::TestModel::SmolLm2, e2e::TestModel::Gemma3]
            .iter()
            .map(|m| m.path())
            .collect();
    }
    if o.reps == 0 || o.prompt == 0 || o.gen_tokens == 0 || o.threads == 0 {
        bail!("--reps, --prompt, --gen and --threads must be positive");
    }
    Ok(o)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Token ids spread over the vocabulary, the same for every run.
fn tokens(n: usize, n_vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i as u64 * 2_654_435_761 + 12_345) % n_vocab as u64) as u32)
        .collect()
}

/// Tokens per second of one prompt pass and of `gen` single-token passes.
fn measure(model: &mut dyn Model, prompt: usize, gen_tokens: usize) -> anyhow::Result<(f64, f64)> {
    let ids = tokens(prompt.max(gen_tokens), model.n_vocab());
    let mut cache = KvStore::new(model.kv_shape(), prompt.max(gen_tokens), 1)?;
    let (mut batch, mut logits) = (Batch::new(), Logits::new());
    for (i, &t) in ids[..prompt].iter().enumerate() {
        batch.push(t, i32::try_from(i)?, 0, i + 1 == prompt);
    }
    let start = Instant::now();
    model.forward(&batch, &mut cache, &mut logits)?;
    let pp = prompt as f64 / start.elapsed().as_secs_f64();

    cache.truncate(0, 0);
    let start = Instant::now();
    for (i, &t) in ids[..gen_tokens].iter().enumerate() {
        batch.clear();
        batch.push(t, i32::try_from(i)?, 0, true);
        model.forward(&batch, &mut cache, &mut logits)?;
    }
    let tg = gen_tokens as f64 / start.elapsed().as_secs_f64();
    Ok((pp, tg))
}

/// llama-bench's median `pp` and `tg` figures (tokens per second) for `model`.
fn llama_bench(bin: &PathBuf, model: &PathBuf, o: &Options) -> anyhow::Result<(f64, f64)> {
    let out = Command::new(bin)
        .arg("-m")
        .arg(model)
        .args(["-p", &o.prompt.to_string(), "-n", &o.gen_tokens.to_string()])
        .args([
            "-t",
            &o.threads.to_string(),
            "-r",
            &o.reps.to_string(),
            "-o",
            "json",
        ])
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "llama-bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tests: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    let figure = |prompt: bool| -> anyhow::Result<f64> {
        let test = tests
            .iter()
            .find(|t| (t["n_prompt"].as_u64().unwrap_or(0) > 0) == prompt)
            .context("llama-bench printed no such test")?;
        let samples: Vec<f64> = test["samples_ts"]
            .as_array()
            .context("no samples_ts")?
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect();
        if samples.is_empty() {
            bail!("llama-bench printed no samples");
        }
        Ok(median(samples))
    };
    Ok((figure(true)?, figure(false)?))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() -> anyhow::Result<()> {
    let o = parse_args()?;
    println!(
        "threads {}, prompt {} tokens, generation {} tokens, median of {} runs; load {}",
        o.threads,
        o.prompt,
        o.gen_tokens,
        o.reps,
        load_average()
    );
    println!();
    println!("| model | ours pp | llama.cpp pp | ratio | ours tg | llama.cpp tg | ratio |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for path in &o.models {
        let file = Arc::new(GgufFile::open(path)?);
        let mut model = model::load(file, &LoadOptions { threads: o.threads })?;
        measure(model.as_mut(), o.prompt.min(64), o.gen_tokens.min(8))?;
        let mut runs = Vec::new();
        for _ in 0..o.reps {
            runs.push(measure(model.as_mut(), o.prompt, o.gen_tokens)?);
        }
        drop(model);
        let pp = median(runs.iter().map(|r| r.0).collect());
        let tg = median(runs.iter().map(|r| r.1).collect());
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        match &o.llama_bench {
            Some(bin) => {
                let (lpp, ltg) = llama_bench(bin, path, &o)?;
                println!(
                    "| {name} | {pp:.1} | {lpp:.1} | {:.2} | {tg:.1} | {ltg:.1} | {:.2} |",
                    pp / lpp,
                    tg / ltg
                );
            }
            None => println!("| {name} | {pp:.1} | | | {tg:.1} | | |"),
        }
    }
    println!();
    println!("load after: {}", load_average());
    Ok(())
}
