//! `embed-bench`: sentence-embedding throughput (sentences per second) of all-MiniLM-L6-v2,
//! ours next to llama.cpp's `llama-embedding` measured in the same run, as a markdown table.
//!
//! ```text
//! cargo run --release -p bench --bin embed-bench -- [--dir HF_DIR] [--type f32]...
//!     [--threads 2] [--sentences 32] [--reps 5] [--llama-embedding PATH]
//! ```
//!
//! The model is imported from its Hugging Face directory (`scripts/fetch-models`) into each
//! `--type` (default f32, f16, q8_0) in a temporary directory. The sentences are the first
//! `--sentences` of `runner/tests/data/embedding-refs-minilm.json`.
//!
//! Ours runs through the serving path (`service::load`, then `Engine::embed`, mean pooling
//! and L2 normalization as the model says): at batch 1, one call per sentence; at batch N,
//! one call with every sentence, packed into one forward pass. Each figure is the median of
//! `--reps` timed rounds after one warm-up round.
//!
//! llama.cpp's `llama-embedding` embeds one process's prompts in passes of at most
//! `-b` tokens, so the passes are shaped by choosing `-b` (= `-c` = `-ub`): at batch N, the
//! sentence set is given `reps + 2` times with `-b` just above its token count, so each
//! pass is exactly the set; at batch 1, each sentence gets its own process, given
//! `reps + 2` times with `-b` just above its length. A pass's time is the gap between the timestamps of
//! consecutive `batch_decode` log lines (its decode, pooling and normalization); the first
//! pass is the warm-up, the last has no successor, and the median of the rest is taken. The
//! pass shapes are checked from the same log lines (`n_seq`). Weights are read into memory
//! (`--load-mode none` for llama.cpp) on both sides, so no pass pays for page faults.

use bench::{load_average, median};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use ollama_proto::RUNNER_PROTOCOL_VERSION;
use ollama_proto::runner as pb;
use runner::engine::Engine;
use runner::import::{self, OutType};
use runner::service::load;
use runner::tokenizer::TokenId;

/// What `--help` prints: every option, what it does, its default.
const USAGE: &str = "\
embed-bench: sentence-embedding throughput of all-MiniLM-L6-v2, ours next to llama.cpp's
llama-embedding

usage: embed-bench [OPTIONS]

options:
  --dir HF_DIR            the model's Hugging Face directory (default: all-MiniLM-L6-v2 in
                          the test models' directory, from scripts/fetch-models)
  --type TYPE             a type to import the model into and measure: f32, f16, q8_0,
                          q4_0, q4_1, q5_0, q5_1, q4_k_s, q4_k_m, q5_k_s, q5_k_m or q6_k;
                          repeat for more (default: f32, f16 and q8_0)
  --threads N             compute threads (default: 2)
  --sentences N           the first N reference sentences, embedded one at a time and as
                          one batch (default: 32)
  --reps N                timed rounds, median taken, after one warm-up (default: 5)
  --llama-embedding PATH  llama.cpp's llama-embedding, measured on the same files
                          (default: not run)
  -h, --help              print this help and exit
";

struct Options {
    dir: PathBuf,
    types: Vec<OutType>,
    threads: usize,
    sentences: usize,
    reps: usize,
    llama_embedding: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut o = Options {
        dir: e2e::models_dir().join("all-MiniLM-L6-v2"),
        types: Vec::new(),
        threads: 2,
        sentences: 32,
        reps: 5,
        llama_embedding: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--dir" => o.dir = PathBuf::from(value()?),
            "--type" => o.types.push(value()?.parse().map_err(anyhow::Error::msg)?),
            "--threads" => o.threads = value()?.parse()?,
            "--sentences" => o.sentences = value()?.parse()?,
            "--reps" => o.reps = value()?.parse()?,
            "--llama-embedding" => o.llama_embedding = Some(PathBuf::from(value()?)),
            "--help" | "-h" => bench::print_usage_and_exit(USAGE),
            other => bail!("unknown argument {other:?}"),
        }
    }
    if o.types.is_empty() {
        o.types = vec![OutType::F32, OutType::F16, OutType::Q8_0];
    }
    if o.reps == 0 || o.threads == 0 || o.sentences == 0 {
        bail!("--reps, --threads and --sentences must be positive");
    }
    Ok(o)
}

