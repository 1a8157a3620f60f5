//! Policy tests: the scheduler over fake runners and a fake memory probe.

mod events;
pub(crate) mod fake;
mod policy;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gguf::GgmlType;

use self::fake::{Event, FakeBackend, GIB};
use super::*;
use crate::config::KeepAlive;
use crate::memory::FakeProbe;

/// Quick timings for tests on a paused clock.
pub(crate) fn policy() -> Policy {
    Policy {
        max_loaded: 3,
        max_queue: 16,
        default_keep_alive: KeepAlive::For(Duration::from_secs(300)),
        overhead_bytes: 0,
        memory_wait: Duration::from_secs(1),
        check_interval: Duration::from_millis(20),
        hang_timeout: Duration::from_millis(300),
        stop_grace: Duration::from_millis(100),
        crash_limit: 3,
        crash_window: Duration::from_secs(60),
        backoff: Duration::from_secs(30),
        target: crate::devices::Target::Cpu,
        device_pool: crate::memory::DevicePool::None,
        cpu_fallback: false,
        cpu_when_too_large: false,
    }
}

fn scheduler(policy: Policy, ram: u64) -> (Scheduler<FakeBackend>, Arc<FakeProbe>) {
    let probe = Arc::new(FakeProbe::system(ram, ram));
    let backend = FakeBackend::new(Arc::clone(&probe));
    (Scheduler::new(backend, probe.clone(), policy), probe)
}

fn settings(num_ctx: u32) -> LoadSettings {
    LoadSettings {
        num_ctx,
        num_parallel: 1,
        num_batch: 512,
        num_thread: 0,
        type_k: GgmlType::F16,
        type_v: GgmlType::F16,
        flash_attention: true,
        use_mmap: true,
        numerics: crate::config::Numerics::Fast,
        device: crate::sched::DeviceChoice::Auto,
    }
}

fn req(name: &str) -> Acquire {
    Acquire {
        spec: LoadSpec {
            name: name.into(),
            model_path: PathBuf::from(format!("/models/{name}.gguf")),
            settings: settings(2048),
        },
        keep_alive: None,
    }
}

fn with_keep_alive(mut r: Acquire, keep_alive: KeepAlive) -> Acquire {
    r.keep_alive = Some(keep_alive);
    r
}

async fn loaded(s: &Scheduler<FakeBackend>) -> Vec<String> {
    s.snapshot()
        .await
        .into_iter()
        .filter(|i| i.state == RunnerState::Ready || i.state == RunnerState::Loading)
        .map(|i| i.name)
        .collect()
}

