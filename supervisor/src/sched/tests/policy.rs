//! The scheduler's rules as pure functions: no runtime, no processes, no clock but the
//! instants the tests make up.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use super::{GIB, policy as test_policy, settings};
use crate::config::KeepAlive;
use crate::memory::{DevicePool, MemorySnapshot, SystemMemory};
use crate::runners::ExitInfo;
use crate::sched::failure::CrashHistory;
use crate::sched::policy::*;
use crate::sched::{Footprint, LoadSpec, RunnerFailure, SchedError};

fn spec(name: &str) -> LoadSpec {
    LoadSpec {
        name: name.into(),
        model_path: PathBuf::from(format!("/models/{name}.gguf")),
        settings: settings(2048),
    }
}

fn runner(id: u64, name: &str, phase: Phase, refs: usize, last_used: u64) -> RunnerView {
    RunnerView {
        id,
        spec: spec(name),
        phase,
        pid: Some(1000 + id as u32),
        refs,
        last_used,
        loaded_at: None,
        keep_alive: KeepAlive::For(Duration::from_secs(300)),
        expires: None,
        estimate: Footprint::host(GIB),
        measured: None,
        device: None,
        device_bytes: 0,
    }
}

fn memory(total: u64, available: u64) -> MemorySnapshot {
    MemorySnapshot {
        gpus: Vec::new(),
        system: SystemMemory {
            total_bytes: total,
            available_bytes: available,
            cgroup_limit_bytes: None,
        },
    }
}

fn facts(estimate: u64, memory: &MemorySnapshot) -> Facts<'_> {
    Facts {
        estimate: Some(Footprint::host(estimate)),
        memory: Some(memory),
        memory_waited: Duration::ZERO,
    }
}

#[test]
fn a_ready_runner_with_a_free_slot_is_leased_without_an_estimate() {
    let now = Instant::now();
    let runners = [runner(7, "a", Phase::Ready, 0, 0)];
    let no_facts = Facts {
        estimate: None,
        memory: None,
        memory_waited: Duration::ZERO,
    };
    let d = decide(&runners, &spec("a"), None, no_facts, &test_policy(), now);
    assert_eq!(d, Decision::Lease(7));
}

#[test]
fn a_busy_or_loading_runner_makes_the_request_wait() {
    let now = Instant::now();
    for (phase, refs) in [(Phase::Ready, 1), (Phase::Loading, 1), (Phase::Stopping, 0)] {
        let runners = [runner(1, "a", phase, refs, 0)];
        let m = memory(16 * GIB, 16 * GIB);
        let d = decide(
            &runners,
            &spec("a"),
            None,
            facts(GIB, &m),
            &test_policy(),
            now,
        );
        assert_eq!(d, Decision::Wait, "{phase:?} with {refs} refs");
    }
}

#[test]
fn an_unknown_model_needs_its_estimate_then_memory_then_loads() {
    let now = Instant::now();
    let p = test_policy();
    let none = Facts {
        estimate: None,
        memory: None,
        memory_waited: Duration::ZERO,
    };
    assert_eq!(
        decide(&[], &spec("a"), None, none, &p, now),
        Decision::NeedEstimate
    );
    let estimated = Facts {
        estimate: Some(Footprint::host(GIB)),
        ..none
    };
    assert_eq!(
        decide(&[], &spec("a"), None, estimated, &p, now),
        Decision::NeedMemory
    );
    let m = memory(16 * GIB, 16 * GIB);
    assert_eq!(
        decide(&[], &spec("a"), None, facts(GIB, &m), &p, now),
        Decision::Load
    );
}

#[test]
fn changed_settings_reload_an_idle_runner_and_name_what_changed() {
    let now = Instant::now();
    let runners = [runner(3, "a", Phase::Ready, 0, 0)];
    let mut wanted = spec("a");
    wanted.settings.num_ctx = 8192;
    wanted.settings.type_k = super::GgmlType::Q8_0;
    wanted.settings.numerics = crate::config::Numerics::Exact;
    wanted.settings.device = crate::sched::DeviceChoice::Cpu;
    let m = memory(16 * GIB, 16 * GIB);
    let d = decide(&runners, &wanted, None, facts(GIB, &m), &test_policy(), now);
    assert_eq!(
        d,
        Decision::Reload {
            id: 3,
            changed: vec!["num_ctx", "kv_cache_type_k", "numerics", "num_gpu"]
        }
    );
    // While busy, the request waits instead.
    let busy = [runner(3, "a", Phase::Ready, 1, 0)];
    let d = decide(&busy, &wanted, None, facts(GIB, &m), &test_policy(), now);
    assert_eq!(d, Decision::Wait);
}

