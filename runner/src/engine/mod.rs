//! The batch loop: one compute thread owns the model and its K/V cache and serves every
//! request through slots.
//!
//! Requests arrive through a channel and wait for a free slot (one slot is one sequence
//! of the cache). Each step builds one batch from every active slot: one decode token per
//! generating slot, then prompt tokens in chunks up to `num_batch`. One forward pass runs
//! it, each slot samples with its own sampler, and pieces go back to their callers. New
//! requests join between steps (continuous batching). A caller that drops its stream is
//! noticed at the next step; its slot keeps the tokens it evaluated for prefix reuse.
//!
//! Validation happens in [`Engine::generate`] and [`Engine::embed`] on the caller's
//! thread, so a bad request is refused at once and never reaches the loop.

mod embed;
mod request;
mod slots;
pub mod stop;
mod worker;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::{mpsc as async_mpsc, oneshot};

pub use request::{Embeddings, GenerateJob, MAX_TOP_LOGPROBS};

use crate::grammar::{Constraint, GrammarError, Grammars};
use crate::kvcache::KvCache;
use crate::model::pooling::{Pooling, PoolingError};
use crate::model::{Model, ModelError};
use crate::sample::{SamplerOptionError, TokenLogprob};
use crate::tokenizer::{TokenId, Tokenizer};

/// Why the engine refused or failed a request.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The prompt has no tokens.
    #[error("the prompt is empty: send at least one token of text")]
    EmptyPrompt,
    /// A token id given by the caller (a `context`) is not in the vocabulary.
    #[error(
        "token id {id} is not in this model's vocabulary of {vocab} tokens: send the context \
         this model returned"
    )]
    UnknownToken {
        /// The id.
        id: TokenId,
        /// The vocabulary's size.
        vocab: usize,
    },
    /// The prompt does not fit in one sequence's context.
    #[error(
        "the prompt has {prompt} tokens but the context holds {num_ctx}: shorten the prompt \
         or load the model with a larger num_ctx"
    )]
    PromptTooLong {
        /// Tokens in the prompt.
        prompt: usize,
        /// The context length.
        num_ctx: usize,
    },
    /// The model is an encoder: it embeds and cannot generate text.
    #[error(
        "this model ({architecture}) is an embedding model: it does not support generate; \
         use the embed API"
    )]
    EmbeddingOnly {
        /// Its `general.architecture`.
        architecture: &'static str,
    },
    /// An input is longer than an encoder evaluates in one pass.
    #[error(
        "an input has {tokens} tokens but this embedding model takes at most {limit} \
         (its position table, num_ctx and num_batch): shorten it or ask for truncation"
    )]
    InputTooLong {
        /// Tokens in the input.
        tokens: usize,
        /// The most one input may have.
        limit: usize,
    },
    /// A sampling option is out of range.
    #[error(transparent)]
    Sampler(#[from] SamplerOptionError),
    /// The output format cannot be compiled, or its constraint failed mid-generation.
    #[error(transparent)]
    Grammar(#[from] GrammarError),
    /// A request option is out of range.
    #[error("option {name} = {value} is out of range: {expected}")]
    BadOption {
        /// The option.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// Pooling the hidden states into an embedding failed.
    #[error("cannot pool the embedding: {0}")]
    Pooling(#[from] PoolingError),
    /// The forward pass failed.
    #[error("the model failed: {0}")]
    Model(#[from] ModelError),
    /// The compute thread is gone (it panicked or the engine is shutting down).
    #[error("the runner's compute thread has stopped; restart the runner")]
    Stopped,
}

/// The exit status of a runner whose GPU was lost: the supervisor reports the crash
/// (naming the cause, with this error in its last stderr lines) and reloads the model on
/// the next request.
pub const DEVICE_LOST_EXIT: i32 = ollama_proto::RUNNER_EXIT_DEVICE_LOST;

impl EngineError {
    /// Whether this error leaves the runner unable to serve anything again (its GPU is
    /// lost), rather than failing only the requests in the pass.
    pub fn ends_runner(&self) -> bool {
        matches!(
            self,
            Self::Model(ModelError::Gpu(gpu::GpuError::DeviceLost { .. }))
        )
    }
}

/// Options of the engine set at load.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Tokens at the start of a sequence that a context shift keeps.
    pub num_keep: usize,
    /// Keep shared prefixes by copying them to another slot instead of overwriting them.
    pub multi_user_cache: bool,
    /// How inputs are pooled into one embedding.
    pub pooling: Pooling,
    /// The model's load time, reported with every request.
    pub load_duration: Duration,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoneReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `num_predict` tokens, or a full context with the shift off.
    Length,
    /// The caller went away.
    Cancelled,
}

/// Counts and durations of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Of those, tokens reused from the cache.
    pub cached_tokens: usize,
    /// From taking a slot to the prompt's logits.
    pub prompt_duration: Duration,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// From the first generated token to the last.
    pub generation_duration: Duration,
    /// The model's load time.
    pub load_duration: Duration,
    /// Time spent waiting for a slot.
    pub queue_duration: Duration,
}

/// One sampled token as the caller sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledToken {
    /// Its id.
    pub id: TokenId,
    /// Its log-probability, when asked.
    pub logprob: Option<f32>,
    /// The most likely alternatives, when asked.
    pub top: Vec<TokenLogprob>,
}

/// What a generation stream carries.
#[derive(Debug, Clone)]
pub enum Event {
    /// Text that is final, and the token sampled in this step (none for the text
    /// released when the generation ends).
    Piece {
        /// Released text (empty while text is held back for a stop string).
        text: String,
        /// The token.
        token: Option<SampledToken>,
    },
    /// The generation ended; nothing follows.
    Done {
        /// Why.
        reason: DoneReason,
        /// Its counts and durations.
        timings: Timings,
        /// The whole sequence, prompt and generated tokens, when the job asked for it.
        context: Vec<TokenId>,
    },
    /// The generation failed; nothing follows.
    Failed(Arc<EngineError>),
}

/// What the engine is doing, for `Status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStatus {
    /// Slots with a request.
    pub slots_busy: usize,
    /// Slots in all.
    pub slots_total: usize,
    /// Requests waiting for a slot.
    pub waiting: usize,
    /// Cells of the cache in use.
    pub tokens_cached: usize,
}

