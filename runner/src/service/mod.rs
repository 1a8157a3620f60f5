//! The tonic `Runner` service: the supervisor's view of this process.
//!
//! The service holds the runner's state (idle, loading, ready, stopping) and turns gRPC
//! calls into engine requests; all model work happens on the engine's compute thread.
//! [`drain`] counts the requests running, for `Shutdown`.

// tonic's `Status` is this API's error type, large as it is.
#![allow(clippy::result_large_err)]

mod convert;
pub mod drain;
pub mod load;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ollama_proto::RUNNER_PROTOCOL_VERSION;
use ollama_proto::runner as pb;
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status};

use self::convert::{cache_info, engine_status, event_to_response, generate_job};
use self::drain::{Drain, Tracked};
use self::load::Loaded;
use crate::tools::bench::rss_bytes;

/// Where the runner is in its life.
enum State {
    Idle,
    Loading,
    Ready(Arc<Loaded>),
}

/// The `Runner` gRPC service of one runner process.
#[derive(Clone)]
pub struct RunnerService {
    state: Arc<Mutex<State>>,
    drain: Drain,
}

impl Default for RunnerService {
    fn default() -> Self {
        Self::new()
    }
}

impl RunnerService {
    /// A service with no model loaded yet.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State::Idle)),
            drain: Drain::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn loaded(&self) -> Result<Arc<Loaded>, Status> {
        match &*self.lock() {
            State::Ready(loaded) => Ok(Arc::clone(loaded)),
            State::Idle => Err(Status::failed_precondition(
                "no model is loaded: call Load first",
            )),
            State::Loading => Err(Status::unavailable(
                "the model is still loading: retry when Health reports READY",
            )),
        }
    }

    fn state_code(&self) -> pb::RunnerState {
        if self.drain.closed() {
            return pb::RunnerState::Stopping;
        }
        match &*self.lock() {
            State::Idle => pb::RunnerState::Idle,
            State::Loading => pb::RunnerState::Loading,
            State::Ready(_) => pb::RunnerState::Ready,
        }
    }
}

fn check_version(version: u32) -> Result<(), Status> {
    if version == RUNNER_PROTOCOL_VERSION {
        return Ok(());
    }
    Err(Status::failed_precondition(format!(
        "the caller speaks runner protocol {version} but this runner speaks \
         {RUNNER_PROTOCOL_VERSION}: use the ollama-runner built with this ollamad"
    )))
}

/// The longest drain `Shutdown` honours.
const MAX_DRAIN: Duration = Duration::from_secs(24 * 60 * 60);

