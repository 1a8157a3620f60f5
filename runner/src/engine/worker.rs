//! The compute thread: slots, the queue, and one forward pass per step.

use std::collections::VecDeque;
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc as async_mpsc;

use super::slots::{self, Candidate};
use super::stop::{StopMatcher, StopOutcome};
use super::{
    Command, DoneReason, EngineConfig, EngineError, EngineStatus, Event, GenerateJob, SampledToken,
    Timings, embed,
};
use crate::grammar::Constraint;
use crate::kvcache::KvCache;
use crate::model::{Batch, Interrupt, Logits, Model, ModelError, Output};
use crate::sample::Sampler;
use crate::tokenizer::{TokenId, Tokenizer, Utf8Stream};

/// Every position of a sequence, for removing all of it.
const ALL: std::ops::Range<i32> = 0..i32::MAX;

/// One sequence of the cache and the request using it, if any.
struct Slot {
    /// Tokens whose keys and values the cache holds for this sequence, from position 0.
    cached: Vec<TokenId>,
    last_used: u64,
    active: Option<Active>,
}

/// A generation in progress.
struct Active {
    events: async_mpsc::UnboundedSender<Event>,
    prompt: Vec<TokenId>,
    /// Index of the next prompt token to evaluate.
    next_prompt: usize,
    sampler: Sampler,
    /// The output format's grammar state, when the request set one.
    constraint: Option<Box<Constraint>>,
    history: Vec<TokenId>,
    /// Sampled and sent, not yet in the cache.
    next: Option<TokenId>,
    num_predict: Option<usize>,
    stop: StopMatcher,
    utf8: Utf8Stream,
    logprobs: bool,
    top_logprobs: usize,
    shift: bool,
    num_keep: usize,
    return_context: bool,
    timings: Timings,
    started: Instant,
    first_token: Option<Instant>,
}

impl Active {
    /// Sends the text still held back (partial characters, a possible start of a stop
    /// string) as the generation ends; returns whether it completed a stop string.
    fn release_tail(&mut self) -> bool {
        let tail = self.utf8.finish();
        let (text, stopped) = match self.stop.push(&tail) {
            StopOutcome::Continue(t) => (t + &self.stop.flush(), false),
            StopOutcome::Stopped(t) => (t, true),
        };
        if !text.is_empty() {
            let _ = self.events.send(Event::Piece { text, token: None });
        }
        stopped
    }
}

/// What one batch entry is for.
enum Entry {
    Decode {
        slot: usize,
        index: usize,
    },
    Prompt {
        slot: usize,
        n: usize,
        last: Option<usize>,
    },
}

/// The state the compute thread owns.
pub(super) struct Worker {
    model: Box<dyn Model>,
    cache: KvCache,
    tokenizer: Arc<Tokenizer>,
    config: EngineConfig,
    status: Arc<Mutex<EngineStatus>>,
    slots: Vec<Slot>,
    queue: VecDeque<Command>,
    batch: Batch,
    logits: Logits,
    clock: u64,
}

impl Worker {
    pub(super) fn new(
        model: Box<dyn Model>,
        cache: KvCache,
        tokenizer: Arc<Tokenizer>,
        config: EngineConfig,
        status: &Arc<Mutex<EngineStatus>>,
    ) -> Self {
        let slots = (0..cache.config().num_parallel)
            .map(|_| Slot {
                cached: Vec::new(),
                last_used: 0,
                active: None,
            })
            .collect();
        Self {
            model,
            cache,
            tokenizer,
            config,
            status: Arc::clone(status),
            slots,
            queue: VecDeque::new(),
            batch: Batch::new(),
            logits: Logits::new(),
            clock: 0,
        }
    }

    /// Serves commands until every sender is gone and no work is left.
    pub(super) fn run(mut self, commands: mpsc::Receiver<Command>) {
        let mut connected = true;
        loop {
            if self.is_idle() {
                if !connected {
                    return;
                }
                match commands.recv() {
                    Ok(command) => self.queue.push_back(command),
                    Err(_) => return,
                }
            }
            while connected {
                match commands.try_recv() {
                    Ok(command) => self.queue.push_back(command),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => connected = false,
                }
            }
            self.drop_cancelled();
            self.assign();
            self.step();
            self.publish_status();
        }
    }

    fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.slots.iter().all(|s| s.active.is_none())
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Ends the generations whose callers went away, freeing their cells (an abandoned
    /// request leaves nothing behind), and forgets queued ones.
    fn drop_cancelled(&mut self) {
        for id in 0..self.slots.len() {
            let gone = self.slots[id]
                .active
                .as_ref()
                .is_some_and(|a| a.events.is_closed());
            if gone {
                // Cells first: `finish` publishes the status a caller may read next.
                self.cache.seq_rm(id, ALL);
                self.slots[id].cached.clear();
                self.finish(id, DoneReason::Cancelled);
            }
        }
        self.queue.retain(|command| match command {
            Command::Generate { events, .. } => !events.is_closed(),
            Command::Embed { reply, .. } => !reply.is_closed(),
        });
    }

    /// Gives queued requests the free slots, oldest request first.
    fn assign(&mut self) {
        while let Some(front) = self.queue.front() {
            let idle: Vec<Candidate<'_>> = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.active.is_none())
                .map(|(id, s)| Candidate {
                    id,
                    cached: &s.cached,
                    last_used: s.last_used,
                })
                .collect();
            let prompt: &[TokenId] = match front {
                Command::Generate { job, .. } => &job.prompt,
                Command::Embed { .. } => &[],
            };
            let Some(choice) = slots::choose(&idle, prompt, self.config.multi_user_cache) else {
                return;
            };
            let Some(command) = self.queue.pop_front() else {
                return;
            };
            match command {
                Command::Generate {
                    job,
                    constraint,
                    events,
                    arrived,
                } => self.start(choice, job, constraint, events, arrived),
                Command::Embed {
                    inputs,
                    normalize,
                    reply,
                } => {
                    let slot = choice.slot;
                    self.slots[slot].cached.clear();
                    let result = embed::run(
                        self.model.as_mut(),
                        &mut self.cache,
                        slot,
                        &inputs,
                        normalize,
                        self.config.pooling,
                        &mut self.batch,
                        &mut self.logits,
                    );
                    self.slots[slot].last_used = self.tick();
                    match &result {
                        Ok(e) => tracing::info!(
                            slot,
                            inputs = inputs.len(),
                            prompt_tokens = e.prompt_tokens,
                            duration_ms = e.duration.as_millis() as u64,
                            "embed"
                        ),
                        Err(e) => tracing::warn!(slot, error = %e, "embed failed"),
                    }
                    let _ = reply.send(result);
                }
            }
        }
    }

    /// Puts a generation in a slot, reusing what the slot's cache shares with it.
    fn start(
        &mut self,
        choice: slots::Choice,
        job: GenerateJob,
        constraint: Option<Box<Constraint>>,
        events: async_mpsc::UnboundedSender<Event>,
        arrived: Instant,
    ) {
        let id = choice.slot;
        let mut reuse = choice.reuse;
        if let Some(src) = choice.copy_from {
            self.cache.seq_rm(id, ALL);
            self.cache.seq_cp(src, id, 0..reuse as i32);
        } else {
            self.cache.seq_rm(id, reuse as i32..i32::MAX);
        }
        if reuse > 0 && !self.cache.can_continue(id, reuse as i32) {
            self.cache.seq_rm(id, ALL);
            reuse = 0;
        }
        self.slots[id].cached = job.prompt[..reuse].to_vec();

        let now = Instant::now();
        let sampler = match Sampler::new(job.sampling.clone()) {
            Ok(s) => s,
            Err(e) => {
                let _ = events.send(Event::Failed(Arc::new(e.into())));
                return;
            }
        };
        self.slots[id].active = Some(Active {
            events,
            history: job.prompt.clone(),
            prompt: job.prompt,
            next_prompt: reuse,
            sampler,
            constraint,
            next: None,
            num_predict: job.num_predict,
            stop: StopMatcher::new(job.stop),
            utf8: Utf8Stream::new(),
            logprobs: job.logprobs,
            top_logprobs: job.top_logprobs,
            shift: job.shift,
            num_keep: job.num_keep.unwrap_or(self.config.num_keep),
            return_context: job.return_context,
            timings: Timings {
                cached_tokens: reuse,
                load_duration: self.config.load_duration,
                queue_duration: now.duration_since(arrived),
                ..Timings::default()
            },
            started: now,
            first_token: None,
        });
    }

    /// One forward pass over every active slot.
    fn step(&mut self) {
        let num_ctx = self.cache.config().num_ctx;
        self.batch.clear();
        self.batch.set_output(Output::Logits);
        let mut entries = Vec::new();
        for id in 0..self.slots.len() {
            let Some(token) = self.slots[id].active.as_ref().and_then(|a| a.next) else {
                continue;
            };
            if self.slots[id].cached.len() >= num_ctx && !self.make_room(id) {
                continue;
            }
            let pos = self.slots[id].cached.len() as i32;
            entries.push(Entry::Decode {
                slot: id,
                index: self.batch.len(),
            });
            self.batch.push(token, pos, id, true);
        }
        let mut budget = self
            .cache
            .config()
            .num_batch
            .saturating_sub(self.batch.len());
        for id in 0..self.slots.len() {
            let slot = &self.slots[id];
            let Some(active) = &slot.active else { continue };
            let remaining = active.prompt.len() - active.next_prompt;
            if remaining == 0 || budget == 0 {
                continue;
            }
            let n = remaining.min(budget);
            let start = slot.cached.len();
            let chunk = &active.prompt[active.next_prompt..active.next_prompt + n];
            let mut last = None;
            for (k, &t) in chunk.iter().enumerate() {
                let is_last = k + 1 == n && n == remaining;
                if is_last {
                    last = Some(self.batch.len());
                }
                self.batch.push(t, (start + k) as i32, id, is_last);
            }
            entries.push(Entry::Prompt { slot: id, n, last });
            budget -= n;
        }
        if self.batch.is_empty() {
            return;
        }
        // Only a pass over prompt tokens is long enough to be worth stopping inside; a
        // decode step pays nothing for it.
        if entries.iter().any(|e| matches!(e, Entry::Prompt { .. })) {
            let callers: Vec<_> = entries
                .iter()
                .filter_map(|entry| {
                    let (Entry::Decode { slot, .. } | Entry::Prompt { slot, .. }) = *entry;
                    self.slots[slot].active.as_ref().map(|a| a.events.clone())
                })
                .collect();
            self.batch.set_interrupt(Interrupt::new(move || {
                callers.iter().all(|events| events.is_closed())
            }));
        }
        if let Err(e) = self
            .model
            .forward(&self.batch, &mut self.cache, &mut self.logits)
        {
            if matches!(e, ModelError::Interrupted) {
                self.drop_cancelled();
                return;
            }
            let error = Arc::new(EngineError::from(e));
            tracing::error!(error = %error, tokens = self.batch.len(), "forward pass failed");
            for entry in &entries {
                let (Entry::Decode { slot, .. } | Entry::Prompt { slot, .. }) = *entry;
                self.fail(slot, Arc::clone(&error));
            }
            if error.ends_runner() {
                // Give the failed requests' streams a moment to carry the error out.
                std::thread::sleep(std::time::Duration::from_millis(200));
                tracing::error!("the GPU is lost: this runner exits");
                std::process::exit(super::DEVICE_LOST_EXIT);
            }
            return;
        }
        for entry in entries {
            match entry {
                Entry::Decode { slot, index } => {
                    if let Some(token) =
                        self.slots[slot].active.as_mut().and_then(|a| a.next.take())
                    {
                        self.slots[slot].cached.push(token);
                    }
                    self.sample(slot, index);
                }
                Entry::Prompt { slot, n, last } => {
                    let s = &mut self.slots[slot];
                    let Some(active) = s.active.as_mut() else {
                        continue;
                    };
                    let from = active.next_prompt;
                    s.cached.extend_from_slice(&active.prompt[from..from + n]);
                    active.next_prompt += n;
                    if let Some(index) = last {
                        active.timings.prompt_duration = active.started.elapsed();
                        self.sample(slot, index);
                    }
                }
            }
        }
    }

    /// Makes room for one more token in a full sequence: shifts the context, or ends the
    /// generation with `Length` when the request turned the shift off (or nothing can be
    /// dropped). Returns whether the slot goes on.
    fn make_room(&mut self, id: usize) -> bool {
        let Some(active) = &self.slots[id].active else {
            return false;
        };
        if !active.shift {
            self.finish(id, DoneReason::Length);
            return false;
        }
        let num_keep = active.num_keep;
        match self.cache.context_shift(id, num_keep) {
            Ok(0) => {
                self.finish(id, DoneReason::Length);
                false
            }
            Ok(discard) => {
                let cached = &mut self.slots[id].cached;
                let keep = num_keep.min(cached.len());
                cached.drain(keep..keep + discard);
                tracing::debug!(slot = id, keep, discard, "context shift");
                true
            }
            Err(e) => {
                self.fail(id, Arc::new(EngineError::Model(e.into())));
                false
            }
        }
    }

    /// Samples slot `id`'s next token from the logits of batch row `index` and sends it.
    fn sample(&mut self, id: usize, index: usize) {
        let Some(row) = self.logits.row(index) else {
            return;
        };
        let Some(active) = self.slots[id].active.as_mut() else {
            return;
        };
        if active.num_predict == Some(0) {
            self.finish(id, DoneReason::Length);
            return;
        }
        // With a format, the grammar's mask first (so log-probabilities are those of
        // the constrained distribution); without one, nothing is done here.
        let row = match active.constraint.as_mut().map(|c| c.mask(row)) {
            None => row,
            Some(Ok(masked)) => masked,
            Some(Err(e)) => {
                self.fail(id, Arc::new(e.into()));
                return;
            }
        };
        let token = if active.logprobs || active.top_logprobs > 0 {
            let sampled = active
                .sampler
                .sample(row, &active.history, active.top_logprobs);
            SampledToken {
                id: sampled.chosen.token,
                logprob: active.logprobs.then_some(sampled.chosen.logprob),
                top: sampled.top,
            }
        } else {
            SampledToken {
                id: active.sampler.next_token(row, &active.history),
                logprob: None,
                top: Vec::new(),
            }
        };
        let id_token = token.id;
        let now = Instant::now();
        let first = *active.first_token.get_or_insert(now);
        active.timings.generation_duration = now.duration_since(first);
        active.timings.generated_tokens += 1;
        active.history.push(id_token);

        if self.tokenizer.vocab().is_end_of_generation(id_token) {
            active.release_tail();
            self.finish(id, DoneReason::Stop);
            return;
        }
        // A document the grammar completes ends the generation after this token.
        let complete = match active.constraint.as_mut() {
            None => false,
            Some(c) => match c.commit(id_token) {
                Ok(()) => c.is_complete(),
                Err(e) => {
                    self.fail(id, Arc::new(e.into()));
                    return;
                }
            },
        };
        let bytes = self.tokenizer.token_bytes(id_token, false);
        let text = active.utf8.push(&bytes);
        match active.stop.push(&text) {
            StopOutcome::Stopped(text) => {
                let _ = active.events.send(Event::Piece {
                    text,
                    token: Some(token),
                });
                self.finish(id, DoneReason::Stop);
            }
            StopOutcome::Continue(text) => {
                let _ = active.events.send(Event::Piece {
                    text,
                    token: Some(token),
                });
                let limit = active
                    .num_predict
                    .is_some_and(|n| active.timings.generated_tokens >= n);
                if !limit && !complete {
                    active.next = Some(id_token);
                    return;
                }
                let stopped = active.release_tail();
                let reason = if stopped || complete {
                    DoneReason::Stop
                } else {
                    DoneReason::Length
                };
                self.finish(id, reason);
            }
        }
    }

    /// Ends slot `id`'s generation, telling the caller why; the slot keeps its cached
    /// tokens for the next request that shares them.
    fn finish(&mut self, id: usize, reason: DoneReason) {
        let Some(active) = self.slots[id].active.take() else {
            return;
        };
        self.slots[id].last_used = self.tick();
        let t = active.timings;
        tracing::info!(
            slot = id,
            reason = ?reason,
            prompt_tokens = active.prompt.len(),
            cached_tokens = t.cached_tokens,
            generated_tokens = t.generated_tokens,
            queue_ms = t.queue_duration.as_millis() as u64,
            prompt_ms = t.prompt_duration.as_millis() as u64,
            generation_ms = t.generation_duration.as_millis() as u64,
            "generate"
        );
        let timings = Timings {
            prompt_tokens: active.prompt.len(),
            ..t
        };
        // A caller that sees the end asks Status next: it must find the slot free.
        self.publish_status();
        let context = if active.return_context {
            active.history
        } else {
            Vec::new()
        };
        let _ = active.events.send(Event::Done {
            reason,
            timings,
            context,
        });
    }

    /// Ends slot `id`'s generation with an error.
    fn fail(&mut self, id: usize, error: Arc<EngineError>) {
        let Some(active) = self.slots[id].active.take() else {
            return;
        };
        self.slots[id].last_used = self.tick();
        tracing::warn!(slot = id, error = %error, "generate failed");
        self.publish_status();
        let _ = active.events.send(Event::Failed(error));
    }

    fn publish_status(&self) {
        let snapshot = EngineStatus {
            slots_busy: self.slots.iter().filter(|s| s.active.is_some()).count(),
            slots_total: self.slots.len(),
            waiting: self.queue.len(),
            tokens_cached: self.cache.cells_used(),
        };
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = snapshot;
    }
}