/// The first `n` reference sentences.
fn sentences(n: usize) -> anyhow::Result<Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../runner/tests/data/embedding-refs-minilm.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text)?;
    let all: Vec<String> = doc["sentences"]
        .as_array()
        .context("no sentences in the references")?
        .iter()
        .filter_map(|s| s["text"].as_str().map(str::to_owned))
        .collect();
    if all.len() < n {
        bail!("--sentences {n}: the references hold {}", all.len());
    }
    Ok(all.into_iter().take(n).collect())
}

/// Our (batch 1, batch N) sentences per second for the model at `path`.
fn ours(path: &Path, texts: &[String], o: &Options) -> anyhow::Result<(f64, f64)> {
    let config = load::from_request(&pb::LoadRequest {
        protocol_version: RUNNER_PROTOCOL_VERSION,
        model_path: path.to_string_lossy().into_owned(),
        num_ctx: Some(512),
        num_parallel: Some(1),
        num_batch: Some(512),
        num_threads: o.threads as u32,
        use_mmap: Some(false),
        ..Default::default()
    })?;
    let loaded = load::load(config)?;
    let engine = &loaded.engine;
    let inputs: Vec<Vec<TokenId>> = texts
        .iter()
        .map(|t| engine.tokenizer().encode(t, true, false))
        .collect();
    let total: usize = inputs.iter().map(Vec::len).sum();
    if total > 512 {
        bail!("the sentences take {total} tokens, more than one pass of 512");
    }
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let round = |batched: bool| -> anyhow::Result<f64> {
        let start = Instant::now();
        rt.block_on(async {
            if batched {
                embed(engine, inputs.clone()).await
            } else {
                for input in &inputs {
                    embed(engine, vec![input.clone()]).await?;
                }
                Ok(())
            }
        })?;
        Ok(inputs.len() as f64 / start.elapsed().as_secs_f64())
    };
    let mut figures = [0.0; 2];
    for (figure, batched) in figures.iter_mut().zip([false, true]) {
        round(batched)?;
        let rounds: anyhow::Result<Vec<f64>> = (0..o.reps).map(|_| round(batched)).collect();
        *figure = median(rounds?);
    }
    Ok((figures[0], figures[1]))
}

async fn embed(engine: &Engine, inputs: Vec<Vec<TokenId>>) -> anyhow::Result<()> {
    let n = inputs.len();
    let out = engine.embed(inputs, true).await?;
    if out.vectors.len() != n {
        bail!("asked for {n} embeddings, got {}", out.vectors.len());
    }
    Ok(())
}

/// llama.cpp's token count of `text` (with its special tokens), from `llama-tokenize`.
fn llama_tokens(bin_dir: &Path, model: &Path, text: &str) -> anyhow::Result<usize> {
    let out = Command::new(bin_dir.join("llama-tokenize"))
        .arg("-m")
        .arg(model)
        .args(["-p", text, "--ids", "--log-disable"])
        .output()
        .context("cannot run llama-tokenize")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let ids: Vec<u64> =
        serde_json::from_str(last).with_context(|| format!("llama-tokenize printed {last:?}"))?;
    Ok(ids.len())
}

/// The median seconds of one `llama-embedding` pass over `prompts` with `-b n_batch` and
/// `-np n_parallel`, each pass holding `n_seq` prompts.
fn llama_passes(
    bin: &Path,
    model: &Path,
    prompts: &[&str],
    n_batch: usize,
    n_seq: usize,
    n_parallel: usize,
    o: &Options,
) -> anyhow::Result<f64> {
    const SEP: &str = "<#sep#>";
    let b = n_batch.to_string();
    let out = Command::new(bin)
        .arg("-m")
        .arg(model)
        .args(["-p", &prompts.join(SEP), "--embd-separator", SEP])
        .args([
            "--pooling",
            "mean",
            "--embd-normalize",
            "2",
            "--load-mode",
            "none",
            "-v",
        ])
        .args(["-t", &o.threads.to_string(), "-c", &b, "-b", &b, "-ub", &b])
        // At least 2: 1 means "unified, 256 sequences", which needs room for 256
        // outputs in a pass.
        .args(["-np", &n_parallel.to_string()])
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("llama-embedding failed: {log}");
    }
    // Lines such as `0.00.204.874 I batch_decode: n_tokens = 10, n_seq = 1`.
    let mut starts = Vec::new();
    for line in log.lines().filter(|l| l.contains("batch_decode: n_tokens")) {
        let stamp = line.split_whitespace().next().unwrap_or_default();
        let parts: Vec<f64> = stamp.split('.').filter_map(|p| p.parse().ok()).collect();
        let [min, sec, ms, us] = parts[..] else {
            bail!("unexpected timestamp in {line:?}");
        };
        let seqs = line.rsplit("n_seq = ").next().unwrap_or_default().trim();
        if seqs.parse::<usize>().ok() != Some(n_seq) {
            bail!("llama-embedding packed a pass differently than planned: {line:?}");
        }
        starts.push(min * 60.0 + sec + ms / 1e3 + us / 1e6);
    }
    if starts.len() != o.reps + 2 {
        bail!(
            "llama-embedding ran {} passes, expected {}",
            starts.len(),
            o.reps + 2
        );
    }
    let gaps: Vec<f64> = starts.windows(2).skip(1).map(|w| w[1] - w[0]).collect();
    Ok(median(gaps))
}

