//! Reading a runner's `Generate` stream while watching the runner itself: a runner that
//! dies mid-stream ends the request at once with the model's name and the exit signal.

use std::time::Duration;

use ollama_proto::runner as pb;
use tonic::Streaming;

use crate::sched::{Lease, RunnerBackend};

/// The next thing that happened to a generation.
pub enum Event {
    /// Text to pass on.
    Piece(String),
    /// The end, with its reason and timings.
    Done(pb::Done),
    /// The generation failed; the message is for the user.
    Failed(String),
}

/// How long to wait, after the stream breaks, for the runner's exit to be seen, so the
/// error can name the signal rather than a broken connection.
const EXIT_SETTLE: Duration = Duration::from_millis(500);

/// The next event of `stream`, or the runner's failure, whichever comes first.
pub async fn next_event(
    lease: &Lease<RunnerBackend>,
    stream: &mut Streaming<pb::GenerateResponse>,
) -> Event {
    tokio::select! {
        biased;
        failure = lease.failed() => Event::Failed(failure.to_string()),
        message = stream.message() => match message {
            Ok(Some(pb::GenerateResponse { event: Some(event) })) => match event {
                pb::generate_response::Event::Piece(piece) => Event::Piece(piece.text),
                pb::generate_response::Event::Done(done) => Event::Done(done),
            },
            Ok(Some(pb::GenerateResponse { event: None })) => {
                Event::Failed(format!("the runner for {} sent an empty message", lease.model()))
            }
            Ok(None) => Event::Failed(broken(lease, "the stream ended without a result").await),
            Err(status) => Event::Failed(broken(lease, status.message()).await),
        }
    }
}

/// The error text for a broken stream: the runner's failure if it turns out to have died,
/// else what the transport said.
pub async fn broken(lease: &Lease<RunnerBackend>, what: &str) -> String {
    match tokio::time::timeout(EXIT_SETTLE, lease.failed()).await {
        Ok(failure) => failure.to_string(),
        Err(_) => format!("the runner for {} failed: {what}", lease.model()),
    }
}
