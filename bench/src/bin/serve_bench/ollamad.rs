//! The same workload through `ollamad`'s Ollama API (`POST /api/generate`, NDJSON), so
//! the cost of the supervisor (HTTP, scheduling, the extra hop to the runner) shows
//! next to the runner measured directly.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::peer::{self, send};
use super::{Outcome, Sent};

/// The model's name in the bench's store.
const MODEL: &str = "smollm2";

/// An `ollamad` process with its own store, stopped when dropped.
pub struct Ollamad {
    child: Child,
    port: u16,
    threads: u32,
}

impl Ollamad {
    /// Starts `binary` on a free port with a store in `dir`, adds `model` (linked, not
    /// uploaded) as `smollm2`, `parallel` slots of `num_ctx`, f16 K/V with flash attention,
    /// and loads the model.
    pub async fn start(
        binary: &Path,
        runner: &Path,
        dir: &Path,
        model: &Path,
        threads: u32,
        parallel: u32,
        num_ctx: u32,
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let store = dir.join("ollamad-models");
        let blobs = store.join("blobs");
        std::fs::create_dir_all(&blobs)?;
        let digest = e2e::TestModel::SmolLm2.sha256();
        let log = dir.join("ollamad.log");
        let child = Command::new(binary)
            .env("OLLAMA_HOST", format!("127.0.0.1:{port}"))
            .env("OLLAMA_MODELS", &store)
            .env("OLLAMA_RUNNER", runner)
            .env("OLLAMA_NUM_PARALLEL", parallel.to_string())
            .env("OLLAMA_CONTEXT_LENGTH", num_ctx.to_string())
            .env("OLLAMA_FLASH_ATTENTION", "1")
            .env("OLLAMA_KV_CACHE_TYPE", "f16")
            .env("OLLAMA_KEEP_ALIVE", "-1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut server = Self {
            child,
            port,
            threads,
        };
        for _ in 0..200 {
            if let Some(status) = server.child.try_wait()? {
                bail!("ollamad exited with {status} (log: {})", log.display());
            }
            if let Ok((200, _)) = peer::request(server.port, "GET", "/", None).await {
                // Linked once the server runs: at start it prunes blobs no model names.
                let blob = blobs.join(format!("sha256-{digest}"));
                if std::fs::hard_link(model, &blob).is_err() {
                    std::fs::copy(model, &blob)?;
                }
                let create = json!({
                    "model": MODEL,
                    "files": { "model.gguf": format!("sha256:{digest}") },
                    "stream": false,
                });
                let (status, body) =
                    peer::request(server.port, "POST", "/api/create", Some(&create)).await?;
                if status != 200 {
                    bail!("/api/create answered {status}: {body}");
                }
                let load = json!({ "model": MODEL, "options": { "num_thread": threads } });
                let (status, body) =
                    peer::request(server.port, "POST", "/api/generate", Some(&load)).await?;
                if status != 200 {
                    bail!("loading {MODEL} answered {status}: {body}");
                }
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "ollamad did not answer within 10 s (log: {})",
            log.display()
        )
    }

    /// A new connection to the server.
    pub async fn connect(&self) -> anyhow::Result<TcpStream> {
        peer::connect(self.port).await
    }

    /// Compute threads its runner is asked for.
    pub fn threads(&self) -> u32 {
        self.threads
    }
}

impl Drop for Ollamad {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SIGTERM lets it stop its runner itself.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = self.child.wait();
    }
}

/// Sends a greedy streamed raw `/api/generate` for `prompt` of at most `n` tokens on
/// `stream` at `start` and reads its lines to the final one.
pub async fn generate(
    stream: TcpStream,
    threads: u32,
    prompt: String,
    n: u32,
    start: Instant,
) -> anyhow::Result<Outcome> {
    let body = json!({
        "model": MODEL,
        "prompt": prompt,
        "raw": true,
        "options": {
            "temperature": 0.0,
            "num_predict": n,
            "repeat_penalty": 1.0,
            "num_thread": threads,
        },
    });
    tokio::time::sleep_until(start.into()).await;
    let sent = Instant::now();
    let mut response = send(stream, "POST", "/api/generate", Some(&body)).await?;
    if response.status != 200 {
        bail!("/api/generate answered {}", response.status);
    }
    let mut first = None;
    while let Some(line) = response.next_line().await? {
        let event: Value = serde_json::from_slice(&line)
            .with_context(|| format!("a line that is not JSON: {line:?}"))?;
        if let Some(error) = event.get("error") {
            bail!("ollamad error: {error}");
        }
        let at = Instant::now();
        first.get_or_insert(at);
        if event["done"].as_bool() == Some(true) {
            return final_outcome(&event, sent, first.unwrap_or(at), at, n);
        }
    }
    bail!("the /api/generate stream ended without a final line")
}

fn final_outcome(
    event: &Value,
    sent: Instant,
    first: Instant,
    done: Instant,
    n: u32,
) -> anyhow::Result<Outcome> {
    let number = |key: &str| {
        event[key]
            .as_f64()
            .with_context(|| format!("the final line has no number {key}: {event}"))
    };
    let generated = number("eval_count")? as u32;
    let reason = event["done_reason"]
        .as_str()
        .unwrap_or("missing")
        .to_owned();
    let eval_seconds = number("eval_duration")? / 1e9;
    Ok(Outcome {
        sent: Sent { sent, first, done },
        generated,
        reached_length: reason == "length" && generated == n,
        reason,
        prompt_tokens: number("prompt_eval_count")? as u32,
        cached_tokens: None,
        server_prompt_ms: number("prompt_eval_duration")? / 1e6,
        server_rate: f64::from(generated) / eval_seconds.max(f64::MIN_POSITIVE),
    })
}
