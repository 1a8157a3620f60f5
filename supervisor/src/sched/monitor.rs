//! Background tasks: one watcher per runner (status checks, hang detection, exit), and
//! the keep-alive reaper.

use std::pin::pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::backend::{Backend, RunnerHandle};
use super::failure::RunnerFailure;
use super::state::Phase;
use super::{Inner, KeepAlive};
use crate::runners::ExitInfo;

/// Watches runner `id` until it exits: asks for its status every check interval (which
/// also measures its memory), kills it when it has not answered for the hang timeout,
/// and on exit removes its entry and tells in-flight requests why.
pub(super) async fn watch<B: Backend>(inner: Arc<Inner<B>>, id: u64, runner: Arc<B::Runner>) {
    let mut exit = runner.exit_watch();
    let mut last_answer = Instant::now();
    let policy = inner.policy.clone();
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
            _ = tokio::time::sleep(policy.check_interval) => {
                let check = tokio::time::timeout(policy.hang_timeout, runner.check()).await;
                match check {
                    Ok(Ok(usage)) => {
                        last_answer = Instant::now();
                        let rss = inner.probe.process_bytes(runner.pid()).unwrap_or(0);
                        let measured = usage.allocated_bytes.max(usage.rss_bytes).max(rss);
                        if let Some(entry) = inner.lock().entry_mut(id) {
                            entry.measured = Some(measured);
                        }
                    }
                    Ok(Err(message)) => {
                        tracing::debug!(pid = runner.pid(), %message, "runner status check failed");
                    }
                    Err(_) => {}
                }
                if exit.borrow().is_none() && last_answer.elapsed() >= policy.hang_timeout {
                    kill_hung(&inner, id, &*runner, last_answer.elapsed());
                }
            }
        }
    };
    on_exit(&inner, id, exited);
}

fn kill_hung<B: Backend>(inner: &Inner<B>, id: u64, runner: &B::Runner, after: Duration) {
    let mut state = inner.lock();
    let Some(entry) = state.entry_mut(id) else {
        return;
    };
    if entry.hung.is_some() {
        return;
    }
    let failure = RunnerFailure::Hung {
        model: entry.spec.name.clone(),
        after,
    };
    tracing::error!(model = %entry.spec.name, pid = runner.pid(), ?after, "runner stopped answering; killing it");
    entry.hung = Some(failure);
    runner.kill();
}

/// Removes entry `id` after its runner exited with `exit`. An exit the scheduler did not
/// ask for is a crash: it is logged, counted toward back-off and told to the requests in
/// flight.
fn on_exit<B: Backend>(inner: &Inner<B>, id: u64, exit: ExitInfo) {
    let mut state = inner.lock();
    let Some(pos) = state.entries.iter().position(|e| e.id == id) else {
        return;
    };
    let entry = state.entries.remove(pos);
    let model = entry.spec.name.clone();
    let crash = match (entry.hung.clone(), entry.phase) {
        (Some(hung), _) => Some(hung),
        (None, Phase::Stopping) => None,
        (None, _) => Some(RunnerFailure::Crashed {
            model: model.clone(),
            exit,
        }),
    };
    match &crash {
        Some(failure) => {
            tracing::error!(%model, pid = ?entry.pid, in_flight = entry.refs, "{failure}");
            let window = inner.policy.crash_window;
            state.crashes.entry(model.clone()).or_default().record(
                failure.clone(),
                Instant::now(),
                window,
            );
        }
        None => tracing::info!(%model, pid = ?entry.pid, %exit, "unloaded"),
    }
    let told = crash.unwrap_or(RunnerFailure::Stopped { model });
    entry.failure.send_replace(Some(told));
    drop(state);
    inner.changed.notify_waiters();
}

/// Stops idle runners whose keep-alive ran out; sleeps until the next expiry or change.
/// Ends once the scheduler is dropped.
pub(super) async fn reap<B: Backend>(inner: Weak<Inner<B>>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let mut changed = pin!(strong.changed.notified());
        changed.as_mut().enable();
        let next = {
            let mut state = strong.lock();
            let now = Instant::now();
            for entry in state.entries.iter_mut() {
                let due = entry.expires.is_some_and(|at| at <= now);
                if due && entry.is_idle() {
                    tracing::debug!(model = %entry.spec.name, keep_alive = %entry.keep_alive, "keep-alive expired");
                    strong.begin_stop(entry);
                } else if entry.keep_alive == KeepAlive::Forever {
                    entry.expires = None;
                }
            }
            state.entries.iter().filter_map(|e| e.expires).min()
        };
        // Wakes at least every second so that the task ends soon after the scheduler.
        let at = next
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1))
            .min(Instant::now() + Duration::from_secs(1));
        let _ = tokio::time::timeout_at(at.into(), changed).await;
    }
}
