//! `load`: start a model's runner now, with chosen settings, so that the first request
//! does not wait for it.

use ollama_proto::ollama::{KeepAlive, LoadRequest};

use crate::client::Session;
use crate::format::{emit, short_duration};
use crate::options::{RunnerSettings, parse_keep_alive};

/// `ollamactl load`'s arguments.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The model.
    model: String,
    #[command(flatten)]
    settings: RunnerSettings,
    /// How long it stays loaded when idle: 5m, 1h, 0, -1 (forever); the server's default
    /// (OLLAMA_KEEP_ALIVE) when not given.
    #[arg(long, value_name = "DUR", value_parser = parse_keep_alive, allow_hyphen_values = true)]
    keep_alive: Option<KeepAlive>,
}

/// Loads the model and says how long it took.
pub async fn load(session: &Session, args: LoadArgs) -> anyhow::Result<()> {
    let request = LoadRequest {
        model: args.model.clone(),
        options: Some(args.settings.options()),
        keep_alive: args.keep_alive,
    };
    let loaded = session.client.clone().load(request).await;
    let loaded = loaded
        .map_err(|s| session.model_error(s, &args.model))?
        .into_inner();
    Ok(emit(&format!(
        "loaded {} in {}\n",
        args.model,
        short_duration(loaded.load_duration_ns)
    ))?)
}