/// Waits (on the paused clock: no real time passes) until `cond` holds; `cond` may
/// `.await`.
macro_rules! eventually {
    ($what:expr, $cond:expr) => {{
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !$cond {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {}",
                $what
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }};
}
pub(crate) use eventually;

#[tokio::test(start_paused = true)]
async fn loaded_model_is_reused_without_a_new_runner() {
    let (s, _) = scheduler(policy(), 16 * GIB);
    let pid = s.acquire(req("a")).await.unwrap().runner().pid();
    let again = s.acquire(req("a")).await.unwrap();
    assert_eq!(again.runner().pid(), pid);
    assert_eq!(s.backend().events().len(), 1, "{:?}", s.backend().events());
}

#[tokio::test(start_paused = true)]
async fn max_loaded_unloads_the_least_recently_used_idle_model() {
    let (s, _) = scheduler(
        Policy {
            max_loaded: 2,
            ..policy()
        },
        16 * GIB,
    );
    let a = s.acquire(req("a")).await.unwrap().runner().pid();
    let b = s.acquire(req("b")).await.unwrap().runner().pid();
    drop(s.acquire(req("a")).await.unwrap()); // a is now more recent than b
    let c = s.acquire(req("c")).await.unwrap();
    assert!(!s.backend().alive(b), "b, least recently used, is stopped");
    assert!(s.backend().alive(a));
    assert_ne!(c.runner().pid(), b);
    let mut names = loaded(&s).await;
    names.sort();
    assert_eq!(names, ["a", "c"]);
}

#[tokio::test(start_paused = true)]
async fn busy_model_is_not_evicted_and_the_request_waits_for_it() {
    let (s, _) = scheduler(
        Policy {
            max_loaded: 1,
            ..policy()
        },
        16 * GIB,
    );
    let a = s.acquire(req("a")).await.unwrap();
    let waiter = tokio::spawn({
        let s = s.clone();
        async move { s.acquire(req("b")).await.map(|l| l.runner().pid()) }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "b must wait while a is busy");
    assert!(s.backend().alive(a.runner().pid()));
    assert_eq!(s.waiting().await, 1);
    drop(a);
    waiter.await.unwrap().unwrap();
    assert_eq!(loaded(&s).await, ["b"]);
}

#[tokio::test(start_paused = true)]
async fn default_keep_alive_unloads_an_idle_model() {
    let (s, _) = scheduler(
        Policy {
            default_keep_alive: KeepAlive::For(Duration::from_millis(50)),
            ..policy()
        },
        16 * GIB,
    );
    let lease = s.acquire(req("a")).await.unwrap();
    let pid = lease.runner().pid();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        s.backend().alive(pid),
        "keep-alive starts at release, not at load"
    );
    drop(lease);
    eventually!("a unloaded", !s.backend().alive(pid));
    eventually!("a gone from the table", s.snapshot().await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn request_keep_alive_overrides_the_default() {
    let (s, _) = scheduler(policy(), 16 * GIB); // default 5 minutes
    let short = with_keep_alive(req("a"), KeepAlive::For(Duration::from_millis(50)));
    let pid = s.acquire(short).await.unwrap().runner().pid();
    eventually!("a unloaded after 50 ms", !s.backend().alive(pid));
}

#[tokio::test(start_paused = true)]
async fn keep_alive_zero_unloads_as_soon_as_idle() {
    let (s, _) = scheduler(policy(), 16 * GIB);
    let first = s.acquire(req("a")).await.unwrap();
    let zero = with_keep_alive(req("a"), KeepAlive::For(Duration::ZERO));
    let second = s.acquire(zero);
    // One slot: the second request waits for the first.
    drop(first);
    let second = second.await.unwrap();
    let pid = second.runner().pid();
    assert!(s.backend().alive(pid));
    drop(second);
    eventually!("a unloaded when idle", !s.backend().alive(pid));
}

#[tokio::test(start_paused = true)]
async fn negative_keep_alive_keeps_the_model_forever() {
    let (s, _) = scheduler(
        Policy {
            default_keep_alive: KeepAlive::For(Duration::from_millis(10)),
            ..policy()
        },
        16 * GIB,
    );
    let forever = with_keep_alive(req("a"), KeepAlive::Forever);
    let pid = s.acquire(forever).await.unwrap().runner().pid();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(s.backend().alive(pid));
    assert_eq!(s.snapshot().await[0].expires_at, None);
}

#[tokio::test(start_paused = true)]
async fn expire_unloads_an_idle_model_and_reports_whether_it_was_loaded() {
    let (s, _) = scheduler(policy(), 16 * GIB);
    assert!(!s.expire("a").await);
    let pid = s.acquire(req("a")).await.unwrap().runner().pid();
    assert!(s.expire("a").await);
    eventually!("a unloaded", !s.backend().alive(pid));
}

#[tokio::test(start_paused = true)]
async fn queue_beyond_max_queue_is_refused_at_once() {
    let (s, _) = scheduler(
        Policy {
            max_queue: 2,
            ..policy()
        },
        16 * GIB,
    );
    let held = s.acquire(req("a")).await.unwrap();
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let s = s.clone();
        waiters.push(tokio::spawn(
            async move { s.acquire(req("a")).await.is_ok() },
        ));
    }
    eventually!(
        "two waiting",
        s.snapshot().await.first().is_some_and(|i| i.waiting == 2)
    );
    let refused = s.acquire(req("a")).await.err();
    assert_eq!(refused, Some(SchedError::QueueFull { max_queue: 2 }));
    drop(held);
    for w in waiters {
        assert!(w.await.unwrap(), "queued requests are served in turn");
    }
}

#[tokio::test(start_paused = true)]
async fn a_model_that_cannot_fit_is_refused_with_numbers_and_not_started() {
    let (s, _) = scheduler(
        Policy {
            overhead_bytes: 1000,
            ..policy()
        },
        4 * GIB,
    );
    s.backend().size("huge", 8 * GIB);
    let err = s.acquire(req("huge")).await.err().unwrap();
    let SchedError::TooLarge {
        model,
        required,
        available,
    } = &err
    else {
        panic!("expected TooLarge, got {err}");
    };
    assert_eq!(model, "huge");
    assert_eq!(*required, 8 * GIB + 2048 * 1024 + 1000);
    assert_eq!(*available, 4 * GIB);
    assert!(err.to_string().contains("8194 MiB"), "{err}");
    assert!(s.backend().events().is_empty(), "nothing was started");
}

#[tokio::test(start_paused = true)]
async fn changed_options_reload_the_model() {
    let (s, _) = scheduler(policy(), 16 * GIB);
    let old = s.acquire(req("a")).await.unwrap().runner().pid();
    let mut bigger = req("a");
    bigger.spec.settings.num_ctx = 8192;
    let new = s.acquire(bigger).await.unwrap();
    assert_ne!(new.runner().pid(), old);
    assert!(!s.backend().alive(old), "the old runner is stopped");
    let info = s.snapshot().await;
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].settings.unwrap().num_ctx, 8192);
}