/// llama-embedding's (batch 1, batch N) sentences per second for the model at `path`.
///
/// llama.cpp needs `-b` to be a multiple of `-np` (its sequences per context), so a pass's
/// `-b` is rounded up; the set starts with its longest sentence, so that the next set's
/// first sentence still does not fit in the rounded pass.
fn llama(bin: &Path, path: &Path, texts: &[String], o: &Options) -> anyhow::Result<(f64, f64)> {
    let dir = bin.parent().context("llama-embedding has no directory")?;
    let mut one_by_one = 0.0;
    let mut lengths = Vec::with_capacity(texts.len());
    for text in texts {
        let n = llama_tokens(dir, path, text)?;
        lengths.push(n);
        let prompts = vec![text.as_str(); o.reps + 2];
        one_by_one += llama_passes(bin, path, &prompts, n.next_multiple_of(2), 1, 2, o)?;
    }
    let longest = (0..texts.len()).max_by_key(|&i| lengths[i]).unwrap_or(0);
    let set: Vec<&str> = std::iter::once(longest)
        .chain((0..texts.len()).filter(|&i| i != longest))
        .map(|i| texts[i].as_str())
        .collect();
    let total: usize = lengths.iter().sum();
    let n_seq = texts.len().max(2);
    let n_batch = total.next_multiple_of(n_seq);
    if n_batch - total >= lengths[longest] {
        bail!("cannot shape llama-embedding's passes: {total} tokens in {n_seq} sequences");
    }
    let prompts: Vec<&str> = (0..o.reps + 2).flat_map(|_| set.iter().copied()).collect();
    let batched = llama_passes(bin, path, &prompts, n_batch, texts.len(), n_seq, o)?;
    let n = texts.len() as f64;
    Ok((n / one_by_one, n / batched))
}

fn main() -> anyhow::Result<()> {
    let o = bench::options_or_exit(parse_args());
    let texts = sentences(o.sentences)?;
    let n = o.sentences;
    println!(
        "{}, threads {}, {n} sentences, median of {} rounds; load {}",
        o.dir.display(),
        o.threads,
        o.reps,
        load_average()
    );
    println!();
    println!("| type | ours b1 | llama.cpp b1 | ratio | ours b{n} | llama.cpp b{n} | ratio |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let tmp = std::env::temp_dir().join(format!("embed-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    for &ty in &o.types {
        let path = tmp.join(format!("minilm-{ty:?}.gguf"));
        import::convert(&o.dir, &path, ty, &mut |_, _, _| {})
            .with_context(|| format!("cannot import {}", o.dir.display()))?;
        let (b1, bn) = ours(&path, &texts, &o)?;
        match &o.llama_embedding {
            Some(bin) => {
                let (l1, ln) = llama(bin, &path, &texts, &o)?;
                println!(
                    "| {ty:?} | {b1:.1} | {l1:.1} | {:.2} | {bn:.1} | {ln:.1} | {:.2} |",
                    b1 / l1,
                    bn / ln
                );
            }
            None => println!("| {ty:?} | {b1:.1} | | | {bn:.1} | | |"),
        }
        std::fs::remove_file(&path)?;
    }
    std::fs::remove_dir_all(&tmp)?;
    println!();
    println!("load after: {}", load_average());
    Ok(())
}
