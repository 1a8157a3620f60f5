//! Every decision the scheduler takes, as pure functions over plain data.
//!
//! The actor ([`super::actor`]) gathers the facts (its table of runners, the estimate,
//! a memory snapshot, the clock) and carries out what these functions return. Nothing
//! here touches a process, a channel or the clock, so each rule is tested synchronously.

use std::time::Duration;

use tokio::time::Instant;

use super::failure::{CrashHistory, SchedError};
use super::spec::{Footprint, LoadSettings, LoadSpec, Policy};
use crate::config::KeepAlive;
use crate::memory::{DevicePool, MemorySnapshot};

/// Where a runner is in the scheduler's life of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Its runner is starting and loading.
    Loading,
    /// It serves requests.
    Ready,
    /// It is being stopped (evicted, expired, replaced or shut down).
    Stopping,
}

/// What the policy knows of one runner: plain data, owned by the actor.
#[derive(Debug, Clone)]
pub struct RunnerView {
    /// The scheduler's id for it.
    pub id: u64,
    /// The model and settings it was started for.
    pub spec: LoadSpec,
    /// Where it is in its life.
    pub phase: Phase,
    /// Its process id, once started.
    pub pid: Option<u32>,
    /// Requests holding one of its slots (a loading runner holds one for the request
    /// that started it).
    pub refs: usize,
    /// When a request last took or gave back a slot, as a count of such events: orders
    /// runners for least-recently-used eviction, even when the clock has not moved.
    pub last_used: u64,
    /// When it finished loading.
    pub loaded_at: Option<Instant>,
    /// Applied when the last slot is given back.
    pub keep_alive: KeepAlive,
    /// When an idle runner is unloaded (`None`: busy, or kept forever).
    pub expires: Option<Instant>,
    /// Bytes estimated before loading, overhead excluded.
    pub estimate: Footprint,
    /// Host bytes measured since (the largest of its report and its resident set).
    pub measured: Option<u64>,
    /// The GPU it computes on, once loaded; `None` on the CPU.
    pub device: Option<String>,
    /// Device memory it holds on that GPU, as last reported.
    pub device_bytes: u64,
}

impl RunnerView {
    /// The system RAM it is accounted for: the estimate, or the measured use when
    /// larger.
    pub fn usage(&self) -> u64 {
        self.estimate.host_bytes.max(self.measured.unwrap_or(0))
    }

    /// The device memory it is accounted for: the estimate, or the reported use when
    /// larger (0 on the CPU).
    pub fn device_usage(&self) -> u64 {
        self.estimate.device_bytes.max(self.device_bytes)
    }

    /// What it takes in each pool of `pool`: system RAM (device buffers too where the
    /// GPU shares it) and device memory.
    fn usage_in(&self, pool: &DevicePool) -> [u64; 2] {
        if pool.is_shared() {
            [self.usage().saturating_add(self.device_usage()), 0]
        } else {
            [self.usage(), self.device_usage()]
        }
    }

    /// Requests it serves at once.
    pub fn slots(&self) -> usize {
        self.spec.settings.num_parallel.max(1) as usize
    }

    /// Ready and serving nobody: may be evicted or expire.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Ready && self.refs == 0
    }
}

/// What the scheduler does next for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Give it a slot on runner `id`.
    Lease(u64),
    /// Stop idle runner `id`, whose settings differ from the request's, then wait.
    Reload {
        /// The runner to replace.
        id: u64,
        /// The settings that differ, by their option names.
        changed: Vec<&'static str>,
    },
    /// Start a runner for it: there is room.
    Load,
    /// Stop these idle runners, least recently used first, to make room; then wait.
    Evict(Vec<u64>),
    /// Wait for a change: a slot freed, a load finished, a runner gone.
    Wait,
    /// Wait for memory given back by stopped runners to show as free.
    WaitMemory {
        /// Bytes needed (estimate plus overhead) in the pool that lacks them.
        required: u64,
        /// Bytes free there now.
        available: u64,
    },
    /// The model can never fit the GPU's memory and the device is the server's default
    /// choice: run it on the CPU instead (as Ollama offloads no layers then).
    UseCpu {
        /// Device bytes it needs (estimate plus overhead).
        required: u64,
        /// Bytes of the GPU's memory.
        total: u64,
    },
    /// The estimate of the request's model is needed first.
    NeedEstimate,
    /// A memory snapshot is needed first.
    NeedMemory,
    /// Refuse the request.
    Refuse(SchedError),
}

