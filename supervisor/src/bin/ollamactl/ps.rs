//! `ps` (what is loaded, as `ollama ps` shows it plus what only this server knows, and
//! what left recently and why) and `stop` (unload one model or all of them).

use std::time::Duration;

use chrono::{DateTime, Utc};
use ollama_proto::ollama::{PsRequest, PsResponse, RunningModel, UnloadRequest};

use crate::client::{Session, full_name};
use crate::format::{
    Cell, Style, Table, Terminal, emit, emit_json, human_bytes, human_time, short_digest,
};

/// `ollamactl stop`'s arguments.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// The model, as `ollamactl ps` names it (`name` alone means `name:latest`).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    model: Option<String>,
    /// Stop every loaded model.
    #[arg(long)]
    all: bool,
    /// Cancel the requests in flight instead of waiting for them.
    #[arg(long)]
    force: bool,
}

/// Prints the loaded models and the recently departed ones.
pub async fn ps(session: &Session, json: bool, terminal: Terminal) -> anyhow::Result<()> {
    let ps = session
        .client
        .clone()
        .ps(PsRequest {})
        .await
        .map_err(|s| session.error(s))?
        .into_inner();
    if json {
        return Ok(emit_json(&crate::json::ps(&ps))?);
    }
    Ok(emit(&render(&ps, Utc::now(), terminal))?)
}

/// The whole `ps` output: the loaded models, each one's last failure below them, then the
/// models that left recently.
pub fn render(ps: &PsResponse, now: DateTime<Utc>, terminal: Terminal) -> String {
    let mut out = ps_table(ps, now).render(terminal);
    for m in ps.models.iter().filter(|m| !m.last_failure.is_empty()) {
        out.push_str(&format!("{}: last failure: {}\n", m.name, m.last_failure));
    }
    let departed = departed_table(ps, now);
    if !departed.is_empty() {
        out.push('\n');
        out.push_str(&departed.render(terminal));
    }
    out
}

/// One row per loaded model: Ollama's columns (NAME ID SIZE PROCESSOR CONTEXT UNTIL),
/// then the runner's settings and state.
pub fn ps_table(ps: &PsResponse, now: DateTime<Utc>) -> Table {
    let mut table = Table::new(&[
        "NAME",
        "ID",
        "SIZE",
        "PROCESSOR",
        "CONTEXT",
        "UNTIL",
        "K/V",
        "FLASH",
        "NUMERICS",
        "SLOTS",
        "PID",
        "STATE",
        "RESTARTS",
    ]);
    for m in &ps.models {
        let state_style = match m.state.as_str() {
            "ready" => Style::Green,
            "failed" => Style::Red,
            _ => Style::Yellow,
        };
        let mut slots = format!("{}/{}", m.slots_busy, m.num_parallel);
        if m.requests_waiting > 0 {
            slots.push_str(&format!(" +{} waiting", m.requests_waiting));
        }
        table.row(vec![
            m.name.clone().into(),
            short_digest(&m.digest).into(),
            human_bytes(m.size).into(),
            processor(m).into(),
            m.context_length.to_string().into(),
            until(m, now).into(),
            format!("{}/{}", m.kv_cache_type_k, m.kv_cache_type_v).into(),
            if m.flash_attention { "on" } else { "off" }.into(),
            if m.numerics.is_empty() {
                "-"
            } else {
                &m.numerics
            }
            .into(),
            slots.into(),
            if m.pid == 0 {
                "-".into()
            } else {
                m.pid.to_string()
            }
            .into(),
            Cell::styled(m.state.clone(), state_style),
            Cell::styled(
                m.restarts.to_string(),
                if m.restarts > 0 {
                    Style::Red
                } else {
                    Style::Plain
                },
            ),
        ]);
    }
    table
}

/// The models that left recently: when and why, in the server's words.
pub fn departed_table(ps: &PsResponse, now: DateTime<Utc>) -> Table {
    let mut table = Table::new(&["DEPARTED", "WHEN", "WHY"]);
    for d in &ps.departed {
        let why = if d.detail.is_empty() {
            d.reason.clone()
        } else {
            d.detail.clone()
        };
        let style = match d.reason.as_str() {
            "crashed" | "back-off" => Style::Red,
            _ => Style::Plain,
        };
        table.row(vec![
            d.name.clone().into(),
            human_time(&d.at, now, "").into(),
            Cell::styled(why, style),
        ]);
    }
    table
}

/// Where the model sits, as `ollama ps` says it: "100% GPU", "100% CPU", "48%/52% CPU/GPU".
pub fn processor(m: &RunningModel) -> String {
    if m.size_vram == 0 {
        "100% CPU".into()
    } else if m.size_vram == m.size {
        "100% GPU".into()
    } else if m.size_vram > m.size || m.size == 0 {
        "Unknown".into()
    } else {
        let cpu = ((m.size - m.size_vram) as f64 / m.size as f64 * 100.0).round() as u64;
        format!("{cpu}%/{}% CPU/GPU", 100 - cpu)
    }
}

/// When it unloads, as `ollama ps` says it: "4 minutes from now", "Forever", "Stopping...".
fn until(m: &RunningModel, now: DateTime<Utc>) -> String {
    if m.state == "stopping" {
        return "Stopping...".into();
    }
    let until = human_time(&m.expires_at, now, "Forever");
    if until.ends_with(" ago") {
        "Stopping...".into()
    } else {
        until
    }
}

/// Unloads one model, or every loaded one with `--all`, and waits until each has left.
pub async fn stop(session: &Session, args: StopArgs) -> anyhow::Result<()> {
    let names = match args.model {
        Some(model) => vec![model],
        None => loaded(session).await?.into_iter().map(|m| m.name).collect(),
    };
    if names.is_empty() {
        return Ok(emit("no model is loaded\n")?);
    }
    for model in &names {
        let was_loaded = session
            .client
            .clone()
            .unload(UnloadRequest {
                model: model.clone(),
                force: args.force,
            })
            .await
            .map_err(|s| session.model_error(s, model))?
            .into_inner()
            .was_loaded;
        if !was_loaded {
            emit(&format!("{model} was not loaded\n"))?;
            continue;
        }
        let full = full_name(model);
        while loaded(session)
            .await?
            .iter()
            .any(|m| m.name == *model || m.name == full)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        emit(&format!("stopped {model}\n"))?;
    }
    Ok(())
}

async fn loaded(session: &Session) -> anyhow::Result<Vec<RunningModel>> {
    let ps = session.client.clone().ps(PsRequest {}).await;
    Ok(ps.map_err(|s| session.error(s))?.into_inner().models)
}
