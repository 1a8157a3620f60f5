//! `config` (the server's effective settings and where each came from) and `version`
//! (this client's and the server's).

use ollama_proto::ollama::{ConfigRequest, ConfigResponse, VersionRequest, VersionResponse};

use crate::client::Session;
use crate::format::{Cell, Style, Table, Terminal, emit, emit_json};

/// Prints the server's settings.
pub async fn config(session: &Session, json: bool, terminal: Terminal) -> anyhow::Result<()> {
    let config = session.client.clone().config(ConfigRequest {}).await;
    let config = config.map_err(|s| session.error(s))?.into_inner();
    if json {
        return Ok(emit_json(&crate::json::config(&config))?);
    }
    Ok(emit(&config_table(&config).render(terminal))?)
}

/// NAME VALUE SOURCE, one row per setting; values from the environment stand out.
pub fn config_table(config: &ConfigResponse) -> Table {
    let mut table = Table::new(&["NAME", "VALUE", "SOURCE"]);
    for s in &config.settings {
        let style = match s.source.as_str() {
            "environment" => Style::Yellow,
            _ => Style::Plain,
        };
        table.row(vec![
            s.name.clone().into(),
            s.value.clone().into(),
            Cell::styled(s.source.clone(), style),
        ]);
    }
    table
}

/// Prints both versions.
pub async fn version(session: &Session, json: bool) -> anyhow::Result<()> {
    let server = session.client.clone().version(VersionRequest {}).await;
    let server = server.map_err(|s| session.error(s))?.into_inner();
    let client = env!("CARGO_PKG_VERSION");
    if json {
        return Ok(emit_json(&crate::json::version(client, &server))?);
    }
    Ok(emit(&version_lines(client, &server))?)
}

/// "ollamactl 0.1.0" and "ollamad 0.1.0 (Ollama API 0.12.0)".
pub fn version_lines(client: &str, server: &VersionResponse) -> String {
    format!(
        "ollamactl {client}\nollamad {} (Ollama API {})\n",
        server.ollamad_version, server.version
    )
}