/// What the actor knows about one request when it asks for a decision.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The estimate of the requested load, once computed.
    pub estimate: Option<Footprint>,
    /// Free memory, once measured.
    pub memory: Option<&'a MemorySnapshot>,
    /// How long this request has been waiting for memory to come back (zero if it is not).
    pub memory_waited: Duration,
}

/// The decision for a request for `spec`, the first of its model's queue, given the
/// runners, the model's crash history and what is known.
pub fn decide(
    runners: &[RunnerView],
    spec: &LoadSpec,
    history: Option<&mut CrashHistory>,
    facts: Facts<'_>,
    policy: &Policy,
    now: Instant,
) -> Decision {
    if let Some(history) = history
        && let Some(error) = history.backoff(&spec.name, now, policy)
    {
        return Decision::Refuse(error);
    }
    if let Some(decision) = use_existing(runners, spec) {
        return decision;
    }
    let Some(estimate) = facts.estimate else {
        return Decision::NeedEstimate;
    };
    let Some(memory) = facts.memory else {
        return Decision::NeedMemory;
    };
    let required = required_in(estimate, policy);
    let rooms = rooms(memory, runners, &policy.device_pool);
    if required[1] > rooms[1].total && policy.cpu_when_too_large {
        return Decision::UseCpu {
            required: required[1],
            total: rooms[1].total,
        };
    }
    for (room, &need) in rooms.iter().zip(&required) {
        if need > room.total {
            return Decision::Refuse(SchedError::TooLarge {
                model: spec.name.clone(),
                required: need,
                available: room.capacity,
            });
        }
    }
    let free = rooms.map(|r| r.free);
    let stopping = runners.iter().any(|r| r.phase == Phase::Stopping);
    let loaded = loaded_count(runners);
    if fits(free, required, loaded, policy) && !stopping {
        return Decision::Load;
    }
    let evict = evictions(runners, free, required, policy);
    if !evict.is_empty() {
        return Decision::Evict(evict);
    }
    if stopping || loaded >= policy.max_loaded || runners.iter().any(|r| r.refs > 0) {
        return Decision::Wait;
    }
    // Nothing left to stop: the memory of runners that just exited may still be on its
    // way back (or another process holds it). Wait a little, then refuse.
    let (required, available) = required
        .into_iter()
        .zip(free)
        .find(|(need, free)| need > free)
        .unwrap_or((required[0], free[0]));
    if facts.memory_waited >= policy.memory_wait {
        return Decision::Refuse(SchedError::TooLarge {
            model: spec.name.clone(),
            required,
            available,
        });
    }
    Decision::WaitMemory {
        required,
        available,
    }
}

/// What a load of `estimate` needs in each pool: system RAM, then device memory.
/// `OLLAMA_GPU_OVERHEAD` is added where the model's weights go.
fn required_in(estimate: Footprint, policy: &Policy) -> [u64; 2] {
    let overhead = policy.overhead_bytes;
    let [host, device] = if policy.device_pool.is_shared() {
        [estimate.host_bytes.saturating_add(estimate.device_bytes), 0]
    } else {
        [estimate.host_bytes, estimate.device_bytes]
    };
    if device > 0 {
        [host, device.saturating_add(overhead)]
    } else {
        [host.saturating_add(overhead), 0]
    }
}

