//! `ollamad` put together: the store, the memory probe, the scheduler, and the HTTP and
//! gRPC APIs on `OLLAMA_HOST`, with an orderly shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::devices::{self, DeviceError, Target};
use crate::memory::{self, DevicePool, MemoryError};
use crate::runners::{RunnerConfig, runner_env};
use crate::sched::{Policy, RunnerBackend, Scheduler};
use crate::store::{Store, StoreError};

/// How long in-flight requests get to finish after SIGTERM or SIGINT before their
/// runners are stopped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The runner binary is missing.
    #[error(
        "the runner binary {0} does not exist: install ollama-runner next to ollamad or set \
         OLLAMA_RUNNER to its path"
    )]
    NoRunner(PathBuf),
    /// The model store could not be opened.
    #[error("cannot open the model store (OLLAMA_MODELS): {0}")]
    Store(#[from] StoreError),
    /// Memory cannot be measured.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The device `OLLAMA_DEVICE` asks for cannot be used.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The address is taken or not ours.
    #[error("cannot listen on {addr} (OLLAMA_HOST): {source}; is another server running?")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// The runner binary: `OLLAMA_RUNNER` when set, else `ollama-runner` beside this binary.
pub fn runner_binary(config: &Config) -> PathBuf {
    if let Some(path) = &config.runner {
        return path.clone();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("ollama-runner")))
        .unwrap_or_else(|| PathBuf::from("ollama-runner"))
}

/// The private directory runner sockets live under.
fn socket_root(config: &Config) -> PathBuf {
    let base = config
        .runtime_dir
        .clone()
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    base.join(format!("ollamad-{}", nix::unistd::Uid::current()))
}

/// Serves `config` until `shutdown` resolves, then stops taking requests, gives
/// in-flight ones [`SHUTDOWN_GRACE`], stops every runner and returns.
pub async fn serve(
    config: Config,
    runner_bin: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    if !runner_bin.is_file() {
        return Err(ServerError::NoRunner(runner_bin));
    }
    let store = Arc::new(Store::open(&config.models_dir)?);
    if config.noprune {
        tracing::info!("OLLAMA_NOPRUNE is set: unused blobs are kept");
    } else {
        let pruned = store.prune()?;
        if pruned != Default::default() {
            tracing::info!(
                blobs = pruned.blobs,
                bytes = pruned.bytes,
                temp_files = pruned.temp_files,
                "pruned what no model uses (set OLLAMA_NOPRUNE=1 to keep it)"
            );
        }
    }
    let probe: Arc<dyn memory::MemoryProbe> = Arc::from(memory::detect()?);
    let target = devices::discover(
        &runner_bin,
        runner_env(std::env::vars_os()),
        config.device.as_deref(),
    )
    .await?;
    let device_pool = DevicePool::for_target(&target, &probe.snapshot()?);
    match &target {
        Target::Cpu => tracing::info!("device: the CPU; {}", device_pool.describe()),
        Target::Gpu(adapter) => tracing::info!(
            index = adapter.index,
            kind = %adapter.kind,
            "device: {}; {}",
            adapter.name,
            device_pool.describe()
        ),
    }
    let mut policy = Policy::from_config(&config);
    policy.target = target.clone();
    policy.device_pool = device_pool;
    let backend = RunnerBackend {
        config: RunnerConfig {
            bin: runner_bin,
            socket_root: socket_root(&config),
            load_timeout: config
                .load_timeout
                .unwrap_or(Duration::from_secs(u64::MAX >> 2)),
        },
        multi_user_cache: config.multiuser_cache,
        target,
    };
    let sched = Scheduler::new(backend, probe, policy);
    let listener = tokio::net::TcpListener::bind(config.host)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.host,
            source,
        })?;
    tracing::info!(addr = %config.host, models = %config.models_dir.display(), "listening");
    let state = AppState {
        config: Arc::new(config),
        sched: sched.clone(),
        store,
        models: Arc::default(),
    };
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let streams_end = tokio_util::sync::CancellationToken::new();
    let app = api::app(state, streams_end.clone());
    let draining = {
        let sched = sched.clone();
        tokio::spawn(async move {
            if stopping_rx.await.is_ok() {
                sched.shutdown(SHUTDOWN_GRACE).await;
            }
        })
    };
    let graceful = async move {
        shutdown.await;
        tracing::info!("shutting down: no new requests; in-flight ones get {SHUTDOWN_GRACE:?}");
        streams_end.cancel();
        let _ = stopping_tx.send(());
    };
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(graceful)
        .await;
    let _ = draining.await;
    sched.shutdown(Duration::ZERO).await;
    tracing::info!("stopped");
    served.map_err(ServerError::Serve)
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
