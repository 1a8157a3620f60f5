//! The one client of a runner's gRPC service. Every call the supervisor makes to a
//! runner goes through [`RunnerClient`], and [`typed`] is the one place where a
//! `tonic::Status` becomes a [`RunnerError`].

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use ollama_proto::RUNNER_PROTOCOL_VERSION;
use ollama_proto::runner as pb;
use ollama_proto::runner::runner_client;
use tokio_stream::{Stream, StreamExt};
use tonic::Code;
use tonic::transport::Channel;

use super::error::{Call, RunnerError};

/// How much longer than the drain it asks for a `Shutdown` may take to answer: the
/// runner cancels what is left at the deadline and answers right after.
const SHUTDOWN_ANSWER: Duration = Duration::from_secs(2);

/// A client of one runner (cheap to clone; clones share the connection).
#[derive(Debug, Clone)]
pub struct RunnerClient {
    inner: runner_client::RunnerClient<Channel>,
    model: Arc<str>,
    timeout: Option<Duration>,
}

impl RunnerClient {
    /// Connects to the runner of `model` (a name for errors) listening on `socket`.
    pub async fn connect(socket: &Path, model: &str) -> Result<Self, RunnerError> {
        let channel = super::connect(socket)
            .await
            .map_err(|e| RunnerError::Gone {
                model: model.to_owned(),
                message: format!("cannot connect to {}: {e}", socket.display()),
            })?;
        Ok(Self::new(channel, model))
    }

    /// A client on `channel` to the runner of `model`.
    pub fn new(channel: Channel, model: &str) -> Self {
        Self {
            inner: runner_client::RunnerClient::new(channel),
            model: model.into(),
            timeout: None,
        }
    }

    /// The same client, with calls failing with [`RunnerError::TimedOut`] when the runner
    /// has not answered after `after` (for a generation: the start of its stream).
    pub fn with_timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }

    /// The model the runner serves.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The handshake: the runner's state, once it speaks this supervisor's protocol.
    pub async fn health(&self) -> Result<pb::HealthResponse, RunnerError> {
        let request = pb::HealthRequest {
            protocol_version: RUNNER_PROTOCOL_VERSION,
        };
        let mut c = self.inner.clone();
        self.unary(Call::Health, self.timeout, c.health(request))
            .await
    }

    /// Loads the model (the protocol version is filled in).
    pub async fn load(&self, request: pb::LoadRequest) -> Result<pb::LoadResponse, RunnerError> {
        let request = pb::LoadRequest {
            protocol_version: RUNNER_PROTOCOL_VERSION,
            ..request
        };
        let mut c = self.inner.clone();
        self.unary(Call::Load, self.timeout, c.load(request)).await
    }

    /// Memory, cache and how busy the runner is.
    pub async fn status(&self) -> Result<pb::StatusResponse, RunnerError> {
        let mut c = self.inner.clone();
        self.unary(Call::Status, self.timeout, c.status(pb::StatusRequest {}))
            .await
    }

    /// Starts a generation; dropping the stream cancels it.
    pub async fn generate(
        &self,
        request: pb::GenerateRequest,
    ) -> Result<GenerateStream, RunnerError> {
        let mut c = self.inner.clone();
        let inner = self
            .unary(Call::Generate, self.timeout, c.generate(request))
            .await?;
        Ok(GenerateStream {
            inner,
            model: Arc::clone(&self.model),
            done: false,
            ended: false,
        })
    }

    /// Embeds inputs.
    pub async fn embed(&self, request: pb::EmbedRequest) -> Result<pb::EmbedResponse, RunnerError> {
        let mut c = self.inner.clone();
        self.unary(Call::Embed, self.timeout, c.embed(request))
            .await
    }

    /// Text to token ids.
    pub async fn tokenize(
        &self,
        request: pb::TokenizeRequest,
    ) -> Result<pb::TokenizeResponse, RunnerError> {
        let mut c = self.inner.clone();
        self.unary(Call::Tokenize, self.timeout, c.tokenize(request))
            .await
    }

    /// Token ids to text.
    pub async fn detokenize(
        &self,
        request: pb::DetokenizeRequest,
    ) -> Result<pb::DetokenizeResponse, RunnerError> {
        let mut c = self.inner.clone();
        self.unary(Call::Detokenize, self.timeout, c.detokenize(request))
            .await
    }

    /// Drains the runner: new work is refused, running requests get `drain` to finish
    /// and are cancelled after. Answers how many finished and how many were cancelled;
    /// fails with [`RunnerError::TimedOut`] when no answer comes within `drain` and a
    /// little more.
    pub async fn shutdown(&self, drain: Duration) -> Result<pb::ShutdownResponse, RunnerError> {
        let request = pb::ShutdownRequest {
            drain_ms: u64::try_from(drain.as_millis()).unwrap_or(u64::MAX),
        };
        let mut c = self.inner.clone();
        self.unary(
            Call::Shutdown,
            Some(drain + SHUTDOWN_ANSWER),
            c.shutdown(request),
        )
        .await
    }

    /// Awaits `call`'s answer within `timeout`, typing its failure.
    async fn unary<T>(
        &self,
        call: Call,
        timeout: Option<Duration>,
        answer: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, RunnerError> {
        let answer = match timeout {
            Some(after) => match tokio::time::timeout(after, answer).await {
                Ok(answer) => answer,
                Err(_) => {
                    return Err(RunnerError::TimedOut {
                        model: self.model.to_string(),
                        call,
                        after: Some(after),
                    });
                }
            },
            None => answer.await,
        };
        answer
            .map(tonic::Response::into_inner)
            .map_err(|status| typed(&self.model, call, &status))
    }
}

