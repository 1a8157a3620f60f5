//! Runner children: start `ollama-runner serve` for one model, wait until it answers,
//! load the model, watch it, and stop it. Nothing of a runner outlives the supervisor.
//!
//! Each runner gets its own 0700 directory for its socket, its own process group (so a
//! stop reaches anything it started) and a parent-death signal: children are forked by
//! one long-lived thread ([`spawner`]), because Linux sends that signal when the forking
//! *thread* exits, and async runtimes retire idle threads. The child's stderr goes into
//! this process's log, tagged with the model's name.

mod exit;
mod spawner;

pub use exit::ExitInfo;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use ollama_proto::RUNNER_PROTOCOL_VERSION;
use ollama_proto::runner as pb;
use ollama_proto::runner::runner_client::RunnerClient;
use thiserror::Error;
use tokio::sync::watch;
use tonic::transport::Channel;

/// Why a runner could not be started or used.
#[derive(Debug, Error)]
pub enum RunnerError {
    /// The runner binary could not be started.
    #[error("cannot start {bin}: {source}")]
    Spawn {
        /// The binary.
        bin: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The private socket directory could not be made.
    #[error("cannot create the runner directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The runner exited before it was ready.
    #[error("the runner for {model} exited with {exit} before it was ready")]
    Exited {
        /// The model.
        model: String,
        /// How it ended.
        exit: ExitInfo,
    },
    /// The runner did not become ready in time; it was killed.
    #[error(
        "the runner for {model} was not ready after {after:?} (OLLAMA_LOAD_TIMEOUT); it was stopped"
    )]
    Timeout {
        /// The model.
        model: String,
        /// The time allowed.
        after: Duration,
    },
    /// The runner answered with an error (its message says why).
    #[error("the runner for {model} refused: {}", status.message())]
    Refused {
        /// The model.
        model: String,
        /// Its answer.
        status: tonic::Status,
    },
}

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

/// A running, loaded runner. Dropping it kills its process group.
pub struct Runner {
    model: String,
    pid: u32,
    dir: PathBuf,
    client: RunnerClient<Channel>,
    exit: watch::Receiver<Option<ExitInfo>>,
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
            armed: true,
        };
        let timeout = RunnerError::Timeout {
            model: model.to_owned(),
            after: config.load_timeout,
        };
        let client = match tokio::time::timeout_at(deadline.into(), starting.connect(&socket)).await
        {
            Ok(result) => result?,
            Err(_) => return Err(timeout),
        };
        let load = pb::LoadRequest {
            protocol_version: RUNNER_PROTOCOL_VERSION,
            ..load
        };
        let mut c = client.clone();
        let loaded = match tokio::time::timeout_at(deadline.into(), c.load(load)).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return Err(starting.refused(status)),
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

    /// A client of its gRPC service (cheap to clone).
    pub fn client(&self) -> RunnerClient<Channel> {
        self.client.clone()
    }

    /// What the load reported: memory, cache, timings.
    pub fn loaded(&self) -> &pb::LoadResponse {
        &self.loaded
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

    /// SIGTERM to its process group, then SIGKILL after `grace` if it is still there;
    /// returns how it ended.
    pub async fn stop(&self, grace: Duration) -> ExitInfo {
        let mut exit = self.exit.clone();
        signal_group(self.pid, Signal::SIGTERM);
        match tokio::time::timeout(grace, wait_exit(&mut exit)).await {
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

/// A runner between spawn and ready: killed (and its directory removed) if dropped
/// while still `armed`.
struct Starting {
    model: String,
    pid: u32,
    dir: PathBuf,
    exit: watch::Receiver<Option<ExitInfo>>,
    armed: bool,
}

impl Starting {
    /// Connects once the socket answers `Health`, or fails when the child exits first.
    async fn connect(&mut self, socket: &Path) -> Result<RunnerClient<Channel>, RunnerError> {
        loop {
            if let Some(exit) = *self.exit.borrow() {
                return Err(RunnerError::Exited {
                    model: self.model.clone(),
                    exit,
                });
            }
            if socket.exists()
                && let Ok(channel) = connect(socket).await
            {
                let mut client = RunnerClient::new(channel);
                let health = pb::HealthRequest {
                    protocol_version: RUNNER_PROTOCOL_VERSION,
                };
                match client.health(health).await {
                    Ok(_) => return Ok(client),
                    Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                        return Err(self.refused(status));
                    }
                    Err(_) => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn refused(&self, status: tonic::Status) -> RunnerError {
        RunnerError::Refused {
            model: self.model.clone(),
            status,
        }
    }

    /// The ready runner, which now owns the child.
    fn ready(mut self, client: RunnerClient<Channel>, loaded: pb::LoadResponse) -> Runner {
        self.armed = false;
        Runner {
            model: self.model.clone(),
            pid: self.pid,
            dir: self.dir.clone(),
            client,
            exit: self.exit.clone(),
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
