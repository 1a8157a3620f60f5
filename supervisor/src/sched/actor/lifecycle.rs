//! The actor's side of a runner's life: loaded, released, expired, stopped, crashed,
//! and the server's shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Actor, Shutdown};
use crate::runners::{ExitInfo, RunnerError};
use crate::sched::backend::{Backend, RunnerHandle};
use crate::sched::event::EventKind;
use crate::sched::failure::{RunnerFailure, SchedError};
use crate::sched::monitor;
use crate::sched::policy::{self, OnIdle, Phase};
use crate::sched::snapshot::{self, RunnerInfo};

/// How long a forced stop gives a runner: half of it to cancel its requests (the
/// runner's drain deadline), the rest to exit before it is killed.
pub const FORCE_GRACE: Duration = Duration::from_secs(1);

impl<B: Backend> Actor<B> {
    /// A lease on runner `id` was dropped: an idle runner starts its keep-alive.
    pub(super) fn release(&mut self, id: u64, now: Instant) {
        let seq = self.uses.next();
        let Some(view) = self.view_mut(id) else {
            return;
        };
        view.refs = view.refs.saturating_sub(1);
        view.last_used = seq;
        if view.phase != Phase::Ready {
            return;
        }
        match policy::on_release(view.refs, view.keep_alive, now) {
            OnIdle::Busy => {}
            OnIdle::Stop => self.begin_stop(id, Some(EventKind::Expired)),
            OnIdle::ExpireAt(at) => view.expires = Some(at),
            OnIdle::Keep => view.expires = None,
        }
    }

    /// Unloads model `name` as soon as it is idle. Returns whether it was loaded.
    pub(super) fn expire(&mut self, name: &str) -> bool {
        let Some(view) = self
            .runners
            .iter_mut()
            .find(|r| r.spec.name == name && r.phase != Phase::Stopping)
        else {
            return false;
        };
        view.keep_alive = crate::config::KeepAlive::For(Duration::ZERO);
        if view.is_idle() {
            let id = view.id;
            self.begin_stop(id, Some(EventKind::Expired));
        }
        true
    }

    /// Stops model `name` now, cancelling what it is running after [`FORCE_GRACE`]'s
    /// drain share (`Unload` with `force`). Returns whether it was loaded.
    pub(super) fn force_stop(&mut self, name: &str) -> bool {
        let Some(id) = self
            .runners
            .iter()
            .find(|r| r.spec.name == name && r.phase != Phase::Stopping)
            .map(|r| r.id)
        else {
            return false;
        };
        self.stop_within(id, Some(EventKind::Expired), FORCE_GRACE);
        true
    }

    /// A load task finished for runner `id`.
    pub(super) fn loaded(
        &mut self,
        id: u64,
        result: Result<B::Runner, RunnerError>,
        load_time: Duration,
        now: Instant,
    ) {
        let Some(handle) = self.handles.get_mut(&id) else {
            return;
        };
        let mut loader = handle.loader.take();
        let runner = match result {
            Ok(runner) => Arc::new(runner),
            Err(error) => {
                let message = error.to_string();
                self.handles.remove(&id);
                let Some(pos) = self.runners.iter().position(|r| r.id == id) else {
                    return;
                };
                let view = self.runners.remove(pos);
                if let Some(p) = loader.take_if(|_| {
                    self.policy.cpu_fallback
                        && view.spec.settings.device.on_gpu(&self.policy.target)
                }) {
                    tracing::warn!(
                        model = %view.spec.name,
                        %message,
                        "loading on the GPU failed; OLLAMA_CPU_FALLBACK is set, so the model loads on the CPU"
                    );
                    self.on_cpu.insert(view.spec.model_path.clone());
                    self.queue.push_front(p);
                    return;
                }
                tracing::error!(model = %view.spec.name, %message, "load failed");
                let failure = RunnerFailure::LoadFailed {
                    model: view.spec.name.clone(),
                    message: message.clone(),
                };
                self.record_failure(&view.spec.name, failure, now);
                if let Some(p) = loader {
                    let _ = p.reply.send(Err(SchedError::LoadFailed(message)));
                }
                return;
            }
        };
        handle.runner = Some(Arc::clone(&runner));
        let pid = runner.pid();
        let placement = runner.placement();
        let seq = self.uses.next();
        tokio::spawn(monitor::watch(
            id,
            Arc::clone(&runner),
            self.tx.clone(),
            Arc::clone(&self.probe),
            self.policy.clone(),
        ));
        let Some(view) = self.view_mut(id) else {
            return;
        };
        view.pid = Some(pid);
        view.device_bytes = placement.device_bytes;
        view.device.clone_from(&placement.device);
        let name = view.spec.name.clone();
        if view.phase == Phase::Stopping {
            // Stopped while loading (shutdown): it goes now, and its request with it.
            self.begin_stop(id, None);
            if let Some(p) = loader {
                let _ = p.reply.send(Err(SchedError::ShuttingDown));
            }
            return;
        }
        view.phase = Phase::Ready;
        view.loaded_at = Some(now);
        view.last_used = seq;
        let device = placement.device.as_deref().unwrap_or("cpu");
        tracing::info!(model = %name, pid, ?load_time, device, "loaded");
        self.emit(&name, EventKind::Loaded { pid, load_time });
        match loader {
            Some(p) => self.lease(id, p, Some(load_time), now),
            None => self.release(id, now),
        }
    }

    /// Marks runner `id` stopping, says why with `event`, and stops its process in the
    /// background; its monitor reports the exit, which removes it.
    pub(super) fn begin_stop(&mut self, id: u64, event: Option<EventKind>) {
        self.stop_within(id, event, self.policy.stop_grace);
    }

