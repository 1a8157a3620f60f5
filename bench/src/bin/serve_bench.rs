//! `serve-bench`: serving speed of `ollama-runner serve` on SmolLM2 (f16 K/V cache, flash
//! attention, 2 threads), next to llama.cpp's `llama-server` measured in the same run.
//!
//! ```text
//! cargo build --release -p runner
//! cargo run --release -p bench --bin serve-bench -- [--runner PATH]
//!     [--llama-server PATH] [--ollamad PATH] [-n 128] [--repeat 3] [--json]
//! ```
//!
//! Each repetition measures, in this order (so both servers see the same load):
//!
//! 1. one greedy Generate of `-n` tokens on a runner with one slot: the decode rate is
//!    generated tokens over the wall time from the first piece to Done (the runner's own
//!    `Timings` rate beside it);
//! 2. on a runner with four slots, one request, then four at once (different prompts,
//!    each on its own connection, sent together): aggregate tokens/s is the sum of the
//!    generated tokens over the wall time from sending to the last Done;
//! 3. the same two on `llama-server --parallel 4` (`/completion`, streamed), and with
//!    `--ollamad`, through `ollamad` (`OLLAMA_NUM_PARALLEL=4`, raw `/api/generate`,
//!    NDJSON): the runner's figures plus the supervisor's HTTP, scheduling and extra hop;
//! 4. time to first token (sending to the first piece) of a prompt of about 1,100 tokens
//!    and then of one sharing its first 1,080 or so with a different ending, on both
//!    four-slot servers. Each repetition starts its long text differently, so the first
//!    of the pair is never found in a cache.
//!
//! Every decode request must generate exactly `-n` tokens and end by length; a prompt
//! that stops early is reported. Figures are medians over `--repeat` repetitions; a
//! ratio is the median of each repetition's own ratio (its two figures taken back to
//! back, under the same load). The runner binary defaults to `ollama-runner` beside this one (`target/release`).

#[path = "serve_bench/ollamad.rs"]
mod ollamad;
#[path = "serve_bench/ours.rs"]
mod ours;
#[path = "serve_bench/peer.rs"]
mod peer;

use bench::load_average;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use ollamad::Ollamad;
use ours::Runner;
use peer::LlamaServer;

/// Compute threads of both servers.
const THREADS: u32 = 2;
/// Context length of each slot (llama-server gets four times this for four slots).
const NUM_CTX: u32 = 2048;
/// Slots of the concurrent servers.
const PARALLEL: u32 = 4;
/// Tokens generated after each long prompt of the time-to-first-token pair.
const TTFT_PREDICT: u32 = 4;
/// The shared part of the long prompts, in tokens at least.
const SHARED_TOKENS: usize = 1080;

/// Story openings that SmolLM2 continues greedily for well over 128 tokens.
const PROMPTS: [&str; 4] = [
    "Once upon a time, in a small village at the edge of a great forest, there lived a young girl named",
    "The old lighthouse keeper climbed the spiral stairs one last time. When he reached the top, he saw",
    "In the year 2150, the first colony ship landed on Mars. The captain looked out of the window and",
    "Tom had always wanted a dog. On his tenth birthday, his parents surprised him with a small puppy that",
];

/// The three instants of a request.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// The request was written.
    pub sent: Instant,
    /// The first piece of output arrived.
    pub first: Instant,
    /// The final message arrived.
    pub done: Instant,
}

/// What one request took and what the server said about it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When it was sent, answered first and finished.
    pub sent: Sent,
    /// Tokens generated.
    pub generated: u32,
    /// It ended because it reached the requested number of tokens.
    pub reached_length: bool,
    /// The end reason as the server named it.
    pub reason: String,
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Of those, tokens reused from the cache (`None`: the server does not say).
    pub cached_tokens: Option<u32>,
    /// The server's own prompt time, milliseconds.
    pub server_prompt_ms: f64,
    /// The server's own generation rate, tokens/s.
    pub server_rate: f64,
}

impl Outcome {
    /// Generated tokens over the wall time from the first piece to the end.
    fn decode_rate(&self) -> f64 {
        f64::from(self.generated) / (self.sent.done - self.sent.first).as_secs_f64()
    }

    /// Wall time from sending to the first piece, milliseconds.
    fn ttft_ms(&self) -> f64 {
        (self.sent.first - self.sent.sent).as_secs_f64() * 1e3
    }
}

/// What `--help` prints: every option, what it does, its default.
const USAGE: &str = "\
serve-bench: serving speed of `ollama-runner serve` on SmolLM2, next to llama.cpp's
llama-server (and ollamad) measured in the same run

usage: serve-bench [OPTIONS]

