//! The model store: `list`, `show`, `rm` and `cp`, with `list` and `show` printed as
//! `ollama list` and `ollama show` print them.

use chrono::{DateTime, Utc};
use ollama_proto::ollama::ShowResponse;
use ollama_proto::ollama::{CopyRequest, DeleteRequest, ListRequest, ListResponse, ShowRequest};
use serde_json::Value;

use crate::client::Session;
use crate::format::{
    Table, Terminal, emit, emit_json, human_bytes, human_number, human_time, short_digest,
};

/// `ollamactl show`'s arguments: one part of the model, or by default the summary.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The model.
    model: String,
    /// Print a Modelfile that recreates it.
    #[arg(long, group = "part")]
    modelfile: bool,
    /// Print its prompt template.
    #[arg(long, group = "part")]
    template: bool,
    /// Print its parameters.
    #[arg(long, group = "part")]
    parameters: bool,
    /// Print its system message.
    #[arg(long, group = "part")]
    system: bool,
    /// Print its license.
    #[arg(long, group = "part")]
    license: bool,
    /// Print the server's whole answer as JSON.
    #[arg(long, group = "part")]
    json: bool,
}

/// Prints the store's models.
pub async fn list(session: &Session, json: bool, terminal: Terminal) -> anyhow::Result<()> {
    let list = session.client.clone().list(ListRequest {}).await;
    let list = list.map_err(|s| session.error(s))?.into_inner();
    if json {
        return Ok(emit_json(&crate::json::list(&list))?);
    }
    Ok(emit(&list_table(&list, Utc::now()).render(terminal))?)
}

/// `ollama list`'s table: NAME ID SIZE MODIFIED.
pub fn list_table(list: &ListResponse, now: DateTime<Utc>) -> Table {
    let mut table = Table::new(&["NAME", "ID", "SIZE", "MODIFIED"]);
    for m in &list.models {
        table.row(vec![
            m.name.clone().into(),
            short_digest(&m.digest).into(),
            human_bytes(m.size).into(),
            human_time(&m.modified_at, now, "Never").into(),
        ]);
    }
    table
}

/// Prints one model: the part asked for, or the summary.
pub async fn show(session: &Session, args: ShowArgs) -> anyhow::Result<()> {
    let show = fetch(session, &args.model).await?;
    let part = |text: &str| {
        let mut text = text.to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text
    };
    let text = match () {
        _ if args.json => return Ok(emit_json(&crate::json::show(&show))?),
        _ if args.modelfile => part(&show.modelfile),
        _ if args.template => part(&show.template),
        _ if args.parameters => part(&show.parameters),
        _ if args.system => part(&show.system),
        _ if args.license => part(&show.license),
        _ => summary(&show),
    };
    Ok(emit(&text)?)
}

/// The Show answer for `model`, NOT_FOUND as "model not found".
pub async fn fetch(session: &Session, model: &str) -> anyhow::Result<ShowResponse> {
    let request = ShowRequest {
        model: model.to_string(),
    };
    let show = session.client.clone().show(request).await;
    Ok(show
        .map_err(|s| session.model_error(s, model))?
        .into_inner())
}

/// `ollama show`'s summary: Model (architecture, parameters, context and embedding
/// length, quantization), Capabilities, Parameters, System and License (first lines).
pub fn summary(show: &ShowResponse) -> String {
    let info: serde_json::Map<String, Value> =
        serde_json::from_str(&show.model_info).unwrap_or_default();
    let details = show.details.clone().unwrap_or_default();
    let architecture = info
        .get("general.architecture")
        .and_then(Value::as_str)
        .unwrap_or(&details.family)
        .to_string();
    let number = |key: &str| info.get(key).and_then(Value::as_u64);
    let parameters = number("general.parameter_count")
        .map(human_number)
        .unwrap_or(details.parameter_size.clone());
    let mut model = vec![
        ("architecture".to_string(), architecture.clone()),
        ("parameters".to_string(), parameters),
    ];
    for (key, label) in [
        ("context_length", "context length"),
        ("embedding_length", "embedding length"),
    ] {
        if let Some(n) = number(&format!("{architecture}.{key}")) {
            model.push((label.to_string(), n.to_string()));
        }
    }
    model.push(("quantization".into(), details.quantization_level.clone()));
    model.retain(|(_, value)| !value.is_empty());

    let mut out = String::new();
    section(&mut out, "Model", &model);
    let capabilities: Vec<_> = show
        .capabilities
        .iter()
        .map(|c| (c.clone(), String::new()))
        .collect();
    section(&mut out, "Capabilities", &capabilities);
    let parameters: Vec<_> = show
        .parameters
        .lines()
        .filter_map(|line| line.trim().split_once(char::is_whitespace))
        .map(|(name, value)| (name.to_string(), value.trim().to_string()))
        .collect();
    section(&mut out, "Parameters", &parameters);
    section(&mut out, "System", &first_lines(&show.system));
    section(&mut out, "License", &first_lines(&show.license));
    out
}

/// A section of the summary: its title, then its rows with the values lined up.
fn section(out: &mut String, title: &str, rows: &[(String, String)]) {
    if rows.is_empty() {
        return;
    }
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    out.push_str(&format!("  {title}\n"));
    for (key, value) in rows {
        let line = format!("    {key:width$}    {value}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push('\n');
}

/// The first two lines of a long text, then "..." when there is more, as Ollama shows a
/// license.
fn first_lines(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.trim().lines().collect();
    let mut rows: Vec<_> = lines
        .iter()
        .take(2)
        .map(|l| (l.trim_end().to_string(), String::new()))
        .collect();
    if lines.len() > 2 {
        rows.push(("...".into(), String::new()));
    }
    rows
}

/// Deletes each model; the server unloads a loaded one once its requests are done.
pub async fn remove(session: &Session, models: &[String]) -> anyhow::Result<()> {
    for model in models {
        let request = DeleteRequest {
            model: model.clone(),
        };
        let deleted = session.client.clone().delete(request).await;
        deleted.map_err(|s| session.model_error(s, model))?;
        emit(&format!("deleted '{model}'\n"))?;
    }
    Ok(())
}

/// Copies `source` to `destination`.
pub async fn copy(session: &Session, source: &str, destination: &str) -> anyhow::Result<()> {
    let request = CopyRequest {
        source: source.to_string(),
        destination: destination.to_string(),
    };
    let copied = session.client.clone().copy(request).await;
    copied.map_err(|s| session.model_error(s, source))?;
    Ok(emit(&format!("copied '{source}' to '{destination}'\n"))?)
}
