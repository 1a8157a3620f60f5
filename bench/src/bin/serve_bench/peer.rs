//! The peer: llama.cpp's `llama-server` on a free local port, driven through its
//! `/completion` endpoint with streamed (server-sent event) answers over a plain
//! HTTP/1.1 connection per request.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{Outcome, Sent};

/// A `llama-server` process, killed when dropped.
pub struct LlamaServer {
    child: Child,
    port: u16,
}

impl LlamaServer {
    /// Starts `binary` on `model` with `threads` threads, `parallel` slots of `num_ctx`
    /// tokens each, flash attention and an f16 K/V cache, and waits until `/health`
    /// answers 200 (model loaded). Its log goes to `dir`.
    pub async fn start(
        binary: &Path,
        dir: &Path,
        model: &Path,
        threads: u32,
        parallel: u32,
        num_ctx: u32,
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = dir.join("llama-server.log");
        let library_dir = binary.parent().unwrap_or(Path::new("."));
        let child = Command::new(binary)
            .env("LD_LIBRARY_PATH", library_dir)
            .args(["-m", &model.display().to_string()])
            .args(["-t", &threads.to_string()])
            .args(["--parallel", &parallel.to_string()])
            .args(["-c", &(parallel * num_ctx).to_string()])
            .args(["-fa", "on", "-ctk", "f16", "-ctv", "f16"])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut server = Self { child, port };
        for _ in 0..600 {
            if let Some(status) = server.child.try_wait()? {
                bail!("llama-server exited with {status} (log: {})", log.display());
            }
            if let Ok((200, _)) = request(server.port, "GET", "/health", None).await {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "llama-server was not healthy within 60 s (log: {})",
            log.display()
        )
    }

    /// A connection of its own for one request.
    pub async fn connect(&self) -> anyhow::Result<TcpStream> {
        connect(self.port).await
    }
}

/// A connection to the local server on `port`, without Nagle's delay.
pub(super) async fn connect(port: u16) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A whole request's status and body (no streaming) to the local server on `port`.
pub(super) async fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, String)> {
    let mut response = send(connect(port).await?, method, path, body).await?;
    let mut text = String::new();
    while let Some(chunk) = response.next_chunk().await? {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    Ok((response.status, text))
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a greedy streamed `/completion` for `prompt` of at most `n` tokens on `stream`
/// at `start` and reads its events to the final one.
pub async fn generate(
    stream: TcpStream,
    prompt: String,
    n: u32,
    start: Instant,
) -> anyhow::Result<Outcome> {
    let body = json!({
        "prompt": prompt,
        "n_predict": n,
        "temperature": 0.0,
        "repeat_penalty": 1.0,
        "cache_prompt": true,
        "ignore_eos": false,
        "stream": true,
    });
    tokio::time::sleep_until(start.into()).await;
    let sent = Instant::now();
    let mut response = send(stream, "POST", "/completion", Some(&body)).await?;
    if response.status != 200 {
        bail!("/completion answered {}", response.status);
    }
    let mut first = None;
    while let Some(line) = response.next_line().await? {
        let line = String::from_utf8_lossy(&line);
        let Some(data) = line.trim_end().strip_prefix("data: ") else {
            continue;
        };
        let event: Value = serde_json::from_str(data)
            .with_context(|| format!("an event that is not JSON: {data}"))?;
        if let Some(error) = event.get("error") {
            bail!("llama-server error: {error}");
        }
        let at = Instant::now();
        first.get_or_insert(at);
        if event["stop"].as_bool() == Some(true) {
            return final_outcome(&event, sent, first.unwrap_or(at), at, n);
        }
    }
    bail!("the /completion stream ended without a final event")
}

fn final_outcome(
    event: &Value,
    sent: Instant,
    first: Instant,
    done: Instant,
    n: u32,
) -> anyhow::Result<Outcome> {
    let timings = &event["timings"];
    let number = |v: &Value, what: &str| {
        v.as_f64()
            .with_context(|| format!("the final event has no number {what}: {event}"))
    };
    let generated = number(&event["tokens_predicted"], "tokens_predicted")? as u32;
    let prompt_n = number(&timings["prompt_n"], "timings.prompt_n")?;
    let cache_n = number(&timings["cache_n"], "timings.cache_n")?;
    let stop_type = event["stop_type"].as_str().unwrap_or("missing").to_owned();
    Ok(Outcome {
        sent: Sent { sent, first, done },
        generated,
        reached_length: stop_type == "limit" && generated == n,
        reason: stop_type,
        prompt_tokens: (prompt_n + cache_n) as u32,
        cached_tokens: Some(cache_n as u32),
        server_prompt_ms: number(&timings["prompt_ms"], "timings.prompt_ms")?,
        server_rate: number(
            &timings["predicted_per_second"],
            "timings.predicted_per_second",
        )?,
    })
}

/// An HTTP/1.1 response whose body is read as it arrives.
pub(super) struct Response {
    pub(super) status: u16,
    reader: BufReader<TcpStream>,
    chunked: bool,
    /// Bytes of body left when the length is known.
    remaining: Option<usize>,
    /// Body bytes read but not yet returned as a line.
    pending: Vec<u8>,
}

/// Writes one request (the connection closes after it) and reads the status and headers.
pub(super) async fn send(
    mut stream: TcpStream,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Response> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(format!("{head}{body}").as_bytes()).await?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP status line: {line:?}"))?;
    let (mut chunked, mut remaining) = (false, None);
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            remaining = Some(value.parse()?);
        }
    }
    Ok(Response {
        status,
        reader,
        chunked,
        remaining,
        pending: Vec::new(),
    })
}

impl Response {
    /// The next line of the body (with its newline) as soon as it is whole; `None` at
    /// the end of the body.
    pub(super) async fn next_line(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                return Ok(Some(self.pending.drain(..=end).collect()));
            }
            match self.next_chunk().await? {
                Some(chunk) => self.pending.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }

    /// The next piece of the body as it arrives; `None` at its end.
    pub(super) async fn next_chunk(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        if self.chunked {
            let mut line = String::new();
            self.reader.read_line(&mut line).await?;
            let size = line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size, 16)
                .with_context(|| format!("a bad chunk size line {line:?}"))?;
            if size == 0 {
                return Ok(None);
            }
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).await?;
            chunk.truncate(size);
            return Ok(Some(chunk));
        }
        let want = self.remaining.unwrap_or(4096).min(4096);
        if want == 0 {
            return Ok(None);
        }
        let mut chunk = vec![0; want];
        let got = self.reader.read(&mut chunk).await?;
        if got == 0 {
            return Ok(None);
        }
        chunk.truncate(got);
        if let Some(left) = &mut self.remaining {
            *left -= got;
        }
        Ok(Some(chunk))
    }
}
