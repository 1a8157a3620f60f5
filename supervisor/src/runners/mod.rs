//! Runner children: start `ollama-runner serve` for one model, wait until it answers,
//! load the model, watch it, talk to it and stop it. Nothing of a runner outlives the
//! supervisor.
//!
//! Each runner gets its own 0700 directory for its socket, its own process group (so a
//! stop reaches anything it started), a cleared environment but for [`RUNNER_ENV`] and
//! a parent-death signal: children are forked by one long-lived thread ([`spawner`]),
//! because Linux sends that signal when the forking *thread* exits, and async runtimes
//! retire idle threads. The child's stderr goes into this process's log, tagged with the
//! model's name, and its last [`STDERR_TAIL_LINES`] lines are kept for error messages and
//! crash reports ([`Runner::stderr_tail`]). Every call to a runner goes through
//! [`RunnerClient`], which types the runner's answers as [`RunnerError`]s.

mod client;
mod error;
mod exit;
mod spawner;

pub use client::{GenerateStream, RunnerClient};
pub use error::{Call, RunnerError};
pub use exit::ExitInfo;
pub use spawner::{RUNNER_ENV, STDERR_TAIL_LINES, runner_env};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use ollama_proto::runner as pb;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::Channel;

use self::spawner::StderrTail;

/// How long to wait, after a call broke off during the load, for the runner's exit to be
/// seen, so that the error can be its exit and last words rather than a broken connection.
const EXIT_SETTLE: Duration = Duration::from_millis(500);

/// How to start runners.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The `ollama-runner` binary.
    pub bin: PathBuf,
    /// The directory under which each runner gets its private socket directory.
    pub socket_root: PathBuf,
    /// How long a runner may take to answer and load (`OLLAMA_LOAD_TIMEOUT`).
    pub load_timeout: Duration,
}

/// How a stop divides its grace period: the runner drains for this share of it (so its
/// `Shutdown` answer comes back before the SIGTERM is due) ...
const DRAIN_SHARE: f64 = 0.5;
/// ... and the `Shutdown` call may take this share; SIGTERM gets the rest.
const SHUTDOWN_SHARE: f64 = 0.75;

/// A running, loaded runner. Dropping it kills its process group and removes its
/// directory.
///
/// A runner's life as the supervisor sees it (starting and loading are a [`Starting`],
/// ready and stopping a `Runner`; failed is a [`RunnerError`] from [`Runner::start`], or
/// an exit seen on [`Runner::exit_watch`]):
///
/// ```text
///   spawn: own process group, RUNNER_ENV only, parent-death signal
///     |
///     v
///  +----------+  exits ........................ Exited (with the stderr tail)
///  | starting |  refuses the Health handshake . LoadRefused
///  +----------+  OLLAMA_LOAD_TIMEOUT passes ... LoadTimeout
///     | Health answers                                  |
///     v                                                 |
///  +----------+  refuses the Load ............. LoadRefused
///  | loading  |  exits (or breaks off, exits) . Exited (with the stderr tail)
///  +----------+  OLLAMA_LOAD_TIMEOUT passes ... LoadTimeout
///     | Load answers                                    |
///     v                                                 v
///  +----------+  exits on its own        +----------------------------------+
///  |  ready   |------------------------->|              failed              |
///  +----------+  (crash, kill)           | while starting: the group is     |
///     |                                  | SIGKILLed, the directory removed |
///     | stop(grace)                      | when ready: the exit is seen on  |
///     v                                  | exit_watch; the scheduler        |
///  +----------+                          | reports it with stderr_tail()    |
///  | stopping |                          +----------------------------------+
///  +----------+  Shutdown (drain for half the grace), SIGTERM, SIGKILL at the end
///     | exits (code 0 after SIGTERM)
///     v
///   stopped: the exit is seen on exit_watch
/// ```
pub struct Runner {
    model: String,
    pid: u32,
    dir: PathBuf,
    client: RunnerClient,
    exit: watch::Receiver<Option<ExitInfo>>,
    stderr: StderrTail,
    loaded: pb::LoadResponse,
}

