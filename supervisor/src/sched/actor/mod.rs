//! The scheduler's one owner: a task that holds the table of runners, the queue of
//! requests, the crash histories and the timers, takes [`Command`]s one at a time, asks
//! [`policy`] what to do and carries it out. Nothing else touches this state, so there is
//! no lock to hold across a decision and no decision half made when a task is cancelled.
//!
//! Loads, stops, estimates and health checks run in tasks of their own and report back
//! as commands; every clock read is `tokio::time`, so tests drive it on a paused clock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::backend::{Backend, EstimateError};
use super::event::{EventKind, SchedEvent};
use super::failure::{CrashHistory, RunnerFailure, SchedError};
use super::lease::Lease;
use super::policy::{self, Decision, Facts, Phase, RunnerView};
use super::snapshot::RunnerInfo;
use super::spec::{Acquire, DeviceChoice, Footprint, LoadSpec, Policy};
use crate::memory::{MemoryProbe, MemorySnapshot};
use crate::runners::{ExitInfo, RunnerError};

mod lifecycle;
pub use lifecycle::FORCE_GRACE;

/// How often a request waiting for evicted memory looks at the probe again.
const MEMORY_POLL: Duration = Duration::from_millis(100);

/// A reply to a request for a slot.
pub(super) type LeaseReply<B> = oneshot::Sender<Result<Lease<B>, SchedError>>;

/// What the actor is asked to do, by callers and by its own tasks.
pub(super) enum Command<B: Backend> {
    /// A request wants a slot.
    Acquire {
        request: Acquire,
        reply: LeaseReply<B>,
    },
    /// A lease was dropped.
    Release { id: u64 },
    /// Unload model `name` once idle; replies whether it was loaded.
    Expire {
        name: String,
        reply: oneshot::Sender<bool>,
    },
    /// Stop `name` now, cancelling its requests; replies whether it was loaded.
    ForceStop {
        name: String,
        reply: oneshot::Sender<bool>,
    },
    /// What is loaded now.
    Snapshot {
        reply: oneshot::Sender<Vec<RunnerInfo>>,
    },
    /// Requests waiting, over all models.
    Waiting { reply: oneshot::Sender<usize> },
    /// Stop taking requests, drain for `grace`, stop every runner; replies when done.
    Shutdown {
        grace: Duration,
        reply: oneshot::Sender<()>,
    },
    /// An estimate task finished.
    Estimated {
        spec: LoadSpec,
        result: Result<Footprint, EstimateError>,
    },
    /// A load task finished.
    Loaded {
        id: u64,
        result: Result<B::Runner, RunnerError>,
        load_time: Duration,
    },
    /// A runner's monitor measured its memory: `bytes` on the host, `device_bytes` on its
    /// GPU.
    Measured {
        id: u64,
        bytes: u64,
        device_bytes: u64,
    },
    /// A runner's monitor got no answer for `after`.
    Hung { id: u64, after: Duration },
    /// A runner's process exited.
    Exited { id: u64, exit: ExitInfo },
}

/// A request waiting for a slot.
struct Pending<B: Backend> {
    request: Acquire,
    reply: LeaseReply<B>,
    arrived: Instant,
    /// Counted toward `OLLAMA_MAX_QUEUE`: it had to wait.
    queued: bool,
    /// Since when it has been waiting for evicted memory to come back.
    memory_since: Option<Instant>,
}

/// What the actor holds of a runner beyond the policy's plain view.
struct Handle<B: Backend> {
    runner: Option<Arc<B::Runner>>,
    /// Tells in-flight requests that the runner is gone, and why.
    failure: Arc<watch::Sender<Option<RunnerFailure>>>,
    /// The request that started the load, answered when it ends.
    loader: Option<Pending<B>>,
    /// Set when the scheduler killed it for not answering.
    hung: Option<RunnerFailure>,
}

/// Shutdown in progress.
struct Shutdown {
    drain_until: Instant,
    /// Set once runners were told to stop: when to stop waiting for them.
    stop_until: Option<Instant>,
    grace: Duration,
    replies: Vec<oneshot::Sender<()>>,
    done: bool,
}

