//! `model-bench`: prompt and generation speed of real models, ours next to llama.cpp's
//! measured in the same run, as a markdown table.
//!
//! ```text
//! cargo run --release -p bench --bin model-bench -- [--model PATH]... [--threads 2]
//!     [--prompt 512] [--gen 128] [--depth 0] [--reps 3] [--numerics fast|exact] [--device cpu|gpu|N] [--ctk f16] [--ctv f16]
//!     [--fa on] [--llama-bench PATH]
//! ```
//!
//! Without `--model` it measures both test models (`scripts/fetch-models`). The prompt
//! figure is one forward pass over `--prompt` tokens from an empty cache; the generation
//! figure is `--gen` single-token passes from position 0, as `llama-bench`'s `pp` and
//! `tg` tests do. Each figure is the median of `--reps` timed runs after one warm-up.
//! With `--depth D` both run after D tokens of context (llama-bench's `-d`). The cache
//! types and flash attention apply to both (`-ctk`, `-ctv`, `-fa` for llama.cpp). With
//! `--llama-bench` (llama.cpp's `llama-bench`), its figures for the same model, threads
//! and repetitions are taken right after ours.

use bench::{load_average, median};
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use gguf::GgufFile;
use runner::kvcache::CacheType;
use runner::model::{self, LoadOptions, Model};
use runner::tools::bench::measure;
use runner::tools::cache_args::{CacheArgs, on_off};

/// What `--help` prints: every option, what it does, its default.
const USAGE: &str = "\
model-bench: prompt and generation speed of real models, ours next to llama.cpp's

usage: model-bench [OPTIONS]

options:
  --model PATH        a GGUF model to measure; repeat for more (default: both test models,
                      SmolLM2 and Gemma3, from scripts/fetch-models)
  --threads N         compute threads (default: 2)
  --prompt N          prompt tokens of the prompt figure, llama-bench's -p (default: 512)
  --gen N             generated tokens of the generation figure, llama-bench's -n (default: 128)
  --depth N           tokens of context before both figures, llama-bench's -d (default: 0)
  --reps N            timed runs per figure, median taken, after one warm-up (default: 3)
  --numerics MODE     fast or exact (default: OLLAMA_NUMERICS, else fast)
  --device DEVICE     cpu, gpu or an adapter index (default: OLLAMA_DEVICE, else the best
                      real GPU present, else the CPU)
  --ctk TYPE          K cache type: f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1 or iq4_nl (default: f16)
  --ctv TYPE          V cache type, same choices (default: f16)
  --fa on|off         flash attention, for both (default: on)
  --llama-bench PATH  llama.cpp's llama-bench, run on the same model, threads and
                      repetitions right after ours (default: not run)
  -h, --help          print this help and exit
";

struct Options {
    models: Vec<PathBuf>,
    threads: usize,
    prompt: usize,
    gen_tokens: usize,
    depth: usize,
    reps: usize,
    cache: CacheArgs,
    llama_bench: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut o = Options {
        models: Vec::new(),
        threads: 2,
        prompt: 512,
        gen_tokens: 128,
        depth: 0,
        reps: 3,
        cache: CacheArgs {
            type_k: CacheType::F16,
            type_v: CacheType::F16,
            flash_attention: true,
            numerics: None,
            device: None,
        },
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
            "--depth" => o.depth = value()?.parse()?,
            "--numerics" => o.cache.numerics = Some(value()?.parse()?),
            "--device" => o.cache.device = Some(value()?.parse()?),
            "--ctk" => o.cache.type_k = value()?.parse()?,
            "--ctv" => o.cache.type_v = value()?.parse()?,
            "--fa" => o.cache.flash_attention = on_off(&value()?).map_err(anyhow::Error::msg)?,
            "--llama-bench" => o.llama_bench = Some(PathBuf::from(value()?)),
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
    if o.reps == 0 || o.prompt == 0 || o.gen_tokens == 0 || o.threads == 0 {
        bail!("--reps, --prompt, --gen and --threads must be positive");
    }
    Ok(o)
}

/// Median tokens per second of prompt and generation over `o.reps` runs after a warm-up.
fn ours(
    model: &mut dyn Model,
    kv: runner::kvcache::KvConfig,
    o: &Options,
) -> anyhow::Result<(f64, f64)> {
    let mut cache = model::new_cache(model, kv)?;
    measure(
        model,
        &mut cache,
        o.prompt.min(64),
        o.gen_tokens.min(8),
        o.depth,
        1,
    )?;
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    for _ in 0..o.reps {
        let s = measure(model, &mut cache, o.prompt, o.gen_tokens, o.depth, 1)?;
        pp.push(s.pp);
        tg.push(s.tg);
    }
    Ok((median(pp), median(tg)))
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
            "-d",
            &o.depth.to_string(),
            "-ctk",
            o.cache.type_k.name(),
            "-ctv",
            o.cache.type_v.name(),
            "-fa",
            if o.cache.flash_attention { "1" } else { "0" },
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

fn main() -> anyhow::Result<()> {
    let o = bench::options_or_exit(parse_args());
    println!(
        "threads {}, prompt {} tokens, generation {} tokens, depth {}, K {}, V {}, flash attention {}, median of {} runs; load {}",
        o.threads,
        o.prompt,
        o.gen_tokens,
        o.depth,
        o.cache.type_k,
        o.cache.type_v,
        if o.cache.flash_attention { "on" } else { "off" },
        o.reps,
        load_average()
    );
    println!();
    println!("| model | ours pp | llama.cpp pp | ratio | ours tg | llama.cpp tg | ratio |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for path in &o.models {
        let kv = o.cache.config(o.depth + o.prompt.max(o.gen_tokens), 1, 512);
        let options = LoadOptions {
            threads: o.threads,
            kv,
            numerics: o.cache.numerics()?,
            device: o.cache.device()?,
        };
        // As the runner loads a model: its matrices repacked for the fast kernels.
        let file = model::prepare(GgufFile::open(path)?, &options)?;
        let mut model = model::load(file, &options)?;
        let (pp, tg) = ours(model.as_mut(), kv, &o)?;
        drop(model);
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
