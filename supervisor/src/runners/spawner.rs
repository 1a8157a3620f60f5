//! The one thread that forks runners. Linux delivers a child's parent-death signal when
//! the thread that forked it exits, so that thread must live as long as the supervisor:
//! it is started once and never returns.
//!
//! Each child gets two more threads: one reads its stderr into this process's log and
//! into its [`StderrTail`], one waits for it to exit. The exit is published only after
//! the stderr reader has reached the end of the pipe (or [`STDERR_DRAIN`] has passed), so
//! whoever sees the exit also sees the last lines the child wrote.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

use super::ExitInfo;

/// Lines of a runner's stderr kept for error messages and crash reports.
pub const STDERR_TAIL_LINES: usize = 20;

/// Bytes of one stderr line kept in the tail (the log gets the whole line).
const STDERR_LINE_BYTES: usize = 1024;

/// How long the waiter waits, after the child exits, for its stderr to reach the end.
/// The pipe ends as soon as the child's process group holds no writer; only a descendant
/// that outlives the runner and keeps the pipe open makes the waiter give up.
const STDERR_DRAIN: Duration = Duration::from_millis(500);

/// The environment variables a runner inherits; everything else is cleared, so that the
/// supervisor's secrets and settings meant for itself do not leak into model processes
/// and a runner behaves the same whatever shell started the server.
pub const RUNNER_ENV: &[&str] = &[
    // Where to find anything the runner execs or resolves (and what libc expects).
    "PATH",
    // Home-relative defaults of libraries (caches); the runner itself writes nothing.
    "HOME",
    // The runner's log filter (plan::logging), overriding OLLAMA_DEBUG.
    "RUST_LOG",
    // Backtraces in a panicking runner's last stderr lines, for crash reports.
    "RUST_BACKTRACE",
    // The GPUs a runner may use, as the admin restricted them.
    "CUDA_VISIBLE_DEVICES",
    // `ollama-runner`'s debug logging (read in its main).
    "OLLAMA_DEBUG",
    // Forces a kernel path (kernels::cpu::KERNELS_ENV), e.g. the scalar one.
    "OLLAMA_KERNELS",
    // The runners' numerics, exact or fast (kernels::cpu::NUMERICS_ENV).
    "OLLAMA_NUMERICS",
    // The runners' default device: cpu, gpu or an adapter index (runner::model::device).
    "OLLAMA_DEVICE",
    // The GPU pass's products on 8-bit activations, on or off (runner::model::gpu_pass).
    "OLLAMA_GPU_INT_DOT",
    // The Vulkan drivers a runner may load, as the admin restricted them.
    "VK_DRIVER_FILES",
    "VK_ICD_FILENAMES",
];

/// The part of `vars` a runner gets: the names in [`RUNNER_ENV`].
pub fn runner_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    vars.into_iter()
        .filter(|(name, _)| RUNNER_ENV.iter().any(|allowed| name == allowed))
        .collect()
}

/// The last [`STDERR_TAIL_LINES`] lines a runner wrote to stderr, shared between the
/// thread that reads them and the runner's owner.
#[derive(Debug, Clone, Default)]
pub struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl StderrTail {
    /// Keeps `line`, forgetting the oldest beyond the limit.
    pub fn push(&self, mut line: String) {
        if line.len() > STDERR_LINE_BYTES {
            let mut end = STDERR_LINE_BYTES;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
            line.push('…');
        }
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == STDERR_TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().cloned().collect()
    }
}

/// A child just forked: its pid, a channel that says how it ended and its stderr's tail.
pub(super) struct Spawned {
    pub pid: u32,
    pub exit: watch::Receiver<Option<ExitInfo>>,
    pub stderr: StderrTail,
}

struct Job {
    bin: PathBuf,
    socket: PathBuf,
    model: String,
    reply: mpsc::Sender<std::io::Result<Spawned>>,
}

fn jobs() -> std::io::Result<&'static mpsc::Sender<Job>> {
    static JOBS: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    if let Some(tx) = JOBS.get() {
        return Ok(tx);
    }
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("runner-spawner".into())
        .spawn(move || {
            for job in rx {
                let result = fork(&job);
                let _ = job.reply.send(result);
            }
        })?;
    Ok(JOBS.get_or_init(|| tx))
}

/// Starts `bin serve --socket SOCKET` for `model` from the spawner thread.
pub(super) fn spawn(bin: &Path, socket: &Path, model: &str) -> std::io::Result<Spawned> {
    let (reply, answer) = mpsc::channel();
    let job = Job {
        bin: bin.to_path_buf(),
        socket: socket.to_path_buf(),
        model: model.to_owned(),
        reply,
    };
    jobs()?
        .send(job)
        .map_err(|_| std::io::Error::other("the runner spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("the runner spawner thread is gone"))?
}

fn fork(job: &Job) -> std::io::Result<Spawned> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(&job.bin)
        .arg("serve")
        .arg("--socket")
        .arg(&job.socket)
        .arg("--parent-pid")
        .arg(std::process::id().to_string())
        .env_clear()
        .envs(runner_env(std::env::vars_os()))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let tail = StderrTail::default();
    let (eof_tx, eof) = mpsc::channel::<()>();
    if let Some(stderr) = child.stderr.take() {
        let model = job.model.clone();
        let tail = tail.clone();
        let reader = std::thread::Builder::new()
            .name(format!("runner-{pid}-stderr"))
            .spawn(move || {
                read_stderr(stderr, &model, pid, &tail);
                drop(eof_tx);
            });
        if let Err(e) = reader {
            kill_unwatched(&mut child);
            return Err(e);
        }
    }
    let (tx, exit) = watch::channel(None);
    let waiter = std::thread::Builder::new()
        .name(format!("runner-{pid}-wait"))
        .spawn(move || watch_exit(child, &eof, &tx));
    if let Err(e) = waiter {
        // The child moved into the closure that failed to start and was dropped with
        // it; it runs unwatched in its own group, which a kill reaches.
        super::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
        return Err(e);
    }
    Ok(Spawned {
        pid,
        exit,
        stderr: tail,
    })
}

/// Kills and reaps a child nobody will watch.
fn kill_unwatched(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Logs each line of `stderr` under the model's name and keeps the last ones in `tail`,
/// until the pipe ends. Bytes that are not UTF-8 are replaced, never a reason to stop
/// reading (a child blocked on a full pipe would hang).
fn read_stderr(stderr: impl std::io::Read, model: &str, pid: u32, tail: &StderrTail) {
    let mut reader = BufReader::new(stderr);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buffer);
        let line = line.trim_end_matches(['\n', '\r']);
        tracing::info!(target: "runner", model = %model, pid, "{line}");
        tail.push(line.to_owned());
    }
}

/// Waits for the child, then for its stderr to end, then publishes how it ended.
fn watch_exit(mut child: Child, eof: &mpsc::Receiver<()>, tx: &watch::Sender<Option<ExitInfo>>) {
    let info = child.wait().map_or(ExitInfo::Unknown, ExitInfo::from);
    // The reader drops its sender at the end of the pipe: `recv` then fails at once.
    if eof.recv_timeout(STDERR_DRAIN) == Err(mpsc::RecvTimeoutError::Timeout) {
        tracing::debug!(
            pid = child.id(),
            "the runner's stderr is still open after its exit"
        );
    }
    tracing::debug!(pid = child.id(), exit = %info, "runner exited");
    let _ = tx.send(Some(info));
}
