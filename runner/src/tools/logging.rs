//! Logging for the binaries (`ollama-runner` and `ollamad` alike): structured lines on
//! stderr, colour only on a terminal, `RUST_LOG` over the binary's default level.

/// Installs the stderr subscriber with `default` (`info`, `debug`, `trace`) unless
/// `RUST_LOG` says otherwise. Call once, first thing in `main`.
pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
