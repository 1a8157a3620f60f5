//! `ollama-runner bench`: prompt and generation speed at a given depth of context, with
//! the cache types and attention path chosen, like `llama-bench -p -n -d`; and the memory
//! the run took against its estimate.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use gguf::GgufFile;
use serde::Serialize;

use super::cache_args::{CacheArgs, describe};
use crate::estimate::{Estimate, estimate, mib};
use crate::kvcache::KvCache;
use crate::model::{self, Batch, LoadOptions, Logits, Model};

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The GGUF model file.
    #[arg(long)]
    pub model: PathBuf,
    /// Prompt tokens per prompt run.
    #[arg(short = 'p', long = "prompt", default_value_t = 512)]
    pub prompt: usize,
    /// Tokens generated per generation run.
    #[arg(short = 'n', long = "gen", default_value_t = 128)]
    pub gen_tokens: usize,
    /// Tokens already in the cache before each run.
    #[arg(short = 'd', long, default_value_t = 0)]
    pub depth: usize,
    /// Runs of each; the median is reported.
    #[arg(short = 'r', long, default_value_t = 3)]
    pub reps: usize,
    /// Tokens per forward pass.
    #[arg(long, default_value_t = 512)]
    pub num_batch: usize,
    /// Sequences generating at once: each generation step decodes one token of each, as
    /// a server with this many busy slots does, and tg counts all of them.
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Positions the cache holds (default: just enough for the depth and the runs).
    #[arg(long)]
    pub num_ctx: Option<usize>,
    /// Compute threads.
    #[arg(short = 't', long, default_value_t = super::default_threads())]
    pub threads: usize,
    /// The K/V cache.
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Median speeds of one configuration.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Speeds {
    /// Prompt tokens per second (0 when no prompt was run).
    pub pp: f64,
    /// Generated tokens per second (0 when nothing was generated).
    pub tg: f64,
}

/// Memory the run took, measured, next to the estimate.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Memory {
    /// What [`estimate`] said before loading.
    pub estimate: Estimate,
    /// Bytes the runner allocated: weights mapped, cache and scratch as allocated.
    pub allocated_bytes: usize,
    /// The cache as allocated.
    pub kv_allocated_bytes: usize,
    /// Scratch as allocated (the model's and one row of logits).
    pub compute_allocated_bytes: usize,
    /// Resident memory growth of the process from before loading to after the runs
    /// (0 where `/proc` is missing).
    pub rss_growth_bytes: usize,
}

/// Resident bytes of this process, from `/proc/self/statm` (Linux).
pub fn rss_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Fills sequence `seq` of `cache` with `depth` tokens (in passes of its batch size),
/// untimed.
fn fill(
    model: &mut dyn Model,
    cache: &mut KvCache,
    ids: &[u32],
    depth: usize,
    seq: usize,
) -> anyhow::Result<()> {
    let (mut batch, mut logits) = (Batch::new(), Logits::new());
    let num_batch = cache.config().num_batch;
    for first in (0..depth).step_by(num_batch) {
        batch.clear();
        for p in first..(first + num_batch).min(depth) {
            batch.push(ids[(p + seq) % ids.len()], i32::try_from(p)?, seq, false);
        }
        model.forward(&batch, cache, &mut logits)?;
    }
    Ok(())
}