    /// [`Actor::begin_stop`] with the process given `grace` to drain and exit.
    fn stop_within(&mut self, id: u64, event: Option<EventKind>, grace: Duration) {
        let Some(view) = self.view_mut(id) else {
            return;
        };
        view.phase = Phase::Stopping;
        view.expires = None;
        let name = view.spec.name.clone();
        if let Some(event) = event {
            self.emit(&name, event);
        }
        if let Some(runner) = self.handles.get(&id).and_then(|h| h.runner.clone()) {
            tracing::info!(model = %name, pid = runner.pid(), "unloading");
            tokio::spawn(async move {
                runner.stop(grace).await;
            });
        }
    }

    /// Kills runner `id`, which has not answered for `after`.
    pub(super) fn kill_hung(&mut self, id: u64, after: Duration) {
        let Some(name) = self.view(id).map(|v| v.spec.name.clone()) else {
            return;
        };
        let Some(handle) = self.handles.get_mut(&id) else {
            return;
        };
        if handle.hung.is_some() {
            return;
        }
        handle.hung = Some(RunnerFailure::Hung {
            model: name.clone(),
            after,
        });
        if let Some(runner) = &handle.runner {
            tracing::error!(model = %name, pid = runner.pid(), ?after, "runner stopped answering; killing it");
            runner.kill();
        }
    }

    /// Runner `id` exited with `exit`. An exit the scheduler did not ask for is a crash:
    /// it is logged, counted toward back-off, published and told to the requests in
    /// flight, with the runner's last stderr lines.
    pub(super) fn exited(&mut self, id: u64, exit: ExitInfo, now: Instant) {
        let Some(pos) = self.runners.iter().position(|r| r.id == id) else {
            return;
        };
        let view = self.runners.remove(pos);
        let Some(handle) = self.handles.remove(&id) else {
            return;
        };
        let model = view.spec.name.clone();
        let crash = match (handle.hung, view.phase) {
            (Some(hung), _) => Some(hung),
            (None, Phase::Stopping) => None,
            (None, _) => Some(RunnerFailure::Crashed {
                model: model.clone(),
                exit,
                stderr: handle
                    .runner
                    .as_ref()
                    .map(|r| r.stderr_tail())
                    .unwrap_or_default(),
            }),
        };
        let told = match crash {
            Some(failure) => {
                tracing::error!(%model, pid = ?view.pid, in_flight = view.refs, "{failure}");
                self.record_failure(&model, failure.clone(), now);
                failure
            }
            None => {
                tracing::info!(%model, pid = ?view.pid, %exit, "unloaded");
                self.emit(&model, EventKind::Unloaded { pid: view.pid });
                RunnerFailure::Stopped { model }
            }
        };
        handle.failure.send_replace(Some(told));
    }

    /// Counts a crash, hang or failed load of `model` toward back-off and publishes it.
    fn record_failure(&mut self, model: &str, failure: RunnerFailure, now: Instant) {
        let history = self.crashes.entry(model.to_string()).or_default();
        history.record(failure.clone(), now, self.policy.crash_window);
        let backoff = history.backoff(model, now, &self.policy);
        self.emit(model, EventKind::Crashed { failure });
        if let Some(SchedError::BackOff {
            crashes, retry_in, ..
        }) = backoff
        {
            self.emit(model, EventKind::BackOff { crashes, retry_in });
        }
    }

    /// Stops taking requests: waiting ones are refused, in-flight ones get `grace`.
    pub(super) fn begin_shutdown(
        &mut self,
        grace: Duration,
        reply: oneshot::Sender<()>,
        now: Instant,
    ) {
        self.refuse_where(|_| true, &SchedError::ShuttingDown);
        let shutdown = self.shutdown.get_or_insert_with(|| Shutdown {
            drain_until: now + grace,
            stop_until: None,
            grace,
            replies: Vec::new(),
            done: false,
        });
        if shutdown.done {
            let _ = reply.send(());
            return;
        }
        shutdown.drain_until = shutdown.drain_until.min(now + grace);
        shutdown.replies.push(reply);
    }

    /// Moves a shutdown on: once drained (or out of grace) every runner is stopped; once
    /// they are gone (or out of time) the callers are told.
    pub(super) fn advance_shutdown(&mut self, now: Instant) {
        let Some(shutdown) = self.shutdown.as_ref().filter(|s| !s.done) else {
            return;
        };
        if shutdown.stop_until.is_none()
            && (policy::drained(&self.runners) || now >= shutdown.drain_until)
        {
            let until = now + self.policy.stop_grace + shutdown.grace;
            let ids: Vec<u64> = self
                .runners
                .iter()
                .filter(|r| r.phase != Phase::Stopping)
                .map(|r| r.id)
                .collect();
            for id in ids {
                self.begin_stop(id, None);
            }
            if let Some(shutdown) = self.shutdown.as_mut() {
                shutdown.stop_until = Some(until);
            }
        }
        let Some(shutdown) = self.shutdown.as_mut() else {
            return;
        };
        let Some(until) = shutdown.stop_until else {
            return;
        };
        if self.runners.is_empty() || now >= until {
            if !self.runners.is_empty() {
                tracing::warn!("runners still stopping after the shutdown grace period");
            }
            shutdown.done = true;
            for reply in shutdown.replies.drain(..) {
                let _ = reply.send(());
            }
        }
    }

    /// What is loaded now, and the models held back.
    pub(super) fn snapshot(&mut self, now: Instant) -> Vec<RunnerInfo> {
        let waiting: Vec<&str> = self
            .queue
            .iter()
            .filter(|p| p.queued)
            .map(|p| p.request.spec.name.as_str())
            .collect();
        snapshot::take(
            &self.runners,
            &waiting,
            &mut self.crashes,
            &self.policy,
            now,
        )
    }
}
