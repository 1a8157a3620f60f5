//! The `/v1` routes driven by OpenAI's official Python client (`openai` from PyPI, pinned
//! in scripts/requirements.txt) on SmolLM2: chat whole and streamed with usage, logprobs,
//! a JSON schema, a tool call both ways, completions, embeddings, models and errors.

use e2e::TestModel;

use crate::harness::Server;

#[test]
fn the_official_openai_client_works() {
    let server = Server::start(&[]);
    let template = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/qwen2.5-tools-chat-template.jinja"
    );
    let model = TestModel::SmolLm2.path();
    server.run_python("openai_client.py", &[model.as_os_str(), template.as_ref()]);
}
