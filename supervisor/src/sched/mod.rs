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
//!
//! The state has one owner, a task ([`actor`]); a [`Scheduler`] is a handle that sends it
//! commands. Every rule is a pure function in [`policy`], tested without a runtime.
//! What happens is published as [`SchedEvent`]s.

mod actor;
mod backend;
mod event;
mod failure;
mod lease;
mod monitor;
pub mod policy;
mod snapshot;
mod spec;

pub use backend::{
    Backend, EstimateError, Generation, Placement, RunnerBackend, RunnerHandle, Usage,
    estimate_with,
};
pub use event::{EVENT_BACKLOG, EventKind, SchedEvent};
pub use failure::{CrashHistory, RunnerFailure, SchedError};
pub use lease::Lease;
pub use policy::Phase;
pub use snapshot::{RunnerInfo, RunnerState};
pub use spec::{Acquire, DeviceChoice, Footprint, LoadSettings, LoadSpec, Policy};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

pub use self::actor::FORCE_GRACE;
use self::actor::{Actor, Command};
use crate::memory::{MemoryError, MemoryProbe, MemorySnapshot};

/// A handle on the scheduler; cheap to clone (all clones talk to one actor).
pub struct Scheduler<B: Backend> {
    tx: mpsc::UnboundedSender<Command<B>>,
    backend: Arc<B>,
    events: broadcast::Sender<SchedEvent>,
    probe: Arc<dyn MemoryProbe>,
    policy: Arc<Policy>,
}

impl<B: Backend> Clone for Scheduler<B> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            backend: Arc::clone(&self.backend),
            events: self.events.clone(),
            probe: Arc::clone(&self.probe),
            policy: Arc::clone(&self.policy),
        }
    }
}

impl<B: Backend> Scheduler<B> {
    /// A scheduler over `backend`, measuring with `probe`. Starts its actor, so it must
    /// be called inside a tokio runtime.
    pub fn new(backend: B, probe: Arc<dyn MemoryProbe>, policy: Policy) -> Self {
        let backend = Arc::new(backend);
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let shared = Arc::new(policy.clone());
        let actor = Actor::new(
            Arc::clone(&backend),
            Arc::clone(&probe),
            policy,
            tx.downgrade(),
            events.clone(),
        );
        tokio::spawn(actor.run(rx));
        Self {
            tx,
            backend,
            events,
            probe,
            policy: shared,
        }
    }

    /// The backend that starts runners.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The scheduler's limits, and the device it loads onto.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The memory the scheduler places models in, as it sees it now (the estimate's
    /// "does it fit" answer reads this). Blocking: it may query the driver.
    pub fn memory(&self) -> Result<MemorySnapshot, MemoryError> {
        self.probe.snapshot()
    }

    /// Every event from now on (loads, unloads, evictions, expiries, crashes, back-off,
    /// reloads), in the order they happened.
    pub fn events(&self) -> broadcast::Receiver<SchedEvent> {
        self.events.subscribe()
    }

    /// A lease on a runner for `request`, loading one (and unloading idle ones) if needed,
    /// after waiting in the queue if its slots are busy. Dropping the future leaves the
    /// queue.
    pub async fn acquire(&self, request: Acquire) -> Result<Lease<B>, SchedError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Acquire { request, reply })?;
        answer.await.unwrap_or(Err(SchedError::ShuttingDown))
    }

    /// Unloads model `name` as soon as it is idle (a request with `keep_alive: 0` and no
    /// prompt, as `ollama stop` sends). Returns whether it was loaded.
    pub async fn expire(&self, name: &str) -> bool {
        let (reply, answer) = oneshot::channel();
        let name = name.to_string();
        self.send(Command::Expire { name, reply }).is_ok() && answer.await.unwrap_or(false)
    }

    /// Stops model `name` now: its requests in flight are cancelled (their clients get
    /// an error) and the runner exits within [`FORCE_GRACE`]. Returns whether it
    /// was loaded.
    pub async fn force_stop(&self, name: &str) -> bool {
        let (reply, answer) = oneshot::channel();
        let name = name.to_string();
        self.send(Command::ForceStop { name, reply }).is_ok() && answer.await.unwrap_or(false)
    }

    /// Requests waiting for a runner, over all models.
    pub async fn waiting(&self) -> usize {
        let (reply, answer) = oneshot::channel();
        match self.send(Command::Waiting { reply }) {
            Ok(()) => answer.await.unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// What is loaded now, for `/api/ps`, gRPC and `ollamactl ps`.
    pub async fn snapshot(&self) -> Vec<RunnerInfo> {
        let (reply, answer) = oneshot::channel();
        match self.send(Command::Snapshot { reply }) {
            Ok(()) => answer.await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// Stops taking requests, lets leases end within `grace`, then stops every runner
    /// and waits for them to exit.
    pub async fn shutdown(&self, grace: Duration) {
        let (reply, answer) = oneshot::channel();
        if self.send(Command::Shutdown { grace, reply }).is_ok() {
            let _ = answer.await;
        }
    }

    fn send(&self, command: Command<B>) -> Result<(), SchedError> {
        self.tx.send(command).map_err(|_| SchedError::ShuttingDown)
    }
}

#[cfg(test)]
pub(crate) mod tests;
