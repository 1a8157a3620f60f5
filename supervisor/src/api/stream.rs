//! Reading a runner's `Generate` stream while watching the runner itself: a runner that
//! dies mid-stream ends the request at once with the model's name and the exit signal.

use std::time::Duration;

use futures_util::StreamExt;
use ollama_proto::runner as pb;

use super::ApiError;
use crate::runners::RunnerError;
use crate::sched::{Backend, Generation, Lease};

/// The next thing that happened to a generation.
pub enum Event {
    /// Text to pass on, with the tokens that made it.
    Piece(pb::Piece),
    /// The end, with its reason and timings.
    Done(pb::Done),
    /// The generation failed; the error is for the user.
    Failed(ApiError),
}

/// How long to wait, after the stream breaks, for the runner's exit to be seen, so the
/// error can name the signal rather than a broken connection.
const EXIT_SETTLE: Duration = Duration::from_millis(500);

/// The next event of `stream`, or the runner's failure, whichever comes first.
pub async fn next_event<B: Backend>(lease: &Lease<B>, stream: &mut Generation) -> Event {
    tokio::select! {
        biased;
        failure = lease.failed() => Event::Failed(ApiError::internal(failure.to_string())),
        message = stream.next() => match message {
            Some(Ok(pb::GenerateResponse { event: Some(event) })) => match event {
                pb::generate_response::Event::Piece(piece) => Event::Piece(piece),
                pb::generate_response::Event::Done(done) => Event::Done(done),
            },
            Some(Ok(pb::GenerateResponse { event: None })) => Event::Failed(ApiError::internal(
                format!("the runner for {} sent an empty message", lease.model()),
            )),
            Some(Err(error)) => Event::Failed(broken(lease, error).await),
            None => Event::Failed(
                broken(
                    lease,
                    RunnerError::Gone {
                        model: lease.model().to_owned(),
                        message: "the generation's stream was read past its end".into(),
                    },
                )
                .await,
            ),
        }
    }
}

/// The answer for a call to the lease's runner that failed with `error`: the runner's
/// failure if it turns out to have died (its exit says more than a broken connection),
/// else `error` itself. A request the runner refused as faulty is answered at once.
pub async fn broken<B: Backend>(lease: &Lease<B>, error: RunnerError) -> ApiError {
    if error.is_request_fault() {
        return error.into();
    }
    match tokio::time::timeout(EXIT_SETTLE, lease.failed()).await {
        Ok(failure) => ApiError::internal(failure.to_string()),
        Err(_) => error.into(),
    }
}
