//! Fake runners for the scheduler's and the API's tests: processes that exist only in a
//! [`FakeProbe`], answering `Generate` from a script.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ollama_proto::runner as pb;
use tokio::sync::watch;

use crate::memory::FakeProbe;
use crate::runners::{ExitInfo, RunnerError};
use crate::sched::{
    Backend, DeviceChoice, EstimateError, Footprint, Generation, LoadSpec, Placement, RunnerHandle,
    Usage,
};

/// A fake runner's answer to a generation: the messages of its stream, or a refusal.
pub type Scripted = Result<Vec<Result<pb::GenerateResponse, RunnerError>>, RunnerError>;

/// How a fake runner answers a generation.
pub type Script = dyn Fn(&pb::GenerateRequest) -> Scripted + Send + Sync;

/// A piece of text as a runner streams it.
pub fn piece(text: &str) -> Result<pb::GenerateResponse, RunnerError> {
    Ok(pb::GenerateResponse {
        event: Some(pb::generate_response::Event::Piece(pb::Piece {
            text: text.into(),
            tokens: Vec::new(),
        })),
    })
}

/// The end of a generation that made `generated` tokens from a prompt of `prompt`.
pub fn done(prompt: u32, generated: u32) -> Result<pb::GenerateResponse, RunnerError> {
    Ok(pb::GenerateResponse {
        event: Some(pb::generate_response::Event::Done(pb::Done {
            reason: pb::DoneReason::Stop as i32,
            timings: Some(pb::Timings {
                prompt_tokens: prompt,
                prompt_duration_ns: 1_000_000,
                generated_tokens: generated,
                generation_duration_ns: 2_000_000,
                ..pb::Timings::default()
            }),
            context: Vec::new(),
        })),
    })
}

/// How a fake runner answers `Embed`.
pub type EmbedScript =
    dyn Fn(&pb::EmbedRequest) -> Result<pb::EmbedResponse, RunnerError> + Send + Sync;

/// The default embedding: for input `i` of `n` characters, the unit vector of
/// `[n, i + 1, 1, 0]`, so tests can tell inputs apart; one token per character.
fn lengths(request: &pb::EmbedRequest) -> Result<pb::EmbedResponse, RunnerError> {
    let embeddings = request
        .inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = [text.chars().count() as f32, i as f32 + 1.0, 1.0, 0.0];
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            pb::Embedding {
                values: v.iter().map(|x| x / norm).collect(),
            }
        })
        .collect();
    Ok(pb::EmbedResponse {
        embeddings,
        prompt_tokens: request
            .inputs
            .iter()
            .map(|t| t.chars().count() as u32)
            .sum(),
        duration_ns: 3_000_000,
    })
}

/// The default script: "Hello world" in two pieces.
fn hello(_: &pb::GenerateRequest) -> Scripted {
    Ok(vec![piece("Hello"), piece(" world"), done(5, 2)])
}

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
    /// How runners answer `Generate`.
    pub script: Arc<Mutex<Arc<Script>>>,
    /// Every `Generate` request runners received, in order.
    pub requests: Arc<Mutex<Vec<pb::GenerateRequest>>>,
    /// How runners answer `Embed`.
    pub embed_script: Arc<Mutex<Arc<EmbedScript>>>,
    /// Every `Embed` request runners received, in order.
    pub embed_requests: Arc<Mutex<Vec<pb::EmbedRequest>>>,
    /// A GPU by name: runners whose device is left to them load there, holding their
    /// size in device memory. `None`: every runner is on the CPU.
    pub gpu: Mutex<Option<String>>,
    next_pid: AtomicU32,
}

pub const GIB: u64 = 1 << 30;

/// A fake GPU runner holds this fraction of its size in system RAM (the mapped file's
/// header, the tokenizer) and all of it in device memory.
pub const HOST_SHARE: u64 = 16;

impl FakeBackend {
    pub fn new(probe: Arc<FakeProbe>) -> Self {
        Self {
            probe,
            sizes: Mutex::new(HashMap::new()),
            stop_delay: Duration::from_millis(20),
            load_delay: Duration::from_millis(5),
            events: Arc::default(),
            runners: Mutex::default(),
            script: Arc::new(Mutex::new(Arc::new(hello))),
            requests: Arc::default(),
            embed_script: Arc::new(Mutex::new(Arc::new(lengths))),
            embed_requests: Arc::default(),
            gpu: Mutex::default(),
            next_pid: AtomicU32::new(1000),
        }
    }

    /// Makes runners answer `Embed` with `script`.
    pub fn script_embed(
        &self,
        script: impl Fn(&pb::EmbedRequest) -> Result<pb::EmbedResponse, RunnerError>
        + Send
        + Sync
        + 'static,
    ) {
        *self.embed_script.lock().unwrap() = Arc::new(script);
    }

    /// Makes runners answer `Generate` with `script`.
    pub fn script(
        &self,
        script: impl Fn(&pb::GenerateRequest) -> Scripted + Send + Sync + 'static,
    ) {
        *self.script.lock().unwrap() = Arc::new(script);
    }

