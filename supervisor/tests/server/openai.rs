//! The `/v1` routes driven by OpenAI's official Python client (`openai` from PyPI, pinned
//! in scripts/requirements.txt) on SmolLM2: chat whole and streamed with usage, logprobs,
//! a JSON schema, a tool call both ways, completions, embeddings, models and errors.

use e2e::TestModel;

use crate::harness::Server;

#[test]
fn the_official_openai_client_works() {
    let server = Server::start(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/server/openai_client.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&server.base)
        .arg(TestModel::SmolLm2.path())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/qwen2.5-tools-chat-template.jinja"
        ))
        .output()
        .expect("python3 runs (install the client with pip install -r scripts/requirements.txt)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "OK",
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}
