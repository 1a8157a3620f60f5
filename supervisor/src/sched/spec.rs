//! What a request asks the scheduler for: a model and the runner configuration it needs.

use std::path::PathBuf;
use std::time::Duration;

use gguf::GgmlType;

use crate::config::{Config, KeepAlive, Numerics};

/// The options that shape a runner: two requests share a runner only when these are equal
/// (a request with a different `num_ctx` or K/V type reloads the model, as in Ollama).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoadSettings {
    /// Context length of each parallel sequence.
    pub num_ctx: u32,
    /// Requests the runner serves at once (its slots).
    pub num_parallel: u32,
    /// Tokens per forward pass.
    pub num_batch: u32,
    /// Compute threads (0: every core).
    pub num_thread: u32,
    /// Key cache type.
    pub type_k: GgmlType,
    /// Value cache type.
    pub type_v: GgmlType,
    /// Flash attention.
    pub flash_attention: bool,
    /// Map the weights instead of reading them.
    pub use_mmap: bool,
    /// How the runner's kernels add.
    pub numerics: Numerics,
    /// Where the runner computes (`num_gpu`).
    pub device: DeviceChoice,
}

/// Where a request asks its model to run, as Ollama's `num_gpu` says it: 0 layers on a
/// GPU means the CPU; any other count (our runners offload all layers or none) leaves
/// the choice to the runner (`OLLAMA_DEVICE`, else the best GPU present, else the CPU).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum DeviceChoice {
    /// The runner's own choice.
    #[default]
    Auto,
    /// The CPU, even where a GPU is present.
    Cpu,
}

impl DeviceChoice {
    /// The choice for a request's `num_gpu`.
    pub fn from_num_gpu(num_gpu: i32) -> Self {
        if num_gpu == 0 { Self::Cpu } else { Self::Auto }
    }

    /// The runner's `LoadRequest.device` for it (empty: the runner's default).
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "",
            Self::Cpu => "cpu",
        }
    }
}

impl LoadSettings {
    /// The server's defaults (`OLLAMA_CONTEXT_LENGTH`, `OLLAMA_NUM_PARALLEL`,
    /// `OLLAMA_KV_CACHE_TYPE*`, `OLLAMA_FLASH_ATTENTION`, `OLLAMA_NUMERICS`; the device
    /// left to the runner), before model and request options.
    pub fn defaults(config: &Config) -> Self {
        Self {
            num_ctx: config.context_length,
            num_parallel: u32::try_from(config.num_parallel).unwrap_or(u32::MAX),
            num_batch: 512,
            num_thread: 0,
            type_k: config.kv_cache_type_k,
            type_v: config.kv_cache_type_v,
            flash_attention: config.flash_attention,
            use_mmap: true,
            numerics: config.numerics,
            device: DeviceChoice::Auto,
        }
    }
}

/// One model to run: its name in the store, its GGUF file and the runner settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoadSpec {
    /// The model's name as users see it (`smollm2:latest`); one runner per name.
    pub name: String,
    /// The GGUF file.
    pub model_path: PathBuf,
    /// The runner configuration.
    pub settings: LoadSettings,
}

impl LoadSpec {
    /// Whether a runner started for `self` can serve `other` without a reload.
    pub fn same_runner(&self, other: &LoadSpec) -> bool {
        self.model_path == other.model_path && self.settings == other.settings
    }
}

/// A request for a runner.
#[derive(Debug, Clone)]
pub struct Acquire {
    /// The model and configuration.
    pub spec: LoadSpec,
    /// How long to keep the model after this request (the request's `keep_alive`);
    /// `None` takes `OLLAMA_KEEP_ALIVE`.
    pub keep_alive: Option<KeepAlive>,
}

/// The scheduler's limits and timings.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Models loaded at once.
    pub max_loaded: usize,
    /// Requests waiting in all queues together before new ones are refused.
    pub max_queue: usize,
    /// Keep-alive of a request that names none.
    pub default_keep_alive: KeepAlive,
    /// Bytes added to every estimate (`OLLAMA_GPU_OVERHEAD`).
    pub overhead_bytes: u64,
    /// How long to wait for evicted models' memory to show as free again.
    pub memory_wait: Duration,
    /// How often a loaded runner is asked for its status.
    pub check_interval: Duration,
    /// How long a runner may go without answering before it is killed as hung.
    pub hang_timeout: Duration,
    /// How long a stopping runner gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// Crashes within [`Policy::crash_window`] that put a model in back-off.
    pub crash_limit: usize,
    /// The window crashes are counted in.
    pub crash_window: Duration,
    /// How long a model in back-off is refused after its last crash.
    pub backoff: Duration,
}

impl Policy {
    /// The policy for `config`: `OLLAMA_MAX_LOADED_MODELS` 0 means 3 (Ollama's CPU
    /// default; runners compute on the CPU), and fixed timings chosen so that a hung
    /// runner is replaced within seconds while a long prefill is never mistaken for a hang
    /// (the status call is answered outside the compute thread).
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_loaded: if config.max_loaded_models == 0 {
                3
            } else {
                config.max_loaded_models
            },
            max_queue: config.max_queue,
            default_keep_alive: config.keep_alive,
            overhead_bytes: config.gpu_overhead,
            memory_wait: Duration::from_secs(5),
            check_interval: Duration::from_secs(1),
            hang_timeout: Duration::from_secs(5),
            stop_grace: Duration::from_secs(5),
            crash_limit: 3,
            crash_window: Duration::from_secs(60),
            backoff: Duration::from_secs(30),
        }
    }
}
