//! The scheduler's view of runners: estimate, start, check, stop. [`RunnerBackend`]
//! starts real `ollama-runner` children; the policy tests plug in fakes.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use thiserror::Error;

use gguf::GgufFile;
use ollama_proto::RUNNER_PROTOCOL_VERSION;
use ollama_proto::runner as pb;
use plan::{LoadConfig, LoadParams};
use tokio::sync::watch;

use super::spec::{Footprint, LoadSpec};
use crate::devices::Target;
use crate::runners::{ExitInfo, Runner, RunnerConfig, RunnerError};

/// A generation's messages as a runner streams them: pieces, then one Done, or the error
/// that ended it. Dropping it cancels the generation.
pub type Generation = Pin<Box<dyn Stream<Item = Result<pb::GenerateResponse, RunnerError>> + Send>>;

/// Why the memory a load will take could not be estimated.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum EstimateError {
    /// The settings are not ones a runner accepts (the message names the option).
    #[error("{0}")]
    Settings(String),
    /// The model file cannot be read or planned (unreadable, not GGUF, unknown
    /// architecture, a missing hyper-parameter).
    #[error("{0}")]
    Model(String),
    /// The estimate's task died.
    #[error("the estimate failed: {0}")]
    Task(String),
}

/// What a loaded runner reports about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes it has allocated for the model (weights, K/V, compute).
    pub allocated_bytes: u64,
    /// Its resident set as it sees it.
    pub rss_bytes: u64,
    /// Device memory its GPU buffers hold (0 on the CPU): what `/api/ps` shows as
    /// `size_vram`.
    pub device_bytes: u64,
}

/// Where a runner computes, as its load answer says: `/api/ps` shows a model on a GPU
/// as Ollama shows a fully offloaded one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// The GPU's name; `None` on the CPU.
    pub device: Option<String>,
    /// Device memory its GPU buffers held once loaded (0 on the CPU).
    pub device_bytes: u64,
}

/// Starts runners and estimates what they will take.
pub trait Backend: Send + Sync + 'static {
    /// A started, loaded runner.
    type Runner: RunnerHandle;

    /// What a load of `spec` will take, on the host and on the device (before
    /// `OLLAMA_GPU_OVERHEAD`). Reads the model file's header: an implementation that
    /// blocks does so off the async threads.
    fn estimate(
        &self,
        spec: &LoadSpec,
    ) -> impl Future<Output = Result<Footprint, EstimateError>> + Send;

    /// Starts a runner for `spec` and loads the model; the error says why it failed.
    fn start(
        &self,
        spec: &LoadSpec,
    ) -> impl Future<Output = Result<Self::Runner, RunnerError>> + Send;
}

/// One started runner.
pub trait RunnerHandle: Send + Sync + 'static {
    /// Its process id.
    fn pid(&self) -> u32;

    /// Where it computes, as its load answer said.
    fn placement(&self) -> Placement;

    /// Sees how it ended, once it has.
    fn exit_watch(&self) -> watch::Receiver<Option<ExitInfo>>;

    /// Asks it for its status; an error or no answer counts toward a hang.
    fn check(&self) -> impl Future<Output = Result<Usage, String>> + Send;

    /// Stops it: SIGTERM, then SIGKILL after `grace`.
    fn stop(&self, grace: Duration) -> impl Future<Output = ExitInfo> + Send;

    /// Kills it at once.
    fn kill(&self);

    /// The last lines it wrote to stderr, oldest first: a crash report carries them.
    fn stderr_tail(&self) -> Vec<String>;

    /// Starts a generation (the API layer's one call into a runner for text).
    fn generate(
        &self,
        request: pb::GenerateRequest,
    ) -> impl Future<Output = Result<Generation, RunnerError>> + Send;

    /// Embeds every input of `request` in one call: one vector per input, in order.
    fn embed(
        &self,
        request: pb::EmbedRequest,
    ) -> impl Future<Output = Result<pb::EmbedResponse, RunnerError>> + Send;

    /// How many tokens `text` is as a prompt (special tokens parsed, BOS as the model
    /// adds it): what fitting a conversation into the context counts.
    fn count_tokens(&self, text: &str) -> impl Future<Output = Result<usize, RunnerError>> + Send;
}

/// Real runners: `ollama-runner serve` children.
#[derive(Debug, Clone)]
pub struct RunnerBackend {
    /// How to start them.
    pub config: RunnerConfig,
    /// `OLLAMA_MULTIUSER_CACHE`.
    pub multi_user_cache: bool,
    /// The device runners load onto unless a request asks for the CPU.
    pub target: Target,
}

impl RunnerBackend {
    /// The estimate of `spec`, computed on this thread (it reads the model file).
    pub fn estimate_now(&self, spec: &LoadSpec) -> Result<Footprint, EstimateError> {
        let e = self.breakdown(spec)?;
        Ok(Footprint {
            host_bytes: e.total_bytes as u64,
            device_bytes: e.device_bytes as u64,
        })
    }

