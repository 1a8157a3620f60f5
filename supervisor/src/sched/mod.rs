//! The scheduler: which models are in memory, who may use them, and for how long.
//!
//! A request names a model and the runner settings it needs ([`Acquire`]). The scheduler
//! hands back a [`Lease`] on a runner with a free slot: one already loaded for the same
//! settings, or a new one once memory and `OLLAMA_MAX_LOADED_MODELS` allow, after
//! unloading idle runners least recently used first. A request that must wait counts
//! toward `OLLAMA_MAX_QUEUE`. When the last lease on a runner is dropped its keep-alive
//! starts; when it runs out the runner is stopped. A runner that dies or stops answering
//! is removed at once, and every request in flight on it learns why through
//! [`Lease::failed`].

mod backend;
mod failure;
mod lease;
mod monitor;
mod snapshot;
mod spec;
mod state;

pub use backend::{Backend, RunnerBackend, RunnerHandle, Usage};
pub use failure::{RunnerFailure, SchedError};
pub use lease::Lease;
pub use snapshot::{RunnerInfo, RunnerState};
pub use spec::{Acquire, LoadSettings, LoadSpec, Policy};
pub use state::Phase;

use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot, watch};

use self::state::{Entry, State, room};
use crate::config::KeepAlive;
use crate::memory::MemoryProbe;

/// The scheduler; cheap to clone (all clones share one table).
pub struct Scheduler<B: Backend> {
    inner: Arc<Inner<B>>,
}

impl<B: Backend> Clone for Scheduler<B> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

pub(crate) struct Inner<B: Backend> {
    backend: B,
    probe: Arc<dyn MemoryProbe>,
    policy: Policy,
    state: Mutex<State<B::Runner>>,
    /// Woken on every change of the table: waiters and the keep-alive reaper re-check.
    changed: Notify,
}

/// What one look at the table decided for a request.
enum Step<B: Backend> {
    Leased(Lease<B>),
    Loading(oneshot::Receiver<Result<Lease<B>, SchedError>>),
    /// Wait for a change (a release, an exit, a load).
    Wait,
    /// Wait for evicted memory to show up as free; the probe is polled.
    WaitMemory {
        required: u64,
        available: u64,
    },
}

/// Keeps a waiting request in its model's queue (and counted toward `OLLAMA_MAX_QUEUE`);
/// leaving the queue lets the next request for the model look again.
struct Waiting<'a, B: Backend> {
    inner: &'a Inner<B>,
    model: String,
    ticket: u64,
}

impl<B: Backend> Drop for Waiting<'_, B> {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        if let Some(queue) = state.queues.get_mut(&self.model) {
            queue.retain(|t| *t != self.ticket);
            if queue.is_empty() {
                state.queues.remove(&self.model);
            }
        }
        drop(state);
        self.inner.changed.notify_waiters();
    }
}

impl<B: Backend> Scheduler<B> {
    /// A scheduler over `backend`, measuring with `probe`. Starts the keep-alive reaper,
    /// so it must be called inside a tokio runtime.
    pub fn new(backend: B, probe: Arc<dyn MemoryProbe>, policy: Policy) -> Self {
        let inner = Arc::new(Inner {
            backend,
            probe,
            policy,
            state: Mutex::new(State::new()),
            changed: Notify::new(),
        });
        tokio::spawn(monitor::reap(Arc::downgrade(&inner)));
        Self { inner }
    }

    /// The backend that starts runners.
    pub fn backend(&self) -> &B {
        &self.inner.backend
    }

