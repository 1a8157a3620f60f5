//! Models that left memory recently and why, for `Ps`: what `ollama ps` cannot tell an
//! admin whose model is suddenly gone. Fed by the scheduler's events.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::admin::event_detail;
use crate::sched::{EventKind, SchedEvent};
use ollama_proto::ollama as pb;

/// How many departures are kept.
const KEPT: usize = 32;
/// How long a departure is reported.
const KEPT_FOR: Duration = Duration::from_secs(3600);

/// One departure.
#[derive(Debug, Clone)]
struct Departure {
    at: SystemTime,
    model: String,
    reason: &'static str,
    detail: String,
}

/// The recent departures, newest last.
#[derive(Debug, Default)]
pub struct Departed {
    recent: Mutex<VecDeque<Departure>>,
}

impl Departed {
    /// Starts following `events` until `stopping` (or the scheduler ends).
    pub fn follow(
        mut events: broadcast::Receiver<SchedEvent>,
        stopping: CancellationToken,
    ) -> Arc<Self> {
        let departed = Arc::new(Self::default());
        let record = Arc::clone(&departed);
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = stopping.cancelled() => return,
                    event = events.recv() => event,
                };
                match event {
                    Ok(event) => record.note(&event),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        departed
    }

    /// Records `event` when it says a model is leaving.
    fn note(&self, event: &SchedEvent) {
        let reason = match &event.kind {
            EventKind::Expired => "expired",
            EventKind::Evicted { .. } => "evicted",
            EventKind::Reload { .. } => "reloaded",
            EventKind::Crashed { .. } => "crashed",
            EventKind::BackOff { .. } => "back-off",
            _ => return,
        };
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(Departure {
            at: event.at,
            model: event.model.clone(),
            reason,
            detail: event_detail(&event.kind),
        });
    }

    /// The departures of the last hour, newest first, leaving out models loaded again
    /// since (`loaded` names them).
    pub fn list(&self, loaded: &[String]) -> Vec<pb::DepartedModel> {
        let now = SystemTime::now();
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = Vec::new();
        recent
            .iter()
            .rev()
            .filter(|d| now.duration_since(d.at).is_ok_and(|age| age < KEPT_FOR))
            .filter(|d| !loaded.contains(&d.model))
            .filter(|d| {
                let first = !seen.contains(&d.model);
                seen.push(d.model.clone());
                first
            })
            .map(|d| pb::DepartedModel {
                name: d.model.clone(),
                at: super::admin::rfc3339(d.at),
                reason: d.reason.to_owned(),
                detail: d.detail.clone(),
            })
            .collect()
    }
}