    /// The estimate of `spec` by kind (weights, K/V, compute), computed on this thread.
    pub fn breakdown(&self, spec: &LoadSpec) -> Result<plan::Estimate, EstimateError> {
        let file =
            GgufFile::open(&spec.model_path).map_err(|e| EstimateError::Model(e.to_string()))?;
        estimate_with(&file, spec, self.multi_user_cache, &self.target)
    }

    /// The `Load` request for `spec`, exactly as the runner will receive it.
    pub fn load_request(&self, spec: &LoadSpec) -> pb::LoadRequest {
        load_request(spec, self.multi_user_cache, &self.target)
    }
}

/// The estimate of `spec` by kind (weights, K/V, compute) for the model in `file` on a
/// server whose device is `target`: the runner's own checks and arithmetic (the `plan`
/// crate) on the request it would receive. What the scheduler budgets and the gRPC
/// `Estimate` reports; the file is passed in so that a search over context sizes reads
/// it once.
pub fn estimate_with(
    file: &GgufFile,
    spec: &LoadSpec,
    multi_user_cache: bool,
    target: &Target,
) -> Result<plan::Estimate, EstimateError> {
    let r = load_request(spec, multi_user_cache, target);
    let load = LoadConfig::check(&LoadParams {
        model_path: r.model_path,
        num_ctx: r.num_ctx,
        num_parallel: r.num_parallel,
        num_batch: r.num_batch,
        num_threads: r.num_threads,
        cache_type_k: r.cache_type_k,
        cache_type_v: r.cache_type_v,
        flash_attention: r.flash_attention,
        use_mmap: r.use_mmap,
        num_keep: r.num_keep,
        multi_user_cache: r.multi_user_cache,
        numerics: r.numerics,
        device: r.device,
    })
    .map_err(|e| EstimateError::Settings(e.to_string()))?;
    let on_device = spec.settings.device.on_gpu(target);
    plan::estimate(file, &load.kv, load.threads, on_device)
        .map_err(|e| EstimateError::Model(e.to_string()))
}

/// The runner's `Load` request for `spec` on a server whose device is `target`: the
/// device is always explicit, so the runner never guesses one the scheduler did not
/// budget.
fn load_request(spec: &LoadSpec, multi_user_cache: bool, target: &Target) -> pb::LoadRequest {
    let s = &spec.settings;
    pb::LoadRequest {
        protocol_version: RUNNER_PROTOCOL_VERSION,
        model_path: spec.model_path.to_string_lossy().into_owned(),
        num_ctx: Some(s.num_ctx),
        num_parallel: Some(s.num_parallel),
        num_batch: Some(s.num_batch),
        num_threads: s.num_thread,
        cache_type_k: s.type_k.name().to_string(),
        cache_type_v: s.type_v.name().to_string(),
        flash_attention: Some(s.flash_attention),
        use_mmap: Some(s.use_mmap),
        num_keep: None,
        multi_user_cache,
        numerics: s.numerics.name().to_owned(),
        device: s.device.runner_spec(target),
    }
}

impl Backend for RunnerBackend {
    type Runner = Runner;

    async fn estimate(&self, spec: &LoadSpec) -> Result<Footprint, EstimateError> {
        let (backend, spec) = (self.clone(), spec.clone());
        tokio::task::spawn_blocking(move || backend.estimate_now(&spec))
            .await
            .map_err(|e| EstimateError::Task(e.to_string()))?
    }

    async fn start(&self, spec: &LoadSpec) -> Result<Runner, RunnerError> {
        Runner::start(&self.config, &spec.name, self.load_request(spec)).await
    }
}

impl RunnerHandle for Runner {
    fn pid(&self) -> u32 {
        Runner::pid(self)
    }

    fn placement(&self) -> Placement {
        let loaded = self.loaded();
        Placement {
            device: Some(loaded.device.clone()).filter(|d| !d.is_empty()),
            device_bytes: loaded.memory.as_ref().map_or(0, |m| m.device_bytes),
        }
    }

    fn exit_watch(&self) -> watch::Receiver<Option<ExitInfo>> {
        Runner::exit_watch(self)
    }

    async fn check(&self) -> Result<Usage, String> {
        let status = self.client().status().await.map_err(|e| e.to_string())?;
        let memory = status.memory.unwrap_or_default();
        Ok(Usage {
            allocated_bytes: memory.total_bytes,
            rss_bytes: memory.rss_bytes,
            device_bytes: memory.device_bytes,
        })
    }

    async fn stop(&self, grace: Duration) -> ExitInfo {
        Runner::stop(self, grace).await
    }

    fn kill(&self) {
        Runner::kill(self)
    }

    fn stderr_tail(&self) -> Vec<String> {
        Runner::stderr_tail(self)
    }

    async fn generate(&self, request: pb::GenerateRequest) -> Result<Generation, RunnerError> {
        Ok(Box::pin(self.client().generate(request).await?))
    }

    async fn embed(&self, request: pb::EmbedRequest) -> Result<pb::EmbedResponse, RunnerError> {
        self.client().embed(request).await
    }

    async fn count_tokens(&self, text: &str) -> Result<usize, RunnerError> {
        let request = pb::TokenizeRequest {
            text: text.to_owned(),
            add_special: true,
            parse_special: true,
        };
        Ok(self.client().tokenize(request).await?.tokens.len())
    }
}