    /// A lease on a runner for `request`, loading one (and unloading idle ones) if needed,
    /// after waiting in the queue if its slots are busy.
    pub async fn acquire(&self, request: Acquire) -> Result<Lease<B>, SchedError> {
        let inner = &self.inner;
        let started = Instant::now();
        let mut estimate: Option<u64> = None;
        let mut waiting: Option<Waiting<'_, B>> = None;
        let mut memory_since: Option<Instant> = None;
        loop {
            let mut changed = pin!(inner.changed.notified());
            changed.as_mut().enable();
            let step = {
                let mut state = inner.lock();
                let ticket = waiting.as_ref().map(|w| w.ticket);
                inner.step(&mut state, &request, estimate, started, ticket)
            };
            let step = match step {
                Ok(Some(step)) => step,
                Ok(None) => {
                    let spec = request.spec.clone();
                    estimate = Some(inner.backend.estimate(&spec).map_err(|message| {
                        SchedError::Estimate {
                            model: spec.name.clone(),
                            message,
                        }
                    })?);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match step {
                Step::Leased(lease) => return Ok(lease),
                Step::Loading(rx) => {
                    drop(waiting);
                    return rx.await.unwrap_or_else(|_| {
                        Err(SchedError::LoadFailed(format!(
                            "the load of {} was abandoned",
                            request.spec.name
                        )))
                    });
                }
                Step::Wait | Step::WaitMemory { .. } => {
                    if waiting.is_none() {
                        waiting = Some(inner.enqueue(&request.spec.name)?);
                    }
                }
            }
            if let Step::WaitMemory {
                required,
                available,
            } = step
            {
                let since = *memory_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= inner.policy.memory_wait {
                    return Err(SchedError::TooLarge {
                        model: request.spec.name.clone(),
                        required,
                        available,
                    });
                }
                let _ = tokio::time::timeout(Duration::from_millis(100), changed).await;
            } else {
                memory_since = None;
                changed.await;
            }
        }
    }

    /// Unloads model `name` as soon as it is idle (a request with `keep_alive: 0` and no
    /// prompt, as `ollama stop` sends). Returns whether it was loaded.
    pub fn expire(&self, name: &str) -> bool {
        let inner = &self.inner;
        let mut state = inner.lock();
        let Some(id) = state
            .entries
            .iter()
            .find(|e| e.spec.name == name && e.phase != Phase::Stopping)
            .map(|e| e.id)
        else {
            return false;
        };
        if let Some(entry) = state.entry_mut(id) {
            entry.keep_alive = KeepAlive::For(Duration::ZERO);
            if entry.is_idle() {
                inner.begin_stop(entry);
            }
        }
        inner.changed.notify_waiters();
        true
    }

    /// Requests waiting for a runner, over all models.
    pub fn waiting(&self) -> usize {
        self.inner.lock().waiting()
    }

    /// What is loaded now, for `/api/ps`, gRPC and `ollamactl ps`.
    pub fn snapshot(&self) -> Vec<RunnerInfo> {
        snapshot::take(&self.inner)
    }

    /// Stops taking requests, lets leases end within `grace`, then stops every runner
    /// and waits for them to exit.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.lock().accepting = false;
        inner.changed.notify_waiters();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let mut changed = pin!(inner.changed.notified());
            changed.as_mut().enable();
            if inner.lock().entries.iter().all(|e| e.refs == 0) {
                break;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                break;
            }
        }
        {
            let mut state = inner.lock();
            for entry in state.entries.iter_mut() {
                if entry.phase != Phase::Stopping {
                    inner.begin_stop(entry);
                }
            }
        }
        let deadline = tokio::time::Instant::now() + inner.policy.stop_grace + grace;
        loop {
            let mut changed = pin!(inner.changed.notified());
            changed.as_mut().enable();
            if inner.lock().entries.is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                tracing::warn!("runners still stopping after the shutdown grace period");
                break;
            }
        }
    }
}

impl<B: Backend> Inner<B> {
    fn lock(&self) -> MutexGuard<'_, State<B::Runner>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a request at the back of its model's queue, or refuses it when the queues are
    /// full.
    fn enqueue(&self, model: &str) -> Result<Waiting<'_, B>, SchedError> {
        let mut state = self.lock();
        if state.waiting() >= self.policy.max_queue {
            return Err(SchedError::QueueFull {
                max_queue: self.policy.max_queue,
            });
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state
            .queues
            .entry(model.to_string())
            .or_default()
            .push_back(ticket);
        Ok(Waiting {
            inner: self,
            model: model.to_string(),
            ticket,
        })
    }