#[tokio::test(start_paused = true)]
async fn load_waits_for_evicted_memory_to_come_back() {
    let probe = Arc::new(FakeProbe::system(10 * GIB, 10 * GIB));
    let mut backend = FakeBackend::new(Arc::clone(&probe));
    backend.stop_delay = Duration::from_millis(200);
    let s = Scheduler::new(backend, probe.clone(), policy());
    s.backend().size("a", 6 * GIB);
    s.backend().size("b", 6 * GIB);
    let a = s.acquire(req("a")).await.unwrap().runner().pid();
    let b = s.acquire(req("b")).await.unwrap().runner().pid();
    let events = s.backend().events();
    assert_eq!(
        events,
        [
            Event::Started("a".into(), a),
            Event::Stopped("a".into(), a),
            Event::Started("b".into(), b),
        ],
        "b starts only after a's memory is back"
    );
}

#[tokio::test(start_paused = true)]
async fn a_crash_ends_in_flight_requests_with_the_signal_and_the_next_request_restarts() {
    let (s, _) = scheduler(policy(), 16 * GIB);
    let lease = s.acquire(req("a")).await.unwrap();
    let pid = lease.runner().pid();
    s.backend()
        .control(pid)
        .end(crate::runners::ExitInfo::Signal(9));
    let failure = tokio::time::timeout(Duration::from_secs(1), lease.failed())
        .await
        .expect("the lease learns of the crash");
    let text = failure.to_string();
    assert!(text.contains('a') && text.contains("SIGKILL"), "{text}");
    drop(lease);
    eventually!(
        "entry removed",
        s.snapshot().await.iter().all(|i| i.pid != Some(pid))
    );
    let next = s.acquire(req("a")).await.unwrap();
    assert_ne!(next.runner().pid(), pid);
    assert_eq!(s.snapshot().await[0].restarts, 1);
}