type GenerateStream = Pin<Box<dyn Stream<Item = Result<pb::GenerateResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::runner_server::Runner for RunnerService {
    async fn health(
        &self,
        request: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        check_version(request.get_ref().protocol_version)?;
        Ok(Response::new(pb::HealthResponse {
            protocol_version: RUNNER_PROTOCOL_VERSION,
            state: self.state_code().into(),
        }))
    }

    async fn load(
        &self,
        request: Request<pb::LoadRequest>,
    ) -> Result<Response<pb::LoadResponse>, Status> {
        let request = request.into_inner();
        check_version(request.protocol_version)?;
        let config = load::from_request(&request)?;
        {
            let mut state = self.lock();
            if !matches!(*state, State::Idle) {
                return Err(Status::failed_precondition(
                    "this runner has already loaded (or is loading) a model; a runner serves \
                     one model for its whole life: start another runner",
                ));
            }
            *state = State::Loading;
        }
        tracing::info!(model = %config.model_path.display(), kv = ?config.kv, threads = config.threads, "loading");
        let result = tokio::task::spawn_blocking(move || load::load(config))
            .await
            .map_err(|e| Status::internal(format!("the load panicked: {e}")))?;
        match result {
            Ok(loaded) => {
                let response = pb::LoadResponse {
                    memory: Some(loaded.memory),
                    cache: Some(cache_info(&loaded)),
                    load_duration_ns: loaded.load_duration.as_nanos() as u64,
                    architecture: loaded.architecture.to_owned(),
                    train_ctx: loaded.train_ctx as u32,
                    device: loaded
                        .device
                        .as_ref()
                        .map_or_else(String::new, |g| g.description().name.clone()),
                };
                tracing::info!(
                    architecture = loaded.architecture,
                    total_bytes = loaded.memory.total_bytes,
                    load_ms = loaded.load_duration.as_millis() as u64,
                    "loaded"
                );
                *self.lock() = State::Ready(Arc::new(loaded));
                Ok(Response::new(response))
            }
            Err(e) => {
                // Nothing of the failed load is kept: the runner can be asked again.
                tracing::error!(error = %e, "load failed");
                *self.lock() = State::Idle;
                Err(Status::from(&e))
            }
        }
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let rss = rss_bytes().unwrap_or(0) as u64;
        let state = self.state_code();
        let loaded = match &*self.lock() {
            State::Ready(loaded) => Some(Arc::clone(loaded)),
            _ => None,
        };
        let Some(loaded) = loaded else {
            return Ok(Response::new(pb::StatusResponse {
                state: state.into(),
                memory: Some(pb::Memory {
                    rss_bytes: rss,
                    allocated_bytes: load::heap_live_bytes() as u64,
                    ..pb::Memory::default()
                }),
                ..pb::StatusResponse::default()
            }));
        };
        let mut response = engine_status(&loaded, loaded.engine.status());
        response.state = state.into();
        if let Some(memory) = response.memory.as_mut() {
            memory.rss_bytes = rss;
            memory.allocated_bytes = (load::heap_live_bytes() + loaded.mapped_bytes) as u64;
            memory.device_bytes = load::device_bytes(loaded.device.as_deref());
        }
        Ok(Response::new(response))
    }

    type GenerateStream = GenerateStream;

    async fn generate(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        let loaded = self.loaded()?;
        let ticket = self.drain.admit()?;
        let job = generate_job(&loaded, request.into_inner());
        let events = loaded
            .engine
            .generate(job)
            .map_err(|e| convert::status(&e))?;
        let tokenizer = Arc::clone(loaded.engine.tokenizer());
        let stream = UnboundedReceiverStream::new(events)
            .map(move |event| event_to_response(&tokenizer, event));
        Ok(Response::new(Box::pin(Tracked::new(stream, ticket))))
    }

    async fn embed(
        &self,
        request: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        let loaded = self.loaded()?;
        let ticket = self.drain.admit()?;
        let request = request.into_inner();
        if request.inputs.is_empty() {
            return Err(Status::invalid_argument(
                "inputs is empty: send at least one text",
            ));
        }
        let tokenizer = loaded.engine.tokenizer();
        let limit = loaded.engine.embed_limit();
        let inputs = request
            .inputs
            .iter()
            .map(|text| {
                let mut tokens = tokenizer.encode(text, true, true);
                if request.truncate {
                    tokens.truncate(limit);
                }
                tokens
            })
            .collect();
        let embed = loaded
            .engine
            .embed(inputs, request.normalize.unwrap_or(true));
        let result = tokio::select! {
            result = embed => result.map_err(|e| convert::status(&e))?,
            () = ticket.cancelled() => return Err(ticket.cancel_status()),
        };
        drop(ticket);
        Ok(Response::new(pb::EmbedResponse {
            embeddings: result
                .vectors
                .into_iter()
                .map(|values| pb::Embedding { values })
                .collect(),
            prompt_tokens: result.prompt_tokens as u32,
            duration_ns: result.duration.as_nanos() as u64,
        }))
    }

    async fn tokenize(
        &self,
        request: Request<pb::TokenizeRequest>,
    ) -> Result<Response<pb::TokenizeResponse>, Status> {
        let loaded = self.loaded()?;
        let r = request.into_inner();
        let tokens = loaded
            .engine
            .tokenizer()
            .encode(&r.text, r.add_special, r.parse_special);
        Ok(Response::new(pb::TokenizeResponse { tokens }))
    }

    async fn detokenize(
        &self,
        request: Request<pb::DetokenizeRequest>,
    ) -> Result<Response<pb::DetokenizeResponse>, Status> {
        let loaded = self.loaded()?;
        let r = request.into_inner();
        let tokenizer = loaded.engine.tokenizer();
        let n_vocab = tokenizer.vocab().len();
        if let Some(bad) = r.tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(Status::invalid_argument(format!(
                "token {bad} is outside the vocabulary of {n_vocab} tokens"
            )));
        }
        let text = tokenizer.decode(&r.tokens, r.special);
        Ok(Response::new(pb::DetokenizeResponse { text }))
    }

    async fn shutdown(
        &self,
        request: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::ShutdownResponse>, Status> {
        // Capped, so that the deadline is a time the clock can hold.
        let drain = Duration::from_millis(request.get_ref().drain_ms).min(MAX_DRAIN);
        tracing::info!(
            running = self.drain.running(),
            drain_ms = drain.as_millis() as u64,
            "shutting down: refusing new requests, draining"
        );
        let drained = self
            .drain
            .shutdown(tokio::time::Instant::now() + drain)
            .await;
        tracing::info!(
            finished = drained.finished,
            cancelled = drained.cancelled,
            "drained; waiting for SIGTERM"
        );
        Ok(Response::new(pb::ShutdownResponse {
            finished: drained.finished as u32,
            cancelled: drained.cancelled as u32,
        }))
    }
}
