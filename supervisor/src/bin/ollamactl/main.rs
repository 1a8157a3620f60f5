//! `ollamactl`: the admin CLI of `ollamad`, a client of its public gRPC API (`ollama.v1`)
//! on OLLAMA_HOST. This file reads the command line and hands each command to its module;
//! every failure ends here as one line on stderr and a non-zero exit code.

mod client;
mod config;
mod create;
mod estimate;
mod format;
mod json;
mod load;
mod models;
mod options;
mod ps;
mod run;
mod watch;

#[cfg(test)]
mod tests;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use supervisor::config::{Config, ProcessEnv};

use crate::client::Session;
use crate::format::Terminal;

/// Administer a running ollamad (address from OLLAMA_HOST, default 127.0.0.1:11434).
#[derive(Debug, Parser)]
#[command(name = "ollamactl", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Loaded models (as `ollama ps`, plus K/V types, flash attention, slots, pid, state,
    /// restarts) and the ones that left recently, with why.
    Ps {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Unload a model once its requests are done (or at once with --force).
    Stop(ps::StopArgs),
    /// The models in the store.
    #[command(visible_alias = "ls")]
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One model's summary, or its Modelfile, template, parameters, system or license.
    Show(models::ShowArgs),
    /// Create a model from a Modelfile, uploading its FROM file when that is local.
    Create(create::CreateArgs),
    /// Delete models.
    Rm {
        /// The models.
        #[arg(required = true)]
        models: Vec<String>,
    },
    /// Copy a model under a new name.
    Cp {
        /// The model to copy.
        source: String,
        /// The new name.
        destination: String,
    },
    /// Load a model now, with chosen settings.
    Load(load::LoadArgs),
    /// Answer one prompt, or chat when no prompt is given on a terminal.
    Run(run::RunArgs),
    /// What a model (or GGUF file) would take in memory, and whether it fits.
    Estimate(estimate::EstimateArgs),
    /// Follow the scheduler's events: loads, unloads, evictions, expiries, crashes.
    Watch {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// The server's effective settings and where each came from.
    Config {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// This client's and the server's versions.
    Version {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(dispatch(cli)),
        Err(error) => Err(error.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if is_closed_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            let text = format!("{error:#}");
            eprintln!("ollamactl: {}", text.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// Help and `--version` as clap prints them; a bad command line as one line.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ExitCode::from(error.exit_code() as u8)
        }
        _ => {
            // clap's first paragraph, less its "error: ", on one line; usage and tips follow
            // after a blank line and are left for --help.
            let text = error.to_string();
            let paragraph: Vec<&str> = text
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            let message = paragraph.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            eprintln!("ollamactl: {message} (see ollamactl --help)");
            ExitCode::from(2)
        }
    }
}

/// Whether the error is stdout's reader going away (`ollamactl watch | head`).
fn is_closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let address = Config::client_address(&ProcessEnv)?;
    let session = Session::connect(address).await?;
    let terminal = Terminal::detect();
    match cli.command {
        Command::Ps { json } => ps::ps(&session, json, terminal).await,
        Command::Stop(args) => ps::stop(&session, args).await,
        Command::List { json } => models::list(&session, json, terminal).await,
        Command::Show(args) => models::show(&session, args).await,
        Command::Create(args) => create::create(&session, args).await,
        Command::Rm { models } => models::remove(&session, &models).await,
        Command::Cp {
            source,
            destination,
        } => models::copy(&session, &source, &destination).await,
        Command::Load(args) => load::load(&session, args).await,
        Command::Run(args) => run::run(&session, args).await,
        Command::Estimate(args) => estimate::estimate(&session, args, terminal).await,
        Command::Watch { json } => watch::watch(&session, json).await,
        Command::Config { json } => config::config(&session, json, terminal).await,
        Command::Version { json } => config::version(&session, json).await,
    }
}
