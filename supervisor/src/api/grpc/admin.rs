//! `Ps`, `Load`, `Unload`, `Watch` and `Config`: the scheduler and the configuration as
//! an admin sees them.

use std::time::SystemTime;

use axum::extract::State;
use serde_json::Map;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::{Response, Status};

use super::ResponseStream;
use super::convert;
use super::departed::Departed;
use crate::api::ps::{self as ps_route, PsModel};
use crate::api::reply::Target;
use crate::api::{ApiError, AppState};
use crate::config::{Config, ProcessEnv, VARIABLES};
use crate::runners::ExitInfo;
use crate::sched::{Backend, EventKind, RunnerFailure, SchedEvent};
use ollama_proto::ollama as pb;

/// `at` as RFC 3339.
pub fn rfc3339(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn running(m: PsModel) -> pb::RunningModel {
    let details = serde_json::from_value(m.details).ok();
    pb::RunningModel {
        digest: m.digest,
        size: m.size,
        size_vram: m.size_vram,
        expires_at: if ps_route::kept_forever(&m.expires_at) {
            String::new()
        } else {
            m.expires_at
        },
        context_length: m.context_length,
        state: serde_json::to_value(m.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        pid: m.pid.unwrap_or(0),
        estimated_bytes: m.estimated_bytes,
        measured_bytes: m.measured_bytes.unwrap_or(0),
        kv_cache_type_k: m.kv_cache_type_k,
        kv_cache_type_v: m.kv_cache_type_v,
        flash_attention: m.flash_attention,
        numerics: m.numerics,
        num_parallel: m.num_parallel,
        slots_busy: m.slots_busy as u32,
        requests_waiting: m.requests_waiting as u32,
        restarts: m.restarts,
        last_failure: m.last_failure.unwrap_or_default(),
        details: details.map(|d: crate::store::ModelDetails| pb::ModelDetails {
            format: d.format,
            family: d.family,
            families: d.families,
            parameter_size: d.parameter_size,
            quantization_level: d.quantization_level,
        }),
        name: m.name,
    }
}

/// `Ps`: `/api/ps`'s rows, and the models that left recently.
pub async fn ps<B: Backend>(
    state: &AppState<B>,
    departed: &Departed,
) -> Result<Response<pb::PsResponse>, Status> {
    let rows = ps_route::ps(State(state.clone())).await?.0.models;
    let loaded: Vec<String> = rows.iter().map(|m| m.name.clone()).collect();
    Ok(Response::new(pb::PsResponse {
        models: rows.into_iter().map(running).collect(),
        departed: departed.list(&loaded),
    }))
}

/// `Load`: the model loaded with the request's options, as a generate request without
/// a prompt loads it.
pub async fn load<B: Backend>(
    state: &AppState<B>,
    r: pb::LoadRequest,
) -> Result<Response<pb::LoadResponse>, Status> {
    let started = Instant::now();
    let options = convert::options(r.options.as_ref());
    let keep_alive = convert::keep_alive(r.keep_alive.as_ref());
    let target = Target::resolve(state, &r.model, &options, keep_alive.as_ref()).await?;
    drop(
        state
            .sched
            .acquire(target.acquire())
            .await
            .map_err(ApiError::from)?,
    );
    Ok(Response::new(pb::LoadResponse {
        load_duration_ns: started.elapsed().as_nanos() as u64,
    }))
}

/// `Unload`: after the requests in flight, or at once with `force`. A model that is not
/// in the store is NOT_FOUND; one that is not loaded answers `was_loaded: false`.
pub async fn unload<B: Backend>(
    state: &AppState<B>,
    r: pb::UnloadRequest,
) -> Result<Response<pb::UnloadResponse>, Status> {
    let target = Target::resolve(state, &r.model, &Map::new(), None).await?;
    let name = &target.spec.name;
    let was_loaded = if r.force {
        state.sched.force_stop(name).await
    } else {
        state.sched.expire(name).await
    };
    tracing::info!(model = %name, force = r.force, was_loaded, "unload asked");
    Ok(Response::new(pb::UnloadResponse { was_loaded }))
}

/// An event's details in words, for `Ps`'s departures and logs.
pub fn event_detail(kind: &EventKind) -> String {
    match kind {
        EventKind::Loading { settings, .. } => format!(
            "loading with num_ctx {}, K/V {}/{}",
            settings.num_ctx,
            settings.type_k.name(),
            settings.type_v.name()
        ),
        EventKind::Loaded { pid, load_time } => format!("loaded by pid {pid} in {load_time:.1?}"),
        EventKind::Evicted { for_model } => format!("evicted for {for_model}"),
        EventKind::Expired => "expired".to_owned(),
        EventKind::Reload { changed } => format!("reloaded for {}", changed.join(", ")),
        EventKind::Unloaded { pid } => match pid {
            Some(pid) => format!("unloaded (pid {pid})"),
            None => "unloaded".to_owned(),
        },
        EventKind::Crashed { failure } => format!("crashed: {failure}"),
        EventKind::BackOff { crashes, retry_in } => {
            format!("held back after {crashes} crashes, for {retry_in:.0?}")
        }
    }
}

fn crashed(failure: &RunnerFailure) -> pb::Crashed {
    let (signal, exit_code, stderr_tail) = match failure {
        RunnerFailure::Crashed { exit, stderr, .. } => match exit {
            ExitInfo::Signal(signal) => (*signal, None, stderr.clone()),
            ExitInfo::Code(code) => (0, Some(*code), stderr.clone()),
            ExitInfo::Unknown => (0, None, stderr.clone()),
        },
        _ => (0, None, Vec::new()),
    };
    pb::Crashed {
        message: failure.to_string(),
        signal,
        exit_code,
        stderr_tail,
    }
}

/// A scheduler event as the API sends it.
pub fn event(e: &SchedEvent) -> pb::Event {
    use pb::event::Kind;
    let kind = match &e.kind {
        EventKind::Loading {
            settings,
            estimate_bytes,
        } => Kind::Loading(pb::Loading {
            num_ctx: settings.num_ctx,
            num_parallel: settings.num_parallel,
            kv_cache_type_k: settings.type_k.name().to_owned(),
            kv_cache_type_v: settings.type_v.name().to_owned(),
            flash_attention: settings.flash_attention,
            estimate_bytes: *estimate_bytes,
        }),
        EventKind::Loaded { pid, load_time } => Kind::Loaded(pb::Loaded {
            pid: *pid,
            load_duration_ns: load_time.as_nanos() as u64,
        }),
        EventKind::Evicted { for_model } => Kind::Evicted(pb::Evicted {
            for_model: for_model.clone(),
        }),
        EventKind::Expired => Kind::Expired(pb::Expired {}),
        EventKind::Reload { changed } => Kind::Reload(pb::Reload {
            changed: changed.iter().map(|c| (*c).to_owned()).collect(),
        }),
        EventKind::Unloaded { pid } => Kind::Unloaded(pb::Unloaded {
            pid: pid.unwrap_or(0),
        }),
        EventKind::Crashed { failure } => Kind::Crashed(crashed(failure)),
        EventKind::BackOff { crashes, retry_in } => Kind::BackOff(pb::BackOff {
            crashes: *crashes as u32,
            retry_in_seconds: retry_in.as_secs_f64(),
        }),
    };
    pb::Event {
        at: rfc3339(e.at),
        model: e.model.clone(),
        kind: Some(kind),
    }
}

/// `Watch`: every event from now on, until the client cancels or the server stops. A
/// client that reads too slowly is told how many events it missed.
pub fn watch<B: Backend>(
    state: &AppState<B>,
    stopping: CancellationToken,
) -> Response<ResponseStream<pb::Event>> {
    let mut events = state.sched.events();
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                () = stopping.cancelled() => return,
                () = tx.closed() => return,
                next = events.recv() => next,
            };
            let message = match next {
                Ok(e) => event(&e),
                Err(broadcast::error::RecvError::Lagged(missed)) => pb::Event {
                    at: rfc3339(SystemTime::now()),
                    model: String::new(),
                    kind: Some(pb::event::Kind::Lagged(pb::Lagged { missed })),
                },
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if tx.send(Ok(message)).await.is_err() {
                return;
            }
        }
    });
    Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

/// `Config`: every variable with its value in effect, where it came from and what it
/// sets.
pub fn config<B: Backend>(state: &AppState<B>) -> Response<pb::ConfigResponse> {
    let mut settings: Vec<pb::Setting> = Config::describe(&state.config, &ProcessEnv)
        .into_iter()
        .map(|d| pb::Setting {
            name: d.name.to_owned(),
            value: d.value,
            source: d.source.to_owned(),
            description: VARIABLES
                .iter()
                .find(|v| v.name == d.name)
                .map(|v| v.meaning.to_owned())
                .unwrap_or_default(),
        })
        .collect();
    settings.sort_by(|a, b| a.name.cmp(&b.name));
    Response::new(pb::ConfigResponse { settings })
}
