//! `watch`: the scheduler's events as they happen, one line each, until Ctrl-C.

use std::io::Write as _;

use chrono::DateTime;
use ollama_proto::ollama::{Event, WatchRequest, event::Kind};

use crate::client::Session;
use crate::format::{emit, human_bytes, short_duration};

/// Follows the event stream; ends when the server closes it.
pub async fn watch(session: &Session, json: bool) -> anyhow::Result<()> {
    let stream = session.client.clone().watch(WatchRequest {}).await;
    let mut stream = stream.map_err(|s| session.error(s))?.into_inner();
    // On stderr, so that stdout stays one line per event; it also tells a script that
    // the subscription stands and the events it causes from now on will show.
    let _ = writeln!(
        std::io::stderr(),
        "watching ollamad's events (Ctrl-C to stop)"
    );
    while let Some(event) = stream.message().await.map_err(|s| session.error(s))? {
        let line = if json {
            serde_json::to_string(&crate::json::event(&event))?
        } else {
            event_line(&event)
        };
        emit(&format!("{line}\n"))?;
    }
    Ok(())
}

/// One event as a line: time, model, what happened and its details.
pub fn event_line(event: &Event) -> String {
    let time = DateTime::parse_from_rfc3339(&event.at)
        .map(|at| at.format("%H:%M:%S").to_string())
        .unwrap_or_else(|_| event.at.clone());
    format!("{time}  {}  {}", event.model, what(event))
}

fn what(event: &Event) -> String {
    match &event.kind {
        Some(Kind::Loading(l)) => format!(
            "loading: num_ctx {}, num_parallel {}, K/V {}/{}, flash attention {}, estimate {}",
            l.num_ctx,
            l.num_parallel,
            l.kv_cache_type_k,
            l.kv_cache_type_v,
            if l.flash_attention { "on" } else { "off" },
            human_bytes(l.estimate_bytes)
        ),
        Some(Kind::Loaded(l)) => format!(
            "loaded: pid {} in {}",
            l.pid,
            short_duration(l.load_duration_ns)
        ),
        Some(Kind::Evicted(e)) => format!("evicted for {}", e.for_model),
        Some(Kind::Expired(_)) => "expired".into(),
        Some(Kind::Reload(r)) => format!("reloaded for {}", r.changed.join(", ")),
        Some(Kind::Unloaded(u)) => format!("unloaded: pid {}", u.pid),
        Some(Kind::Crashed(c)) => {
            let mut parts = Vec::new();
            if c.signal != 0 {
                parts.push(format!("signal {}{}", c.signal, signal_name(c.signal)));
            } else if let Some(code) = c.exit_code {
                parts.push(format!("exit code {code}"));
            }
            if !c.message.is_empty() {
                parts.push(c.message.clone());
            }
            if let Some(last) = c.stderr_tail.iter().rev().find(|l| !l.trim().is_empty()) {
                parts.push(format!("last stderr: {}", last.trim()));
            }
            format!("crashed: {}", parts.join("; "))
        }
        Some(Kind::BackOff(b)) => format!(
            "back-off: {} crashes, retry in {:.0} s",
            b.crashes, b.retry_in_seconds
        ),
        Some(Kind::Lagged(l)) => format!("lagged: {} events missed", l.missed),
        None => "unknown event (a newer server?)".into(),
    }
}

/// " (SIGKILL)" for 9, empty for a number that is no signal here.
fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| format!(" ({})", s.as_str()))
        .unwrap_or_default()
}
