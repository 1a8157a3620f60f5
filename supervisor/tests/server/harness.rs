//! A real `ollamad` for one test: its own port, model store and runner binary, stopped
//! (and checked for leftovers) when dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::TestModel;
use serde_json::{Value, json};

/// A running server.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub models_dir: tempfile::TempDir,
    log: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

impl Server {
    /// Starts `ollamad` with `env` on top of a small test configuration (context 512).
    pub fn start(env: &[(&str, &str)]) -> Self {
        // Beside the test models, so that blobs can be hard links rather than copies.
        let models_dir = tempfile::Builder::new()
            .prefix("ollamad-test-")
            .tempdir_in(e2e::models_dir())
            .unwrap();
        Self::start_in(models_dir, env)
    }

    /// Stops this server (SIGTERM) and starts another on the same store.
    pub fn restart(mut self, env: &[(&str, &str)]) -> Self {
        self.terminate();
        let placeholder = tempfile::tempdir().unwrap();
        let models_dir = std::mem::replace(&mut self.models_dir, placeholder);
        Self::start_in(models_dir, env)
    }

    fn start_in(models_dir: tempfile::TempDir, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let log = models_dir.path().join("ollamad.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ollamad"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", models_dir.path())
            .env("OLLAMA_HOST", format!("127.0.0.1:{port}"))
            .env("OLLAMA_MODELS", models_dir.path().join("models"))
            .env("OLLAMA_RUNNER", e2e::workspace_bin("ollama-runner"))
            .env("OLLAMA_CONTEXT_LENGTH", "512")
            // The expectations on the models' greedy text (a constrained answer that ends
            // within its budget) were taken on exact numerics; fast numerics are judged
            // in the runner's tests (`fast_numerics.rs`). A test may override it.
            .env("OLLAMA_NUMERICS", "exact")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("ollamad starts");
        let server = Self {
            child,
            base,
            models_dir,
            log,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let answers = || {
            agent().get(&self.base).call().is_ok_and(|mut r| {
                r.body_mut().read_to_string().unwrap_or_default() == "Ollama is running"
            })
        };
        let ready = e2e::poll_until(Duration::from_secs(20), Duration::from_millis(50), answers);
        assert!(ready, "ollamad did not answer:\n{}", self.log());
    }

    /// Runs the Python client test `script` (in tests/server) on this server with `args`
    /// after the base URL, and asserts it printed `OK`, showing its output and the
    /// server's log when not.
    pub fn run_python(&self, script: &str, args: &[&std::ffi::OsStr]) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/server")
            .join(script);
        let out = Command::new("python3")
            .arg(path)
            .arg(&self.base)
            .args(args)
            .output()
            .expect(
                "python3 runs (install the clients with pip install -r scripts/requirements.txt)",
            );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.trim() == "OK",
            "{stdout}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs JSON and returns the status and the parsed body.
    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let mut r = agent().post(self.url(path)).send_json(&body).unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let mut r = agent().get(self.url(path)).call().unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Creates model `name` from a test model without uploading it: the file is linked
    /// into the store's blobs (as an upload would leave it), then `/api/create` runs.
    pub fn create(&self, name: &str, model: TestModel, parameters: Value) {
        let blobs = self.models_dir.path().join("models/blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        let blob = blobs.join(format!("sha256-{}", model.sha256()));
        if !blob.exists() {
            link_or_copy(&model.path(), &blob);
        }
        let (status, body) = self.post(
            "/api/create",
            json!({
                "model": name,
                "files": { model.file_name(): format!("sha256:{}", model.sha256()) },
                "parameters": parameters,
                "stream": false,
            }),
        );
        assert_eq!(status, 200, "create {name}: {body}");
    }

    /// A non-streamed greedy generation of `n` tokens; returns status and body.
    pub fn generate(&self, model: &str, prompt: &str, n: u32) -> (u16, Value) {
        self.post(
            "/api/generate",
            json!({
                "model": model, "prompt": prompt, "stream": false,
                "options": { "temperature": 0, "num_predict": n }
            }),
        )
    }

    /// `/api/ps` rows.
    pub fn ps(&self) -> Vec<Value> {
        let (status, body) = self.get("/api/ps");
        assert_eq!(status, 200, "{body}");
        body["models"].as_array().cloned().unwrap_or_default()
    }

    /// The runner pid of model `name` (`name:latest`), once it is loaded.
    pub fn pid_of(&self, name: &str) -> Option<u32> {
        self.ps()
            .iter()
            .find(|m| m["name"] == name && m["state"] == "ready")
            .and_then(|m| m["pid"].as_u64())
            .map(|p| p as u32)
    }
}

impl Server {
    /// SIGTERM, then SIGKILL if it has not exited within 20 s.
    fn terminate(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let child = &mut self.child;
        let exited = || matches!(child.try_wait(), Ok(Some(_)));
        if e2e::poll_until(Duration::from_secs(20), Duration::from_millis(20), exited) {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn link_or_copy(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap();
    }
}

/// A streaming generation read line by line on its own thread; each line is sent with
/// the time it arrived.
pub fn stream_lines(server: &Server, body: Value) -> std::sync::mpsc::Receiver<(Instant, Value)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let url = server.url("/api/generate");
    std::thread::spawn(move || {
        let response = agent().post(url).send_json(&body).unwrap();
        let reader = BufReader::new(response.into_body().into_reader());
        for line in reader.lines() {
            let Ok(line) = line else { break };
            let value: Value = serde_json::from_str(&line).unwrap_or(Value::String(line));
            if tx.send((Instant::now(), value)).is_err() {
                break;
            }
        }
    });
    rx
}

/// Whether process `pid` exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits up to `limit` for `cond`.
pub fn eventually(limit: Duration, cond: impl FnMut() -> bool) -> bool {
    e2e::poll_until(limit, Duration::from_millis(20), cond)
}