    fn size_of(&self, spec: &LoadSpec) -> Result<u64, EstimateError> {
        if spec.model_path.to_string_lossy().contains("unreadable") {
            let path = spec.model_path.display();
            return Err(EstimateError::Model(format!("{path}: no such file")));
        }
        let base = self.sizes.lock().unwrap().get(&spec.name).copied();
        let base = base.unwrap_or(GIB);
        // A larger context costs more, as with a real K/V cache.
        Ok(base + u64::from(spec.settings.num_ctx) * 1024)
    }

    /// The fake GPU a load of `spec` runs on, if any.
    fn device_of(&self, spec: &LoadSpec) -> Option<String> {
        match spec.settings.device {
            DeviceChoice::Auto => self.gpu.lock().unwrap().clone(),
            DeviceChoice::Cpu => None,
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
    /// What it "wrote" to stderr.
    pub stderr: Mutex<Vec<String>>,
    /// The GPU it loaded on (`None`: the CPU).
    pub device: Option<String>,
    /// The device memory its status checks report.
    pub device_bytes: AtomicU64,
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
    script: Arc<Mutex<Arc<Script>>>,
    requests: Arc<Mutex<Vec<pb::GenerateRequest>>>,
    embed_script: Arc<Mutex<Arc<EmbedScript>>>,
    embed_requests: Arc<Mutex<Vec<pb::EmbedRequest>>>,
}

impl Backend for FakeBackend {
    type Runner = FakeRunner;

    async fn estimate(&self, spec: &LoadSpec) -> Result<Footprint, EstimateError> {
        let bytes = self.size_of(spec)?;
        Ok(match self.device_of(spec) {
            Some(_) => Footprint {
                host_bytes: bytes / HOST_SHARE,
                device_bytes: bytes,
            },
            None => Footprint::host(bytes),
        })
    }

    async fn start(&self, spec: &LoadSpec) -> Result<FakeRunner, RunnerError> {
        if spec.model_path.to_string_lossy().contains("broken") {
            return Err(RunnerError::LoadRefused {
                model: spec.name.clone(),
                reason: format!("{}: not a GGUF file", spec.model_path.display()),
            });
        }
        if spec.model_path.to_string_lossy().contains("gpu-fails") && self.device_of(spec).is_some()
        {
            return Err(RunnerError::LoadRefused {
                model: spec.name.clone(),
                reason: "GPU: out of device memory".into(),
            });
        }
        tokio::time::sleep(self.load_delay).await;
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
        let bytes = self.size_of(spec).map_err(|e| RunnerError::LoadRefused {
            model: spec.name.clone(),
            reason: e.to_string(),
        })?;
        let device = self.device_of(spec);
        let device_bytes = if device.is_some() { bytes } else { 0 };
        let host_bytes = if device.is_some() {
            bytes / HOST_SHARE
        } else {
            bytes
        };
        self.probe.add_process(pid, host_bytes);
        let (exit, _) = watch::channel(None);
        let control = Arc::new(FakeControl {
            pid,
            name: spec.name.clone(),
            exit,
            hung: AtomicBool::new(false),
            stderr: Mutex::default(),
            device,
            device_bytes: AtomicU64::new(device_bytes),
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
            script: Arc::clone(&self.script),
            requests: Arc::clone(&self.requests),
            embed_script: Arc::clone(&self.embed_script),
            embed_requests: Arc::clone(&self.embed_requests),
        })
    }
}

impl RunnerHandle for FakeRunner {
    fn pid(&self) -> u32 {
        self.control.pid
    }

    fn placement(&self) -> Placement {
        Placement {
            device: self.control.device.clone(),
            device_bytes: self.control.device_bytes.load(Ordering::Relaxed),
        }
    }

    fn exit_watch(&self) -> watch::Receiver<Option<ExitInfo>> {
        self.control.exit.subscribe()
    }

    async fn check(&self) -> Result<Usage, String> {
        if self.control.hung.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        Ok(Usage {
            device_bytes: self.control.device_bytes.load(Ordering::Relaxed),
            ..Usage::default()
        })
    }

    async fn stop(&self, _grace: Duration) -> ExitInfo {
        tokio::time::sleep(self.stop_delay).await;
        self.control.end(ExitInfo::Signal(15));
        ExitInfo::Signal(15)
    }

    fn kill(&self) {
        self.control.end(ExitInfo::Signal(9));
    }

    fn stderr_tail(&self) -> Vec<String> {
        self.control.stderr.lock().unwrap().clone()
    }

    async fn generate(&self, request: pb::GenerateRequest) -> Result<Generation, RunnerError> {
        self.requests.lock().unwrap().push(request.clone());
        let script = Arc::clone(&*self.script.lock().unwrap());
        let messages = script(&request)?;
        Ok(Box::pin(futures_util::stream::iter(messages)))
    }

    async fn embed(&self, request: pb::EmbedRequest) -> Result<pb::EmbedResponse, RunnerError> {
        self.embed_requests.lock().unwrap().push(request.clone());
        let script = Arc::clone(&*self.embed_script.lock().unwrap());
        script(&request)
    }

    /// One token per character, as the fake `Embed` counts.
    async fn count_tokens(&self, text: &str) -> Result<usize, RunnerError> {
        Ok(text.chars().count())
    }
}
