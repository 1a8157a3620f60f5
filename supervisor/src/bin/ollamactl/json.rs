//! `--json`: the server's answers as JSON objects under the proto's own field names, for
//! scripts. The generated types have no serde support, so each answer is mapped here, in
//! one place, field by field.

use ollama_proto::ollama::{
    ConfigResponse, EstimateResponse, Event, ListResponse, ModelDetails, PsResponse, ShowResponse,
    VersionResponse, event,
};
use serde_json::{Value, json};

fn details(d: Option<&ModelDetails>) -> Value {
    let Some(d) = d else { return Value::Null };
    json!({
        "format": d.format,
        "family": d.family,
        "families": d.families,
        "parameter_size": d.parameter_size,
        "quantization_level": d.quantization_level,
    })
}

/// `ps --json`.
pub fn ps(ps: &PsResponse) -> Value {
    let models: Vec<Value> = ps
        .models
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "digest": m.digest,
                "size": m.size,
                "size_vram": m.size_vram,
                "expires_at": m.expires_at,
                "context_length": m.context_length,
                "state": m.state,
                "pid": m.pid,
                "estimated_bytes": m.estimated_bytes,
                "measured_bytes": m.measured_bytes,
                "kv_cache_type_k": m.kv_cache_type_k,
                "kv_cache_type_v": m.kv_cache_type_v,
                "flash_attention": m.flash_attention,
                "numerics": m.numerics,
                "num_parallel": m.num_parallel,
                "slots_busy": m.slots_busy,
                "requests_waiting": m.requests_waiting,
                "restarts": m.restarts,
                "last_failure": m.last_failure,
                "details": details(m.details.as_ref()),
            })
        })
        .collect();
    let departed: Vec<Value> = ps
        .departed
        .iter()
        .map(|d| json!({"name": d.name, "at": d.at, "reason": d.reason, "detail": d.detail}))
        .collect();
    json!({ "models": models, "departed": departed })
}

/// `list --json`.
pub fn list(list: &ListResponse) -> Value {
    let models: Vec<Value> = list
        .models
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "size": m.size,
                "digest": m.digest,
                "modified_at": m.modified_at,
                "details": details(m.details.as_ref()),
            })
        })
        .collect();
    json!({ "models": models })
}

/// `show --json`; `model_info` as the object it encodes.
pub fn show(show: &ShowResponse) -> Value {
    let model_info: Value = serde_json::from_str(&show.model_info).unwrap_or(Value::Null);
    json!({
        "modelfile": show.modelfile,
        "parameters": show.parameters,
        "template": show.template,
        "system": show.system,
        "license": show.license,
        "details": details(show.details.as_ref()),
        "model_info": model_info,
        "capabilities": show.capabilities,
        "modified_at": show.modified_at,
    })
}

/// `estimate --json`.
pub fn estimate(e: &EstimateResponse) -> Value {
    let max_context: Vec<Value> = e
        .max_context
        .iter()
        .map(|f| json!({"kv_cache_type": f.kv_cache_type, "max_num_ctx": f.max_num_ctx}))
        .collect();
    json!({
        "weights_bytes": e.weights_bytes,
        "kv_bytes": e.kv_bytes,
        "k_bytes": e.k_bytes,
        "v_bytes": e.v_bytes,
        "compute_bytes": e.compute_bytes,
        "runtime_bytes": e.runtime_bytes,
        "overhead_bytes": e.overhead_bytes,
        "total_bytes": e.total_bytes,
        "num_ctx": e.num_ctx,
        "num_parallel": e.num_parallel,
        "kv_cache_type_k": e.kv_cache_type_k,
        "kv_cache_type_v": e.kv_cache_type_v,
        "device": e.device,
        "free_bytes": e.free_bytes,
        "device_total_bytes": e.device_total_bytes,
        "fits": e.fits,
        "device_bytes": e.device_bytes,
        "max_context": max_context,
    })
}

/// `config --json`.
pub fn config(config: &ConfigResponse) -> Value {
    let settings: Vec<Value> = config
        .settings
        .iter()
        .map(|s| {
            json!({"name": s.name, "value": s.value, "source": s.source,
                   "description": s.description})
        })
        .collect();
    json!({ "settings": settings })
}

/// `version --json`.
pub fn version(client: &str, server: &VersionResponse) -> Value {
    json!({
        "ollamactl_version": client,
        "version": server.version,
        "ollamad_version": server.ollamad_version,
    })
}

/// `watch --json`: one object per event, its kind's fields under the kind's name.
pub fn event(e: &Event) -> Value {
    use event::Kind;
    let (kind, body) = match &e.kind {
        Some(Kind::Loading(l)) => (
            "loading",
            json!({
                "num_ctx": l.num_ctx, "num_parallel": l.num_parallel,
                "kv_cache_type_k": l.kv_cache_type_k, "kv_cache_type_v": l.kv_cache_type_v,
                "flash_attention": l.flash_attention, "estimate_bytes": l.estimate_bytes,
            }),
        ),
        Some(Kind::Loaded(l)) => (
            "loaded",
            json!({"pid": l.pid, "load_duration_ns": l.load_duration_ns}),
        ),
        Some(Kind::Evicted(v)) => ("evicted", json!({"for_model": v.for_model})),
        Some(Kind::Expired(_)) => ("expired", json!({})),
        Some(Kind::Reload(r)) => ("reload", json!({"changed": r.changed})),
        Some(Kind::Unloaded(u)) => ("unloaded", json!({"pid": u.pid})),
        Some(Kind::Crashed(c)) => (
            "crashed",
            json!({
                "message": c.message, "signal": c.signal, "exit_code": c.exit_code,
                "stderr_tail": c.stderr_tail,
            }),
        ),
        Some(Kind::BackOff(b)) => (
            "back_off",
            json!({"crashes": b.crashes, "retry_in_seconds": b.retry_in_seconds}),
        ),
        Some(Kind::Lagged(l)) => ("lagged", json!({"missed": l.missed})),
        None => ("unknown", json!({})),
    };
    json!({ "at": e.at, "model": e.model, kind: body })
}