options:
  --runner PATH        the ollama-runner binary (default: ollama-runner beside this binary,
                       built by `cargo build --release -p runner`)
  --llama-server PATH  llama.cpp's llama-server, measured with --parallel 4 (default: not run)
  --ollamad PATH       ollamad, measured with OLLAMA_NUM_PARALLEL=4 (default: not run)
  -n N                 tokens each decode request generates (default: 128)
  --repeat N           repetitions, medians taken (default: 3)
  --json               print the medians and samples as JSON instead of tables (default: off)
  -h, --help           print this help and exit
";

struct Options {
    runner: PathBuf,
    llama_server: Option<PathBuf>,
    ollamad: Option<PathBuf>,
    n: u32,
    repeat: usize,
    json: bool,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut runner = None;
    let mut o = Options {
        runner: PathBuf::new(),
        llama_server: None,
        ollamad: None,
        n: 128,
        repeat: 3,
        json: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--runner" => runner = Some(PathBuf::from(value()?)),
            "--llama-server" => o.llama_server = Some(PathBuf::from(value()?)),
            "--ollamad" => o.ollamad = Some(PathBuf::from(value()?)),
            "-n" => o.n = value()?.parse()?,
            "--repeat" => o.repeat = value()?.parse()?,
            "--json" => o.json = true,
            "--help" | "-h" => bench::print_usage_and_exit(USAGE),
            other => bail!("unknown argument {other:?}"),
        }
    }
    if o.n == 0 || o.repeat == 0 {
        bail!("-n and --repeat must be positive");
    }
    o.runner = match runner {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .join("ollama-runner"),
    };
    if !o.runner.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p runner` or pass --runner",
            o.runner.display()
        );
    }
    Ok(o)
}

/// The servers under test.
#[derive(Clone, Copy)]
enum Target<'a> {
    Ours(&'a Runner),
    Peer(&'a LlamaServer),
    Ollamad(&'a Ollamad),
}

/// Sends `prompts` together, each on its own connection, and waits for every answer.
/// Returns the outcomes in order and the wall time from sending to the last end.
async fn batch(
    target: Target<'_>,
    prompts: &[String],
    n: u32,
) -> anyhow::Result<(Vec<Outcome>, Duration)> {
    let mut handles = Vec::new();
    let start = Instant::now() + Duration::from_millis(20);
    for prompt in prompts {
        let prompt = prompt.clone();
        handles.push(match target {
            Target::Ours(r) => tokio::spawn(ours::generate(r.client().await?, prompt, n, start)),
            Target::Peer(s) => tokio::spawn(peer::generate(s.connect().await?, prompt, n, start)),
            Target::Ollamad(s) => tokio::spawn(ollamad::generate(
                s.connect().await?,
                s.threads(),
                prompt,
                n,
                start,
            )),
        });
    }
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.push(handle.await??);
    }
    let last = outcomes.iter().map(|o| o.sent.done).max().unwrap_or(start);
    Ok((outcomes, last - start))
}

/// Aggregate tokens/s of a batch.
fn aggregate(outcomes: &[Outcome], wall: Duration) -> f64 {
    outcomes.iter().map(|o| f64::from(o.generated)).sum::<f64>() / wall.as_secs_f64()
}

/// Medians of named figures collected over the repetitions, and the problems seen.
#[derive(Default)]
struct Figures {
    samples: BTreeMap<String, Vec<f64>>,
    warnings: Vec<String>,
}

impl Figures {
    fn add(&mut self, name: &str, value: f64) {
        self.samples.entry(name.to_owned()).or_default().push(value);
    }

    fn median(&self, name: &str) -> Option<f64> {
        let mut v = self.samples.get(name)?.clone();
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    }

    /// Records a warning for every decode request that stopped before `n` tokens.
    fn check(&mut self, who: &str, prompts: &[String], outcomes: &[Outcome], n: u32) {
        for (prompt, o) in prompts.iter().zip(outcomes) {
            if !o.reached_length || o.generated != n {
                self.warnings.push(format!(
                    "{who}: {prompt:?} ended {} after {} of {n} tokens",
                    o.reason, o.generated
                ));
            }
        }
    }

    /// Single and four-concurrent figures of one four-slot server.
    async fn concurrent(
        &mut self,
        who: &str,
        target: Target<'_>,
        prompts: &[String],
        n: u32,
    ) -> anyhow::Result<()> {
        let (one, wall) = batch(target, &prompts[..1], n).await?;
        self.check(who, &prompts[..1], &one, n);
        self.add(&format!("{who}.single_decode"), one[0].decode_rate());
        self.add(&format!("{who}.single_server_rate"), one[0].server_rate);
        let single = aggregate(&one, wall);
        self.add(&format!("{who}.single_aggregate"), single);
        let (four, wall) = batch(target, prompts, n).await?;
        self.check(who, prompts, &four, n);
        self.add(&format!("{who}.four_aggregate"), aggregate(&four, wall));
        self.add(&format!("{who}.ratio"), aggregate(&four, wall) / single);
        let mean_rate = four.iter().map(|o| o.server_rate).sum::<f64>() / four.len() as f64;
        self.add(&format!("{who}.four_mean_server_rate"), mean_rate);
        let start = four.iter().map(|o| o.sent.sent).min();
        let last_first = four.iter().map(|o| o.sent.first).max();
        if let Some((start, last_first)) = start.zip(last_first) {
            self.add(
                &format!("{who}.four_last_first_ms"),
                (last_first - start).as_secs_f64() * 1e3,
            );
        }
        Ok(())
    }

    /// The time-to-first-token pair on one server.
    async fn ttft(
        &mut self,
        who: &str,
        target: Target<'_>,
        pair: &[String; 2],
    ) -> anyhow::Result<()> {
        let mut ttft = [0.0; 2];
        for ((prompt, name), ttft) in pair.iter().zip(["cold", "warm"]).zip(&mut ttft) {
            let (o, _) = batch(target, std::slice::from_ref(prompt), TTFT_PREDICT).await?;
            let o = &o[0];
            *ttft = o.ttft_ms();
            self.add(&format!("{who}.ttft_{name}_ms"), o.ttft_ms());
            self.add(&format!("{who}.ttft_{name}_server_ms"), o.server_prompt_ms);
            self.add(
                &format!("{who}.ttft_{name}_prompt"),
                f64::from(o.prompt_tokens),
            );
            if let Some(cached) = o.cached_tokens {
                self.add(&format!("{who}.ttft_{name}_cached"), f64::from(cached));
            }
        }
        self.add(&format!("{who}.ttft_ratio"), ttft[0] / ttft[1]);
        Ok(())
    }
}

/// A long text of at least `SHARED_TOKENS` tokens that begins with `tag`, and the two
/// prompts made of it with different endings.
async fn long_pair(runner: &Runner, tag: &str) -> anyhow::Result<[String; 2]> {
    const ANIMALS: [&str; 7] = ["fox", "heron", "badger", "otter", "lynx", "crow", "hare"];
    const PLACES: [&str; 5] = ["mill", "harbour", "orchard", "quarry", "chapel"];
    const THINGS: [&str; 6] = ["apples", "letters", "stones", "ropes", "lanterns", "keys"];
    const ADJECTIVES: [&str; 4] = ["patient", "restless", "clever", "weary"];
    let sentence = |i: usize| {
        format!(
            "On day {}, the {} {} walked from the {} to the {} carrying {} {}. ",
            i + 1,
            ADJECTIVES[i % 4],
            ANIMALS[i % 7],
            PLACES[i % 5],
            PLACES[(i * 3 + 1) % 5],
            (i * 7) % 13 + 2,
            THINGS[(i * 5) % 6],
        )
    };
    let mut text = format!("Logbook {tag}. ");
    let mut i = 0;
    while runner.count_tokens(&text).await? < SHARED_TOKENS {
        for _ in 0..10 {
            text.push_str(&sentence(i));
            i += 1;
        }
    }
    Ok([
        format!(
            "{text}\n\nQuestion: which animal carried the most things, and where did it go? Answer:"
        ),
        format!("{text}\n\nQuestion: what happened on the last day of the logbook? Answer:"),
    ])
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Removes the bench's scratch directory (sockets, logs) when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let o = bench::options_or_exit(parse_args());
    let model = e2e::TestModel::SmolLm2.path();
    let scratch = Scratch(std::env::temp_dir().join(format!("serve-bench-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0)?;
    let load_before = load_average();
    let single = Runner::start(&o.runner, &scratch.0, &model, THREADS, 1, NUM_CTX).await?;
    let four = Runner::start(&o.runner, &scratch.0, &model, THREADS, PARALLEL, NUM_CTX).await?;
    let llama = match &o.llama_server {
        Some(bin) => {
            Some(LlamaServer::start(bin, &scratch.0, &model, THREADS, PARALLEL, NUM_CTX).await?)
        }
        None => None,
    };
    let supervised = match &o.ollamad {
        Some(bin) => Some(
            Ollamad::start(
                bin, &o.runner, &scratch.0, &model, THREADS, PARALLEL, NUM_CTX,
            )
            .await?,
        ),
        None => None,
    };
    let prompts: Vec<String> = PROMPTS.iter().map(|p| (*p).to_owned()).collect();
    let nonce = std::process::id();
    let mut f = Figures::default();
    for r in 0..o.repeat {
        let (one, _) = batch(Target::Ours(&single), &prompts[..1], o.n).await?;
        f.check("ours.np1", &prompts[..1], &one, o.n);
        f.add("ours.np1.single_decode", one[0].decode_rate());
        f.add("ours.np1.single_server_rate", one[0].server_rate);
        f.concurrent("ours", Target::Ours(&four), &prompts, o.n)
            .await?;
        if let Some(llama) = &llama {
            f.concurrent("peer", Target::Peer(llama), &prompts, o.n)
                .await?;
        }
        if let Some(server) = &supervised {
            f.concurrent("ollamad", Target::Ollamad(server), &prompts, o.n)
                .await?;
        }
        let pair = long_pair(&single, &format!("{nonce}-{r}")).await?;
        f.ttft("ours", Target::Ours(&four), &pair).await?;
        if let Some(llama) = &llama {
            f.ttft("peer", Target::Peer(llama), &pair).await?;
        }
        if let Some(server) = &supervised {
            f.ttft("ollamad", Target::Ollamad(server), &pair).await?;
        }
    }
    let report = Report {
        figures: &f,
        n: o.n,
        repeat: o.repeat,
        load_before,
        load_after: load_average(),
    };
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        report.print();
    }
    Ok(())
}

/// The medians as a table or JSON.
struct Report<'a> {
    figures: &'a Figures,
    n: u32,
    repeat: usize,
    load_before: String,
    load_after: String,
}

impl Report<'_> {
    fn json(&self) -> Value {
        let medians: BTreeMap<&str, f64> = self
            .figures
            .samples
            .keys()
            .filter_map(|k| Some((k.as_str(), self.figures.median(k)?)))
            .collect();
        json!({
            "model": "SmolLM2-135M-Instruct.Q4_1",
            "cpu": cpu_model(),
            "threads": THREADS,
            "n": self.n,
            "repeat": self.repeat,
            "load_before": self.load_before,
            "load_after": self.load_after,
            "medians": medians,
            "samples": self.figures.samples,
            "warnings": self.figures.warnings,
        })
    }

    fn print(&self) {
        let m = |k: &str| self.figures.median(k);
        let cell =
            |v: Option<f64>, digits: usize| v.map_or_else(String::new, |v| format!("{v:.digits$}"));
        println!(
            "SmolLM2 135M Q4_1, f16 K/V, flash attention, {THREADS} threads, {} tokens per request, \
             medians of {}; {}; load {} before, {} after",
            self.n,
            self.repeat,
            cpu_model(),
            self.load_before,
            self.load_after
        );
        println!();
        println!(
            "| server | slots | single decode tok/s | server's own rate | single aggregate | 4 concurrent aggregate | ratio |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        println!(
            "| ours | 1 | {} | {} | | | |",
            cell(m("ours.np1.single_decode"), 1),
            cell(m("ours.np1.single_server_rate"), 1)
        );
        for (who, name) in [
            ("ours", "ours"),
            ("ollamad", "ours through ollamad"),
            ("peer", "llama-server"),
        ] {
            if m(&format!("{who}.four_aggregate")).is_none() {
                continue;
            }
            let single = m(&format!("{who}.single_aggregate"));
            let four = m(&format!("{who}.four_aggregate"));
            println!(
                "| {name} | {PARALLEL} | {} | {} | {} | {} | {} |",
                cell(m(&format!("{who}.single_decode")), 1),
                cell(m(&format!("{who}.single_server_rate")), 1),
                cell(single, 1),
                cell(four, 1),
                cell(m(&format!("{who}.ratio")), 2)
            );
        }
        println!();
        println!(
            "| server | prompt tokens | cold TTFT ms | warm TTFT ms | ratio | warm cached tokens | cold / warm server prompt ms |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (who, name) in [
            ("ours", "ours"),
            ("ollamad", "ours through ollamad"),
            ("peer", "llama-server"),
        ] {
            let cold = m(&format!("{who}.ttft_cold_ms"));
            let warm = m(&format!("{who}.ttft_warm_ms"));
            if cold.is_none() {
                continue;
            }
            println!(
                "| {name} | {} / {} | {} | {} | {} | {} | {} / {} |",
                cell(m(&format!("{who}.ttft_cold_prompt")), 0),
                cell(m(&format!("{who}.ttft_warm_prompt")), 0),
                cell(cold, 1),
                cell(warm, 1),
                cell(m(&format!("{who}.ttft_ratio")), 1),
                cell(m(&format!("{who}.ttft_warm_cached")), 0),
                cell(m(&format!("{who}.ttft_cold_server_ms")), 1),
                cell(m(&format!("{who}.ttft_warm_server_ms")), 1)
            );
        }
        for warning in &self.figures.warnings {
            println!("warning: {warning}");
        }
    }
}