/// The decision when a runner for the model already exists, or `None` when none does.
fn use_existing(runners: &[RunnerView], spec: &LoadSpec) -> Option<Decision> {
    let runner = by_name(runners, &spec.name)?;
    let same = runner.spec.same_runner(spec);
    Some(match runner.phase {
        Phase::Ready if same && runner.refs < runner.slots() => Decision::Lease(runner.id),
        Phase::Ready if !same && runner.refs == 0 => Decision::Reload {
            id: runner.id,
            changed: changed_settings(&runner.spec, spec),
        },
        _ => Decision::Wait,
    })
}

/// The runner serving model `name`, if any: the one not stopping, else a stopping one
/// (which the request must wait out).
pub fn by_name<'a>(runners: &'a [RunnerView], name: &str) -> Option<&'a RunnerView> {
    let mut of_name = runners.iter().filter(|r| r.spec.name == name);
    let first = of_name.clone().next();
    of_name.find(|r| r.phase != Phase::Stopping).or(first)
}

/// Runners that count toward `OLLAMA_MAX_LOADED_MODELS`.
pub fn loaded_count(runners: &[RunnerView]) -> usize {
    runners
        .iter()
        .filter(|r| r.phase != Phase::Stopping)
        .count()
}

/// Whether a load needing `required` bytes in each pool (system RAM, device) fits in
/// `free` bytes with `loaded` runners.
pub fn fits(free: [u64; 2], required: [u64; 2], loaded: usize, policy: &Policy) -> bool {
    free.iter().zip(&required).all(|(free, need)| free >= need) && loaded < policy.max_loaded
}

/// The idle runners to stop, least recently used first, until a load needing
/// `required` bytes in each pool fits (memory and count); all idle ones when even that
/// is not enough, since their memory is what the load waits for.
pub fn evictions(
    runners: &[RunnerView],
    free: [u64; 2],
    required: [u64; 2],
    policy: &Policy,
) -> Vec<u64> {
    let mut idle: Vec<&RunnerView> = runners.iter().filter(|r| r.is_idle()).collect();
    idle.sort_by_key(|r| r.last_used);
    let mut free = free;
    let mut loaded = loaded_count(runners);
    let mut out = Vec::new();
    for runner in idle {
        if fits(free, required, loaded, policy) {
            break;
        }
        let usage = runner.usage_in(&policy.device_pool);
        for (free, used) in free.iter_mut().zip(usage) {
            *free = free.saturating_add(used);
        }
        loaded -= 1;
        out.push(runner.id);
    }
    out
}

/// The option names whose values differ between a runner started for `old` and a
/// request for `new` (what a reload event reports).
pub fn changed_settings(old: &LoadSpec, new: &LoadSpec) -> Vec<&'static str> {
    let (a, b): (&LoadSettings, &LoadSettings) = (&old.settings, &new.settings);
    let fields = [
        ("model", old.model_path != new.model_path),
        ("num_ctx", a.num_ctx != b.num_ctx),
        ("num_parallel", a.num_parallel != b.num_parallel),
        ("num_batch", a.num_batch != b.num_batch),
        ("num_thread", a.num_thread != b.num_thread),
        ("kv_cache_type_k", a.type_k != b.type_k),
        ("kv_cache_type_v", a.type_v != b.type_v),
        ("flash_attention", a.flash_attention != b.flash_attention),
        ("use_mmap", a.use_mmap != b.use_mmap),
        ("numerics", a.numerics != b.numerics),
        ("num_gpu", a.device != b.device),
    ];
    fields
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| name)
        .collect()
}

/// What happens to a runner when a slot is given back and it becomes idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnIdle {
    /// Still busy: nothing.
    Busy,
    /// `keep_alive` 0: stop it now.
    Stop,
    /// Unload it at this time.
    ExpireAt(Instant),
    /// Keep it until evicted or the server stops.
    Keep,
}