/// Runner directories made by this process, numbered.
static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// Makes `path` a directory only its owner may enter.
fn private_dir(path: &Path) -> Result<(), RunnerError> {
    use std::os::unix::fs::DirBuilderExt;
    let error = |source| RunnerError::Directory {
        path: path.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(error)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(error)
}

impl Runner {
    /// Starts a runner for `model` (a name for logs and errors), waits for it to answer,
    /// loads with `load` and returns once the runner reports ready, all within the
    /// configured load timeout. On any failure the child is killed.
    pub async fn start(
        config: &RunnerConfig,
        model: &str,
        load: pb::LoadRequest,
    ) -> Result<Self, RunnerError> {
        let deadline = Instant::now() + config.load_timeout;
        private_dir(&config.socket_root)?;
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = config
            .socket_root
            .join(format!("runner-{}-{n}", std::process::id()));
        private_dir(&dir)?;
        let socket = dir.join("runner.sock");
        let child = spawner::spawn(&config.bin, &socket, model).map_err(|source| {
            let _ = std::fs::remove_dir_all(&dir);
            RunnerError::Spawn {
                bin: config.bin.clone(),
                source,
            }
        })?;
        let mut starting = Starting {
            model: model.to_owned(),
            pid: child.pid,
            dir,
            exit: child.exit,
            stderr: child.stderr,
            armed: true,
        };
        let timeout = RunnerError::LoadTimeout {
            model: model.to_owned(),
            after: config.load_timeout,
        };
        let client = match tokio::time::timeout_at(deadline, starting.connect(&socket)).await {
            Ok(result) => result?,
            Err(_) => return Err(timeout),
        };
        let loaded = match tokio::time::timeout_at(deadline, client.load(load)).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return Err(starting.explain(error).await),
            Err(_) => return Err(timeout),
        };
        Ok(starting.ready(client, loaded))
    }

    /// The model it serves.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The client of its gRPC service (cheap to clone).
    pub fn client(&self) -> RunnerClient {
        self.client.clone()
    }

    /// What the load reported: memory, cache, timings.
    pub fn loaded(&self) -> &pb::LoadResponse {
        &self.loaded
    }

    /// The last lines it wrote to stderr (at most [`STDERR_TAIL_LINES`]), oldest first.
    /// Once its exit is seen (on [`Runner::exit_watch`]), the tail holds everything it
    /// wrote before it died: the exit is published after its stderr reached its end.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr.lines()
    }

    /// How it ended, once it has.
    pub fn exited(&self) -> Option<ExitInfo> {
        *self.exit.borrow()
    }

    /// A receiver that sees how it ended, once it has (for watchers that outlive a borrow).
    pub fn exit_watch(&self) -> watch::Receiver<Option<ExitInfo>> {
        self.exit.clone()
    }

    /// Waits until it exits.
    pub async fn wait_exit(&self) -> ExitInfo {
        wait_exit(&mut self.exit.clone()).await
    }

    /// Stops it within about `grace` and returns how it ended. First `Shutdown`: the
    /// runner refuses new work, lets running requests finish for half of `grace` and
    /// cancels the rest. Then SIGTERM to its process group (it exits cleanly, with code
    /// 0), then SIGKILL once `grace` is over. A runner that does not answer `Shutdown`
    /// (hung, or gone) gets the signals when three quarters of `grace` are over.
    pub async fn stop(&self, grace: Duration) -> ExitInfo {
        let deadline = Instant::now() + grace;
        let mut exit = self.exit.clone();
        if let Some(info) = *exit.borrow() {
            return info;
        }
        let drain = self.client.shutdown(grace.mul_f64(DRAIN_SHARE));
        let drained = tokio::time::timeout(grace.mul_f64(SHUTDOWN_SHARE), drain);
        tokio::select! {
            info = wait_exit(&mut exit) => return info,
            answer = drained => match answer {
                Ok(Ok(answer)) => tracing::debug!(
                    model = %self.model,
                    pid = self.pid,
                    finished = answer.finished,
                    cancelled = answer.cancelled,
                    "runner drained"
                ),
                Ok(Err(error)) => tracing::debug!(model = %self.model, pid = self.pid, %error, "no drain"),
                Err(_) => tracing::debug!(model = %self.model, pid = self.pid, "no answer to Shutdown"),
            },
        }
        signal_group(self.pid, Signal::SIGTERM);
        match tokio::time::timeout_at(deadline, wait_exit(&mut exit)).await {
            Ok(exit) => exit,
            Err(_) => {
                signal_group(self.pid, Signal::SIGKILL);
                wait_exit(&mut exit).await
            }
        }
    }

    /// SIGKILL to its process group, for a runner that no longer answers; the exit is
    /// seen through [`Runner::exit_watch`].
    pub fn kill(&self) {
        signal_group(self.pid, Signal::SIGKILL);
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if self.exited().is_none() {
            signal_group(self.pid, Signal::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A runner between spawn and ready (starting, then loading): killed (and its directory
/// removed) if dropped while still `armed`.
struct Starting {
    model: String,
    pid: u32,
    dir: PathBuf,
    exit: watch::Receiver<Option<ExitInfo>>,
    stderr: StderrTail,
    armed: bool,
}

impl Starting {
    /// Connects once the socket answers `Health`, or fails when the child exits first
    /// or refuses the handshake.
    async fn connect(&mut self, socket: &Path) -> Result<RunnerClient, RunnerError> {
        loop {
            if let Some(exit) = *self.exit.borrow() {
                return Err(self.exited(exit));
            }
            if socket.exists()
                && let Ok(client) = RunnerClient::connect(socket, &self.model).await
            {
                match client.health().await {
                    Ok(_) => return Ok(client),
                    Err(refused @ RunnerError::LoadRefused { .. }) => return Err(refused),
                    Err(_) => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The error of a child that exited before it was ready, with its last words.
    fn exited(&self, exit: ExitInfo) -> RunnerError {
        RunnerError::Exited {
            model: self.model.clone(),
            exit,
            stderr: self.stderr.lines(),
        }
    }

    /// `error` of the load, or, when the call broke off because the runner died (it
    /// crashed or was killed while loading), its exit and last words.
    async fn explain(&mut self, error: RunnerError) -> RunnerError {
        if !matches!(error, RunnerError::Gone { .. }) {
            return error;
        }
        match tokio::time::timeout(EXIT_SETTLE, wait_exit(&mut self.exit)).await {
            Ok(exit) => self.exited(exit),
            Err(_) => error,
        }
    }

    /// The ready runner, which now owns the child.
    fn ready(mut self, client: RunnerClient, loaded: pb::LoadResponse) -> Runner {
        self.armed = false;
        Runner {
            model: self.model.clone(),
            pid: self.pid,
            dir: self.dir.clone(),
            client,
            exit: self.exit.clone(),
            stderr: self.stderr.clone(),
            loaded,
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pid, Signal::SIGKILL);
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Sends `signal` to the process group led by `pid` (each runner leads its own).
fn signal_group(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

async fn wait_exit(exit: &mut watch::Receiver<Option<ExitInfo>>) -> ExitInfo {
    match exit.wait_for(Option::is_some).await {
        Ok(info) => info.unwrap_or(ExitInfo::Unknown),
        Err(_) => ExitInfo::Unknown,
    }
}

/// A gRPC channel to the runner listening on `socket`.
pub async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    tonic::transport::Endpoint::from_static("http://runner.invalid")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
}

#[cfg(test)]
mod tests;