    /// One decision for `request` (holding queue `ticket`, if any) under the lock.
    /// `Ok(None)` asks the caller to compute the estimate (outside the lock) and come back.
    fn step(
        self: &Arc<Self>,
        state: &mut State<B::Runner>,
        request: &Acquire,
        estimate: Option<u64>,
        started: Instant,
        ticket: Option<u64>,
    ) -> Result<Option<Step<B>>, SchedError> {
        if !state.accepting {
            return Err(SchedError::ShuttingDown);
        }
        let spec = &request.spec;
        let now = Instant::now();
        if let Some(history) = state.crashes.get_mut(&spec.name)
            && let Some(error) = history.backoff(&spec.name, now, &self.policy)
        {
            return Err(error);
        }
        // First come, first served within a model.
        if state.must_queue(&spec.name, ticket) {
            return Ok(Some(Step::Wait));
        }
        if let Some(entry) = state.by_name(&spec.name) {
            let id = entry.id;
            let same = entry.spec.same_runner(spec);
            let phase = entry.phase;
            let idle = entry.is_idle();
            let free_slot = entry.refs < entry.slots();
            return Ok(Some(match phase {
                Phase::Ready if same && free_slot => {
                    let keep_alive = request.keep_alive.unwrap_or(self.policy.default_keep_alive);
                    let entry = state.entry_mut(id).expect("entry found above");
                    entry.refs += 1;
                    entry.keep_alive = keep_alive;
                    entry.expires = None;
                    entry.last_used = now;
                    Step::Leased(self.lease(entry, started.elapsed(), None))
                }
                Phase::Ready if !same && idle => {
                    tracing::info!(model = %spec.name, "options changed: reloading the model");
                    let entry = state.entry_mut(id).expect("entry found above");
                    self.begin_stop(entry);
                    Step::Wait
                }
                _ => Step::Wait,
            }));
        }
        let Some(estimate) = estimate else {
            return Ok(None);
        };
        let required = estimate.saturating_add(self.policy.overhead_bytes);
        let snapshot = self
            .probe
            .snapshot()
            .map_err(|e| SchedError::Memory(e.to_string()))?;
        let mut room = room(&snapshot, &state.entries);
        if required > room.capacity {
            return Err(SchedError::TooLarge {
                model: spec.name.clone(),
                required,
                available: room.capacity,
            });
        }
        let mut loaded = state.loaded_count();
        let fits = |room: &state::Room, loaded: usize| {
            room.free >= required && loaded < self.policy.max_loaded
        };
        if fits(&room, loaded) && !state.entries.iter().any(|e| e.phase == Phase::Stopping) {
            return Ok(Some(self.start_load(state, request, estimate)));
        }
        for id in state.idle_lru() {
            if fits(&room, loaded) {
                break;
            }
            let entry = state.entry_mut(id).expect("idle entry exists");
            tracing::info!(
                model = %entry.spec.name,
                for_model = %spec.name,
                "unloading the least recently used idle model to make room"
            );
            room.free = room.free.saturating_add(entry.usage());
            loaded -= 1;
            self.begin_stop(entry);
        }
        if state.entries.iter().any(|e| e.phase == Phase::Stopping) {
            return Ok(Some(Step::Wait));
        }
        if loaded >= self.policy.max_loaded || state.entries.iter().any(|e| e.refs > 0) {
            return Ok(Some(Step::Wait));
        }
        Ok(Some(Step::WaitMemory {
            required,
            available: room.free,
        }))
    }

