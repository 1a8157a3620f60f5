//! The event stream through a model's life, in order, on a paused clock.

use std::time::Duration;

use tokio::sync::broadcast::Receiver;

use super::fake::GIB;
use super::{eventually, policy, req, scheduler, with_keep_alive};
use crate::config::KeepAlive;
use crate::runners::ExitInfo;
use crate::sched::{EventKind, Policy, RunnerFailure, RunnerHandle, SchedEvent};

/// The events received so far, as (model, kind name) pairs.
fn drain(rx: &mut Receiver<SchedEvent>) -> Vec<SchedEvent> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

fn names(events: &[SchedEvent]) -> Vec<(String, &'static str)> {
    events
        .iter()
        .map(|e| (e.model.clone(), e.kind.name()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_load_a_reload_an_eviction_an_expiry_and_a_crash_are_published_in_order() {
    let (s, _) = scheduler(
        Policy {
            max_loaded: 2,
            ..policy()
        },
        16 * GIB,
    );
    let mut rx = s.events();

    // Load.
    drop(s.acquire(req("a")).await.unwrap());
    // Reload: a bigger context.
    let mut bigger = req("a");
    bigger.spec.settings.num_ctx = 4096;
    drop(s.acquire(bigger).await.unwrap());
    // Eviction: b fits, c pushes out the least recently used (a).
    drop(s.acquire(req("b")).await.unwrap());
    drop(s.acquire(req("c")).await.unwrap());
    // Expiry: b's keep-alive runs out at once.
    drop(
        s.acquire(with_keep_alive(req("b"), KeepAlive::For(Duration::ZERO)))
            .await
            .unwrap(),
    );
    eventually!(
        "b unloaded",
        s.snapshot().await.iter().all(|i| i.name != "b")
    );
    // Crash: c's runner dies after writing to stderr.
    let lease = s.acquire(req("c")).await.unwrap();
    let control = s.backend().control(lease.runner().pid());
    control.stderr.lock().unwrap().extend([
        "loading tensors".to_string(),
        "fatal: bad tensor".to_string(),
    ]);
    control.end(ExitInfo::Signal(11));
    let failure = lease.failed().await;
    assert!(
        failure.to_string().contains("fatal: bad tensor"),
        "{failure}"
    );
    drop(lease);
    eventually!("c gone", s.snapshot().await.iter().all(|i| i.name != "c"));

    let events = drain(&mut rx);
    let a = |kind: &'static str| ("a".to_string(), kind);
    let b = |kind: &'static str| ("b".to_string(), kind);
    let c = |kind: &'static str| ("c".to_string(), kind);
    assert_eq!(
        names(&events),
        [
            a("loading"),
            a("loaded"),
            a("reload"),
            a("unloaded"),
            a("loading"),
            a("loaded"),
            b("loading"),
            b("loaded"),
            a("evicted"),
            a("unloaded"),
            c("loading"),
            c("loaded"),
            b("expired"),
            b("unloaded"),
            c("crashed"),
        ]
    );
    let reload = events.iter().find(|e| e.kind.name() == "reload").unwrap();
    assert_eq!(
        reload.kind,
        EventKind::Reload {
            changed: vec!["num_ctx"]
        }
    );
    let evicted = events.iter().find(|e| e.kind.name() == "evicted").unwrap();
    assert_eq!(
        evicted.kind,
        EventKind::Evicted {
            for_model: "c".into()
        }
    );
    let Some(EventKind::Crashed {
        failure: RunnerFailure::Crashed { exit, stderr, .. },
    }) = events.last().map(|e| &e.kind)
    else {
        panic!("the last event is c's crash: {events:?}");
    };
    assert_eq!(*exit, ExitInfo::Signal(11));
    assert_eq!(stderr.last().map(String::as_str), Some("fatal: bad tensor"));
    // /api/ps reads the same failure, last stderr line included.
    drop(s.acquire(req("c")).await.unwrap());
    let info = s.snapshot().await;
    let c_info = info.iter().find(|i| i.name == "c").unwrap();
    assert!(
        c_info
            .last_failure
            .as_deref()
            .is_some_and(|f| f.contains("fatal: bad tensor")),
        "{c_info:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn repeated_crashes_publish_back_off() {
    let (s, _) = scheduler(policy(), 16 * GIB);
    let mut rx = s.events();
    for _ in 0..3 {
        let lease = s.acquire(req("a")).await.unwrap();
        s.backend()
            .control(lease.runner().pid())
            .end(ExitInfo::Code(1));
        lease.failed().await;
    }
    eventually!(
        "back-off published",
        drain(&mut rx)
            .iter()
            .any(|e| matches!(e.kind, EventKind::BackOff { crashes: 3, .. }))
    );
}
