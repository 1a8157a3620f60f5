//! One picture of the loaded runners, read by `/api/ps`, gRPC and `ollamactl ps`.

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::spec::LoadSettings;
use super::state::Phase;
use super::{Backend, Inner};
use crate::config::KeepAlive;

/// A runner's state as an admin sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunnerState {
    /// Starting and loading the model.
    Loading,
    /// Serving.
    Ready,
    /// Being unloaded.
    Stopping,
    /// Crashed repeatedly and held back from restarting.
    Failed,
}

/// One loaded (or held back) model.
#[derive(Debug, Clone)]
pub struct RunnerInfo {
    /// The model's name.
    pub name: String,
    /// Its GGUF file (empty for a model in back-off).
    pub model_path: PathBuf,
    /// The runner's settings (`None` for a model in back-off).
    pub settings: Option<LoadSettings>,
    /// Where it is in its life.
    pub state: RunnerState,
    /// The runner's process id, once started.
    pub pid: Option<u32>,
    /// Bytes estimated before loading, overhead excluded.
    pub estimated_bytes: u64,
    /// Bytes measured since (the larger of its own report and its resident set).
    pub measured_bytes: Option<u64>,
    /// Requests using it now.
    pub busy: usize,
    /// Requests it can serve at once.
    pub slots: usize,
    /// Requests waiting for it.
    pub waiting: usize,
    /// The keep-alive that applies once it is idle.
    pub keep_alive: KeepAlive,
    /// When it will be unloaded: for an idle model its expiry, for a busy one the time it
    /// would expire if released now; `None` when kept forever.
    pub expires_at: Option<SystemTime>,
    /// Times this model's runner crashed or was killed as hung since the server started.
    pub restarts: u32,
    /// The last crash, in words.
    pub last_failure: Option<String>,
}

impl RunnerInfo {
    /// The memory accounted to it: the estimate, or the measurement when larger.
    pub fn accounted_bytes(&self) -> u64 {
        self.estimated_bytes.max(self.measured_bytes.unwrap_or(0))
    }
}

fn system_time(at: Instant) -> SystemTime {
    let now = Instant::now();
    if at >= now {
        SystemTime::now() + (at - now)
    } else {
        SystemTime::now() - (now - at)
    }
}

pub(super) fn take<B: Backend>(inner: &Inner<B>) -> Vec<RunnerInfo> {
    let mut state = inner.lock();
    let now = Instant::now();
    let mut out: Vec<RunnerInfo> = state
        .entries
        .iter()
        .map(|e| {
            let expires_at = match (e.expires, e.keep_alive) {
                (Some(at), _) => Some(system_time(at)),
                (None, KeepAlive::For(d)) => Some(system_time(now + d)),
                (None, KeepAlive::Forever) => None,
            };
            let history = state.crashes.get(&e.spec.name);
            RunnerInfo {
                name: e.spec.name.clone(),
                model_path: e.spec.model_path.clone(),
                settings: Some(e.spec.settings),
                state: match e.phase {
                    Phase::Loading => RunnerState::Loading,
                    Phase::Ready => RunnerState::Ready,
                    Phase::Stopping => RunnerState::Stopping,
                },
                pid: e.pid,
                estimated_bytes: e.estimate,
                measured_bytes: e.measured,
                busy: e.refs,
                slots: e.slots(),
                waiting: state.waiting_for(&e.spec.name),
                keep_alive: e.keep_alive,
                expires_at,
                restarts: history.map_or(0, |h| h.total),
                last_failure: history.and_then(|h| h.last.as_ref().map(ToString::to_string)),
            }
        })
        .collect();
    let policy = inner.policy.clone();
    let held_back: Vec<(String, u32, Option<String>)> = state
        .crashes
        .iter_mut()
        .filter(|(name, _)| !out.iter().any(|i| &i.name == *name))
        .filter_map(|(name, history)| {
            history.backoff(name, now, &policy)?;
            Some((
                name.clone(),
                history.total,
                history.last.as_ref().map(ToString::to_string),
            ))
        })
        .collect();
    for (name, restarts, last_failure) in held_back {
        out.push(RunnerInfo {
            waiting: state.waiting_for(&name),
            name,
            model_path: PathBuf::new(),
            settings: None,
            state: RunnerState::Failed,
            pid: None,
            estimated_bytes: 0,
            measured_bytes: None,
            busy: 0,
            slots: 0,
            keep_alive: KeepAlive::For(std::time::Duration::ZERO),
            expires_at: None,
            restarts,
            last_failure,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
