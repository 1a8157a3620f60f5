//! A request's hold on a runner slot: a guard whose drop gives the slot back.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::actor::Command;
use super::backend::Backend;
use super::failure::RunnerFailure;

/// One slot of a loaded runner, held for one request. Dropping it releases the slot and,
/// when it was the last, starts the model's keep-alive.
pub struct Lease<B: Backend> {
    tx: mpsc::UnboundedSender<Command<B>>,
    id: u64,
    model: String,
    runner: Arc<B::Runner>,
    failure: watch::Receiver<Option<RunnerFailure>>,
    waited: Duration,
    loaded: Option<Duration>,
}

impl<B: Backend> Lease<B> {
    pub(super) fn new(
        tx: mpsc::UnboundedSender<Command<B>>,
        id: u64,
        model: String,
        runner: Arc<B::Runner>,
        failure: watch::Receiver<Option<RunnerFailure>>,
        waited: Duration,
        loaded: Option<Duration>,
    ) -> Self {
        Self {
            tx,
            id,
            model,
            runner,
            failure,
            waited,
            loaded,
        }
    }

    /// The runner to send the request to.
    pub fn runner(&self) -> &B::Runner {
        &self.runner
    }

    /// The model's name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// How long the request waited in the queue before it got this slot.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// How long the model took to load, when this request loaded it.
    pub fn load_duration(&self) -> Option<Duration> {
        self.loaded
    }

    /// Resolves when the runner dies or is killed, with the reason: a request streaming
    /// from it selects on this to end at once with an error that names the model and the
    /// exit status or signal. Never resolves while the runner lives.
    pub async fn failed(&self) -> RunnerFailure {
        let mut failure = self.failure.clone();
        let seen = failure
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|seen| seen.clone());
        match seen {
            Some(failure) => failure,
            None => std::future::pending().await,
        }
    }
}

impl<B: Backend> Drop for Lease<B> {
    fn drop(&mut self) {
        // A scheduler already gone has nothing left to release.
        let _ = self.tx.send(Command::Release { id: self.id });
    }
}
