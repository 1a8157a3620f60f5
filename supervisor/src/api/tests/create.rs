//! `/api/create` beyond one uploaded file: from another model, from a digest, from the
//! older `modelfile` body; stored messages reach chat, and what cannot be done is a 400.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::handlers::{App, app, tiny_gguf};
use crate::store::Digest;

/// A Go template that shows each message, as Ollama's library templates walk them.
const GO_TEMPLATE: &str = "{{- range .Messages }}<{{ .Role }}>{{ .Content }}{{ end }}<assistant>";

fn prompts(app: &App) -> Vec<String> {
    let sent = app.backend().requests.lock().unwrap();
    sent.iter().map(|r| r.prompt.clone()).collect()
}

fn statuses(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_modelfile_builds_on_a_model_and_its_messages_open_every_chat() {
    let app = app();
    app.create("base").await;
    let modelfile = format!(
        "# built on base\nFROM base\nPARAMETER temperature 0.3\nPARAMETER stop <end>\n\
         TEMPLATE \"\"\"{GO_TEMPLATE}\"\"\"\nSYSTEM Be kind.\nLICENSE MIT\n\
         MESSAGE user Hi\nMESSAGE assistant Hello!\n"
    );
    let created = app
        .post(
            "/api/create",
            json!({"model": "kind", "modelfile": modelfile}),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.error());
    let lines = created.lines();
    let statuses = statuses(&lines);
    assert_eq!(statuses.first(), Some(&"parsing modelfile"));
    assert!(
        statuses.contains(&"using model base:latest"),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&"creating messages layer"),
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&"success"));

    let shown = app.post("/api/show", json!({"model": "kind"})).await.json();
    assert_eq!(shown["system"], "Be kind.");
    assert_eq!(shown["license"], "MIT");
    assert_eq!(shown["template"], GO_TEMPLATE);
    assert_eq!(
        shown["messages"],
        json!([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
    );
    let modelfile = shown["modelfile"].as_str().unwrap();
    assert!(
        modelfile.contains("MESSAGE user Hi\nMESSAGE assistant Hello!"),
        "{modelfile}"
    );
    assert!(
        shown["parameters"]
            .as_str()
            .unwrap()
            .contains("temperature")
    );
    assert!(shown.get("template_fallback").is_none());

    let chat = json!({"model": "kind", "stream": false, "messages": [{"role": "user", "content": "Why?"}]});
    let answer = app.post("/api/chat", chat).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.error());
    assert_eq!(
        prompts(&app),
        ["<system>Be kind.<user>Hi<assistant>Hello!<user>Why?<assistant>"]
    );
}

#[tokio::test(start_paused = true)]
async fn from_a_digest_or_a_model_with_fields_and_whole_answers() {
    let app = app();
    let bytes = tiny_gguf();
    let digest = Digest::of_bytes(&bytes);
    app.call("POST", &format!("/api/blobs/{digest}"), bytes)
        .await;
    let body = json!({
        "model": "by-digest", "from": digest.to_string(), "stream": false,
        "license": ["A", "B"], "messages": [{"role": "user", "content": "Hey"}],
    });
    let created = app.post("/api/create", body).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.error());
    assert_eq!(created.json(), json!({"status": "success"}));
    let body = json!({"model": "derived", "from": "by-digest", "system": "S", "stream": false});
    assert_eq!(app.post("/api/create", body).await.status, StatusCode::OK);
    let shown = app
        .post("/api/show", json!({"model": "derived"}))
        .await
        .json();
    assert_eq!(
        (shown["system"].as_str(), shown["license"].as_str()),
        (Some("S"), Some("A\nB"))
    );
    assert_eq!(shown["messages"][0]["content"], "Hey");
}

#[tokio::test(start_paused = true)]
async fn what_cannot_be_created_is_a_clear_error() {
    let app = app();
    app.create("base").await;
    let cases = [
        (
            json!({"model": "q", "from": "no-such-base", "quantize": "q4_K_M"}),
            StatusCode::NOT_FOUND,
            "no-such-base",
        ),
        (
            json!({"model": "a", "modelfile": "FROM base\nADAPTER ./lora.gguf"}),
            StatusCode::BAD_REQUEST,
            "line 2",
        ),
        (
            json!({"model": "p", "modelfile": "FROM base\nPARAMETER num_ctx 0"}),
            StatusCode::BAD_REQUEST,
            "num_ctx",
        ),
        (
            json!({"model": "t", "from": "base", "template": "{{ if .Messages }}"}),
            StatusCode::BAD_REQUEST,
            "line 1",
        ),
        (
            json!({"model": "m", "from": "nothing-here"}),
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            json!({"model": "n"}),
            StatusCode::BAD_REQUEST,
            "neither from nor files",
        ),
        (
            json!({"model": "r", "from": "base", "messages": [{"role": "robot", "content": "x"}]}),
            StatusCode::BAD_REQUEST,
            "robot",
        ),
        (
            json!({"model": "l", "from": "base", "license": 3}),
            StatusCode::BAD_REQUEST,
            "license",
        ),
        (
            json!({"model": "f", "from": "./not-here.gguf"}),
            StatusCode::BAD_REQUEST,
            "upload",
        ),
    ];
    for (body, status, what) in cases {
        let answer = app.post("/api/create", body.clone()).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.error());
        assert!(answer.error().contains(what), "{body}: {}", answer.error());
    }
    // A directory imports through `ollama-runner convert` in its types only, and an
    // import the converter refuses answers with its reason (here: no config.json).
    let dir = tempfile::tempdir().unwrap();
    let from = dir.path().display().to_string();
    let answer = app
        .post(
            "/api/create",
            json!({"model": "d", "from": from, "quantize": "iq2_xs"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.error());
    assert!(
        answer.error().contains("writes f32, f16, q8_0"),
        "{}",
        answer.error()
    );
}

/// A GGUF with its own Jinja chat template, the kind a Go template gives way to.
fn gguf_with_jinja() -> Vec<u8> {
    let mut writer = gguf::GgufWriter::new();
    writer.set("general.architecture", "llama");
    writer.set("general.file_type", 15u32);
    writer.set(
        "tokenizer.chat_template",
        "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}",
    );
    writer
        .add_tensor("w", &[4], gguf::GgmlType::F32, vec![0u8; 16])
        .unwrap();
    writer.to_bytes().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_go_template_that_cannot_render_gives_way_to_the_ggufs_and_show_says_so() {
    let app = app();
    let bytes = gguf_with_jinja();
    let digest = Digest::of_bytes(&bytes);
    app.call("POST", &format!("/api/blobs/{digest}"), bytes)
        .await;
    let fails = "{{ range .Messages }}{{ index .Content 99 }}{{ end }}";
    let body =
        json!({"model": "m", "from": digest.to_string(), "template": fails, "stream": false});
    assert_eq!(app.post("/api/create", body).await.status, StatusCode::OK);

    let shown = app.post("/api/show", json!({"model": "m"})).await.json();
    let note = shown["template_fallback"].as_str().unwrap();
    assert!(note.contains("line 1") && note.contains("Jinja"), "{note}");

    let chat =
        json!({"model": "m", "stream": false, "messages": [{"role": "user", "content": "Hi"}]});
    let answer = app.post("/api/chat", chat).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.error());
    assert_eq!(prompts(&app), ["[user]Hi"]);
}
