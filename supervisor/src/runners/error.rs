//! What can go wrong with a runner, in the terms a caller acts on: the start-time failures
//! of [`Runner::start`](super::Runner::start), and the answers of the
//! [`RunnerClient`](super::RunnerClient), which turns every gRPC status into one of these
//! (in `client.rs`, the one place that reads status codes).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::ExitInfo;

/// The runner's RPCs, for messages that say which call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `Health`: the handshake.
    Health,
    /// `Load`.
    Load,
    /// `Status`.
    Status,
    /// `Generate`.
    Generate,
    /// `Embed`.
    Embed,
    /// `Tokenize`.
    Tokenize,
    /// `Detokenize`.
    Detokenize,
    /// `Shutdown`: the drain before a stop.
    Shutdown,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Health => "Health",
            Self::Load => "Load",
            Self::Status => "Status",
            Self::Generate => "Generate",
            Self::Embed => "Embed",
            Self::Tokenize => "Tokenize",
            Self::Detokenize => "Detokenize",
            Self::Shutdown => "Shutdown",
        })
    }
}

/// Why a runner could not be started or did not serve a request.
#[derive(Debug, Error)]
pub enum RunnerError {
    /// The runner binary could not be started.
    #[error(
        "cannot start {bin}: {source}; set OLLAMA_RUNNER to the ollama-runner built with \
         this ollamad"
    )]
    Spawn {
        /// The binary.
        bin: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The private socket directory could not be made.
    #[error(
        "cannot create the runner directory {path}: {source}; check that this user may \
         write there"
    )]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The runner exited before it was ready.
    #[error(
        "the runner for {model} exited with {exit} before it was ready{}",
        last_lines(stderr)
    )]
    Exited {
        /// The model.
        model: String,
        /// How it ended.
        exit: ExitInfo,
        /// The last lines it wrote to stderr, oldest first (often the reason).
        stderr: Vec<String>,
    },
    /// The runner did not become ready in time; it was killed.
    #[error(
        "the runner for {model} was not ready after {after:?} (OLLAMA_LOAD_TIMEOUT); it was \
         stopped: raise OLLAMA_LOAD_TIMEOUT for a large model on slow storage"
    )]
    LoadTimeout {
        /// The model.
        model: String,
        /// The time allowed.
        after: Duration,
    },
    /// The runner refused the handshake or the load; its reason says why (a bad option,
    /// an unreadable or unsupported file, a runner of another version).
    #[error("the runner for {model} cannot load it: {reason}")]
    LoadRefused {
        /// The model.
        model: String,
        /// The runner's reason.
        reason: String,
    },
    /// The runner refused the request as invalid (an option out of range, an empty
    /// prompt). The message is the runner's, which says what to change.
    #[error("{message}")]
    Invalid {
        /// The model.
        model: String,
        /// The runner's message.
        message: String,
    },
    /// The prompt does not fit the context. The message is the runner's, with the
    /// numbers and what to change.
    #[error("{message}")]
    TooLong {
        /// The model.
        model: String,
        /// The runner's message.
        message: String,
    },
    /// The runner cancelled the request (it was stopped before the request finished).
    #[error("the runner for {model} cancelled the request: {message}")]
    Cancelled {
        /// The model.
        model: String,
        /// The runner's message.
        message: String,
    },
    /// The runner cannot be reached or broke off: the connection failed, the runner is
    /// unavailable (stopping, still loading) or a stream ended early. Often it has
    /// died; the scheduler sees that through the exit watch.
    #[error("lost the runner for {model}: {message}; send the request again")]
    Gone {
        /// The model.
        model: String,
        /// What the transport or the runner said.
        message: String,
    },
    /// The runner did not answer in time.
    #[error(
        "the runner for {model} did not answer {call}{}: it is overloaded or stuck; try \
         again, or unload the model (keep_alive 0) to restart its runner",
        after.map(|d| format!(" within {d:?}")).unwrap_or_default()
    )]
    TimedOut {
        /// The model.
        model: String,
        /// The call.
        call: Call,
        /// The time allowed, when this side set it.
        after: Option<Duration>,
    },
    /// The runner failed the request (the model failed, or a call came in the wrong
    /// state).
    #[error("the runner for {model} failed: {message}")]
    Failed {
        /// The model.
        model: String,
        /// The runner's message.
        message: String,
    },
}

impl RunnerError {
    /// Whether the request itself was at fault (invalid, or too long for the context):
    /// the runner is fine, and the same request would fail again.
    pub fn is_request_fault(&self) -> bool {
        matches!(self, Self::Invalid { .. } | Self::TooLong { .. })
    }
}

/// The stderr lines of a runner that died starting, for its error: the reason is nearly
/// always among them.
fn last_lines(stderr: &[String]) -> String {
    let lines: Vec<&str> = stderr
        .iter()
        .map(|line| line.trim_end())
        .filter(|line| !line.is_empty())
        .collect();
    if lines.is_empty() {
        return "; it wrote nothing to stderr".into();
    }
    format!(
        "; its last output (set OLLAMA_DEBUG=1 for more) was:\n{}",
        lines.join("\n")
    )
}
