//! Our side: an `ollama-runner serve` child on a private Unix socket, loaded with
//! SmolLM2, and greedy `Generate` streams over gRPC (one connection per request).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper_util::rt::TokioIo;
use ollama_proto::RUNNER_PROTOCOL_VERSION;
use ollama_proto::runner as pb;
use ollama_proto::runner::runner_client::RunnerClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{Outcome, Sent};

/// A loaded runner process, killed when dropped.
pub struct Runner {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Runner {
    /// Starts `binary serve` on a socket in `dir`, waits for Health and loads `model`
    /// with the default cache (f16 K/V, flash attention), `threads` compute threads and
    /// `num_parallel` slots of `num_ctx` tokens each.
    pub async fn start(
        binary: &Path,
        dir: &Path,
        model: &Path,
        threads: u32,
        num_parallel: u32,
        num_ctx: u32,
    ) -> anyhow::Result<Self> {
        let name = format!("runner-np{num_parallel}");
        let socket = dir.join(format!("{name}.sock"));
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(binary)
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let runner = Self { child, socket, log };
        let mut client = runner.wait_healthy().await?;
        let loaded = client
            .load(pb::LoadRequest {
                protocol_version: RUNNER_PROTOCOL_VERSION,
                model_path: model.display().to_string(),
                num_ctx: Some(num_ctx),
                num_parallel: Some(num_parallel),
                num_threads: threads,
                ..Default::default()
            })
            .await
            .with_context(|| format!("Load failed (runner log: {})", runner.log.display()))?
            .into_inner();
        let cache = loaded.cache.unwrap_or_default();
        anyhow::ensure!(
            cache.type_k == "f16" && cache.type_v == "f16" && cache.flash_attention,
            "the runner loaded K {} / V {} with flash attention {}, not the default f16/f16 on",
            cache.type_k,
            cache.type_v,
            cache.flash_attention
        );
        Ok(runner)
    }

    async fn wait_healthy(&self) -> anyhow::Result<RunnerClient<Channel>> {
        for _ in 0..400 {
            if self.socket.exists()
                && let Ok(channel) = connect(&self.socket).await
            {
                let mut client = RunnerClient::new(channel);
                let health = client
                    .health(pb::HealthRequest {
                        protocol_version: RUNNER_PROTOCOL_VERSION,
                    })
                    .await;
                if health.is_ok() {
                    return Ok(client);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "the runner did not answer Health within 20 s (log: {})",
            self.log.display()
        )
    }

    /// A client on a connection of its own.
    pub async fn client(&self) -> anyhow::Result<RunnerClient<Channel>> {
        Ok(RunnerClient::new(connect(&self.socket).await?))
    }

    /// The number of tokens `text` is as a prompt (BOS included as the model asks).
    pub async fn count_tokens(&self, text: &str) -> anyhow::Result<usize> {
        let response = self
            .client()
            .await?
            .tokenize(pb::TokenizeRequest {
                text: text.to_owned(),
                add_special: true,
                parse_special: true,
            })
            .await?;
        Ok(response.into_inner().tokens.len())
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A channel to the gRPC server on `socket`.
async fn connect(socket: &Path) -> anyhow::Result<Channel> {
    let socket = socket.to_path_buf();
    let channel = Endpoint::try_from("http://runner.invalid")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await?;
    Ok(channel)
}

/// Sends a greedy request for `prompt` of at most `n` tokens on `client` at `start` and
/// follows its stream to Done.
pub async fn generate(
    mut client: RunnerClient<Channel>,
    prompt: String,
    n: u32,
    start: Instant,
) -> anyhow::Result<Outcome> {
    let request = pb::GenerateRequest {
        prompt,
        sampling: Some(pb::SamplingOptions {
            temperature: Some(0.0),
            repeat_penalty: Some(1.0),
            ..Default::default()
        }),
        num_predict: Some(i32::try_from(n)?),
        ..Default::default()
    };
    tokio::time::sleep_until(start.into()).await;
    let sent = Instant::now();
    let mut stream = client.generate(request).await?.into_inner();
    let mut first = None;
    while let Some(message) = stream.message().await? {
        match message.event {
            Some(pb::generate_response::Event::Piece(_)) => {
                first.get_or_insert_with(Instant::now);
            }
            Some(pb::generate_response::Event::Done(done)) => {
                let at = Instant::now();
                let t = done.timings.unwrap_or_default();
                let reason = pb::DoneReason::try_from(done.reason)
                    .map_or_else(|_| format!("unknown {}", done.reason), |r| format!("{r:?}"));
                let generation_s = t.generation_duration_ns as f64 / 1e9;
                return Ok(Outcome {
                    sent: Sent {
                        sent,
                        first: first.unwrap_or(at),
                        done: at,
                    },
                    generated: t.generated_tokens,
                    reached_length: done.reason == pb::DoneReason::Length as i32,
                    reason,
                    prompt_tokens: t.prompt_tokens,
                    cached_tokens: Some(t.cached_tokens),
                    server_prompt_ms: t.prompt_duration_ns as f64 / 1e6,
                    server_rate: f64::from(t.generated_tokens) / generation_s,
                });
            }
            None => bail!("a Generate message with no event"),
        }
    }
    bail!("the Generate stream ended without Done")
}
