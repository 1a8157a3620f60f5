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

/// The recent departures, newest last, and the scheduler's events not yet read.
#[derive(Debug)]
pub struct Departed {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    recent: VecDeque<Departure>,
    /// Read on every event (by the follower) and before every answer (by [`Departed::list`]),
    /// so a `Ps` sent after a `Watch` event was seen always counts that event.
    events: broadcast::Receiver<SchedEvent>,
}

impl Departed {
    /// Starts following `events` until `stopping` (or the scheduler ends).
    pub fn follow(
        events: broadcast::Receiver<SchedEvent>,
        stopping: CancellationToken,
    ) -> Arc<Self> {
        let mut doorbell = events.resubscribe();
        let departed = Arc::new(Self {
            state: Mutex::new(State {
                recent: VecDeque::new(),
                events,
            }),
        });
        let record = Arc::clone(&departed);
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = stopping.cancelled() => return,
                    event = doorbell.recv() => event,
                };
                match event {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => record.lock().drain(),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        departed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Notes every event received so far.
    fn drain(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(event) => self.note(&event),
                Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    }

    /// Records `event` when it says a model is leaving.
    fn note(&mut self, event: &SchedEvent) {
        let reason = match &event.kind {
            EventKind::Expired => "expired",
            EventKind::Evicted { .. } => "evicted",
            EventKind::Reload { .. } => "reloaded",
            EventKind::Crashed { .. } => "crashed",
            EventKind::BackOff { .. } => "back-off",
            _ => return,
        };
        if self.recent.len() == KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(Departure {
            at: event.at,
            model: event.model.clone(),
            reason,
            detail: event_detail(&event.kind),
        });
    }
}

impl Departed {
    /// The departures of the last hour, newest first, leaving out models loaded again
    /// since (`loaded` names them).
    pub fn list(&self, loaded: &[String]) -> Vec<pb::DepartedModel> {
        let now = SystemTime::now();
        let mut state = self.lock();
        state.drain();
        let mut seen = Vec::new();
        state
            .recent
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(model: &str, kind: EventKind) -> SchedEvent {
        SchedEvent {
            at: SystemTime::now(),
            model: model.to_owned(),
            kind,
        }
    }

    /// A client that saw a departure on `Watch` and then asks `Ps` must find it there,
    /// whether or not the follower task has run in between.
    #[tokio::test(flavor = "current_thread")]
    async fn a_departure_broadcast_before_ps_is_listed_at_once() {
        let (tx, rx) = broadcast::channel(16);
        let departed = Departed::follow(rx, CancellationToken::new());
        tx.send(event("smol:latest", EventKind::Expired)).unwrap();
        tx.send(event("other:latest", EventKind::Expired)).unwrap();
        // No await in between: on this single-threaded runtime the follower cannot run.
        let names: Vec<_> = departed
            .list(&[])
            .into_iter()
            .map(|d| (d.name, d.reason))
            .collect();
        assert_eq!(
            names,
            [
                ("other:latest".to_owned(), "expired".to_owned()),
                ("smol:latest".to_owned(), "expired".to_owned())
            ]
        );
        // A model loaded again since is left out; the follower then notes nothing twice.
        tokio::task::yield_now().await;
        assert_eq!(departed.list(&["other:latest".to_owned()]).len(), 1);
    }
}
