//! `Shutdown`'s drain: which requests are running, refusing new ones once the runner is
//! stopping, and cancelling what is left at the deadline.
//!
//! Every `Generate` and `Embed` takes a [`Ticket`] from the [`Drain`] before it reaches
//! the engine and holds it until its answer is complete (for a generation: until tonic
//! drops its stream, so a caller that goes away ends it too). `Shutdown` closes the gate,
//! waits for the count of tickets to reach zero, and at the deadline signals the tickets
//! still out; each cancelled request ends with `CANCELLED` and drops its engine work
//! (the engine notices a dropped stream at its next step).

// tonic's `Status` is this API's error type, large as it is.
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_stream::Stream;
use tonic::Status;

/// How long cancelled requests may take to hand back their tickets after the deadline
/// (they do at their next poll; this only bounds a stream tonic no longer polls).
const CANCEL_SETTLE: Duration = Duration::from_secs(1);

/// The gate: closed once `Shutdown` arrives; the number of requests running.
#[derive(Debug, Clone, Copy, Default)]
struct Gate {
    closed: bool,
    running: usize,
}

/// The requests running in this runner, and the switch that stops new ones.
#[derive(Debug, Clone)]
pub struct Drain {
    gate: Arc<watch::Sender<Gate>>,
    cancel: Arc<watch::Sender<bool>>,
    cancelled: Arc<AtomicUsize>,
}

/// What a drain did: the answer of `Shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Requests running when it began that ended on their own.
    pub finished: usize,
    /// Requests cancelled at the deadline.
    pub cancelled: usize,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// An open gate with nothing running.
    pub fn new() -> Self {
        Self {
            gate: Arc::new(watch::Sender::new(Gate::default())),
            cancel: Arc::new(watch::Sender::new(false)),
            cancelled: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether `Shutdown` has been called.
    pub fn closed(&self) -> bool {
        self.gate.borrow().closed
    }

    /// Requests running now.
    pub fn running(&self) -> usize {
        self.gate.borrow().running
    }

    /// Admits one request, or refuses it with `UNAVAILABLE` once the runner is stopping.
    pub fn admit(&self) -> Result<Ticket, Status> {
        let admitted = self.gate.send_if_modified(|gate| {
            if gate.closed {
                return false;
            }
            gate.running += 1;
            true
        });
        if !admitted {
            return Err(Status::unavailable(
                "the runner is shutting down and takes no new requests: send the request \
                 again (the supervisor starts another runner)",
            ));
        }
        Ok(Ticket {
            gate: Arc::clone(&self.gate),
            cancel: self.cancel.subscribe(),
            cancelled: Arc::clone(&self.cancelled),
        })
    }

    /// Closes the gate, waits until `deadline` for the running requests to end, cancels
    /// those left and reports.
    pub async fn shutdown(&self, deadline: Instant) -> Drained {
        let mut running_at_start = 0;
        self.gate.send_modify(|gate| {
            gate.closed = true;
            running_at_start = gate.running;
        });
        let cancelled_before = self.cancelled.load(Ordering::SeqCst);
        let mut gate = self.gate.subscribe();
        let idle = |g: &Gate| g.running == 0;
        if tokio::time::timeout_at(deadline, gate.wait_for(idle))
            .await
            .is_err()
        {
            self.cancel.send_replace(true);
            let _ = tokio::time::timeout(CANCEL_SETTLE, gate.wait_for(idle)).await;
        }
        let cancelled = self.cancelled.load(Ordering::SeqCst) - cancelled_before;
        Drained {
            finished: running_at_start.saturating_sub(cancelled),
            cancelled,
        }
    }
}

/// One running request; dropping it tells the drain the request ended.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<watch::Sender<Gate>>,
    cancel: watch::Receiver<bool>,
    cancelled: Arc<AtomicUsize>,
}

impl Ticket {
    /// Resolves when the drain's deadline cancels this request.
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut cancel = self.cancel.clone();
        async move {
            // A dropped sender (the service is gone) never cancels.
            if cancel.wait_for(|c| *c).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Counts this request as cancelled and returns the status it ends with. Call it
    /// before dropping the ticket, so `Shutdown` counts it.
    pub fn cancel_status(&self) -> Status {
        self.cancelled.fetch_add(1, Ordering::SeqCst);
        Status::cancelled(
            "the runner was stopped before this request finished (its drain deadline \
             passed): send the request again",
        )
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.send_modify(|gate| gate.running -= 1);
    }
}

/// A generation stream that holds its ticket until it ends and ends with `CANCELLED` at
/// the drain's deadline (dropping the engine's stream, which cancels its work).
pub struct Tracked<S> {
    inner: Option<S>,
    ticket: Option<Ticket>,
    cancelled: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl<S> Tracked<S> {
    /// `inner`, counted by `ticket`.
    pub fn new(inner: S, ticket: Ticket) -> Self {
        Self {
            inner: Some(inner),
            cancelled: Box::pin(ticket.cancelled()),
            ticket: Some(ticket),
        }
    }
}

impl<S, T> Stream for Tracked<S>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if this.cancelled.as_mut().poll(cx).is_ready() {
            this.inner = None;
            let status = this.ticket.take().map(|t| t.cancel_status());
            return Poll::Ready(status.map(Err));
        }
        let next = Pin::new(inner).poll_next(cx);
        if matches!(next, Poll::Ready(None)) {
            this.inner = None;
            this.ticket = None;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    #[tokio::test]
    async fn a_closed_gate_refuses_and_a_drain_waits_for_running_requests() {
        let drain = Drain::new();
        let ticket = drain.admit().unwrap();
        assert_eq!(drain.running(), 1);
        let draining = tokio::spawn({
            let drain = drain.clone();
            async move {
                drain
                    .shutdown(Instant::now() + Duration::from_secs(600))
                    .await
            }
        });
        while !drain.closed() {
            tokio::task::yield_now().await;
        }
        let refused = drain.admit().unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert!(refused.message().contains("shutting down"), "{refused:?}");
        assert!(
            !draining.is_finished(),
            "the drain waits for the running request"
        );
        drop(ticket);
        assert_eq!(
            draining.await.unwrap(),
            Drained {
                finished: 1,
                cancelled: 0
            }
        );
    }

    #[tokio::test]
    async fn a_stream_still_running_at_the_deadline_ends_cancelled() {
        let drain = Drain::new();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<u32, Status>>();
        let mut stream = Tracked::new(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
            drain.admit().unwrap(),
        );
        tx.send(Ok(1)).unwrap();
        let first = stream.next().await.map(|item| item.map_err(|s| s.code()));
        assert_eq!(first, Some(Ok(1)));
        let reader = tokio::spawn(async move {
            let mut items = Vec::new();
            while let Some(item) = stream.next().await {
                items.push(item.map_err(|s| s.code()));
            }
            items
        });
        // A deadline already passed: what runs is cancelled at once.
        let report = drain.shutdown(Instant::now()).await;
        assert_eq!(
            report,
            Drained {
                finished: 0,
                cancelled: 1
            }
        );
        assert_eq!(reader.await.unwrap(), vec![Err(tonic::Code::Cancelled)]);
        assert!(tx.is_closed(), "the engine's stream was dropped");
        assert_eq!(drain.running(), 0);
    }
}
