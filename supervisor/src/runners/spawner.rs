//! The one thread that forks runners. Linux delivers a child's parent-death signal when
//! the thread that forked it exits, so that thread must live as long as the supervisor:
//! it is started once and never returns.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::sync::watch;

use super::ExitInfo;

/// A child just forked: its pid and a channel that says how it ended.
pub(super) struct Spawned {
    pub pid: u32,
    pub exit: watch::Receiver<Option<ExitInfo>>,
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
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    if let Some(stderr) = child.stderr.take() {
        let model = job.model.clone();
        std::thread::Builder::new()
            .name(format!("runner-{pid}-stderr"))
            .spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    tracing::info!(target: "runner", model = %model, pid, "{line}");
                }
            })?;
    }
    let (tx, exit) = watch::channel(None);
    std::thread::Builder::new()
        .name(format!("runner-{pid}-wait"))
        .spawn(move || watch_exit(child, &tx))?;
    Ok(Spawned { pid, exit })
}

fn watch_exit(mut child: Child, tx: &watch::Sender<Option<ExitInfo>>) {
    let info = child.wait().map_or(ExitInfo::Unknown, ExitInfo::from);
    tracing::debug!(pid = child.id(), exit = %info, "runner exited");
    let _ = tx.send(Some(info));
}
