//! The scheduler's table of runners and the arithmetic of fitting one more.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::failure::{CrashHistory, RunnerFailure};
use super::spec::LoadSpec;
use crate::config::KeepAlive;
use crate::memory::MemorySnapshot;

/// Where an entry is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Its runner is starting and loading.
    Loading,
    /// It serves requests.
    Ready,
    /// It is being stopped (evicted, expired, replaced or shut down).
    Stopping,
}

/// One runner the scheduler knows of.
pub(crate) struct Entry<R> {
    pub id: u64,
    pub spec: LoadSpec,
    pub phase: Phase,
    pub runner: Option<Arc<R>>,
    pub pid: Option<u32>,
    /// Requests holding it.
    pub refs: usize,
    pub last_used: Instant,
    pub loaded_at: Option<Instant>,
    /// Applied when the last reference is released.
    pub keep_alive: KeepAlive,
    /// When an idle entry is unloaded (`None`: busy, or kept forever).
    pub expires: Option<Instant>,
    pub estimate: u64,
    pub measured: Option<u64>,
    /// Tells in-flight requests that the runner is gone, and why.
    pub failure: Arc<watch::Sender<Option<RunnerFailure>>>,
    /// Set when the scheduler killed it for not answering.
    pub hung: Option<RunnerFailure>,
}

impl<R> Entry<R> {
    /// The memory it is accounted for: the estimate, or the measured use when larger.
    pub fn usage(&self) -> u64 {
        self.estimate.max(self.measured.unwrap_or(0))
    }

    pub fn slots(&self) -> usize {
        self.spec.settings.num_parallel.max(1) as usize
    }

    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Ready && self.refs == 0
    }
}

/// Everything behind the scheduler's lock.
pub(crate) struct State<R> {
    pub entries: Vec<Entry<R>>,
    pub next_id: u64,
    /// Tickets of the requests waiting for each model, first come first.
    pub queues: HashMap<String, VecDeque<u64>>,
    pub next_ticket: u64,
    pub crashes: HashMap<String, CrashHistory>,
    pub accepting: bool,
}

impl<R> State<R> {
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
            next_id: 0,
            queues: HashMap::new(),
            next_ticket: 0,
            crashes: HashMap::new(),
            accepting: true,
        }
    }

    pub fn entry_mut(&mut self, id: u64) -> Option<&mut Entry<R>> {
        self.entries.iter_mut().find(|e| e.id == id)
    }

    /// The entry serving model `name`, if any (there is at most one that is not stopping).
    pub fn by_name(&self, name: &str) -> Option<&Entry<R>> {
        let mut of_name = self.entries.iter().filter(|e| e.spec.name == name);
        let all: Vec<&Entry<R>> = of_name.by_ref().collect();
        all.iter()
            .find(|e| e.phase != Phase::Stopping)
            .or_else(|| all.first())
            .copied()
    }

    /// Requests waiting, over all models.
    pub fn waiting(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    /// Requests waiting for model `name`.
    pub fn waiting_for(&self, name: &str) -> usize {
        self.queues.get(name).map_or(0, VecDeque::len)
    }

    /// Whether a request holding `ticket` (`None`: not queued yet) must let an earlier
    /// request for model `name` go first.
    pub fn must_queue(&self, name: &str, ticket: Option<u64>) -> bool {
        self.queues
            .get(name)
            .and_then(|queue| queue.front())
            .is_some_and(|first| Some(*first) != ticket)
    }

    /// Idle entries, least recently used first.
    pub fn idle_lru(&self) -> Vec<u64> {
        let mut idle: Vec<&Entry<R>> = self.entries.iter().filter(|e| e.is_idle()).collect();
        idle.sort_by_key(|e| e.last_used);
        idle.into_iter().map(|e| e.id).collect()
    }

    /// Entries that count toward `OLLAMA_MAX_LOADED_MODELS`.
    pub fn loaded_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.phase != Phase::Stopping)
            .count()
    }
}

/// How a new load compares with the memory there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Room {
    /// Bytes free for a new runner now.
    pub free: u64,
    /// Bytes that would be free with every runner gone.
    pub capacity: u64,
}

/// The room in system RAM for one more runner, given the probe's `snapshot` and the
/// entries' accounted usage.
///
/// Free memory is the smaller of two views: the OS's available memory less what loading
/// runners have yet to allocate, and the pool's size less everything accounted to
/// runners. The second keeps memory-mapped weights honest: the kernel reports page cache
/// as available, but a loaded model's weights are not free for another model.
///
/// Runners compute on the CPU, so they are placed in system RAM even where the probe
/// sees GPUs; GPU memory joins the fit when a GPU backend does.
pub(crate) fn room<R>(snapshot: &MemorySnapshot, entries: &[Entry<R>]) -> Room {
    let total = snapshot.system.effective_total_bytes();
    let available = snapshot.system.available_bytes.min(total);
    let accounted: u64 = entries.iter().map(Entry::usage).sum();
    let pending: u64 = entries
        .iter()
        .filter(|e| e.phase == Phase::Loading)
        .map(Entry::usage)
        .sum();
    let resident: u64 = entries
        .iter()
        .filter(|e| e.phase != Phase::Loading)
        .map(Entry::usage)
        .sum();
    Room {
        free: available
            .saturating_sub(pending)
            .min(total.saturating_sub(accounted)),
        capacity: available.saturating_add(resident).min(total),
    }
}