    /// Adds a loading entry for `request` and starts the load in its own task, so that a
    /// client going away mid-load does not leave a half-started runner.
    fn start_load(
        self: &Arc<Self>,
        state: &mut State<B::Runner>,
        request: &Acquire,
        estimate: u64,
    ) -> Step<B> {
        let id = state.next_id;
        state.next_id += 1;
        let now = Instant::now();
        let (failure, _) = watch::channel(None);
        state.entries.push(Entry {
            id,
            spec: request.spec.clone(),
            phase: Phase::Loading,
            runner: None,
            pid: None,
            refs: 1,
            last_used: now,
            loaded_at: None,
            keep_alive: request.keep_alive.unwrap_or(self.policy.default_keep_alive),
            expires: None,
            estimate,
            measured: None,
            failure: Arc::new(failure),
            hung: None,
        });
        tracing::info!(
            model = %request.spec.name,
            settings = ?request.spec.settings,
            estimate_bytes = estimate,
            "loading"
        );
        let (tx, rx) = oneshot::channel();
        let inner = Arc::clone(self);
        let spec = request.spec.clone();
        tokio::spawn(async move {
            let result = inner.backend.start(&spec).await;
            let load_time = now.elapsed();
            let outcome = {
                let mut state = inner.lock();
                match result {
                    Ok(runner) => {
                        let runner = Arc::new(runner);
                        let Some(entry) = state.entry_mut(id) else {
                            return;
                        };
                        entry.runner = Some(Arc::clone(&runner));
                        entry.pid = Some(runner.pid());
                        tokio::spawn(monitor::watch(Arc::clone(&inner), id, Arc::clone(&runner)));
                        if entry.phase == Phase::Stopping {
                            inner.begin_stop(entry);
                            drop(state);
                            inner.changed.notify_waiters();
                            let _ = tx.send(Err(SchedError::ShuttingDown));
                            return;
                        }
                        entry.phase = Phase::Ready;
                        entry.loaded_at = Some(Instant::now());
                        entry.last_used = Instant::now();
                        tracing::info!(model = %spec.name, pid = runner.pid(), ?load_time, "loaded");
                        Ok(inner.lease(entry, Duration::ZERO, Some(load_time)))
                    }
                    Err(message) => {
                        state.entries.retain(|e| e.id != id);
                        tracing::error!(model = %spec.name, %message, "load failed");
                        let failure = RunnerFailure::LoadFailed {
                            model: spec.name.clone(),
                            message: message.clone(),
                        };
                        let window = inner.policy.crash_window;
                        state.crashes.entry(spec.name.clone()).or_default().record(
                            failure,
                            Instant::now(),
                            window,
                        );
                        Err(SchedError::LoadFailed(message))
                    }
                }
            };
            inner.changed.notify_waiters();
            let _ = tx.send(outcome);
        });
        Step::Loading(rx)
    }

    fn lease(
        self: &Arc<Self>,
        entry: &Entry<B::Runner>,
        waited: Duration,
        loaded: Option<Duration>,
    ) -> Lease<B> {
        Lease::new(
            Arc::clone(self),
            entry.id,
            entry.spec.name.clone(),
            Arc::clone(entry.runner.as_ref().expect("a ready entry has a runner")),
            entry.failure.subscribe(),
            waited,
            loaded,
        )
    }

    /// Gives back one reference on entry `id`; an idle entry starts its keep-alive.
    pub(crate) fn release(&self, id: u64) {
        let mut state = self.lock();
        if let Some(entry) = state.entry_mut(id) {
            entry.refs = entry.refs.saturating_sub(1);
            entry.last_used = Instant::now();
            if entry.is_idle() {
                match entry.keep_alive {
                    KeepAlive::For(d) if d.is_zero() => self.begin_stop(entry),
                    KeepAlive::For(d) => entry.expires = Some(Instant::now() + d),
                    KeepAlive::Forever => entry.expires = None,
                }
            }
        }
        drop(state);
        self.changed.notify_waiters();
    }

    /// Marks `entry` stopping and stops its runner in the background; the monitor
    /// removes the entry when the process has exited.
    fn begin_stop(&self, entry: &mut Entry<B::Runner>) {
        entry.phase = Phase::Stopping;
        entry.expires = None;
        if let Some(runner) = entry.runner.clone() {
            let grace = self.policy.stop_grace;
            tracing::info!(model = %entry.spec.name, pid = runner.pid(), "unloading");
            tokio::spawn(async move {
                runner.stop(grace).await;
            });
        }
    }
}

#[cfg(test)]
mod tests;
