//! What a request asks the scheduler for: a model and the runner configuration it needs.

use std::path::PathBuf;
use std::time::Duration;

use gguf::GgmlType;

use crate::config::{Config, KeepAlive, Numerics};
use crate::devices::Target;
use crate::memory::DevicePool;

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
/// GPU means the CPU; any other count (our runners offload all layers or none) takes
/// the server's device (`OLLAMA_DEVICE`, else the best GPU present, else the CPU; see
/// `crate::devices`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum DeviceChoice {
    /// The server's device.
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

    /// The runner's `LoadRequest.device` for it on a server whose device is `target`.
    pub fn runner_spec(self, target: &Target) -> String {
        match self {
            Self::Auto => target.runner_spec(),
            Self::Cpu => "cpu".to_owned(),
        }
    }

    /// Whether it computes on a GPU on a server whose device is `target`.
    pub fn on_gpu(self, target: &Target) -> bool {
        self == Self::Auto && target.is_gpu()
    }
}

/// What a load takes, by where it lives: what the scheduler budgets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// System RAM: the whole model on the CPU; on a GPU, what the process keeps on the
    /// host (the mapped file, the tokenizer, the runtime).
    pub host_bytes: u64,
    /// Device memory: weights, K/V cache and compute buffers on the GPU (0 on the CPU).
    pub device_bytes: u64,
}

impl Footprint {
    /// A load that lives in system RAM alone.
    pub fn host(bytes: u64) -> Self {
        Self {
            host_bytes: bytes,
            device_bytes: 0,
        }
    }

    /// Both parts together, for logs and events.
    pub fn total(self) -> u64 {
        self.host_bytes.saturating_add(self.device_bytes)
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
    /// The device runners compute on unless a request asks for the CPU.
    pub target: Target,
    /// Where their device buffers are budgeted.
    pub device_pool: DevicePool,
    /// `OLLAMA_CPU_FALLBACK`: a model that fails to load on the GPU is loaded on the CPU
    /// instead (logged as a warning), rather than its requests failing.
    pub cpu_fallback: bool,
    /// The device is the default choice (`OLLAMA_DEVICE` unset), so a model too large
    /// for the GPU's memory runs on the CPU; a device the admin named is held to.
    pub cpu_when_too_large: bool,
}

impl Policy {
    /// The policy for `config` on the CPU (the server sets [`Policy::target`] and
    /// [`Policy::device_pool`] once it has found its device): `OLLAMA_MAX_LOADED_MODELS`
    /// 0 means 3 (Ollama's CPU default), and fixed timings chosen so that a hung
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
            target: Target::Cpu,
            device_pool: DevicePool::None,
            cpu_fallback: config.cpu_fallback,
            cpu_when_too_large: config
                .device
                .as_deref()
                .is_none_or(|d| d.eq_ignore_ascii_case("auto")),
        }
    }
}