/// The typed error for the status a call to the runner of `model` failed with.
///
/// A status the transport made (it carries the underlying error as its source: the
/// connection failed or broke) means the runner is gone, whatever its code. A status the
/// runner answered reads by its code, as `runner.proto` defines them; the handshake and
/// the load turn every refusal into [`RunnerError::LoadRefused`].
pub fn typed(model: &str, call: Call, status: &tonic::Status) -> RunnerError {
    let model = model.to_owned();
    let message = status.message().to_owned();
    let from_transport = std::error::Error::source(status).is_some();
    match status.code() {
        _ if from_transport => RunnerError::Gone { model, message },
        Code::Unavailable | Code::Unknown | Code::Aborted => RunnerError::Gone { model, message },
        Code::Cancelled => RunnerError::Cancelled { model, message },
        Code::DeadlineExceeded => RunnerError::TimedOut {
            model,
            call,
            after: None,
        },
        _ if matches!(call, Call::Health | Call::Load) => RunnerError::LoadRefused {
            model,
            reason: message,
        },
        Code::InvalidArgument => RunnerError::Invalid { model, message },
        Code::ResourceExhausted => RunnerError::TooLong { model, message },
        Code::Ok
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::Internal
        | Code::DataLoss
        | Code::Unauthenticated => RunnerError::Failed { model, message },
    }
}

/// A generation's messages as the runner sends them, each piece then one Done, or the
/// error that broke the stream. A stream that ends without its Done yields
/// [`RunnerError::Gone`] last. Dropping it cancels the generation.
pub struct GenerateStream {
    inner: tonic::Streaming<pb::GenerateResponse>,
    model: Arc<str>,
    done: bool,
    ended: bool,
}

impl GenerateStream {
    /// The next message; `None` after the Done (or after an error).
    pub async fn message(&mut self) -> Option<Result<pb::GenerateResponse, RunnerError>> {
        self.next().await
    }
}

impl Stream for GenerateStream {
    type Item = Result<pb::GenerateResponse, RunnerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let item = match ready!(Pin::new(&mut self.inner).poll_next(cx)) {
            Some(Ok(message)) => {
                if matches!(message.event, Some(pb::generate_response::Event::Done(_))) {
                    self.done = true;
                }
                return Poll::Ready(Some(Ok(message)));
            }
            Some(Err(status)) => Some(Err(typed(&self.model, Call::Generate, &status))),
            None if self.done => None,
            None => Some(Err(RunnerError::Gone {
                model: self.model.to_string(),
                message: "the generation's stream ended before the generation did".into(),
            })),
        };
        self.ended = true;
        Poll::Ready(item)
    }
}