/// The state and its owner.
pub(super) struct Actor<B: Backend> {
    backend: Arc<B>,
    probe: Arc<dyn MemoryProbe>,
    policy: Policy,
    tx: mpsc::WeakUnboundedSender<Command<B>>,
    events: broadcast::Sender<SchedEvent>,
    runners: Vec<RunnerView>,
    handles: HashMap<u64, Handle<B>>,
    queue: VecDeque<Pending<B>>,
    crashes: HashMap<String, CrashHistory>,
    estimates: HashMap<LoadSpec, Footprint>,
    /// Models that run on the CPU although the server's device is a GPU: they failed to
    /// load there (`OLLAMA_CPU_FALLBACK`) or can never fit its memory. Until the server
    /// restarts.
    on_cpu: HashSet<PathBuf>,
    estimating: HashSet<LoadSpec>,
    next_id: u64,
    /// Counts slot takes and gives, for least-recently-used order.
    uses: Uses,
    shutdown: Option<Shutdown>,
}

/// A counter of slot uses.
#[derive(Default)]
struct Uses(u64);

impl Uses {
    fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

impl<B: Backend> Actor<B> {
    pub(super) fn new(
        backend: Arc<B>,
        probe: Arc<dyn MemoryProbe>,
        policy: Policy,
        tx: mpsc::WeakUnboundedSender<Command<B>>,
        events: broadcast::Sender<SchedEvent>,
    ) -> Self {
        Self {
            backend,
            probe,
            policy,
            tx,
            events,
            runners: Vec::new(),
            handles: HashMap::new(),
            queue: VecDeque::new(),
            crashes: HashMap::new(),
            estimates: HashMap::new(),
            on_cpu: HashSet::new(),
            estimating: HashSet::new(),
            next_id: 0,
            uses: Uses::default(),
            shutdown: None,
        }
    }

    /// Serves commands until every handle and lease is gone; dropping the actor then
    /// kills whatever runners are left.
    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command<B>>) {
        loop {
            let wake = self.next_wake(Instant::now());
            tokio::select! {
                biased;
                command = rx.recv() => match command {
                    Some(command) => self.handle(command, Instant::now()),
                    None => return,
                },
                () = tokio::time::sleep_until(wake) => {}
            }
            self.tick(Instant::now());
        }
    }