/// What a runner with `refs` slots still held and `keep_alive` does at `now`.
pub fn on_release(refs: usize, keep_alive: KeepAlive, now: Instant) -> OnIdle {
    if refs > 0 {
        return OnIdle::Busy;
    }
    match keep_alive {
        KeepAlive::For(d) if d.is_zero() => OnIdle::Stop,
        KeepAlive::For(d) => OnIdle::ExpireAt(now + d),
        KeepAlive::Forever => OnIdle::Keep,
    }
}

/// Idle runners whose keep-alive has run out at `now`.
pub fn expired(runners: &[RunnerView], now: Instant) -> Vec<u64> {
    runners
        .iter()
        .filter(|r| r.is_idle() && r.expires.is_some_and(|at| at <= now))
        .map(|r| r.id)
        .collect()
}

/// The next keep-alive expiry, for the actor's timer.
pub fn next_expiry(runners: &[RunnerView]) -> Option<Instant> {
    runners
        .iter()
        .filter(|r| r.is_idle())
        .filter_map(|r| r.expires)
        .min()
}

/// Whether every runner has given back its slots (shutdown waits for this).
pub fn drained(runners: &[RunnerView]) -> bool {
    runners.iter().all(|r| r.refs == 0)
}

/// Whether a request for model `name` must let requests ahead of it go first:
/// first come, first served within a model, while models do not wait for each other.
/// `ahead` lists the models of the requests still waiting in front of it.
pub fn waits_behind<'a>(mut ahead: impl Iterator<Item = &'a str>, name: &str) -> bool {
    ahead.any(|model| model == name)
}

/// How a new load compares with the memory there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// Bytes free for a new runner now.
    pub free: u64,
    /// Bytes that would be free with every runner gone.
    pub capacity: u64,
    /// Bytes of the whole pool (the machine, or its cgroup limit): a load larger than
    /// this can never fit.
    pub total: u64,
}

/// The room for one more runner in each pool: system RAM, then the device's memory
/// (unbounded where device memory is not budgeted apart: no GPU, a GPU sharing system
/// RAM, or one nothing measures).
pub fn rooms(snapshot: &MemorySnapshot, runners: &[RunnerView], pool: &DevicePool) -> [Room; 2] {
    let total = snapshot.system.effective_total_bytes();
    let system = room_in(
        total,
        snapshot.system.available_bytes.min(total),
        runners,
        |r| r.usage_in(pool)[0],
    );
    let device = match pool.memory(snapshot) {
        Some(m) => room_in(
            m.total_bytes,
            m.available_bytes.min(m.total_bytes),
            runners,
            |r| r.usage_in(pool)[1],
        ),
        None => Room {
            free: u64::MAX,
            capacity: u64::MAX,
            total: u64::MAX,
        },
    };
    [system, device]
}

/// The room in a pool of `total` bytes with `available` free as its owner reports them,
/// where each runner is accounted `usage`.
///
/// Free memory is the smaller of two views: what the owner reports available less what
/// loading runners have yet to allocate, and the pool's size less everything accounted
/// to runners. The second keeps memory-mapped weights honest (the kernel reports page
/// cache as available, but a loaded model's weights are not free for another model), and
/// budgets a GPU measured only once, at start, whose available figure never moves.
fn room_in(
    total: u64,
    available: u64,
    runners: &[RunnerView],
    usage: impl Fn(&RunnerView) -> u64,
) -> Room {
    let accounted: u64 = runners.iter().map(&usage).sum();
    let pending: u64 = runners
        .iter()
        .filter(|r| r.phase == Phase::Loading)
        .map(&usage)
        .sum();
    let resident: u64 = runners
        .iter()
        .filter(|r| r.phase != Phase::Loading)
        .map(&usage)
        .sum();
    Room {
        free: available
            .saturating_sub(pending)
            .min(total.saturating_sub(accounted)),
        capacity: available.saturating_add(resident).min(total),
        total,
    }
}
