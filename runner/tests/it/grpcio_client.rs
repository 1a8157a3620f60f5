//! A gRPC C-core client (Python `grpcio`) on the runner's socket with no channel options:
//! C-core sends the percent-encoded socket path as `:authority`, which h2 alone refuses
//! (the runner's `h2_authority` layer fixes it). The stubs are generated at test time
//! from `proto/proto/runner.proto`. Skipped, with a message, where grpcio is missing; CI
//! installs it from `scripts/requirements.txt`.

use std::path::Path;

use e2e::TestModel;
use ollama_proto::RUNNER_PROTOCOL_VERSION;
use ollama_proto::runner as pb;
use serde_json::Value;
use tokio::process::Command;

use crate::served::{self, Served};

/// Calls Health, Status, Tokenize and a greedy Generate on the socket named by argv[1]
/// (as `unix:PATH` and as `unix://PATH`) and prints what they answered as JSON.
const CLIENT: &str = r#"
import json, sys
sys.path.insert(0, sys.argv[2])
import grpc, runner_pb2 as pb, runner_pb2_grpc as rpc

answers = []
for target in ("unix:" + sys.argv[1], "unix://" + sys.argv[1]):
    with grpc.insecure_channel(target) as channel:
        stub = rpc.RunnerStub(channel)
        health = stub.Health(pb.HealthRequest(protocol_version=int(sys.argv[3])), timeout=60)
        status = stub.Status(pb.StatusRequest(), timeout=60)
        tokens = stub.Tokenize(pb.TokenizeRequest(text="Hello, world"), timeout=60)
        request = pb.GenerateRequest(
            prompt="The capital of France is",
            num_predict=4,
            sampling=pb.SamplingOptions(temperature=0.0, repeat_penalty=1.0),
        )
        text = ""
        for message in stub.Generate(request, timeout=120):
            if message.WhichOneof("event") == "piece":
                text += message.piece.text
        answers.append({
            "target": target,
            "protocol_version": health.protocol_version,
            "state": pb.RunnerState.Name(status.state),
            "tokens": list(tokens.tokens),
            "text": text,
        })
print(json.dumps(answers))
"#;

/// Whether `python3` can import grpcio and grpcio-tools.
async fn grpcio_available() -> bool {
    Command::new("python3")
        .args(["-c", "import grpc, grpc_tools.protoc"])
        .status()
        .await
        .is_ok_and(|status| status.success())
}

/// Generates `runner_pb2.py` and `runner_pb2_grpc.py` into `out`.
async fn generate_stubs(out: &Path) {
    let protos = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto");
    let output = Command::new("python3")
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", protos.display()))
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .arg(protos.join("runner.proto"))
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "grpc_tools.protoc failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpcio_client_without_options_gets_the_same_answers_as_tonic() {
    if !grpcio_available().await {
        eprintln!(
            "SKIPPED: python3 cannot import grpc and grpc_tools \
             (pip install -r scripts/requirements.txt)"
        );
        return;
    }
    let mut served = Served::with_model(TestModel::SmolLm2, pb::LoadRequest::default()).await;
    let stubs = tempfile::tempdir().unwrap();
    generate_stubs(stubs.path()).await;

    let output = Command::new("python3")
        .args(["-c", CLIENT])
        .arg(served.socket())
        .arg(stubs.path())
        .arg(RUNNER_PROTOCOL_VERSION.to_string())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "the grpcio client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();

    let tokens = served
        .client
        .tokenize(pb::TokenizeRequest {
            text: "Hello, world".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert!(!tokens.is_empty());
    let generated = served::generate(
        &mut served.client,
        served::greedy("The capital of France is", 4),
    )
    .await
    .unwrap();
    assert!(!generated.text.is_empty());
    assert_eq!(answers.len(), 2);
    for answer in &answers {
        assert_eq!(
            answer["protocol_version"], RUNNER_PROTOCOL_VERSION,
            "{answer}"
        );
        assert_eq!(answer["state"], "RUNNER_STATE_READY", "{answer}");
        assert_eq!(answer["tokens"], serde_json::json!(tokens), "{answer}");
        assert_eq!(answer["text"], generated.text, "{answer}");
    }
}
