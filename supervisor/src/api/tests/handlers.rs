//! Every route through `Router::oneshot`, over a real store in a temporary directory and
//! the scheduler over fake runners: status codes, bodies and NDJSON framing, with no
//! process started. The [`App`] and [`Answer`] helpers serve the other route files'
//! tests (`chat.rs`, `embed.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::api::{AppState, router};
use crate::config::Config;
use crate::memory::FakeProbe;
use crate::runners::RunnerError;
use crate::sched::tests::eventually;
use crate::sched::tests::fake::{FakeBackend, GIB, done, piece};
use crate::sched::{Policy, Scheduler};
use crate::store::{Digest, Store};

/// A template that shows its roles, so a test can see the rendered prompt.
pub(super) const TEMPLATE: &str = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}\
                        {% if add_generation_prompt %}<|assistant|>{% endif %}";

/// A small GGUF of the llama family with a chat template.
pub(super) fn tiny_gguf() -> Vec<u8> {
    let mut writer = gguf::GgufWriter::new();
    writer.set("general.architecture", "llama");
    writer.set("general.file_type", 15u32);
    writer.set("tokenizer.chat_template", TEMPLATE);
    writer
        .add_tensor("w", &[64], gguf::GgmlType::F32, vec![0u8; 64 * 4])
        .unwrap();
    writer.to_bytes().unwrap()
}

/// The app over a fresh store and fake runners (16 GiB of fake memory).
pub(super) struct App {
    router: Router,
    pub(super) state: AppState<FakeBackend>,
    _dir: tempfile::TempDir,
}

pub(super) fn policy(max_queue: usize) -> Policy {
    Policy {
        max_queue,
        ..crate::sched::tests::policy()
    }
}

pub(super) fn app_with(policy: Policy) -> App {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path().join("models")).unwrap());
    let probe = Arc::new(FakeProbe::system(16 * GIB, 16 * GIB));
    let backend = FakeBackend::new(Arc::clone(&probe));
    let config = Config::from_env(&HashMap::<String, String>::new()).unwrap();
    let state = AppState {
        config: Arc::new(config),
        sched: Scheduler::new(backend, probe, policy),
        store,
        models: Arc::default(),
    };
    App {
        router: router(state.clone()),
        state,
        _dir: dir,
    }
}

pub(super) fn app() -> App {
    app_with(policy(16))
}

/// An answer: status, content type and body.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) content_type: String,
    pub(super) retry_after: Option<String>,
    pub(super) body: Bytes,
}

impl Answer {
    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// NDJSON: one object per line, every line terminated.
    pub(super) fn lines(&self) -> Vec<Value> {
        let text = std::str::from_utf8(&self.body).unwrap();
        assert!(
            text.ends_with('\n'),
            "every NDJSON line ends with a newline"
        );
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub(super) fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl App {
    pub(super) async fn call(&self, method: &str, path: &str, body: impl Into<Body>) -> Answer {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let (content_type, retry_after) = (
            header(header::CONTENT_TYPE).unwrap_or_default(),
            header(header::RETRY_AFTER),
        );
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            status,
            content_type,
            retry_after,
            body,
        }
    }

    pub(super) async fn post(&self, path: &str, body: Value) -> Answer {
        self.call("POST", path, body.to_string()).await
    }

    /// Uploads the tiny GGUF and creates model `name` from it.
    pub(super) async fn create(&self, name: &str) {
        self.create_with(name, json!({})).await;
    }

    /// Creates model `name` from the tiny GGUF with `extra` fields of `/api/create`
    /// (`template`, `system`, `parameters`).
    pub(super) async fn create_with(&self, name: &str, extra: Value) {
        let bytes = tiny_gguf();
        let digest = Digest::of_bytes(&bytes);
        let upload = self
            .call("POST", &format!("/api/blobs/{digest}"), bytes)
            .await;
        assert_eq!(upload.status, StatusCode::CREATED);
        let mut body =
            json!({"model": name, "files": {"tiny.gguf": digest.to_string()}, "stream": false});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let created = self.post("/api/create", body).await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.error());
    }