#[tokio::test(start_paused = true)]
async fn three_crashes_in_a_minute_put_the_model_in_back_off() {
    let (s, _) = scheduler(policy(), 16 * GIB);
    for _ in 0..3 {
        let lease = s.acquire(req("a")).await.unwrap();
        s.backend()
            .control(lease.runner().pid())
            .end(crate::runners::ExitInfo::Code(1));
        lease.failed().await;
    }
    let err = s.acquire(req("a")).await.err().unwrap();
    assert!(
        matches!(err, SchedError::BackOff { crashes: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("exit code 1"), "{err}");
    let info = s.snapshot().await;
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].state, RunnerState::Failed);
    assert_eq!(info[0].restarts, 3);
    // Other models are not held back.
    s.acquire(req("b")).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_hung_runner_is_killed_and_its_requests_fail_with_a_timeout() {
    let (s, _) = scheduler(policy(), 16 * GIB);
    let lease = s.acquire(req("a")).await.unwrap();
    let pid = lease.runner().pid();
    s.backend()
        .control(pid)
        .hung
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let failure = tokio::time::timeout(Duration::from_secs(3), lease.failed())
        .await
        .expect("hang detected");
    assert!(matches!(failure, RunnerFailure::Hung { .. }), "{failure}");
    assert!(failure.to_string().contains("timed out"), "{failure}");
    assert!(!s.backend().alive(pid));
    drop(lease);
    assert_ne!(s.acquire(req("a")).await.unwrap().runner().pid(), pid);
}

/// A scheduler on a server whose device is a (fake) GPU, with `OLLAMA_CPU_FALLBACK` as
/// `fallback`.
fn gpu_scheduler(fallback: bool) -> Scheduler<FakeBackend> {
    gpu_scheduler_with(Policy {
        cpu_fallback: fallback,
        ..policy()
    })
}

/// A scheduler with `policy` on a server whose device is a (fake) GPU.
fn gpu_scheduler_with(policy: Policy) -> Scheduler<FakeBackend> {
    let probe = Arc::new(FakeProbe::system(16 * GIB, 16 * GIB));
    let backend = FakeBackend::new(Arc::clone(&probe));
    *backend.gpu.lock().unwrap() = Some("Fake GPU".into());
    let target = crate::devices::Target::Gpu(crate::devices::Adapter {
        index: 0,
        name: "Fake GPU".into(),
        kind: "discrete".into(),
        vendor_id: 0,
        memory: None,
    });
    Scheduler::new(backend, probe, Policy { target, ..policy })
}

#[tokio::test(start_paused = true)]
async fn by_default_a_model_too_large_for_the_gpu_runs_on_the_cpu() {
    let small_gpu = crate::memory::DevicePool::Budget {
        total_bytes: 2 * GIB,
        free_bytes: 2 * GIB,
    };
    let s = gpu_scheduler_with(Policy {
        device_pool: small_gpu.clone(),
        cpu_when_too_large: true,
        ..policy()
    });
    s.backend().size("big", 3 * GIB);
    let lease = s.acquire(req("big")).await.unwrap();
    assert_eq!(lease.runner().placement().device, None, "on the CPU");
    let small = s.acquire(req("small")).await.unwrap();
    assert_eq!(
        small.runner().placement().device.as_deref(),
        Some("Fake GPU")
    );
    drop((lease, small));
    // A device the admin named is held to: the load is refused, naming the sizes.
    let named = gpu_scheduler_with(Policy {
        device_pool: small_gpu,
        ..policy()
    });
    named.backend().size("big", 3 * GIB);
    let err = named.acquire(req("big")).await.err().unwrap();
    assert!(matches!(err, SchedError::TooLarge { .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_model_that_fails_on_the_gpu_fails_unless_cpu_fallback_loads_it_on_the_cpu() {
    let mut broken = req("a");
    broken.spec.model_path = PathBuf::from("/models/gpu-fails.gguf");
    let strict = gpu_scheduler(false);
    let err = strict.acquire(broken.clone()).await.err().unwrap();
    assert!(err.to_string().contains("out of device memory"), "{err}");
    assert!(strict.snapshot().await.is_empty());

    let lenient = gpu_scheduler(true);
    let lease = lenient.acquire(broken.clone()).await.unwrap();
    assert_eq!(lease.runner().placement().device, None, "on the CPU");
    drop(lease);
    let ps = lenient.snapshot().await;
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].settings.unwrap().device, DeviceChoice::Cpu);
    // Later requests go to the CPU runner rather than retrying the GPU.
    let again = lenient.acquire(broken).await.unwrap();
    assert_eq!(again.runner().pid(), ps[0].pid.unwrap());
    // Other models still load on the GPU.
    let other = lenient.acquire(req("b")).await.unwrap();
    assert_eq!(
        other.runner().placement().device.as_deref(),
        Some("Fake GPU")
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_load_is_reported_and_leaves_nothing_behind() {
    let (s, _) = scheduler(policy(), 16 * GIB);
    let mut broken = req("a");
    broken.spec.model_path = PathBuf::from("/models/broken.gguf");
    let err = s.acquire(broken.clone()).await.err().unwrap();
    assert!(err.to_string().contains("not a GGUF"), "{err}");
    assert!(s.snapshot().await.is_empty());
    // A model that keeps failing to load is held back rather than retried by every request.
    for _ in 0..2 {
        assert!(matches!(
            s.acquire(broken.clone()).await,
            Err(SchedError::LoadFailed(_))
        ));
    }
    let err = s.acquire(broken).await.err().unwrap();
    assert!(
        matches!(err, SchedError::BackOff { crashes: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("failed to load"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_refuses_new_requests_and_stops_every_runner() {
    let (s, _) = scheduler(policy(), 16 * GIB);
    let a = s.acquire(req("a")).await.unwrap().runner().pid();
    let lease = s.acquire(req("b")).await.unwrap();
    let b = lease.runner().pid();
    let shutdown = tokio::spawn({
        let s = s.clone();
        async move { s.shutdown(Duration::from_secs(5)).await }
    });
    eventually!("refusing", s.snapshot().await.iter().all(|i| i.busy <= 1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        s.acquire(req("c")).await.err(),
        Some(SchedError::ShuttingDown)
    );
    assert!(
        s.backend().alive(b),
        "in-flight requests get their grace period"
    );
    drop(lease);
    shutdown.await.unwrap();
    assert!(!s.backend().alive(a) && !s.backend().alive(b));
    assert!(s.snapshot().await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_request_arriving_as_a_slot_frees_does_not_overtake_the_queue() {
    let (s, _) = scheduler(policy(), 16 * GIB);
    let held = s.acquire(req("a")).await.unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let first = tokio::spawn({
        let (s, order) = (s.clone(), Arc::clone(&order));
        async move {
            let lease = s.acquire(req("a")).await.unwrap();
            order.lock().unwrap().push("queued");
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(lease);
        }
    });
    eventually!("one queued", s.waiting().await == 1);
    // Released and asked for again at once, before the queued task has run.
    drop(held);
    let late = s.acquire(req("a")).await.unwrap();
    order.lock().unwrap().push("late");
    drop(late);
    first.await.unwrap();
    assert_eq!(*order.lock().unwrap(), ["queued", "late"]);
}

#[test]
fn every_load_names_its_device_num_gpu_0_the_cpu_and_any_other_count_the_servers() {
    let gpu = crate::devices::Adapter {
        index: 1,
        name: "NVIDIA H200".into(),
        kind: "discrete".into(),
        vendor_id: crate::devices::NVIDIA,
        memory: None,
    };
    for (target, server) in [
        (crate::devices::Target::Cpu, "cpu"),
        (crate::devices::Target::Gpu(gpu), "1"),
    ] {
        let backend = RunnerBackend {
            config: crate::runners::RunnerConfig {
                bin: PathBuf::from("ollama-runner"),
                socket_root: std::env::temp_dir(),
                load_timeout: Duration::from_secs(1),
            },
            multi_user_cache: false,
            target,
        };
        let mut spec = req("a").spec;
        assert_eq!(backend.load_request(&spec).device, server);
        for (num_gpu, device) in [(0, "cpu"), (-1, server), (1, server), (999, server)] {
            spec.settings.device = DeviceChoice::from_num_gpu(num_gpu);
            assert_eq!(
                backend.load_request(&spec).device,
                device,
                "num_gpu {num_gpu} on {server}"
            );
        }
    }
}
