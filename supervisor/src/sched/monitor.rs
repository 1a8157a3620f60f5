//! One watcher per runner: status checks (which also measure its memory), hang
//! detection, and its exit, each reported to the actor as a command.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::actor::Command;
use super::backend::{Backend, RunnerHandle};
use super::spec::Policy;
use crate::memory::MemoryProbe;
use crate::runners::ExitInfo;

/// Watches runner `id` until it exits: asks for its status every check interval,
/// reports a hang when it has not answered for the hang timeout (the actor kills it),
/// and reports the exit. Ends early once the scheduler is gone.
pub(super) async fn watch<B: Backend>(
    id: u64,
    runner: Arc<B::Runner>,
    tx: mpsc::WeakUnboundedSender<Command<B>>,
    probe: Arc<dyn MemoryProbe>,
    policy: Policy,
) {
    let send = |command: Command<B>| match tx.upgrade() {
        Some(tx) => tx.send(command).is_ok(),
        None => false,
    };
    let mut exit = runner.exit_watch();
    let mut last_answer = Instant::now();
    let exited = loop {
        if let Some(info) = *exit.borrow() {
            break info;
        }
        tokio::select! {
            changed = exit.changed() => {
                if changed.is_err() {
                    break exit.borrow().unwrap_or(ExitInfo::Unknown);
                }
            }
            () = tokio::time::sleep(policy.check_interval) => {
                match tokio::time::timeout(policy.hang_timeout, runner.check()).await {
                    Ok(Ok(usage)) => {
                        last_answer = Instant::now();
                        let rss = probe.process_bytes(runner.pid()).unwrap_or(0);
                        let bytes = usage.allocated_bytes.max(usage.rss_bytes).max(rss);
                        let device_bytes = usage.device_bytes;
                        if !send(Command::Measured { id, bytes, device_bytes }) {
                            return;
                        }
                    }
                    Ok(Err(message)) => {
                        tracing::debug!(pid = runner.pid(), %message, "runner status check failed");
                    }
                    Err(_) => {}
                }
                let after = last_answer.elapsed();
                if exit.borrow().is_none() && after >= policy.hang_timeout && !send(Command::Hung { id, after }) {
                    return;
                }
            }
        }
    };
    send(Command::Exited { id, exit: exited });
}
