//! `POST /api/embed` (one or more inputs, unit vectors) and the legacy
//! `POST /api/embeddings` (one prompt, the vector as the model gives it).
//!
//! Every input of a request goes to the runner in one `Embed` call; the runner pools the
//! last hidden states as the model's metadata says (mean for a generative model without a
//! pooling type). `dimensions` keeps the first components and scales them to unit length
//! again, as Ollama does.

use tokio::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::generate::{null_as_default, parse_body};
use super::reply::Target;
use super::stream::broken;
use super::{ApiError, AppState};
use crate::sched::{Backend, Lease, RunnerHandle};
use ollama_proto::runner as pb;

/// `/api/embed`'s body, in Ollama's field names.
#[derive(Debug, Deserialize)]
pub struct EmbedRequest {
    pub(super) model: String,
    #[serde(default)]
    pub(super) input: Input,
    pub(super) truncate: Option<bool>,
    pub(super) dimensions: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) options: Map<String, Value>,
    pub(super) keep_alive: Option<Value>,
}

/// `input`: one text or a list of texts.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub(super) enum Input {
    /// No input: the model is loaded and nothing is embedded.
    #[default]
    None,
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
}

impl Input {
    /// The texts to embed; an empty string alone is no input, as in Ollama.
    fn texts(self) -> Vec<String> {
        match self {
            Self::None => Vec::new(),
            Self::One(text) if text.is_empty() => Vec::new(),
            Self::One(text) => vec![text],
            Self::Many(texts) => texts,
        }
    }
}

/// `/api/embeddings`' body.
#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    model: String,
    #[serde(default)]
    prompt: String,
    #[serde(default, deserialize_with = "null_as_default")]
    options: Map<String, Value>,
    keep_alive: Option<Value>,
}

/// The first `dimensions` components of `v`, scaled to unit length (a zero vector stays
/// zero). A 400 when the model's vectors are shorter.
fn shorten(mut v: Vec<f32>, dimensions: usize) -> Result<Vec<f32>, ApiError> {
    if dimensions > v.len() {
        return Err(ApiError::bad_request(format!(
            "dimensions is {dimensions} but this model's embeddings have {} values",
            v.len()
        )));
    }
    v.truncate(dimensions);
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut()
            .for_each(|x| *x = (f64::from(*x) / norm) as f32);
    }
    Ok(v)
}

/// Runs `request` on the lease's runner, ending at once if the runner dies meanwhile.
async fn run<B: Backend>(
    lease: &Lease<B>,
    request: pb::EmbedRequest,
) -> Result<pb::EmbedResponse, ApiError> {
    tokio::select! {
        biased;
        failure = lease.failed() => Err(ApiError::internal(failure.to_string())),
        answer = lease.runner().embed(request) => match answer {
            Ok(answer) => Ok(answer),
            Err(error) => Err(broken(lease, error).await),
        },
    }
}

/// What an embedding request produced.
pub(super) struct Embedded {
    /// One vector per input, in order.
    pub(super) embeddings: Vec<Vec<f32>>,
    /// The tokens of every input together.
    pub(super) prompt_tokens: u32,
    /// How long loading the model took (or waiting for it).
    pub(super) load: std::time::Duration,
}

/// Embeds `r`'s inputs (unit vectors, cut to `dimensions`): what `/api/embed` and
/// `/v1/embeddings` share. No input loads the model and embeds nothing.
pub(super) async fn embed_inputs<B: Backend>(
    state: &AppState<B>,
    r: EmbedRequest,
) -> Result<Embedded, ApiError> {
    let dimensions = match r.dimensions {
        None | Some(0) => None,
        Some(d) => Some(usize::try_from(d).map_err(|_| {
            ApiError::bad_request(format!("dimensions is {d}: it must be positive"))
        })?),
    };
    let target = Target::resolve(state, &r.model, &r.options, r.keep_alive.as_ref()).await?;
    let inputs = r.input.texts();
    let lease = state.sched.acquire(target.acquire()).await?;
    let load = lease.load_duration().unwrap_or(lease.waited());
    if inputs.is_empty() {
        return Ok(Embedded {
            embeddings: Vec::new(),
            prompt_tokens: 0,
            load,
        });
    }
    let request = pb::EmbedRequest {
        inputs,
        normalize: Some(true),
        truncate: r.truncate.unwrap_or(true),
    };
    let answer = run(&lease, request).await?;
    let embeddings = answer
        .embeddings
        .into_iter()
        .map(|e| match dimensions {
            Some(d) => shorten(e.values, d),
            None => Ok(e.values),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Embedded {
        embeddings,
        prompt_tokens: answer.prompt_tokens,
        load,
    })
}

/// The handler of `/api/embed`.
pub async fn embed<B: Backend>(
    State(state): State<AppState<B>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let r: EmbedRequest = parse_body(&body)?;
    let model = r.model.clone();
    let embedded = embed_inputs(&state, r).await?;
    Ok(Json(json!({
        "model": model,
        "embeddings": embedded.embeddings,
        "total_duration": started.elapsed().as_nanos() as u64,
        "load_duration": embedded.load.as_nanos() as u64,
        "prompt_eval_count": embedded.prompt_tokens,
    })))
}

/// The handler of the legacy `/api/embeddings`: the vector unnormalized, as Ollama gives
/// it there; an input longer than the context is cut to it.
pub async fn embeddings<B: Backend>(
    State(state): State<AppState<B>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let r: EmbeddingsRequest = parse_body(&body)?;
    let target = Target::resolve(&state, &r.model, &r.options, r.keep_alive.as_ref()).await?;
    let lease = state.sched.acquire(target.acquire()).await?;
    if r.prompt.is_empty() {
        return Ok(Json(json!({ "embedding": [] })));
    }
    let request = pb::EmbedRequest {
        inputs: vec![r.prompt],
        normalize: Some(false),
        truncate: true,
    };
    let answer = run(&lease, request).await?;
    let embedding = answer
        .embeddings
        .into_iter()
        .next()
        .map(|e| e.values)
        .ok_or_else(|| ApiError::internal("the runner returned no embedding"))?;
    Ok(Json(json!({ "embedding": embedding })))
}