#[test]
fn eviction_takes_idle_runners_least_recently_used_first_and_only_as_many_as_needed() {
    let t0 = Instant::now();
    let p = test_policy(); // max_loaded 3
    let runners = [
        runner(1, "a", Phase::Ready, 0, 3),
        runner(2, "b", Phase::Ready, 0, 1),
        runner(3, "c", Phase::Ready, 1, 0),
        runner(4, "d", Phase::Ready, 0, 2),
    ];
    // Memory is plenty; the count (4 of 3) asks for two to go: b then d, never busy c.
    let m = memory(64 * GIB, 60 * GIB);
    let d = decide(&runners, &spec("e"), None, facts(GIB, &m), &p, t0);
    assert_eq!(d, Decision::Evict(vec![2, 4]));
}

#[test]
fn a_model_larger_than_all_memory_is_refused_with_numbers() {
    let now = Instant::now();
    let p = crate::sched::Policy {
        overhead_bytes: 1000,
        ..test_policy()
    };
    let m = memory(4 * GIB, 4 * GIB);
    let d = decide(&[], &spec("huge"), None, facts(8 * GIB, &m), &p, now);
    assert_eq!(
        d,
        Decision::Refuse(SchedError::TooLarge {
            model: "huge".into(),
            required: 8 * GIB + 1000,
            available: 4 * GIB,
        })
    );
}

#[test]
fn memory_that_does_not_come_back_in_time_refuses_the_request() {
    let now = Instant::now();
    let p = test_policy(); // memory_wait 1 s
    // 10 GiB machine, 5 GiB available although nothing is loaded (another process).
    let m = memory(10 * GIB, 5 * GIB);
    let mut f = facts(6 * GIB, &m);
    assert_eq!(
        decide(&[], &spec("a"), None, f, &p, now),
        Decision::WaitMemory {
            required: 6 * GIB,
            available: 5 * GIB
        }
    );
    f.memory_waited = Duration::from_secs(1);
    assert!(matches!(
        decide(&[], &spec("a"), None, f, &p, now),
        Decision::Refuse(SchedError::TooLarge { .. })
    ));
}

#[test]
fn room_counts_loading_runners_as_pending_and_mapped_weights_as_used() {
    let mut loading = runner(1, "a", Phase::Loading, 1, 0);
    loading.estimate = Footprint::host(2 * GIB);
    let mut ready = runner(2, "b", Phase::Ready, 0, 0);
    ready.estimate = Footprint::host(3 * GIB);
    // The kernel says 12 GiB available (b's weights count as page cache).
    let [r, _] = rooms(
        &memory(16 * GIB, 12 * GIB),
        &[loading, ready],
        &DevicePool::None,
    );
    assert_eq!(
        r.free,
        10 * GIB,
        "12 available - 2 pending, and 16 - 5 accounted"
    );
    assert_eq!(r.capacity, 15 * GIB);
}

#[test]
fn back_off_refuses_after_three_failures_in_the_window_until_it_passes() {
    let t0 = Instant::now();
    let p = test_policy(); // 3 in 60 s, back-off 30 s
    let mut history = CrashHistory::default();
    for i in 0..3 {
        let failure = RunnerFailure::Crashed {
            model: "a".into(),
            exit: ExitInfo::Code(1),
            stderr: vec!["panic: out of cheese".into()],
        };
        history.record(failure, t0 + Duration::from_secs(i), p.crash_window);
    }
    let m = memory(16 * GIB, 16 * GIB);
    let at = t0 + Duration::from_secs(10);
    let d = decide(&[], &spec("a"), Some(&mut history), facts(GIB, &m), &p, at);
    let Decision::Refuse(error @ SchedError::BackOff { .. }) = d else {
        panic!("expected back-off, got {d:?}");
    };
    assert!(error.to_string().contains("out of cheese"), "{error}");
    let later = t0 + Duration::from_secs(2 + 30);
    let d = decide(
        &[],
        &spec("a"),
        Some(&mut history),
        facts(GIB, &m),
        &p,
        later,
    );
    assert_eq!(d, Decision::Load);
}

#[test]
fn keep_alive_decides_what_an_idle_runner_does() {
    let now = Instant::now();
    let five = Duration::from_secs(5);
    assert_eq!(on_release(1, KeepAlive::For(five), now), OnIdle::Busy);
    assert_eq!(
        on_release(0, KeepAlive::For(Duration::ZERO), now),
        OnIdle::Stop
    );
    assert_eq!(
        on_release(0, KeepAlive::For(five), now),
        OnIdle::ExpireAt(now + five)
    );
    assert_eq!(on_release(0, KeepAlive::Forever, now), OnIdle::Keep);
}