/// Tokens per second of a `prompt`-token prompt (in sequence 0) and of `gen_tokens`
/// generation steps of one token in each of `parallel` sequences, each after `depth`
/// tokens of context.
pub fn measure(
    model: &mut dyn Model,
    cache: &mut KvCache,
    prompt: usize,
    gen_tokens: usize,
    depth: usize,
    parallel: usize,
) -> anyhow::Result<Speeds> {
    let n_vocab = model.n_vocab() as u64;
    let ids: Vec<u32> = (0..4096u64)
        .map(|i| ((i * 2_654_435_761 + 12_345) % n_vocab) as u32)
        .collect();
    cache.clear();
    for seq in 0..parallel {
        fill(model, cache, &ids, depth, seq)?;
    }
    let (mut batch, mut logits) = (Batch::new(), Logits::new());
    let num_batch = cache.config().num_batch;
    let mut pp = 0.0;
    if prompt > 0 {
        let start = Instant::now();
        for first in (depth..depth + prompt).step_by(num_batch) {
            batch.clear();
            let last = (first + num_batch).min(depth + prompt);
            for p in first..last {
                batch.push(
                    ids[p % ids.len()],
                    i32::try_from(p)?,
                    0,
                    p + 1 == depth + prompt,
                );
            }
            model.forward(&batch, cache, &mut logits)?;
        }
        pp = prompt as f64 / start.elapsed().as_secs_f64();
        cache.seq_rm(0, i32::try_from(depth)?..i32::MAX);
    }
    let mut tg = 0.0;
    if gen_tokens > 0 {
        let start = Instant::now();
        for p in depth..depth + gen_tokens {
            batch.clear();
            for seq in 0..parallel {
                batch.push(ids[(p + seq) % ids.len()], i32::try_from(p)?, seq, true);
            }
            model.forward(&batch, cache, &mut logits)?;
        }
        tg = (gen_tokens * parallel) as f64 / start.elapsed().as_secs_f64();
    }
    Ok(Speeds { pp, tg })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Loads the model, runs the benchmark and prints speeds and memory.
pub fn run(args: &BenchArgs, out: &mut impl Write) -> anyhow::Result<()> {
    anyhow::ensure!(args.reps > 0, "--reps must be at least 1");
    // The cache refuses 0 and more sequences than it can tell apart; a step must fit a pass.
    anyhow::ensure!(
        args.parallel <= args.num_batch,
        "--parallel {} does not fit in a pass of --num-batch {} tokens",
        args.parallel,
        args.num_batch
    );
    // Finding the device loads the Vulkan drivers present (lavapipe maps LLVM): memory
    // the process takes whatever it runs, not the model's, so it is not counted below.
    let device = args.cache.device()?;
    let rss_before = rss_bytes();
    let file = GgufFile::open(&args.model)?;
    let needed = (args.depth + args.prompt.max(args.gen_tokens)).max(1);
    let num_ctx = args.num_ctx.unwrap_or(needed);
    anyhow::ensure!(
        num_ctx >= needed,
        "--num-ctx {num_ctx} cannot hold a depth of {} and runs of {} tokens",
        args.depth,
        args.prompt.max(args.gen_tokens)
    );
    let kv = args.cache.config(num_ctx, args.parallel, args.num_batch);
    let estimate = estimate(&file, &kv, args.threads, device.is_some())?;
    let options = LoadOptions {
        threads: args.threads,
        kv,
        numerics: args.cache.numerics()?,
        device,
    };
    let file = model::prepare(file, &options)?;
    let mut model = model::load(Arc::clone(&file), &options)?;
    let mut cache = model::new_cache(model.as_ref(), kv)?;
    if !args.json {
        writeln!(out, "{}", describe(&cache))?;
    }
    let mut runs = Vec::with_capacity(args.reps);
    for _ in 0..args.reps {
        runs.push(measure(
            model.as_mut(),
            &mut cache,
            args.prompt,
            args.gen_tokens,
            args.depth,
            args.parallel,
        )?);
    }
    let speeds = Speeds {
        pp: median(runs.iter().map(|r| r.pp).collect()),
        tg: median(runs.iter().map(|r| r.tg).collect()),
    };
    let logits = model.n_vocab() * 4;
    let memory = Memory {
        estimate,
        allocated_bytes: estimate.weights_bytes
            + cache.bytes().total()
            + model.scratch_bytes()
            + logits,
        kv_allocated_bytes: cache.bytes().total(),
        compute_allocated_bytes: model.scratch_bytes() + logits,
        rss_growth_bytes: rss_bytes()
            .zip(rss_before)
            .map_or(0, |(after, before)| after.saturating_sub(before)),
    };
    if args.json {
        let value = serde_json::json!({
            "model": args.model.display().to_string(),
            "prompt": args.prompt,
            "gen": args.gen_tokens,
            "depth": args.depth,
            "threads": args.threads,
            "parallel": args.parallel,
            "type_k": kv.type_k.name(),
            "type_v": kv.type_v.name(),
            "flash_attention": kv.flash_attention,
            "pp": speeds.pp,
            "tg": speeds.tg,
            "memory": memory,
        });
        writeln!(out, "{value}")?;
        return Ok(());
    }
    writeln!(
        out,
        "pp{} @ d{}: {:.1} tok/s; tg{} @ d{}{}: {:.1} tok/s (median of {}, {} threads)",
        args.prompt,
        args.depth,
        speeds.pp,
        args.gen_tokens,
        args.depth,
        if args.parallel > 1 {
            format!(" x {} sequences", args.parallel)
        } else {
            String::new()
        },
        speeds.tg,
        args.reps,
        args.threads
    )?;
    writeln!(
        out,
        "memory: estimated {:.1} MiB, allocated {:.1} MiB, resident growth {:.1} MiB",
        mib(estimate.total_bytes),
        mib(memory.allocated_bytes),
        mib(memory.rss_growth_bytes)
    )?;
    Ok(())
}
