//! Fake runners for the policy tests: processes that exist only in a [`FakeProbe`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::memory::FakeProbe;
use crate::runners::ExitInfo;
use crate::sched::{Backend, LoadSpec, RunnerHandle, Usage};

/// What happened, in order, for tests that check sequencing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started(String, u32),
    Stopped(String, u32),
}

/// Starts fake runners whose memory is the estimate, taken from the probe while they live.
pub struct FakeBackend {
    pub probe: Arc<FakeProbe>,
    /// Bytes per model name (default 1 GiB).
    pub sizes: Mutex<HashMap<String, u64>>,
    /// How long a stop takes to give memory back.
    pub stop_delay: Duration,
    /// How long a start takes.
    pub load_delay: Duration,
    pub events: Arc<Mutex<Vec<Event>>>,
    pub runners: Mutex<Vec<Arc<FakeControl>>>,
    next_pid: AtomicU32,
}

pub const GIB: u64 = 1 << 30;

impl FakeBackend {
    pub fn new(probe: Arc<FakeProbe>) -> Self {
        Self {
            probe,
            sizes: Mutex::new(HashMap::new()),
            stop_delay: Duration::from_millis(20),
            load_delay: Duration::from_millis(5),
            events: Arc::default(),
            runners: Mutex::default(),
            next_pid: AtomicU32::new(1000),
        }
    }

    pub fn size(&self, name: &str, bytes: u64) {
        self.sizes.lock().unwrap().insert(name.into(), bytes);
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// The controls of the runner with `pid`.
    pub fn control(&self, pid: u32) -> Arc<FakeControl> {
        let runners = self.runners.lock().unwrap();
        Arc::clone(
            runners
                .iter()
                .find(|r| r.pid == pid)
                .expect("a runner with that pid"),
        )
    }

    /// Whether a runner with `pid` is still alive.
    pub fn alive(&self, pid: u32) -> bool {
        self.control(pid).exit.borrow().is_none()
    }
}

/// A fake runner's process, shared by the test and the handle.
pub struct FakeControl {
    pub pid: u32,
    pub name: String,
    pub exit: watch::Sender<Option<ExitInfo>>,
    /// Stops answering status checks (as if SIGSTOPped).
    pub hung: AtomicBool,
    probe: Arc<FakeProbe>,
    events: Arc<Mutex<Vec<Event>>>,
}

impl FakeControl {
    /// The process ends with `exit` (a crash when nobody asked).
    pub fn end(&self, exit: ExitInfo) {
        if self.exit.borrow().is_some() {
            return;
        }
        self.probe.remove_process(self.pid);
        self.events
            .lock()
            .unwrap()
            .push(Event::Stopped(self.name.clone(), self.pid));
        self.exit.send_replace(Some(exit));
    }
}

pub struct FakeRunner {
    control: Arc<FakeControl>,
    stop_delay: Duration,
}

impl Backend for FakeBackend {
    type Runner = FakeRunner;

    fn estimate(&self, spec: &LoadSpec) -> Result<u64, String> {
        let base = self.sizes.lock().unwrap().get(&spec.name).copied();
        let base = base.unwrap_or(GIB);
        // A larger context costs more, as with a real K/V cache.
        Ok(base + u64::from(spec.settings.num_ctx) * 1024)
    }

    async fn start(&self, spec: &LoadSpec) -> Result<FakeRunner, String> {
        if spec.model_path.to_string_lossy().contains("broken") {
            return Err(format!("{}: not a GGUF file", spec.model_path.display()));
        }
        tokio::time::sleep(self.load_delay).await;
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
        let bytes = self.estimate(spec)?;
        self.probe.add_process(pid, bytes);
        let (exit, _) = watch::channel(None);
        let control = Arc::new(FakeControl {
            pid,
            name: spec.name.clone(),
            exit,
            hung: AtomicBool::new(false),
            probe: Arc::clone(&self.probe),
            events: Arc::clone(&self.events),
        });
        self.runners.lock().unwrap().push(Arc::clone(&control));
        self.events
            .lock()
            .unwrap()
            .push(Event::Started(spec.name.clone(), pid));
        Ok(FakeRunner {
            control,
            stop_delay: self.stop_delay,
        })
    }
}

impl RunnerHandle for FakeRunner {
    fn pid(&self) -> u32 {
        self.control.pid
    }

    fn exit_watch(&self) -> watch::Receiver<Option<ExitInfo>> {
        self.control.exit.subscribe()
    }

    async fn check(&self) -> Result<Usage, String> {
        if self.control.hung.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        Ok(Usage::default())
    }

    async fn stop(&self, _grace: Duration) -> ExitInfo {
        tokio::time::sleep(self.stop_delay).await;
        self.control.end(ExitInfo::Signal(15));
        ExitInfo::Signal(15)
    }

    fn kill(&self) {
        self.control.end(ExitInfo::Signal(9));
    }
}