/// What the compute thread receives.
enum Command {
    Generate {
        job: GenerateJob,
        constraint: Option<Box<Constraint>>,
        events: async_mpsc::UnboundedSender<Event>,
        arrived: Instant,
    },
    Embed {
        inputs: Vec<Vec<TokenId>>,
        normalize: bool,
        reply: oneshot::Sender<Result<Embeddings, EngineError>>,
    },
}

/// The handle to the compute thread. Dropping it lets the thread finish the requests it
/// holds and stop.
pub struct Engine {
    commands: Option<mpsc::Sender<Command>>,
    status: Arc<Mutex<EngineStatus>>,
    thread: Option<JoinHandle<()>>,
    tokenizer: Arc<Tokenizer>,
    grammars: Grammars,
    num_ctx: usize,
    num_keep: usize,
    /// `Some(architecture)` for an encoder, which embeds only.
    embeds_only: Option<&'static str>,
    /// The most tokens one input to [`Engine::embed`] may have.
    embed_limit: usize,
}

impl Engine {
    /// Starts the compute thread with `model` and its `cache`.
    pub fn start(
        model: Box<dyn Model>,
        cache: KvCache,
        tokenizer: Arc<Tokenizer>,
        config: EngineConfig,
    ) -> std::io::Result<Self> {
        let num_ctx = cache.config().num_ctx;
        let num_keep = config.num_keep;
        // An encoder sees a whole input in one pass (see `model::bert`).
        let embeds_only =
            crate::model::bert::embeds_only(model.architecture()).then(|| model.architecture());
        let embed_limit = match embeds_only {
            Some(_) => num_ctx.min(cache.config().num_batch).min(model.train_ctx()),
            None => num_ctx,
        };
        let status = Arc::new(Mutex::new(EngineStatus {
            slots_total: cache.config().num_parallel,
            ..EngineStatus::default()
        }));
        let (tx, rx) = mpsc::channel();
        let worker = worker::Worker::new(model, cache, Arc::clone(&tokenizer), config, &status);
        let thread = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || worker.run(rx))?;
        Ok(Self {
            commands: Some(tx),
            status,
            thread: Some(thread),
            grammars: Grammars::new(Arc::clone(&tokenizer)),
            tokenizer,
            num_ctx,
            num_keep,
            embeds_only,
            embed_limit,
        })
    }

    /// `Some(architecture)` when the model embeds only (an encoder) and refuses
    /// [`Engine::generate`].
    pub fn embeds_only(&self) -> Option<&'static str> {
        self.embeds_only
    }

    /// The most tokens one input to [`Engine::embed`] may have: `num_ctx`, and for an
    /// encoder also its position table and `num_batch` (an input is one pass).
    pub fn embed_limit(&self) -> usize {
        self.embed_limit
    }

    /// The tokenizer of the model.
    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// Context length of one sequence.
    pub fn num_ctx(&self) -> usize {
        self.num_ctx
    }

    /// The context shift's default `num_keep`.
    pub fn num_keep(&self) -> usize {
        self.num_keep
    }

    /// Queues a generation; its events arrive on the returned stream. Dropping the
    /// receiver cancels it. A job with a JSON schema has it compiled here (the first
    /// one also builds the vocabulary's trie, once per model).
    pub fn generate(
        &self,
        job: GenerateJob,
    ) -> Result<async_mpsc::UnboundedReceiver<Event>, EngineError> {
        if let Some(architecture) = self.embeds_only {
            return Err(EngineError::EmbeddingOnly { architecture });
        }
        job.validate(self.num_ctx)?;
        let vocab = self.tokenizer.vocab().len();
        if let Some(&id) = job.prompt.iter().find(|&&id| id as usize >= vocab) {
            return Err(EngineError::UnknownToken { id, vocab });
        }
        // Compiled here, so that a bad schema is refused before the request is queued.
        let constraint = job
            .json_schema
            .as_deref()
            .map(|schema| self.grammars.compile(schema).map(Box::new))
            .transpose()?;
        let (events, rx) = async_mpsc::unbounded_channel();
        self.send(Command::Generate {
            job,
            constraint,
            events,
            arrived: Instant::now(),
        })?;
        Ok(rx)
    }

    /// Embeds each input (already tokenized) with the model's pooling.
    pub async fn embed(
        &self,
        inputs: Vec<Vec<TokenId>>,
        normalize: bool,
    ) -> Result<Embeddings, EngineError> {
        for input in &inputs {
            request::check_prompt(input, self.num_ctx)?;
            if input.len() > self.embed_limit {
                return Err(EngineError::InputTooLong {
                    tokens: input.len(),
                    limit: self.embed_limit,
                });
            }
        }
        let (reply, rx) = oneshot::channel();
        self.send(Command::Embed {
            inputs,
            normalize,
            reply,
        })?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// A snapshot of what the engine is doing.
    pub fn status(&self) -> EngineStatus {
        *self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, command: Command) -> Result<(), EngineError> {
        self.commands
            .as_ref()
            .ok_or(EngineError::Stopped)?
            .send(command)
            .map_err(|_| EngineError::Stopped)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lost_gpu_ends_the_runner() {
        let lost = EngineError::Model(ModelError::Gpu(gpu::GpuError::DeviceLost {
            reason: "VK_ERROR_DEVICE_LOST".into(),
        }));
        assert!(lost.ends_runner());
        let oom = EngineError::Model(ModelError::Gpu(gpu::GpuError::OutOfMemory {
            what: "logits".into(),
            bytes: 1 << 30,
            allocated: 0,
        }));
        assert!(
            !oom.ends_runner(),
            "out of memory fails the pass, not the runner"
        );
        assert!(!EngineError::Stopped.ends_runner());
    }
}
