//! One picture of the loaded runners, read by `/api/ps`, gRPC and `ollamactl ps`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::failure::CrashHistory;
use super::policy::{Phase, RunnerView};
use super::spec::{LoadSettings, Policy};
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
    /// The GPU it computes on (its name); `None` on the CPU and before it loaded.
    pub device: Option<String>,
    /// Device memory it holds on that GPU, as last reported (0 on the CPU).
    pub device_bytes: u64,
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

/// `at` on the wall clock.
fn system_time(at: Instant, now: Instant) -> SystemTime {
    if at >= now {
        SystemTime::now() + (at - now)
    } else {
        SystemTime::now() - (now - at)
    }
}

/// The rows for `runners`, plus one for each model held back in back-off; `waiting`
/// lists the model of each queued request.
pub(super) fn take(
    runners: &[RunnerView],
    waiting: &[&str],
    crashes: &mut HashMap<String, CrashHistory>,
    policy: &Policy,
    now: Instant,
) -> Vec<RunnerInfo> {
    let waiting_for = |name: &str| waiting.iter().filter(|w| **w == name).count();
    let mut out: Vec<RunnerInfo> = runners
        .iter()
        .map(|r| {
            let expires_at = match (r.expires, r.keep_alive) {
                (Some(at), _) => Some(system_time(at, now)),
                (None, KeepAlive::For(d)) => Some(system_time(now + d, now)),
                (None, KeepAlive::Forever) => None,
            };
            let history = crashes.get(&r.spec.name);
            RunnerInfo {
                name: r.spec.name.clone(),
                model_path: r.spec.model_path.clone(),
                settings: Some(r.spec.settings),
                state: match r.phase {
                    Phase::Loading => RunnerState::Loading,
                    Phase::Ready => RunnerState::Ready,
                    Phase::Stopping => RunnerState::Stopping,
                },
                pid: r.pid,
                estimated_bytes: r.estimate.total(),
                measured_bytes: r.measured,
                device: r.device.clone(),
                device_bytes: r.device_bytes,
                busy: r.refs,
                slots: r.slots(),
                waiting: waiting_for(&r.spec.name),
                keep_alive: r.keep_alive,
                expires_at,
                restarts: history.map_or(0, |h| h.total),
                last_failure: history.and_then(|h| h.last.as_ref().map(ToString::to_string)),
            }
        })
        .collect();
    for (name, history) in crashes.iter_mut() {
        if out.iter().any(|i| &i.name == name) || history.backoff(name, now, policy).is_none() {
            continue;
        }
        out.push(RunnerInfo {
            waiting: waiting_for(name),
            name: name.clone(),
            model_path: PathBuf::new(),
            settings: None,
            state: RunnerState::Failed,
            pid: None,
            estimated_bytes: 0,
            measured_bytes: None,
            device: None,
            device_bytes: 0,
            busy: 0,
            slots: 0,
            keep_alive: KeepAlive::For(std::time::Duration::ZERO),
            expires_at: None,
            restarts: history.total,
            last_failure: history.last.as_ref().map(ToString::to_string),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
