//! A real `ollama-runner serve` child on a private socket, and a gRPC client to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::TestModel;
use hyper_util::rt::TokioIo;
use ollama_proto::RUNNER_PROTOCOL_VERSION;
use ollama_proto::runner as pb;
use ollama_proto::runner::runner_client::RunnerClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// A runner process, killed when dropped.
pub struct Served {
    child: Child,
    _dir: tempfile::TempDir,
    socket: PathBuf,
    /// A client connected to it.
    pub client: RunnerClient<Channel>,
}

/// A channel to the gRPC server on `socket`.
pub async fn connect(socket: &Path) -> Channel {
    let socket = socket.to_path_buf();
    Endpoint::try_from("http://runner.invalid")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
        .unwrap()
}

impl Served {
    /// Starts `ollama-runner serve` and waits until it answers Health.
    pub async fn start() -> Self {
        Self::start_with_env(&[]).await
    }

    /// [`Served::start`] with `env` added to the runner's environment.
    pub async fn start_with_env(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("runner.sock");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
            .envs(env.iter().copied())
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if socket.exists() {
                let mut client = RunnerClient::new(connect(&socket).await);
                let health = client
                    .health(pb::HealthRequest {
                        protocol_version: RUNNER_PROTOCOL_VERSION,
                    })
                    .await;
                if health.is_ok() {
                    return Self {
                        child,
                        _dir: dir,
                        socket,
                        client,
                    };
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("ollama-runner serve did not answer Health within 10 s");
    }

    /// Starts a runner and loads `model` with `options` (the model path is filled in).
    pub async fn with_model(model: TestModel, options: pb::LoadRequest) -> Self {
        Self::with_path(&model.path(), options).await
    }

    /// Starts a runner and loads the model file at `path` with `options`.
    pub async fn with_path(path: &Path, options: pb::LoadRequest) -> Self {
        let mut served = Self::start().await;
        served
            .client
            .load(load_request_for(path, options))
            .await
            .expect("load");
        served
    }

    /// The socket it listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Another client on the same socket (requests on separate connections).
    pub async fn client(&self) -> RunnerClient<Channel> {
        RunnerClient::new(connect(&self.socket).await)
    }

    /// The runner's status.
    pub async fn status(&mut self) -> pb::StatusResponse {
        self.client
            .status(pb::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `options` with the protocol version and the path of `model` set.
pub fn load_request(model: TestModel, options: pb::LoadRequest) -> pb::LoadRequest {
    load_request_for(&model.path(), options)
}

/// `options` with the protocol version and the model file `path` set.
pub fn load_request_for(path: &Path, options: pb::LoadRequest) -> pb::LoadRequest {
    pb::LoadRequest {
        protocol_version: RUNNER_PROTOCOL_VERSION,
        model_path: path.display().to_string(),
        num_threads: 2,
        ..options
    }
}

/// A greedy request for `prompt` of at most `n` tokens.
pub fn greedy(prompt: &str, n: i32) -> pb::GenerateRequest {
    pb::GenerateRequest {
        prompt: prompt.to_owned(),
        sampling: Some(pb::SamplingOptions {
            temperature: Some(0.0),
            repeat_penalty: Some(1.0),
            ..Default::default()
        }),
        num_predict: Some(n),
        ..Default::default()
    }
}

/// What a whole generation stream said.
#[derive(Debug, Clone)]
pub struct Collected {
    /// The concatenated text.
    pub text: String,
    /// The generated token ids.
    pub tokens: Vec<u32>,
    /// The final message.
    pub done: pb::Done,
}

/// Runs `request` to its end.
pub async fn generate(
    client: &mut RunnerClient<Channel>,
    request: pb::GenerateRequest,
) -> Result<Collected, tonic::Status> {
    let mut stream = client.generate(request).await?.into_inner();
    let (mut text, mut tokens) = (String::new(), Vec::new());
    while let Some(message) = stream.message().await? {
        match message.event {
            Some(pb::generate_response::Event::Piece(p)) => {
                text.push_str(&p.text);
                tokens.extend(p.tokens.iter().map(|t| t.id));
            }
            Some(pb::generate_response::Event::Done(done)) => {
                return Ok(Collected { text, tokens, done });
            }
            None => panic!("a message with no event"),
        }
    }
    panic!("the stream ended without Done");
}
