//! `ollamactl`: the admin's view of a running `ollamad` over its HTTP API on OLLAMA_HOST.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use supervisor::api::PsResponse;
use supervisor::config::{Config, ProcessEnv};

/// Administer a running ollamad (address from OLLAMA_HOST, default 127.0.0.1:11434).
#[derive(Debug, Parser)]
#[command(name = "ollamactl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List loaded models: runner pid, state, memory, K/V types, slots, expiry, restarts.
    Ps {
        /// Print the server's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Unload a model as soon as its requests are done.
    Stop {
        /// The model, as in `ollamactl ps`.
        model: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ollamactl: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn base_url() -> anyhow::Result<String> {
    let addr = Config::client_address(&ProcessEnv)?;
    Ok(format!("http://{addr}"))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// The server's error message from a failed answer.
fn server_error(mut response: ureq::http::Response<ureq::Body>) -> anyhow::Error {
    let status = response.status();
    let body: serde_json::Value = response.body_mut().read_json().unwrap_or_default();
    match body.get("error").and_then(|e| e.as_str()) {
        Some(message) => anyhow::anyhow!("{message} (HTTP {status})"),
        None => anyhow::anyhow!("the server answered HTTP {status}"),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let base = base_url()?;
    let unreachable = || format!("cannot reach ollamad at {base}: is it running?");
    match cli.command {
        Command::Ps { json } => {
            let mut response = agent()
                .get(format!("{base}/api/ps"))
                .call()
                .with_context(unreachable)?;
            if !response.status().is_success() {
                return Err(server_error(response));
            }
            let ps: PsResponse = response
                .body_mut()
                .read_json()
                .context("the server's /api/ps answer is not what ollamactl expects")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&ps)?);
            } else {
                print!("{}", supervisor::api::ps_table(&ps));
            }
        }
        Command::Stop { model } => {
            if model.trim().is_empty() {
                anyhow::bail!("name a model to stop");
            }
            let body = serde_json::json!({ "model": model, "keep_alive": 0, "stream": false });
            let response = agent()
                .post(format!("{base}/api/generate"))
                .send_json(&body)
                .with_context(unreachable)?;
            if !response.status().is_success() {
                return Err(server_error(response));
            }
            println!("{model}: unloading once its requests are done");
        }
    }
    Ok(())
}
