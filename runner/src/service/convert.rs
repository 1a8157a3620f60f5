//! Between the wire and the engine: requests to jobs, events to messages, errors to
//! statuses.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use ollama_proto::runner as pb;
use tonic::Status;

use super::load::Loaded;
use crate::engine::{DoneReason, EngineError, EngineStatus, Event, GenerateJob};
use crate::grammar::GrammarError;
use crate::sample::SamplerOptions;
use crate::tokenizer::Tokenizer;

/// The status a caller gets for an engine error.
pub(super) fn status(e: &EngineError) -> Status {
    let message = e.to_string();
    match e {
        EngineError::Grammar(GrammarError::Step(_)) => Status::internal(message),
        EngineError::Grammar(_)
        | EngineError::EmptyPrompt
        | EngineError::UnknownToken { .. }
        | EngineError::Sampler(_)
        | EngineError::BadOption { .. }
        | EngineError::EmbeddingOnly { .. } => Status::invalid_argument(message),
        EngineError::PromptTooLong { .. } | EngineError::InputTooLong { .. } => {
            Status::resource_exhausted(message)
        }
        EngineError::Model(_) | EngineError::Pooling(_) => Status::internal(message),
        EngineError::Stopped => Status::unavailable(message),
    }
}

/// A random seed for a request that set none.
fn random_seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// The sampler options of a request: Ollama's defaults where it set nothing.
fn sampler_options(s: Option<pb::SamplingOptions>, seed: Option<u64>) -> SamplerOptions {
    let d = SamplerOptions::default();
    let s = s.unwrap_or_default();
    SamplerOptions {
        temperature: s.temperature.unwrap_or(d.temperature),
        top_k: s.top_k.map_or(d.top_k, |k| k as usize),
        top_p: s.top_p.unwrap_or(d.top_p),
        min_p: s.min_p.unwrap_or(d.min_p),
        typical_p: s.typical_p.unwrap_or(d.typical_p),
        repeat_penalty: s.repeat_penalty.unwrap_or(d.repeat_penalty),
        presence_penalty: s.presence_penalty.unwrap_or(d.presence_penalty),
        frequency_penalty: s.frequency_penalty.unwrap_or(d.frequency_penalty),
        repeat_last_n: s.repeat_last_n.map_or(d.repeat_last_n, |n| n as usize),
        seed: seed.unwrap_or_else(random_seed),
    }
}

/// The job for a `Generate` request: the prompt tokenized with the model's tokenizer,
/// after the request's `context` tokens (which already begin with BOS if the model has
/// one, so none is added then).
pub(super) fn generate_job(loaded: &Loaded, r: pb::GenerateRequest) -> GenerateJob {
    let add_bos = r.context.is_empty();
    let mut prompt = r.context;
    prompt.extend(loaded.engine.tokenizer().encode(&r.prompt, add_bos, true));
    GenerateJob {
        return_context: r.return_context,
        prompt,
        sampling: sampler_options(r.sampling, r.seed),
        num_predict: r.num_predict.and_then(|n| usize::try_from(n).ok()),
        stop: r.stop,
        logprobs: r.logprobs,
        top_logprobs: r.top_logprobs as usize,
        shift: r.shift.unwrap_or(true),
        num_keep: r.num_keep.map(|n| n as usize),
        json_schema: r.json_schema.filter(|s| !s.is_empty()),
    }
}

/// The wire message for an engine event.
pub(super) fn event_to_response(
    tokenizer: &Tokenizer,
    event: Event,
) -> Result<pb::GenerateResponse, Status> {
    let text_of = |id| String::from_utf8_lossy(&tokenizer.token_bytes(id, false)).into_owned();
    let event = match event {
        Event::Piece { text, token } => pb::generate_response::Event::Piece(pb::Piece {
            text,
            tokens: token
                .into_iter()
                .map(|t| pb::TokenInfo {
                    id: t.id,
                    text: text_of(t.id),
                    logprob: t.logprob,
                    top_logprobs: t
                        .top
                        .iter()
                        .map(|c| pb::TopLogprob {
                            id: c.token,
                            text: text_of(c.token),
                            logprob: c.logprob,
                        })
                        .collect(),
                })
                .collect(),
        }),
        Event::Done {
            reason,
            timings,
            context,
        } => pb::generate_response::Event::Done(pb::Done {
            context,
            reason: match reason {
                DoneReason::Stop => pb::DoneReason::Stop,
                DoneReason::Length => pb::DoneReason::Length,
                DoneReason::Cancelled => pb::DoneReason::Cancelled,
            }
            .into(),
            timings: Some(pb::Timings {
                prompt_tokens: timings.prompt_tokens as u32,
                cached_tokens: timings.cached_tokens as u32,
                prompt_duration_ns: timings.prompt_duration.as_nanos() as u64,
                generated_tokens: timings.generated_tokens as u32,
                generation_duration_ns: timings.generation_duration.as_nanos() as u64,
                load_duration_ns: timings.load_duration.as_nanos() as u64,
                queue_duration_ns: timings.queue_duration.as_nanos() as u64,
            }),
        }),
        Event::Failed(e) => return Err(status(&e)),
    };
    Ok(pb::GenerateResponse { event: Some(event) })
}

/// The cache a loaded model runs with.
pub(super) fn cache_info(loaded: &Loaded) -> pb::CacheInfo {
    let kv = &loaded.config.kv;
    pb::CacheInfo {
        type_k: kv.type_k.to_string(),
        type_v: kv.type_v.to_string(),
        flash_attention: kv.flash_attention,
        num_ctx: kv.num_ctx as u32,
        num_parallel: kv.num_parallel as u32,
        num_batch: kv.num_batch as u32,
    }
}

/// `Status` for a loaded model (state and RSS are the caller's to fill).
pub(super) fn engine_status(loaded: &Loaded, s: EngineStatus) -> pb::StatusResponse {
    pb::StatusResponse {
        state: pb::RunnerState::Ready.into(),
        memory: Some(loaded.memory),
        cache: Some(cache_info(loaded)),
        slots_busy: s.slots_busy as u32,
        slots_total: s.slots_total as u32,
        tokens_cached: s.tokens_cached as u64,
        requests_waiting: s.waiting as u32,
        model_path: loaded.config.model_path.display().to_string(),
    }
}
