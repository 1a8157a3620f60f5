//! `GET /api/ps`: the loaded models, in Ollama's shape plus what an admin of this server
//! needs (runner pid, K/V types, flash attention, slots, estimated and measured memory,
//! the GPU, state, restarts). `ollamactl ps` reads the same rows through the gRPC `Ps`.
//!
//! A model on a GPU is wholly there (runners offload all layers or none), so its row
//! reads as Ollama's for a fully offloaded model: `size` and `size_vram` are both the
//! device memory its runner reports, which `ollama ps` shows as "100% GPU". The runner's
//! host memory stays in `estimated_bytes` and `measured_bytes`.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::models::Models;
use super::{ApiError, AppState};
use crate::sched::Backend;
use crate::sched::{RunnerInfo, RunnerState};
use crate::store::{ModelName, Store};

/// One row of `/api/ps`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PsModel {
    /// Ollama: the model's name.
    pub name: String,
    /// Ollama: the model's name again.
    pub model: String,
    /// Ollama: bytes in memory: on the CPU the larger of estimate and measurement, on a
    /// GPU the device memory held.
    pub size: u64,
    /// Ollama: the manifest digest.
    pub digest: String,
    /// Ollama: format, family, parameter size, quantization.
    pub details: serde_json::Value,
    /// Ollama: when it will be unloaded (RFC 3339; far future when kept forever).
    pub expires_at: String,
    /// Ollama: bytes in GPU memory (0 on the CPU).
    pub size_vram: u64,
    /// Ollama: the context length.
    pub context_length: u32,
    /// loading, ready, stopping or failed.
    pub state: RunnerState,
    /// The runner's process id.
    pub pid: Option<u32>,
    /// Bytes estimated before loading.
    pub estimated_bytes: u64,
    /// Bytes measured since loading.
    pub measured_bytes: Option<u64>,
    /// The GPU the model computes on, by name; `None` on the CPU.
    pub device: Option<String>,
    /// K cache type.
    pub kv_cache_type_k: String,
    /// V cache type.
    pub kv_cache_type_v: String,
    /// Whether flash attention is on.
    pub flash_attention: bool,
    /// How the runner's kernels add: `fast` or `exact`.
    pub numerics: String,
    /// Requests served at once.
    pub num_parallel: u32,
    /// Requests being served now.
    pub slots_busy: usize,
    /// Requests waiting.
    pub requests_waiting: usize,
    /// Crashes (or hang kills) since the server started.
    pub restarts: u32,
    /// The last crash, in words.
    pub last_failure: Option<String>,
}

/// The whole answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PsResponse {
    /// The models.
    pub models: Vec<PsModel>,
}

/// The expiry Ollama shows for a model kept until it is stopped: far in the future.
fn forever() -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 33)
}

/// Whether `expires_at` (a row's) means "kept until stopped".
pub fn kept_forever(expires_at: &str) -> bool {
    expires_at == rfc3339(None)
}

fn rfc3339(at: Option<SystemTime>) -> String {
    let at = at.unwrap_or_else(forever);
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Ollama's `size` and `size_vram` for `info`: on a GPU that reported its memory, the
/// device bytes for both; otherwise the accounted host bytes and no VRAM.
fn sizes(info: &RunnerInfo) -> (u64, u64) {
    match info.device {
        Some(_) if info.device_bytes > 0 => (info.device_bytes, info.device_bytes),
        _ => (info.accounted_bytes(), 0),
    }
}

fn row(info: RunnerInfo, store: &Store, models: &Models) -> PsModel {
    let entry = ModelName::parse(&info.name)
        .ok()
        .and_then(|name| models.get(store, &name).ok());
    let (digest, details) = match &entry {
        Some(model) => (
            model.resolved.entry.digest.clone(),
            serde_json::to_value(&model.resolved.entry.details).unwrap_or_default(),
        ),
        None => (String::new(), serde_json::Value::Null),
    };
    let settings = info.settings;
    let (size, size_vram) = sizes(&info);
    PsModel {
        model: info.name.clone(),
        size,
        digest,
        details,
        expires_at: rfc3339(info.expires_at),
        size_vram,
        context_length: settings.map_or(0, |s| s.num_ctx),
        state: info.state,
        pid: info.pid,
        estimated_bytes: info.estimated_bytes,
        measured_bytes: info.measured_bytes,
        device: info.device,
        kv_cache_type_k: settings.map_or(String::new(), |s| s.type_k.name().to_string()),
        kv_cache_type_v: settings.map_or(String::new(), |s| s.type_v.name().to_string()),
        flash_attention: settings.is_some_and(|s| s.flash_attention),
        numerics: settings.map_or(String::new(), |s| s.numerics.name().to_owned()),
        num_parallel: settings.map_or(0, |s| s.num_parallel),
        slots_busy: info.busy,
        requests_waiting: info.waiting,
        restarts: info.restarts,
        last_failure: info.last_failure,
        name: info.name,
    }
}

/// The handler.
pub async fn ps<B: Backend>(
    State(state): State<AppState<B>>,
) -> Result<Json<PsResponse>, ApiError> {
    let snapshot = state.sched.snapshot().await;
    let (store, models) = (Arc::clone(&state.store), Arc::clone(&state.models));
    let models = tokio::task::spawn_blocking(move || {
        snapshot
            .into_iter()
            .map(|info| row(info, &store, &models))
            .collect()
    })
    .await
    .map_err(|e| ApiError::internal(format!("listing runners failed: {e}")))?;
    Ok(Json(PsResponse { models }))
}
