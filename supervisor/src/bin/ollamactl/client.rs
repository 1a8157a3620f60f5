//! The connection to `ollamad`'s gRPC API, and the one place where its failures become
//! the single line `ollamactl` prints: a server it cannot reach, a model that is not
//! there, or the server's own message.

use std::net::SocketAddr;
use std::time::Duration;

use ollama_proto::ollama::ollama_client::OllamaClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// The generated client on a connected channel.
pub type Client = OllamaClient<Channel>;

/// A connected server: the client and the address it was reached at, for messages.
#[derive(Debug, Clone)]
pub struct Session {
    /// The gRPC client; cheap to clone, every clone shares the connection.
    pub client: Client,
    address: SocketAddr,
}

impl Session {
    /// Connects to `address`, failing with the "is it running?" line when nothing answers.
    pub async fn connect(address: SocketAddr) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(format!("http://{address}"))?
            .connect_timeout(Duration::from_secs(5));
        let channel = endpoint.connect().await.map_err(|_| unreachable(address))?;
        let client = OllamaClient::new(channel)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20);
        Ok(Session { client, address })
    }

    /// A failed call about `model` as one line: NOT_FOUND names the model.
    pub fn model_error(&self, status: Status, model: &str) -> anyhow::Error {
        if status.code() == Code::NotFound && !model.is_empty() {
            return anyhow::anyhow!("model {model:?} not found");
        }
        self.error(status)
    }

    /// A failed call as one line: the server's message, or why it could not be asked.
    pub fn error(&self, status: Status) -> anyhow::Error {
        let message = status.message().replace('\n', " ");
        match status.code() {
            // A status made on this side (the connection dropped) carries its cause.
            Code::Unavailable | Code::Unknown if std::error::Error::source(&status).is_some() => {
                unreachable(self.address)
            }
            Code::Unimplemented => anyhow::anyhow!(
                "ollamad at {} does not implement this call (an older server?): {message}",
                self.address
            ),
            Code::Cancelled if message.is_empty() => anyhow::anyhow!("cancelled"),
            code if message.is_empty() => anyhow::anyhow!("the server answered {code:?}"),
            _ => anyhow::anyhow!(message),
        }
    }
}

fn unreachable(address: SocketAddr) -> anyhow::Error {
    anyhow::anyhow!("cannot reach ollamad at {address}: is it running? (set OLLAMA_HOST)")
}

/// A model name as the server lists it: `name` alone means `name:latest`.
pub fn full_name(model: &str) -> String {
    let last = model.rsplit('/').next().unwrap_or(model);
    if last.contains(':') {
        model.to_string()
    } else {
        format!("{model}:latest")
    }
}
