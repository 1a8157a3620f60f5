//! `ollama-runner serve --socket PATH`: the runner process the supervisor starts. It
//! answers the `Runner` gRPC service (and server reflection, for `grpcurl`) on a Unix
//! socket until SIGTERM or SIGINT.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use ollama_proto::runner::runner_server::RunnerServer;
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;

use crate::h2_authority::AuthorityFixStream;
use crate::service::RunnerService;

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The Unix socket to listen on (created; a stale one left by a dead runner is
    /// replaced, a live one is refused).
    #[arg(long)]
    pub socket: PathBuf,
    /// The supervisor's pid: the runner asks the kernel to kill it when the thread that
    /// started it exits, and exits at once if that parent is already gone.
    #[arg(long)]
    pub parent_pid: Option<i32>,
}

/// Serves until a termination signal; the socket file is removed on the way out.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    if let Some(parent) = args.parent_pid {
        die_with_parent(parent)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(&args.socket))
}

async fn serve(socket: &Path) -> anyhow::Result<()> {
    let listener = bind(socket).await?;
    tracing::info!(socket = %socket.display(), pid = std::process::id(), "runner listening");
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ollama_proto::RUNNER_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot build the reflection service")?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("signal received, stopping");
    };
    // Every connection goes through the `:authority` fix, so that gRPC C-core clients
    // (Python grpcio, C++, Ruby) work without `grpc.default_authority`: see h2_authority.
    let incoming =
        UnixListenerStream::new(listener).map(|accepted| accepted.map(AuthorityFixStream::new));
    let result = tonic::transport::Server::builder()
        .add_service(RunnerServer::new(RunnerService::new()))
        .add_service(reflection)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = std::fs::remove_file(socket);
    result.context("the gRPC server failed")
}

/// SIGKILL when the parent goes; refuses to start when it already went (the signal is
/// only armed from now on).
fn die_with_parent(parent: i32) -> anyhow::Result<()> {
    use nix::sys::signal::Signal;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .context("cannot set the parent-death signal")?;
    let actual = nix::unistd::getppid().as_raw();
    anyhow::ensure!(
        actual == parent,
        "the supervisor (pid {parent}) is gone (parent is now {actual}): not serving"
    );
    Ok(())
}

/// Listens on `socket`, replacing a socket file nobody answers on.
async fn bind(socket: &Path) -> anyhow::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(socket) {
        use std::os::unix::fs::FileTypeExt;
        anyhow::ensure!(
            meta.file_type().is_socket(),
            "{} exists and is not a socket: choose another path",
            socket.display()
        );
        anyhow::ensure!(
            UnixStream::connect(socket).await.is_err(),
            "{} is in use by a live process: stop it or choose another socket",
            socket.display()
        );
        std::fs::remove_file(socket)
            .with_context(|| format!("cannot remove the stale socket {}", socket.display()))?;
    }
    UnixListener::bind(socket).with_context(|| format!("cannot listen on {}", socket.display()))
}
