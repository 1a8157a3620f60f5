//! How requests fail in the scheduler, and how a runner's death is told to the requests
//! it was serving.

use std::collections::VecDeque;
use std::time::Duration;

use thiserror::Error;
use tokio::time::Instant;

use crate::runners::ExitInfo;

/// Why a request got no runner.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SchedError {
    /// Too many requests are already waiting (the API answers 503 with Retry-After).
    #[error(
        "server busy: {max_queue} requests are already waiting (OLLAMA_MAX_QUEUE); retry later"
    )]
    QueueFull {
        /// The limit.
        max_queue: usize,
    },
    /// The model cannot fit even with every other model unloaded.
    #[error(
        "model {model} needs {} MiB but at most {} MiB can be made available \
         (required {required} bytes, available {available} bytes); use a smaller num_ctx, \
         num_parallel or K/V cache type, or free memory",
        required / (1 << 20),
        available / (1 << 20)
    )]
    TooLarge {
        /// The model.
        model: String,
        /// Bytes the load needs (estimate plus overhead).
        required: u64,
        /// Bytes that could be free for it.
        available: u64,
    },
    /// Memory could not be estimated (the model file is unreadable or unsupported).
    #[error("cannot estimate the memory of {model}: {message}")]
    Estimate {
        /// The model.
        model: String,
        /// Why.
        message: String,
    },
    /// The memory probe failed.
    #[error("cannot measure free memory: {0}")]
    Memory(String),
    /// The runner did not start or load.
    #[error("{0}")]
    LoadFailed(String),
    /// The model crashed repeatedly and is not restarted for a while.
    #[error(
        "model {model} crashed {crashes} times in the last {}s (last: {last}); \
         not restarting it for another {}s",
        window.as_secs(),
        retry_in.as_secs().max(1)
    )]
    BackOff {
        /// The model.
        model: String,
        /// Crashes counted.
        crashes: usize,
        /// The window they were counted in.
        window: Duration,
        /// The last failure.
        last: RunnerFailure,
        /// Time until it may be started again.
        retry_in: Duration,
    },
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// How a runner stopped serving while requests were in flight.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RunnerFailure {
    /// It exited on its own or was killed from outside.
    #[error(
        "the runner for {model} exited unexpectedly: {exit}{}",
        last_words(stderr)
    )]
    Crashed {
        /// The model.
        model: String,
        /// The exit status or signal.
        exit: ExitInfo,
        /// The last lines it wrote to stderr, oldest first (often the reason).
        stderr: Vec<String>,
    },
    /// It stopped answering and was killed.
    #[error(
        "the runner for {model} stopped responding (timed out after {}s without an answer) \
         and was killed",
        after.as_secs()
    )]
    Hung {
        /// The model.
        model: String,
        /// How long it went without answering.
        after: Duration,
    },
    /// It did not start or load (a model that cannot load is held back like one that
    /// crashes, instead of being retried by every request).
    #[error("the runner for {model} failed to load: {message}")]
    LoadFailed {
        /// The model.
        model: String,
        /// Why.
        message: String,
    },
    /// The scheduler stopped it (shutdown).
    #[error("the runner for {model} was stopped because the server is shutting down")]
    Stopped {
        /// The model.
        model: String,
    },
}

/// The last line a runner wrote before it died, for an error message: what an admin
/// reads first. The whole tail is in the event and in the supervisor's log.
fn last_words(stderr: &[String]) -> String {
    match stderr.iter().rev().find(|line| !line.trim().is_empty()) {
        Some(line) => format!("; its last output was: {}", line.trim()),
        None => String::new(),
    }
}

/// The recent crashes of one model, for back-off and for `restarts` in introspection.
#[derive(Debug, Default)]
pub struct CrashHistory {
    recent: VecDeque<Instant>,
    /// Crashes over the server's life.
    pub total: u32,
    /// The most recent failure.
    pub last: Option<RunnerFailure>,
}

impl CrashHistory {
    /// Records a crash at `now`.
    pub fn record(&mut self, failure: RunnerFailure, now: Instant, window: Duration) {
        self.recent.push_back(now);
        self.total += 1;
        self.last = Some(failure);
        self.forget_before(now, window);
    }

    fn forget_before(&mut self, now: Instant, window: Duration) {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.recent.pop_front();
        }
    }

    /// The back-off error when `limit` crashes fell within `window` and the last is less
    /// than `backoff` ago.
    pub fn backoff(
        &mut self,
        model: &str,
        now: Instant,
        policy: &super::Policy,
    ) -> Option<SchedError> {
        self.forget_before(now, policy.crash_window);
        let last_at = *self.recent.back()?;
        let since = now.duration_since(last_at);
        if self.recent.len() < policy.crash_limit || since >= policy.backoff {
            return None;
        }
        Some(SchedError::BackOff {
            model: model.to_string(),
            crashes: self.recent.len(),
            window: policy.crash_window,
            last: self.last.clone()?,
            retry_in: policy.backoff - since,
        })
    }
}