    /// When the actor must look again without a command: the next keep-alive expiry,
    /// a memory poll, a shutdown deadline.
    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + Duration::from_secs(3600);
        if let Some(at) = policy::next_expiry(&self.runners) {
            wake = wake.min(at);
        }
        if self.queue.iter().any(|p| p.memory_since.is_some()) {
            wake = wake.min(now + MEMORY_POLL);
        }
        if let Some(shutdown) = self.shutdown.as_ref().filter(|s| !s.done) {
            wake = wake.min(shutdown.stop_until.unwrap_or(shutdown.drain_until));
        }
        wake
    }

    fn handle(&mut self, command: Command<B>, now: Instant) {
        match command {
            Command::Acquire { request, reply } => {
                if self.shutdown.is_some() {
                    let _ = reply.send(Err(SchedError::ShuttingDown));
                    return;
                }
                self.queue.push_back(Pending {
                    request,
                    reply,
                    arrived: now,
                    queued: false,
                    memory_since: None,
                });
            }
            Command::Release { id } => self.release(id, now),
            Command::Expire { name, reply } => {
                let _ = reply.send(self.expire(&name));
            }
            Command::ForceStop { name, reply } => {
                let _ = reply.send(self.force_stop(&name));
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(self.snapshot(now));
            }
            Command::Waiting { reply } => {
                let _ = reply.send(self.queue.iter().filter(|p| p.queued).count());
            }
            Command::Shutdown { grace, reply } => self.begin_shutdown(grace, reply, now),
            Command::Estimated { spec, result } => {
                self.estimating.remove(&spec);
                match result {
                    Ok(bytes) => {
                        self.estimates.insert(spec, bytes);
                    }
                    Err(e) => self.refuse_where(
                        |p| p.request.spec == spec,
                        &SchedError::Estimate {
                            model: spec.name.clone(),
                            message: e.to_string(),
                        },
                    ),
                }
            }
            Command::Loaded {
                id,
                result,
                load_time,
            } => self.loaded(id, result, load_time, now),
            Command::Measured {
                id,
                bytes,
                device_bytes,
            } => {
                if let Some(view) = self.view_mut(id) {
                    view.measured = Some(bytes);
                    view.device_bytes = device_bytes;
                }
            }
            Command::Hung { id, after } => self.kill_hung(id, after),
            Command::Exited { id, exit } => self.exited(id, exit, now),
        }
    }

    /// What happens on any change or timer: expiries, the queue, shutdown.
    fn tick(&mut self, now: Instant) {
        for id in policy::expired(&self.runners, now) {
            if let Some(view) = self.view(id) {
                tracing::debug!(model = %view.spec.name, keep_alive = %view.keep_alive, "keep-alive expired");
            }
            self.begin_stop(id, Some(EventKind::Expired));
        }
        self.schedule(now);
        self.advance_shutdown(now);
    }

    /// Decides for the first request of each model's queue, in arrival order; the
    /// others of a model wait behind it.
    fn schedule(&mut self, now: Instant) {
        let pending: Vec<Pending<B>> = self.queue.drain(..).collect();
        let mut memory: Option<MemorySnapshot> = None;
        for p in pending {
            if p.reply.is_closed() {
                continue;
            }
            let ahead = self.queue.iter().map(|q| q.request.spec.name.as_str());
            let stays = if policy::waits_behind(ahead, &p.request.spec.name) {
                self.keep_queued(p)
            } else {
                self.serve(p, &mut memory, now)
            };
            if let Some(p) = stays {
                self.queue.push_back(p);
            }
        }
    }

    /// Keeps `p` waiting, counted toward `OLLAMA_MAX_QUEUE`, or refuses it when the
    /// queue is full. Returns it when it stays.
    fn keep_queued(&self, mut p: Pending<B>) -> Option<Pending<B>> {
        if !p.queued {
            let queued = self.queue.iter().filter(|q| q.queued).count();
            if queued >= self.policy.max_queue {
                let _ = p.reply.send(Err(SchedError::QueueFull {
                    max_queue: self.policy.max_queue,
                }));
                return None;
            }
            p.queued = true;
        }
        Some(p)
    }

    /// Decides for `p`, the first of its model's queue, and carries the decision out.
    /// Returns it when it must keep waiting.
    fn serve(
        &mut self,
        mut p: Pending<B>,
        memory: &mut Option<MemorySnapshot>,
        now: Instant,
    ) -> Option<Pending<B>> {
        if p.request.spec.settings.device == DeviceChoice::Auto
            && self.on_cpu.contains(&p.request.spec.model_path)
        {
            p.request.spec.settings.device = DeviceChoice::Cpu;
        }
        let decision = loop {
            let spec = &p.request.spec;
            let facts = Facts {
                estimate: self.estimates.get(spec).copied(),
                memory: memory.as_ref(),
                memory_waited: p.memory_since.map_or(Duration::ZERO, |t| now - t),
            };
            let history = self.crashes.get_mut(&spec.name);
            match policy::decide(&self.runners, spec, history, facts, &self.policy, now) {
                Decision::NeedMemory => match self.probe.snapshot() {
                    Ok(snapshot) => *memory = Some(snapshot),
                    Err(e) => break Decision::Refuse(SchedError::Memory(e.to_string())),
                },
                decision => break decision,
            }
        };
        if !matches!(decision, Decision::WaitMemory { .. }) {
            p.memory_since = None;
        }
        match decision {
            Decision::Lease(id) => {
                self.lease(id, p, None, now);
                None
            }
            Decision::Load => {
                self.start_load(p);
                None
            }
            Decision::Refuse(error) => {
                let _ = p.reply.send(Err(error));
                None
            }
            Decision::UseCpu { required, total } => {
                tracing::info!(
                    model = %p.request.spec.name,
                    required,
                    gpu_bytes = total,
                    "the model does not fit the GPU's memory: it runs on the CPU"
                );
                // `serve` moves it to the CPU, as every later request for the model.
                self.on_cpu.insert(p.request.spec.model_path.clone());
                self.serve(p, memory, now)
            }
            Decision::NeedEstimate => {
                self.start_estimate(&p.request.spec);
                Some(p)
            }
            Decision::Evict(ids) => {
                let for_model = &p.request.spec.name;
                for id in ids {
                    if let Some(view) = self.view(id) {
                        tracing::info!(
                            model = %view.spec.name,
                            %for_model,
                            "unloading the least recently used idle model to make room"
                        );
                    }
                    let for_model = for_model.clone();
                    self.begin_stop(id, Some(EventKind::Evicted { for_model }));
                }
                self.keep_queued(p)
            }
            Decision::Reload { id, changed } => {
                tracing::info!(model = %p.request.spec.name, ?changed, "options changed: reloading the model");
                self.begin_stop(id, Some(EventKind::Reload { changed }));
                self.keep_queued(p)
            }
            Decision::WaitMemory { .. } => {
                p.memory_since.get_or_insert(now);
                self.keep_queued(p)
            }
            Decision::Wait | Decision::NeedMemory => self.keep_queued(p),
        }
    }

    /// Gives request `p` a slot on runner `id`; `load_time` when it loaded it.
    fn lease(&mut self, id: u64, p: Pending<B>, load_time: Option<Duration>, now: Instant) {
        let keep_alive = p
            .request
            .keep_alive
            .unwrap_or(self.policy.default_keep_alive);
        let Some(tx) = self.tx.upgrade() else {
            return;
        };
        let Some(handle) = self.handles.get(&id) else {
            return;
        };
        let Some(runner) = handle.runner.clone() else {
            return;
        };
        let failure = handle.failure.subscribe();
        let seq = self.uses.next();
        let Some(view) = self.view_mut(id) else {
            return;
        };
        if load_time.is_none() {
            view.refs += 1;
        }
        view.keep_alive = keep_alive;
        view.expires = None;
        view.last_used = seq;
        let lease = Lease::new(
            tx,
            id,
            view.spec.name.clone(),
            runner,
            failure,
            if load_time.is_some() {
                Duration::ZERO
            } else {
                now - p.arrived
            },
            load_time,
        );
        // A request that left meanwhile hands the lease back, which releases the slot.
        let _ = p.reply.send(Ok(lease));
    }

    /// Starts computing the estimate of `spec`, once, in a task of its own: it reads
    /// the model file.
    fn start_estimate(&mut self, spec: &LoadSpec) {
        if !self.estimating.insert(spec.clone()) {
            return;
        }
        let (backend, tx, spec) = (Arc::clone(&self.backend), self.tx.clone(), spec.clone());
        tokio::spawn(async move {
            let result = backend.estimate(&spec).await;
            if let Some(tx) = tx.upgrade() {
                let _ = tx.send(Command::Estimated { spec, result });
            }
        });
    }

    /// Adds a loading runner for request `p` and starts it in a task of its own, so
    /// that a client going away mid-load does not leave a half-started runner.
    fn start_load(&mut self, p: Pending<B>) {
        let id = self.next_id;
        self.next_id += 1;
        let spec = p.request.spec.clone();
        let estimate = self.estimates.get(&spec).copied().unwrap_or_default();
        self.runners.push(RunnerView {
            id,
            spec: spec.clone(),
            phase: Phase::Loading,
            pid: None,
            refs: 1,
            last_used: self.uses.next(),
            loaded_at: None,
            keep_alive: p
                .request
                .keep_alive
                .unwrap_or(self.policy.default_keep_alive),
            expires: None,
            estimate,
            measured: None,
            device: None,
            device_bytes: 0,
        });
        let (failure, _) = watch::channel(None);
        self.handles.insert(
            id,
            Handle {
                runner: None,
                failure: Arc::new(failure),
                loader: Some(p),
                hung: None,
            },
        );
        tracing::info!(
            model = %spec.name,
            settings = ?spec.settings,
            host_bytes = estimate.host_bytes,
            device_bytes = estimate.device_bytes,
            "loading"
        );
        self.emit(
            &spec.name,
            EventKind::Loading {
                settings: spec.settings,
                estimate_bytes: estimate.total(),
            },
        );
        let (backend, tx) = (Arc::clone(&self.backend), self.tx.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let result = backend.start(&spec).await;
            let load_time = started.elapsed();
            if let Some(tx) = tx.upgrade() {
                let _ = tx.send(Command::Loaded {
                    id,
                    result,
                    load_time,
                });
            }
        });
    }

    /// Refuses every waiting request that `which` selects with `error`.
    fn refuse_where(&mut self, which: impl Fn(&Pending<B>) -> bool, error: &SchedError) {
        let (refused, kept): (Vec<_>, Vec<_>) = self.queue.drain(..).partition(|p| which(p));
        self.queue = kept.into();
        for p in refused {
            let _ = p.reply.send(Err(error.clone()));
        }
    }

    fn view(&self, id: u64) -> Option<&RunnerView> {
        self.runners.iter().find(|r| r.id == id)
    }

    fn view_mut(&mut self, id: u64) -> Option<&mut RunnerView> {
        self.runners.iter_mut().find(|r| r.id == id)
    }

    /// Publishes an event; nobody listening is fine.
    fn emit(&self, model: &str, kind: EventKind) {
        let _ = self.events.send(SchedEvent {
            at: SystemTime::now(),
            model: model.to_string(),
            kind,
        });
    }
}
