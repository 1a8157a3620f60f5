//! What the scheduler did, as a stream: the public gRPC `Watch`, `/metrics` and the
//! "why it left" column of `ollamactl ps` read these; `/api/ps` reads the snapshot.

use std::time::{Duration, SystemTime};

use super::failure::RunnerFailure;
use super::spec::LoadSettings;

/// How many events a slow subscriber may fall behind before it misses some (it then
/// sees `RecvError::Lagged` with the count).
pub const EVENT_BACKLOG: usize = 256;

/// One thing that happened to one model's runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedEvent {
    /// When it happened (wall clock, for people and logs).
    pub at: SystemTime,
    /// The model's name.
    pub model: String,
    /// What happened.
    pub kind: EventKind,
}

/// The kinds of events, in the order a model's life produces them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A runner is being started with these settings.
    Loading {
        /// The runner's settings.
        settings: LoadSettings,
        /// Bytes estimated, overhead excluded.
        estimate_bytes: u64,
    },
    /// The runner loaded the model and serves it.
    Loaded {
        /// Its process id.
        pid: u32,
        /// How long the start and load took.
        load_time: Duration,
    },
    /// The runner was chosen to leave to make room for another model.
    Evicted {
        /// The model it makes room for.
        for_model: String,
    },
    /// The runner's keep-alive ran out (or a request asked for it to go).
    Expired,
    /// A request needs settings the runner was not started with; it is replaced.
    Reload {
        /// The option names whose values differ (`num_ctx`, `kv_cache_type_k`, ...).
        changed: Vec<&'static str>,
    },
    /// The runner exited after the scheduler asked it to stop.
    Unloaded {
        /// Its process id, if it had started.
        pid: Option<u32>,
    },
    /// The runner died unasked, hung and was killed, or failed to load.
    Crashed {
        /// What happened, with the exit status and its last stderr lines.
        failure: RunnerFailure,
    },
    /// The model failed so often that it is refused for a while.
    BackOff {
        /// Failures within the window.
        crashes: usize,
        /// How long until it may be started again.
        retry_in: Duration,
    },
}

impl EventKind {
    /// A short name for logs and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Loading { .. } => "loading",
            Self::Loaded { .. } => "loaded",
            Self::Evicted { .. } => "evicted",
            Self::Expired => "expired",
            Self::Reload { .. } => "reload",
            Self::Unloaded { .. } => "unloaded",
            Self::Crashed { .. } => "crashed",
            Self::BackOff { .. } => "back-off",
        }
    }
}
