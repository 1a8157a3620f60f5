//! `ollamad`: the server. Without arguments it serves, like `ollama serve`; `ollamad
//! config` prints the configuration in effect and where each value came from.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use supervisor::config::{Config, LogLevel, ProcessEnv, VARIABLES};

/// A local LLM server with Ollama's API, one isolated runner process per loaded model.
#[derive(Debug, Parser)]
#[command(name = "ollamad", version, about, after_long_help = variables_help())]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API on OLLAMA_HOST (the default when no command is given).
    Serve,
    /// Print every variable's value in effect and whether it came from the environment.
    Config,
}

fn variables_help() -> String {
    let mut text = String::from("Environment (Ollama's names and defaults):\n");
    for v in VARIABLES {
        text.push_str(&format!(
            "  {}\n      {} (default: {}; accepts {})\n",
            v.name,
            v.meaning,
            if v.default.is_empty() {
                "unset"
            } else {
                v.default
            },
            v.accepts
        ));
    }
    text
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env(&ProcessEnv) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ollamad: {error}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Config => {
            print_config(&config);
            Ok(())
        }
        Command::Serve => serve(config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ollamad: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_config(config: &Config) {
    let described = config.describe(&ProcessEnv);
    let width = described.iter().map(|d| d.name.len()).max().unwrap_or(0);
    for d in described {
        println!("{:width$}  {:<28}  ({})", d.name, d.value, d.source);
    }
}

fn init_logging(level: LogLevel) {
    let default = match level {
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    };
    plan::logging::init(default);
}

fn serve(config: Config) -> anyhow::Result<()> {
    init_logging(config.log_level);
    for d in config.describe(&ProcessEnv) {
        tracing::info!(target: "config", "{}={} ({})", d.name, d.value, d.source);
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let runner = supervisor::server::runner_binary(&config);
    runtime.block_on(supervisor::server::serve(
        config,
        runner,
        supervisor::server::termination(),
    ))?;
    Ok(())
}