    pub(super) fn backend(&self) -> &FakeBackend {
        self.state.sched.backend()
    }
}

#[tokio::test(start_paused = true)]
async fn root_and_version_answer_as_ollama_does() {
    let app = app();
    let root = app.call("GET", "/", Body::empty()).await;
    assert_eq!(
        (root.status, &root.body[..]),
        (StatusCode::OK, &b"Ollama is running"[..])
    );
    let version = app.call("GET", "/api/version", Body::empty()).await;
    assert_eq!(version.json()["ollamad_version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test(start_paused = true)]
async fn blobs_are_checked_against_their_digest() {
    let app = app();
    let bytes = tiny_gguf();
    let digest = Digest::of_bytes(&bytes);
    let path = format!("/api/blobs/{digest}");
    assert_eq!(
        app.call("HEAD", &path, Body::empty()).await.status,
        StatusCode::NOT_FOUND
    );
    let wrong = app.call("POST", &path, &b"other bytes"[..]).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    let bad = app
        .call("POST", "/api/blobs/sha256:xyz", Body::empty())
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.error());
    assert_eq!(
        app.call("POST", &path, bytes).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.call("HEAD", &path, Body::empty()).await.status,
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn create_streams_its_steps_and_tags_lists_the_model() {
    let app = app();
    let bytes = tiny_gguf();
    let digest = Digest::of_bytes(&bytes);
    app.call("POST", &format!("/api/blobs/{digest}"), bytes)
        .await;
    let body = json!({"model": "tiny", "files": {"tiny.gguf": digest.to_string()}});
    let created = app.post("/api/create", body).await;
    assert_eq!(created.status, StatusCode::OK);
    let statuses: Vec<Value> = created
        .lines()
        .iter()
        .map(|l| l["status"].clone())
        .collect();
    assert_eq!(statuses.last(), Some(&json!("success")), "{statuses:?}");

    let tags = app.call("GET", "/api/tags", Body::empty()).await.json();
    let names: Vec<&str> = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tiny:latest"]);

    let missing = app
        .post(
            "/api/create",
            json!({"model": "x", "files": {"x.gguf": "sha256:".to_string() + &"0".repeat(64)}}),
        )
        .await;
    assert_eq!(
        missing.status,
        StatusCode::BAD_REQUEST,
        "{}",
        missing.error()
    );
    let unnamed = app.post("/api/create", json!({"files": {}})).await;
    assert_eq!(unnamed.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(start_paused = true)]
async fn generate_streams_ndjson_pieces_then_the_statistics() {
    let app = app();
    app.create("tiny").await;
    let answer = app
        .post(
            "/api/generate",
            json!({"model": "tiny", "prompt": "Hi", "system": "Be brief"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type, "application/x-ndjson");
    let lines = answer.lines();
    let texts: Vec<&str> = lines
        .iter()
        .map(|l| l["response"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Hello", " world", ""]);
    assert!(
        lines[..2]
            .iter()
            .all(|l| l["done"] == false && l["model"] == "tiny")
    );
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["prompt_eval_count"], 5);
    assert_eq!(last["eval_count"], 2);
    assert_eq!(last["eval_duration"], 2_000_000);
    // The runner saw the prompt rendered with the model's template and the system text.
    let sent = app.backend().requests.lock().unwrap().clone();
    assert_eq!(
        sent[0].prompt,
        "<|system|>Be brief\n<|user|>Hi\n<|assistant|>"
    );
}

#[tokio::test(start_paused = true)]
async fn generate_without_streaming_answers_one_object() {
    let app = app();
    app.create("tiny").await;
    let answer = app
        .post(
            "/api/generate",
            json!({"model": "tiny", "prompt": "Hi", "stream": false, "raw": true}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type, "application/json");
    let body = answer.json();
    assert_eq!(body["response"], "Hello world");
    assert_eq!(body["done"], true);
    assert_eq!(app.backend().requests.lock().unwrap()[0].prompt, "Hi");
}

#[tokio::test(start_paused = true)]
async fn generate_without_a_prompt_loads_or_unloads_the_model() {
    let app = app();
    app.create("tiny").await;
    let load = app
        .post("/api/generate", json!({"model": "tiny"}))
        .await
        .json();
    assert_eq!(
        (load["done"].clone(), load["done_reason"].clone()),
        (json!(true), json!("load"))
    );
    assert_eq!(app.state.sched.snapshot().await.len(), 1);
    let unload = app
        .post("/api/generate", json!({"model": "tiny", "keep_alive": 0}))
        .await
        .json();
    assert_eq!(unload["done_reason"], "unload");
    eventually!(
        "the model unloaded",
        app.state.sched.snapshot().await.is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn generate_refuses_bad_requests_with_400_or_404() {
    let app = app();
    app.create("tiny").await;
    let cases = [
        (
            json!({"model": "", "prompt": "Hi"}),
            StatusCode::BAD_REQUEST,
            "model is required",
        ),
        (
            json!({"model": "absent", "prompt": "Hi"}),
            StatusCode::NOT_FOUND,
            "absent",
        ),
        (
            json!({"model": "tiny", "prompt": "Hi", "images": ["aGk="]}),
            StatusCode::BAD_REQUEST,
            "images",
        ),
        (
            json!({"model": "tiny", "prompt": "Hi", "options": {"num_ctx": "big"}}),
            StatusCode::BAD_REQUEST,
            "num_ctx",
        ),
        (
            json!({"model": "tiny", "prompt": "Hi", "keep_alive": "soon"}),
            StatusCode::BAD_REQUEST,
            "keep_alive",
        ),
    ];
    for (body, status, says) in cases {
        let answer = app.post("/api/generate", body.clone()).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.error());
        assert!(answer.error().contains(says), "{body}: {}", answer.error());
    }
    let garbled = app.call("POST", "/api/generate", "{not json").await;
    assert_eq!(garbled.status, StatusCode::BAD_REQUEST);
    assert!(
        garbled.error().starts_with("invalid request"),
        "{}",
        garbled.error()
    );
    assert!(
        app.backend().requests.lock().unwrap().is_empty(),
        "no runner was asked"
    );
}

#[tokio::test(start_paused = true)]
async fn a_runner_refusing_the_prompt_is_a_400_with_its_message() {
    let app = app();
    app.create("tiny").await;
    app.backend().script(|_| {
        Err(RunnerError::TooLong {
            model: "tiny:latest".into(),
            message: "the prompt has 9000 tokens but num_ctx is 4096: raise num_ctx".into(),
        })
    });
    let answer = app
        .post("/api/generate", json!({"model": "tiny", "prompt": "Hi"}))
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.error().contains("raise num_ctx"),
        "{}",
        answer.error()
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_breaks_ends_with_an_error_line() {
    let app = app();
    app.create("tiny").await;
    app.backend().script(|_| {
        Ok(vec![
            piece("Once"),
            Err(RunnerError::Failed {
                model: "tiny:latest".into(),
                message: "the engine failed: NaN in the logits".into(),
            }),
        ])
    });
    let answer = app
        .post("/api/generate", json!({"model": "tiny", "prompt": "Hi"}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "the stream had started");
    let lines = answer.lines();
    assert_eq!(lines[0]["response"], "Once");
    let error = lines.last().unwrap()["error"].as_str().unwrap();
    assert!(error.contains("NaN in the logits"), "{error}");

    let whole = app
        .post(
            "/api/generate",
            json!({"model": "tiny", "prompt": "Hi", "stream": false}),
        )
        .await;
    assert_eq!(whole.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        whole.error().contains("NaN in the logits"),
        "{}",
        whole.error()
    );
}

#[tokio::test(start_paused = true)]
async fn ps_lists_what_is_loaded_with_the_runners_settings() {
    let app = app();
    app.create("tiny").await;
    assert!(
        app.call("GET", "/api/ps", Body::empty()).await.json()["models"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let body = json!({"model": "tiny", "prompt": "Hi", "options": {"num_ctx": 1024}});
    app.post("/api/generate", body).await;
    let ps = app.call("GET", "/api/ps", Body::empty()).await.json();
    let row = &ps["models"][0];
    assert_eq!(row["name"], "tiny:latest");
    assert_eq!(row["state"], "ready");
    assert_eq!(row["context_length"], 1024);
    assert_eq!(row["slots_busy"], 0);
    assert_eq!(row["pid"], 1000);
    assert_eq!(row["details"]["family"], "llama");
    assert_eq!(
        (&row["size_vram"], &row["device"]),
        (&json!(0), &Value::Null)
    );
}

#[tokio::test(start_paused = true)]
async fn ps_shows_a_model_on_a_gpu_in_device_memory_and_num_gpu_0_keeps_one_on_the_cpu() {
    let app = app();
    app.create("tiny").await;
    *app.backend().gpu.lock().unwrap() = Some("Fake GPU".to_owned());
    let row = || async {
        let ps = app.call("GET", "/api/ps", Body::empty()).await.json();
        ps["models"][0].clone()
    };
    app.post("/api/generate", json!({"model": "tiny", "prompt": "Hi"}))
        .await;
    let gpu = row().await;
    assert_eq!(gpu["device"], "Fake GPU");
    // The estimate counts the host's share too; ps shows the device's.
    let (estimated, vram) = (gpu["estimated_bytes"].as_u64(), gpu["size_vram"].as_u64());
    assert!(
        vram.unwrap() > 0 && estimated.unwrap() > vram.unwrap(),
        "{gpu}"
    );
    assert_eq!(gpu["size"], gpu["size_vram"], "{gpu}");
    // Status checks keep the figure current.
    let pid = gpu["pid"].as_u64().unwrap() as u32;
    let control = app.backend().control(pid);
    control
        .device_bytes
        .store(3 * GIB, std::sync::atomic::Ordering::Relaxed);
    eventually!(
        "the new device bytes in ps",
        row().await["size_vram"] == json!(3 * GIB)
    );
    assert_eq!(row().await["size"], json!(3 * GIB));

    let body = json!({"model": "tiny", "prompt": "Hi", "options": {"num_gpu": 0}});
    let answer = app.post("/api/generate", body).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(!app.backend().alive(pid), "num_gpu 0 reloads the model");
    let cpu = row().await;
    assert_eq!(
        (&cpu["device"], &cpu["size_vram"]),
        (&Value::Null, &json!(0))
    );
    assert!(cpu["size"].as_u64().unwrap() > 0, "{cpu}");
    assert_ne!(cpu["pid"], gpu["pid"]);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_is_a_503_with_retry_after() {
    let app = app_with(policy(1));
    app.create("tiny").await;
    // One slot: hold it with a stream that is never read, then fill the queue.
    app.backend()
        .script(|_| Ok(vec![piece("x"), piece("y"), piece("z"), done(1, 3)]));
    let name = crate::store::ModelName::parse("tiny").unwrap();
    let model = crate::api::models::resolve(&app.state, &name)
        .await
        .unwrap();
    let spec = crate::sched::LoadSpec {
        name: name.to_string(),
        model_path: model.resolved.model_path.clone(),
        settings: crate::sched::LoadSettings::defaults(&app.state.config),
    };
    let acquire = move || crate::sched::Acquire {
        spec: spec.clone(),
        keep_alive: None,
    };
    let held = app.state.sched.acquire(acquire()).await.unwrap();
    let sched = app.state.sched.clone();
    let queued = tokio::spawn(async move { sched.acquire(acquire()).await.is_ok() });
    eventually!("one request queued", app.state.sched.waiting().await == 1);
    let answer = app
        .post("/api/generate", json!({"model": "tiny", "prompt": "Hi"}))
        .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
    assert!(
        answer.error().contains("OLLAMA_MAX_QUEUE"),
        "{}",
        answer.error()
    );
    drop(held);
    assert!(queued.await.unwrap());
}