#[test]
fn only_idle_runners_past_their_expiry_expire() {
    let now = Instant::now();
    let past = now - Duration::from_secs(1);
    let mut idle_due = runner(1, "a", Phase::Ready, 0, 0);
    idle_due.expires = Some(past);
    let mut busy_due = runner(2, "b", Phase::Ready, 1, 0);
    busy_due.expires = Some(past);
    let mut idle_later = runner(3, "c", Phase::Ready, 0, 0);
    idle_later.expires = Some(now + Duration::from_secs(9));
    let runners = [idle_due, busy_due, idle_later];
    assert_eq!(expired(&runners, now), [1]);
    assert_eq!(next_expiry(&runners), Some(past));
}

#[test]
fn requests_wait_behind_their_own_model_only() {
    let ahead = ["a", "b"];
    assert!(waits_behind(ahead.into_iter(), "a"));
    assert!(!waits_behind(ahead.into_iter(), "c"));
    assert!(!waits_behind(std::iter::empty(), "a"));
}

/// A policy for a GPU of `total` bytes measured at start (its Vulkan budget).
fn gpu_policy(total: u64) -> crate::sched::Policy {
    crate::sched::Policy {
        device_pool: crate::memory::DevicePool::Budget {
            total_bytes: total,
            free_bytes: total,
        },
        ..test_policy()
    }
}

fn on_gpu(host: u64, device: u64) -> Footprint {
    Footprint {
        host_bytes: host,
        device_bytes: device,
    }
}

#[test]
fn a_gpu_load_is_budgeted_in_device_memory_and_evicts_what_holds_it() {
    let now = Instant::now();
    let p = gpu_policy(24 * GIB);
    // Plenty of RAM; the GPU holds an idle 16 GiB model.
    let m = memory(64 * GIB, 60 * GIB);
    let mut idle = runner(1, "big", Phase::Ready, 0, 0);
    idle.estimate = on_gpu(GIB / 4, 16 * GIB);
    let runners = [idle];
    let small = Facts {
        estimate: Some(on_gpu(GIB / 4, 6 * GIB)),
        ..facts(GIB, &m)
    };
    assert_eq!(
        decide(&runners, &spec("a"), None, small, &p, now),
        Decision::Load
    );
    let large = Facts {
        estimate: Some(on_gpu(GIB / 4, 12 * GIB)),
        ..small
    };
    assert_eq!(
        decide(&runners, &spec("a"), None, large, &p, now),
        Decision::Evict(vec![1]),
        "16 + 12 GiB do not fit a 24 GiB GPU, however much RAM is free"
    );
    // The device's reported use counts when it is above the estimate.
    let mut grown = runners[0].clone();
    grown.device_bytes = 20 * GIB;
    assert_eq!(
        decide(&[grown], &spec("a"), None, small, &p, now),
        Decision::Evict(vec![1])
    );
}

#[test]
fn a_model_larger_than_the_gpu_is_refused_naming_device_bytes() {
    let now = Instant::now();
    let p = gpu_policy(8 * GIB);
    let m = memory(64 * GIB, 64 * GIB);
    let f = Facts {
        estimate: Some(on_gpu(GIB, 9 * GIB)),
        ..facts(GIB, &m)
    };
    let d = decide(&[], &spec("a"), None, f, &p, now);
    assert_eq!(
        d,
        Decision::Refuse(SchedError::TooLarge {
            model: "a".into(),
            required: 9 * GIB,
            available: 8 * GIB,
        })
    );
}

#[test]
fn a_gpu_sharing_system_ram_is_budgeted_there() {
    let now = Instant::now();
    let p = crate::sched::Policy {
        device_pool: crate::memory::DevicePool::Shared,
        ..test_policy()
    };
    let m = memory(16 * GIB, 16 * GIB);
    let fits = Facts {
        estimate: Some(on_gpu(4 * GIB, 10 * GIB)),
        ..facts(GIB, &m)
    };
    assert_eq!(decide(&[], &spec("a"), None, fits, &p, now), Decision::Load);
    let too_big = Facts {
        estimate: Some(on_gpu(4 * GIB, 13 * GIB)),
        ..fits
    };
    assert!(
        matches!(
            decide(&[], &spec("a"), None, too_big, &p, now),
            Decision::Refuse(SchedError::TooLarge { required, .. }) if required == 17 * GIB
        ),
        "host and device bytes both come out of the 16 GiB of RAM"
    );
}
